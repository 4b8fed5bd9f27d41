package hashembed_test

import (
	"context"
	"math"
	"testing"

	"github.com/mtai-dev/mtai/rag/hashembed"
)

func dot(a, b []float32) float64 {
	var s float64
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

func TestVectors(t *testing.T) {
	e := hashembed.New(0)
	if e.ID() != "hash-v1-256" || e.Dimension() != 256 {
		t.Errorf("ID, Dimension = %q, %d", e.ID(), e.Dimension())
	}
	q := e.Vector("How do I copy files to a remote host?")
	if n := dot(q, q); math.Abs(n-1) > 1e-5 {
		t.Errorf("norm² = %v, want 1", n)
	}
	// the same text gives the same vector, in every process: pin a value
	if again := e.Vector("How do I copy files to a remote host?"); dot(q, again) < 0.99999 {
		t.Error("the same text gave another vector")
	}
	near := e.Vector("scp copies a file between hosts on a network")
	far := e.Vector("The quarterly revenue grew by twelve percent")
	if dot(q, near) <= dot(q, far)+0.05 {
		t.Errorf("related text scores %.3f, unrelated %.3f", dot(q, near), dot(q, far))
	}
	// word parts match: "filesystem" shares n-grams with "file system"
	if a, b := dot(e.Vector("filesystem"), e.Vector("file system")), dot(e.Vector("filesystem"), e.Vector("printer queue")); a <= b {
		t.Errorf("filesystem~file system %.3f ≤ filesystem~printer queue %.3f", a, b)
	}
	if z := e.Vector("the of and !!"); dot(z, z) != 0 {
		t.Error("a text of stop words only is not the zero vector")
	}
	vecs, tokens, err := e.Embed(context.Background(), []string{"a b c", "d"})
	if err != nil || len(vecs) != 2 || tokens != 0 || len(vecs[0]) != 256 {
		t.Errorf("Embed = %d vectors, %d tokens, %v", len(vecs), tokens, err)
	}
	if hashembed.New(64).ID() != "hash-v1-64" {
		t.Error("the ID does not name the dimension")
	}
}

func BenchmarkVector(b *testing.B) {
	e := hashembed.New(0)
	text := "Mandatory arguments to long options are mandatory for short options too. List information about the FILEs (the current directory by default). Sort entries alphabetically if none of -cftuvSUX nor --sort is specified."
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		e.Vector(text)
	}
}

// Package hashembed is mtai's offline embedder: it needs no model and no
// download, and it is lexical, not semantic. A text's vector is the feature
// hashing ("hashing trick") of its words and of the character n-grams of
// its words, with sublinear term frequencies, signed, normalised to unit
// length. Texts that share words or word parts (plurals, prefixes,
// compounds such as "filesystem"/"file system") come out close; synonyms
// with no letters in common do not. The rag.Service adds BM25 ranking at
// query time (hybrid search) where the vector store supports it.
//
// For semantic retrieval, configure an embeddings model (rag/openaiembed).
package hashembed

import (
	"context"
	"fmt"
	"math"

	"github.com/mtai-dev/mtai/rag"
)

// DefaultDimension is the vector length unless configured otherwise: large
// enough that collisions between a chunk's features stay rare, small enough
// for a fast exact scan.
const DefaultDimension = 256

// Feature weights, tuned on the man-page retrieval test (see
// quality_test.go in this package's parent).
const (
	wordWeight   = 1.0
	bigramWeight = 0.5
	gramWeight   = 0.25 // each character n-gram of a word
	minGram      = 3
	maxGram      = 5
)

var _ rag.Embedder = (*Embedder)(nil)

// Embedder is the feature-hashing embedder. It is safe for concurrent use
// and holds no state besides its dimension.
type Embedder struct {
	dim int
}

// New returns an embedder of vectors of dim (DefaultDimension when 0).
func New(dim int) *Embedder {
	if dim <= 0 {
		dim = DefaultDimension
	}
	return &Embedder{dim: dim}
}

// ID implements rag.Embedder; it changes with the dimension and with any
// change of the features (the version).
func (e *Embedder) ID() string { return fmt.Sprintf("hash-v1-%d", e.dim) }

// Dimension implements rag.Embedder.
func (e *Embedder) Dimension() int { return e.dim }

// Embed implements rag.Embedder. It bills no tokens.
func (e *Embedder) Embed(ctx context.Context, texts []string) ([][]float32, int, error) {
	out := make([][]float32, len(texts))
	for i, t := range texts {
		if i%64 == 0 && ctx.Err() != nil {
			return nil, 0, ctx.Err()
		}
		out[i] = e.Vector(t)
	}
	return out, 0, nil
}

type feature struct {
	n int     // occurrences
	w float64 // weight of one occurrence
}

// Vector returns the unit vector of text (the zero vector for a text
// without words).
func (e *Embedder) Vector(text string) []float32 {
	terms := rag.Terms(nil, text)
	feats := make(map[uint64]feature, len(terms)*8)
	add := func(h uint64, w float64) {
		f := feats[h]
		f.n++
		f.w = w
		feats[h] = f
	}
	var buf []byte
	for i, t := range terms {
		add(hash('w', []byte(t)), wordWeight)
		if i > 0 && bigramWeight > 0 {
			buf = append(buf[:0], terms[i-1]...)
			buf = append(buf, ' ')
			buf = append(buf, t...)
			add(hash('b', buf), bigramWeight)
		}
		buf = append(buf[:0], '<')
		buf = append(buf, t...)
		buf = append(buf, '>')
		for n := minGram; n <= maxGram; n++ {
			for j := 0; j+n <= len(buf); j++ {
				add(hash(byte('0'+n), buf[j:j+n]), gramWeight)
			}
		}
	}
	v := make([]float32, e.dim)
	for h, f := range feats {
		// sublinear tf: a word said ten times is not ten times as relevant
		w := float32(f.w * (1 + math.Log(float64(f.n))))
		idx := (h & (1<<63 - 1)) % uint64(e.dim)
		if h>>63 == 1 {
			w = -w // signed hashing: collisions cancel out on average
		}
		v[idx] += w
	}
	var norm float64
	for _, x := range v {
		norm += float64(x) * float64(x)
	}
	if norm > 0 {
		inv := float32(1 / math.Sqrt(norm))
		for i := range v {
			v[i] *= inv
		}
	}
	return v
}

// hash is FNV-1a of kind and b, finished with splitmix64's mixer so that
// every bit (the sign bit too) depends on every input byte. It must never
// change: stored vectors depend on it (change the ID's version instead).
func hash(kind byte, b []byte) uint64 {
	h := uint64(14695981039346656037)
	h ^= uint64(kind)
	h *= 1099511628211
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	h ^= h >> 30
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 27
	h *= 0x94d049bb133111eb
	h ^= h >> 31
	return h
}

package anthropic_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/mtai-dev/mtai/providers/providerstest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// golden compares got with testdata/<name> byte for byte, or rewrites the
// file with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", filepath.FromSlash(name))
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file %s: %v (go test ./providers/anthropic -update creates it)", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from its golden file (rerun with -update if intended):\n got: %s\nwant: %s", path, got, want)
	}
}

func readTestdata(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", filepath.FromSlash(name)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var spec struct {
	once sync.Once
	doc  *openapi3.T
	err  error
}

// validate checks a JSON document against a component schema of the
// shared OpenAI spec, in kin-openapi's default mode (see FACTS.md).
func validate(t *testing.T, schema string, body []byte) error {
	t.Helper()
	path := filepath.Join(providerstest.ContractsDir(t), "openai-openapi.yaml")
	spec.once.Do(func() { spec.doc, spec.err = openapi3.NewLoader().LoadFromFile(path) })
	if spec.err != nil {
		t.Fatalf("loading %s: %v", path, spec.err)
	}
	ref := spec.doc.Components.Schemas[schema]
	if ref == nil || ref.Value == nil {
		t.Fatalf("no schema %s in the spec", schema)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return ref.Value.VisitJSON(v)
}

package openaiembed_test

import (
	"context"
	"math"
	"testing"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/mock"
	"github.com/mtai-dev/mtai/rag/openaiembed"
)

func router(t *testing.T) *providers.Router {
	t.Helper()
	r, err := providers.NewRouter(providers.Config{Models: []providers.ModelConfig{
		{Name: "text-embedding-3-small", Embeddings: true, Deployments: []providers.DeploymentConfig{{Provider: "mock"}}},
	}}, map[string]providers.Factory{"mock": func(d providers.DeploymentConfig) (providers.Provider, error) { return mock.New(d) }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestThroughTheRouter embeds through a real providers.Router whose
// deployment is the mock provider (an OpenAI-format embeddings answer).
func TestThroughTheRouter(t *testing.T) {
	ctx := context.Background()
	e, err := openaiembed.New(ctx, router(t), openaiembed.Config{Model: "text-embedding-3-small"})
	if err != nil {
		t.Fatalf("New = %v", err)
	}
	if e.Dimension() != mock.EmbeddingDims || e.ID() != "openai-text-embedding-3-small-256" {
		t.Errorf("Dimension, ID = %d, %q", e.Dimension(), e.ID())
	}
	texts := []string{"first", "second \"quoted\" text", "first"}
	vecs, tokens, err := e.Embed(ctx, texts)
	if err != nil {
		t.Fatalf("Embed = %v", err)
	}
	if len(vecs) != 3 || tokens <= 0 {
		t.Fatalf("Embed = %d vectors, %d tokens", len(vecs), tokens)
	}
	for i, v := range vecs {
		var n float64
		for _, x := range v {
			n += float64(x) * float64(x)
		}
		if math.Abs(n-1) > 1e-4 {
			t.Errorf("vector %d has norm² %v, want 1", i, n)
		}
	}
	same := true
	for j := range vecs[0] {
		same = same && vecs[0][j] == vecs[2][j]
	}
	if !same {
		t.Error("the same text gave two vectors")
	}
	if _, err := openaiembed.New(ctx, router(t), openaiembed.Config{Model: "nope"}); err == nil {
		t.Error("New(unrouted model) = nil error")
	}
}

// Package openaiembed embeds through mtai's own providers: any
// OpenAI-compatible embeddings endpoint routed by providers.Router
// (OpenAI's text-embedding-3-small, Azure OpenAI, or a local vLLM, Ollama or
// TEI server by base URL), with the router's retries, fallbacks and circuit
// breakers. It is the production embedder; its vectors are semantic.
package openaiembed

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/rag"
)

var _ rag.Embedder = (*Embedder)(nil)

// Router is what the embedder needs from the routing layer.
// *providers.Router implements it.
type Router interface {
	Route(model string) (*providers.Route, bool)
	Embed(ctx context.Context, rt *providers.Route, call *providers.Call) (*providers.Response, providers.Served, error)
}

var _ Router = (*providers.Router)(nil)

// Config chooses the model.
type Config struct {
	// Model is a routed model name (MTAI_RAG_EMBEDDING_MODEL), e.g.
	// "text-embedding-3-small". Required.
	Model string
	// Dimensions asks the model for vectors of this length (OpenAI's
	// text-embedding-3 models shorten theirs); 0: the model's own length,
	// learned by one call in New.
	Dimensions int
}

// Embedder calls the embeddings endpoint of a routed model. It is safe for
// concurrent use.
type Embedder struct {
	r     Router
	route *providers.Route
	model string
	ask   int // dimensions sent to the upstream; 0: none
	dim   int
}

// New returns the embedder of cfg.Model. When cfg.Dimensions is 0 it makes
// one call to learn the dimension.
func New(ctx context.Context, r Router, cfg Config) (*Embedder, error) {
	rt, ok := r.Route(cfg.Model)
	if !ok {
		return nil, fmt.Errorf("openaiembed: model %q is not routed (MTAI_RAG_EMBEDDING_MODEL)", cfg.Model)
	}
	e := &Embedder{r: r, route: rt, model: cfg.Model, ask: cfg.Dimensions, dim: cfg.Dimensions}
	if e.dim == 0 {
		vecs, _, err := e.Embed(ctx, []string{"dimension probe"})
		if err != nil {
			return nil, fmt.Errorf("openaiembed: learn the dimension of %s: %w", cfg.Model, err)
		}
		e.dim = len(vecs[0])
	}
	return e, nil
}

// ID implements rag.Embedder: "openai-<model>-<dimension>".
func (e *Embedder) ID() string { return "openai-" + e.model + "-" + strconv.Itoa(e.dim) }

// Dimension implements rag.Embedder.
func (e *Embedder) Dimension() int { return e.dim }

// Embed implements rag.Embedder: one call for all texts; the vectors are
// normalised to unit length (inner product = cosine).
func (e *Embedder) Embed(ctx context.Context, texts []string) ([][]float32, int, error) {
	if len(texts) == 0 {
		return nil, 0, nil
	}
	body := []byte(`{"model":`)
	ms := len(body) + 1
	body = providers.AppendJSONString(body, e.model)
	me := len(body) - 1
	in, err := json.Marshal(texts)
	if err != nil {
		return nil, 0, err
	}
	body = append(body, `,"input":`...)
	body = append(body, in...)
	body = append(body, `,"encoding_format":"float"`...)
	if e.ask > 0 {
		body = append(body, `,"dimensions":`...)
		body = strconv.AppendInt(body, int64(e.ask), 10)
	}
	body = append(body, '}')
	call := &providers.Call{Body: body, ModelStart: ms, ModelEnd: me, RequestID: "rag-embed"}
	resp, _, err := e.r.Embed(ctx, e.route, call)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Release()
	var out struct {
		Data []struct {
			Index     int       `json:"index"`
			Embedding []float32 `json:"embedding"`
		} `json:"data"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		return nil, 0, fmt.Errorf("openaiembed: the answer is not an embeddings list: %w", err)
	}
	if len(out.Data) != len(texts) {
		return nil, 0, fmt.Errorf("openaiembed: %d embeddings for %d inputs", len(out.Data), len(texts))
	}
	vecs := make([][]float32, len(texts))
	for _, d := range out.Data {
		if d.Index < 0 || d.Index >= len(texts) || vecs[d.Index] != nil {
			return nil, 0, errors.New("openaiembed: embeddings with bad or repeated indexes")
		}
		if e.dim != 0 && len(d.Embedding) != e.dim {
			return nil, 0, fmt.Errorf("openaiembed: a vector of %d dimensions, want %d", len(d.Embedding), e.dim)
		}
		normalize(d.Embedding)
		vecs[d.Index] = d.Embedding
	}
	tokens := resp.Usage.TotalTokens
	if tokens == 0 {
		tokens = resp.Usage.PromptTokens
	}
	return vecs, int(tokens), nil
}

func normalize(v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
}

// Package mock is the built-in provider that needs no network and no key:
// it answers chat completions (plain and streamed) and embeddings with
// deterministic content derived from the request, with a configurable
// answer size, first-byte latency, chunk count and chunk interval. It is
// what `make run` serves out of the box, and what tests use when they need
// an upstream that is always there.
package mock

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"hash/fnv"
	"io"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/mtai-dev/mtai/internal/jsonscan"
	"github.com/mtai-dev/mtai/providers"
)

var (
	_ providers.Provider = (*Provider)(nil)
	_ providers.Embedder = (*Provider)(nil)
)

// Provider is the mock upstream for one deployment. Safe for concurrent use.
type Provider struct {
	cfg  providers.MockConfig
	now  func() time.Time
	name string
}

// EmbeddingDims is the length of the mock's embedding vectors.
const EmbeddingDims = 256

// New returns a mock provider for deployment d, with defaults for unset sizes.
func New(d providers.DeploymentConfig) (*Provider, error) {
	cfg := d.Mock
	if cfg.Words <= 0 {
		cfg.Words = 12
	}
	if cfg.Chunks <= 0 {
		cfg.Chunks = 4
	}
	if cfg.Chunks > cfg.Words {
		cfg.Chunks = cfg.Words
	}
	return &Provider{cfg: cfg, now: time.Now, name: d.Name}, nil
}

var vocabulary = []string{
	"the", "gateway", "answers", "every", "tenant", "quickly", "with", "tokens",
	"streamed", "as", "they", "arrive", "and", "counted", "for", "billing",
	"mock", "model", "says", "hello", "from", "mtai", "a", "deterministic", "reply",
}

// request is what the mock reads from a chat request.
type request struct {
	seed      uint64
	promptLen int
	maxTokens int64
}

func parse(body []byte) (request, error) {
	var r request
	h := fnv.New64a()
	_, err := jsonscan.Object(body, 0, func(f jsonscan.Field) bool {
		v := body[f.Start:f.End]
		switch string(f.Key) {
		case "messages", "input":
			h.Write(v)
			r.promptLen += len(v)
		case "max_tokens", "max_completion_tokens":
			r.maxTokens, _ = jsonscan.Int(v)
		}
		return true
	})
	r.seed = h.Sum64()
	return r, err
}

// words returns the deterministic answer's words for r.
func (p *Provider) words(r request) []string {
	n := p.cfg.Words
	if r.maxTokens > 0 && int(r.maxTokens) < n {
		n = int(r.maxTokens)
	}
	out := make([]string, n)
	s := r.seed
	for i := range out {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		out[i] = vocabulary[s%uint64(len(vocabulary))]
	}
	return out
}

func (p *Provider) finish(r request) string {
	if r.maxTokens > 0 && int(r.maxTokens) < p.cfg.Words {
		return "length"
	}
	return "stop"
}

func promptTokens(r request) int64 { return int64(r.promptLen+3) / 4 }

func wait(ctx context.Context, d time.Duration, stop <-chan struct{}) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-stop:
		return errClosed
	}
}

var errClosed = errors.New("mock stream closed")

func (p *Provider) id(r request) string {
	return "chatcmpl-mock" + strconv.FormatUint(r.seed&0xffffffffffff, 36)
}

// Complete implements providers.Provider.
func (p *Provider) Complete(ctx context.Context, req *providers.Request) (*providers.Response, error) {
	r, err := parse(req.Body)
	if err != nil {
		return nil, &providers.UpstreamError{Provider: "mock", Deployment: p.name, Status: 400,
			Type: "invalid_request_error", Message: "malformed JSON"}
	}
	if err := wait(ctx, p.cfg.Latency, nil); err != nil {
		return nil, err
	}
	words := p.words(r)
	content := joinWords(words)
	u := providers.Usage{PromptTokens: promptTokens(r), CompletionTokens: int64(len(words))}
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	b := make([]byte, 0, 512+len(content))
	b = append(b, `{"id":"`...)
	b = append(b, p.id(r)...)
	b = append(b, `","object":"chat.completion","created":`...)
	b = strconv.AppendInt(b, p.now().Unix(), 10)
	b = append(b, `,"model":`...)
	b = providers.AppendJSONString(b, req.Model)
	b = append(b, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
	b = providers.AppendJSONString(b, content)
	b = append(b, `,"refusal":null},"logprobs":null,"finish_reason":"`...)
	b = append(b, p.finish(r)...)
	b = append(b, `"}],"usage":`...)
	b = appendUsage(b, u)
	b = append(b, `,"system_fingerprint":"fp_mtai_mock"}`...)
	return providers.NewResponse(b, u, nil), nil
}

func joinWords(words []string) string {
	n := 0
	for _, w := range words {
		n += len(w) + 1
	}
	b := make([]byte, 0, n)
	for i, w := range words {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, w...)
	}
	if len(b) > 0 {
		b = append(b, '.')
	}
	return string(b)
}

func appendUsage(b []byte, u providers.Usage) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, u.PromptTokens, 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, u.CompletionTokens, 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, u.TotalTokens, 10)
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":0}}`...)
	return b
}

// Stream implements providers.Provider. The stream always ends with a
// usage chunk (choices empty) before [DONE], like an OpenAI upstream asked
// for stream_options.include_usage, which the gateway always asks for.
func (p *Provider) Stream(ctx context.Context, req *providers.Request) (providers.Stream, error) {
	r, err := parse(req.Body)
	if err != nil {
		return nil, &providers.UpstreamError{Provider: "mock", Deployment: p.name, Status: 400,
			Type: "invalid_request_error", Message: "malformed JSON"}
	}
	if err := wait(ctx, p.cfg.Latency, nil); err != nil {
		return nil, err
	}
	words := p.words(r)
	s := &stream{p: p, ctx: ctx, model: req.Model, id: p.id(r), created: p.now().Unix(),
		words: words, finish: p.finish(r), stop: make(chan struct{}),
		usage: providers.Usage{PromptTokens: promptTokens(r), CompletionTokens: int64(len(words))}}
	s.usage.TotalTokens = s.usage.PromptTokens + s.usage.CompletionTokens
	return s, nil
}

type stream struct {
	p       *Provider
	ctx     context.Context
	model   string
	id      string
	created int64
	words   []string
	finish  string
	usage   providers.Usage

	step int // 0: role chunk, 1..chunks: content, chunks+1: finish, +2: usage, then EOF
	buf  []byte

	stop      chan struct{}
	closeOnce sync.Once
}

func (s *stream) head() []byte {
	b := append(s.buf[:0], `{"id":"`...)
	b = append(b, s.id...)
	b = append(b, `","object":"chat.completion.chunk","created":`...)
	b = strconv.AppendInt(b, s.created, 10)
	b = append(b, `,"model":`...)
	b = providers.AppendJSONString(b, s.model)
	b = append(b, `,"system_fingerprint":"fp_mtai_mock","choices":`...)
	return b
}

// Next implements providers.Stream.
func (s *stream) Next() ([]byte, error) {
	chunks := s.p.cfg.Chunks
	if chunks > len(s.words) {
		chunks = len(s.words)
	}
	select {
	case <-s.stop:
		return nil, errClosed
	default:
	}
	switch {
	case s.step == 0:
		s.buf = append(s.head(), `[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}]}`...)
	case s.step <= chunks:
		if err := wait(s.ctx, s.p.cfg.ChunkInterval, s.stop); err != nil {
			return nil, err
		}
		per := (len(s.words) + chunks - 1) / chunks
		lo := (s.step - 1) * per
		hi := min(lo+per, len(s.words))
		text := ""
		for i := lo; i < hi; i++ {
			if i > 0 {
				text += " "
			}
			text += s.words[i]
		}
		if hi == len(s.words) {
			text += "."
		}
		b := append(s.head(), `[{"index":0,"delta":{"content":`...)
		b = providers.AppendJSONString(b, text)
		s.buf = append(b, `},"logprobs":null,"finish_reason":null}]}`...)
	case s.step == chunks+1:
		b := append(s.head(), `[{"index":0,"delta":{},"logprobs":null,"finish_reason":"`...)
		b = append(b, s.finish...)
		s.buf = append(b, `"}]}`...)
	case s.step == chunks+2:
		b := append(s.head(), `[],"usage":`...)
		b = appendUsage(b, s.usage)
		s.buf = append(b, '}')
	default:
		return nil, io.EOF
	}
	s.step++
	return s.buf, nil
}

// Close implements providers.Stream.
func (s *stream) Close(error) {
	s.closeOnce.Do(func() { close(s.stop) })
}

// Embed implements providers.Embedder: one unit vector per input, derived
// from a hash of the input's text, float or base64 as asked.
func (p *Provider) Embed(ctx context.Context, req *providers.Request) (*providers.Response, error) {
	body := req.Body
	var inputs [][]byte
	b64 := false
	bad := false
	_, err := jsonscan.Object(body, 0, func(f jsonscan.Field) bool {
		v := body[f.Start:f.End]
		switch string(f.Key) {
		case "input":
			if v[0] == '[' {
				_, err := jsonscan.Array(v, 0, func(s, e int) bool {
					inputs = append(inputs, v[s:e])
					return true
				})
				bad = err != nil
			} else {
				inputs = append(inputs, v)
			}
		case "encoding_format":
			s, _ := jsonscan.String(v)
			b64 = string(s) == "base64"
		}
		return true
	})
	if err != nil || bad || len(inputs) == 0 {
		return nil, &providers.UpstreamError{Provider: "mock", Deployment: p.name, Status: 400,
			Type: "invalid_request_error", Message: "input is required"}
	}
	if err := wait(ctx, p.cfg.Latency, nil); err != nil {
		return nil, err
	}
	var tokens int64
	out := []byte(`{"object":"list","data":[`)
	vec := make([]float32, EmbeddingDims)
	raw := make([]byte, 4*EmbeddingDims)
	for i, in := range inputs {
		tokens += int64(len(in)+3) / 4
		Vector(in, vec)
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, `{"object":"embedding","index":`...)
		out = strconv.AppendInt(out, int64(i), 10)
		out = append(out, `,"embedding":`...)
		if b64 {
			for j, f := range vec {
				binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(f))
			}
			out = append(out, '"')
			out = base64.StdEncoding.AppendEncode(out, raw)
			out = append(out, '"')
		} else {
			out = append(out, '[')
			for j, f := range vec {
				if j > 0 {
					out = append(out, ',')
				}
				out = strconv.AppendFloat(out, float64(f), 'g', -1, 32)
			}
			out = append(out, ']')
		}
		out = append(out, '}')
	}
	out = append(out, `],"model":`...)
	out = providers.AppendJSONString(out, req.Model)
	out = append(out, `,"usage":{"prompt_tokens":`...)
	out = strconv.AppendInt(out, tokens, 10)
	out = append(out, `,"total_tokens":`...)
	out = strconv.AppendInt(out, tokens, 10)
	out = append(out, `}}`...)
	return providers.NewResponse(out, providers.Usage{PromptTokens: tokens, TotalTokens: tokens}, nil), nil
}

// Vector fills v with a deterministic unit vector derived from text.
func Vector(text []byte, v []float32) {
	h := fnv.New64a()
	h.Write(text)
	s := h.Sum64() | 1
	var norm float64
	for i := range v {
		s ^= s << 13
		s ^= s >> 7
		s ^= s << 17
		f := float64(int64(s>>11)%2000-1000) / 1000
		v[i] = float32(f)
		norm += f * f
	}
	n := float32(math.Sqrt(norm))
	if n == 0 {
		return
	}
	for i := range v {
		v[i] /= n
	}
}

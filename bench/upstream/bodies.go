package upstream

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"
)

// built holds a profile's answers, built once at start.
type built struct {
	completion []byte   // the non-streamed answer
	plain      [][]byte // the stream's events when the client did not ask for usage
	withUsage  [][]byte // the stream's events with include_usage
	chunks     int
	firstByte  time.Duration
	delay      time.Duration
	silent     bool
	silentHold time.Duration
}

func (c *Config) setDefaults() {
	if c.Addr == "" {
		c.Addr = "127.0.0.1:0"
	}
	if c.ID == "" {
		c.ID = "chatcmpl-bench"
	}
	if c.Created == 0 {
		c.Created = 1694268190
	}
	if c.Model == "" {
		c.Model = "bench-model"
	}
	if c.SystemFingerprint == "" {
		c.SystemFingerprint = "fp_bench"
	}
	if len(c.Models) == 0 {
		c.Models = []string{c.Model}
	}
	if c.EmbeddingDims <= 0 {
		c.EmbeddingDims = 8
	}
}

func (p *Profile) setDefaults() {
	if p.ContentBytes <= 0 {
		p.ContentBytes = 256
	}
	if p.Content == "" {
		p.Content = filler(p.ContentBytes, 0)
	}
	if p.PromptTokens <= 0 {
		p.PromptTokens = 19
	}
	if p.Chunks <= 0 {
		p.Chunks = 8
	}
	if p.ChunkBytes <= 0 {
		p.ChunkBytes = 4
	}
	if p.SilentHold <= 0 {
		p.SilentHold = 60 * time.Second
	}
}

func build(c *Config, p Profile) (*built, error) {
	if p.FirstByte < 0 || p.ChunkDelay < 0 {
		return nil, errors.New("first_byte and chunk_delay must not be negative")
	}
	p.setDefaults()
	b := &built{
		chunks:     p.Chunks,
		firstByte:  p.FirstByte,
		delay:      p.ChunkDelay,
		silent:     p.Silent,
		silentHold: p.SilentHold,
	}

	tokens := p.CompletionTokens
	if tokens <= 0 {
		tokens = max(1, len(p.Content)/4)
	}
	var out []byte
	out = append(out, `{"id":`...)
	out = appendJSONString(out, c.ID)
	out = append(out, `,"object":"chat.completion","created":`...)
	out = strconv.AppendInt(out, c.Created, 10)
	out = append(out, `,"model":`...)
	out = appendJSONString(out, c.Model)
	out = append(out, `,"choices":[{"index":0,"message":{"role":"assistant","content":`...)
	out = appendJSONString(out, p.Content)
	out = append(out, `,"refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":`...)
	out = appendUsage(out, p.PromptTokens, tokens)
	out = append(out, `,"service_tier":"default","system_fingerprint":`...)
	out = appendJSONString(out, c.SystemFingerprint)
	out = append(out, '}')
	b.completion = out

	streamTokens := p.CompletionTokens
	if streamTokens <= 0 {
		streamTokens = p.Chunks
	}
	b.plain = streamEvents(c, &p, false, streamTokens)
	b.withUsage = streamEvents(c, &p, true, streamTokens)
	return b, nil
}

// streamEvents builds the events of a stream exactly as OpenAI frames them
// (see contracts/samples/openai/chat-stream-*.sse): with include_usage every
// chunk carries "usage":null and a last chunk with empty choices carries the
// usage; without it no chunk has a usage key.
func streamEvents(c *Config, p *Profile, usage bool, completionTokens int) [][]byte {
	var prefix []byte
	prefix = append(prefix, `data: {"id":`...)
	prefix = appendJSONString(prefix, c.ID)
	prefix = append(prefix, `,"object":"chat.completion.chunk","created":`...)
	prefix = strconv.AppendInt(prefix, c.Created, 10)
	prefix = append(prefix, `,"model":`...)
	prefix = appendJSONString(prefix, c.Model)
	prefix = append(prefix, `,"system_fingerprint":`...)
	prefix = appendJSONString(prefix, c.SystemFingerprint)
	prefix = append(prefix, `,"choices":[`...)

	suffix := "]}\n\n"
	if usage {
		suffix = `],"usage":null}` + "\n\n"
	}
	event := func(choice string) []byte {
		e := make([]byte, 0, len(prefix)+len(choice)+len(suffix))
		e = append(e, prefix...)
		e = append(e, choice...)
		return append(e, suffix...)
	}

	events := make([][]byte, 0, p.Chunks+4)
	events = append(events, event(`{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}`))
	for i := range p.Chunks {
		var text string
		if len(p.Tokens) > 0 {
			text = p.Tokens[i%len(p.Tokens)]
		} else {
			text = filler(p.ChunkBytes, i*p.ChunkBytes)
		}
		choice := appendJSONString([]byte(`{"index":0,"delta":{"content":`), text)
		choice = append(choice, `},"logprobs":null,"finish_reason":null}`...)
		events = append(events, event(string(choice)))
	}
	events = append(events, event(`{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}`))
	if usage {
		u := append([]byte(nil), prefix...)
		u = append(u, `],"usage":`...)
		u = appendUsage(u, p.PromptTokens, completionTokens)
		u = append(u, "}\n\n"...)
		events = append(events, u)
	}
	return append(events, []byte("data: [DONE]\n\n"))
}

func appendUsage(b []byte, prompt, completion int) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt), 10)
	b = append(b, `,"completion_tokens":`...)
	b = strconv.AppendInt(b, int64(completion), 10)
	b = append(b, `,"total_tokens":`...)
	b = strconv.AppendInt(b, int64(prompt+completion), 10)
	return append(b, `,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`...)
}

func appendJSONString(b []byte, s string) []byte {
	q, _ := json.Marshal(s) // a string always marshals
	return append(b, q...)
}

const lorem = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod tempor incididunt ut labore et dolore magna aliqua "

// filler returns n bytes of plain ASCII words, starting at offset off of
// the repeated text, so that consecutive chunks read as running text.
func filler(n, off int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = lorem[(off+i)%len(lorem)]
	}
	return string(b)
}

func buildModels(c *Config) []byte {
	b := []byte(`{"object":"list","data":[`)
	for i, m := range c.Models {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":`...)
		b = appendJSONString(b, m)
		b = append(b, `,"object":"model","created":`...)
		b = strconv.AppendInt(b, c.Created, 10)
		b = append(b, `,"owned_by":"system"}`...)
	}
	return append(b, "]}"...)
}

// embeddings answers an embeddings request with one deterministic vector
// per input (a string, a list of strings, a token list, or a list of token
// lists), as floats or, when asked, base64 of little-endian float32s.
func embeddings(c *Config, body []byte) ([]byte, error) {
	var req struct {
		Model          string          `json:"model"`
		Input          json.RawMessage `json:"input"`
		EncodingFormat string          `json:"encoding_format"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, err
	}
	var inputs []json.RawMessage
	switch {
	case len(req.Input) == 0:
		return nil, errors.New("input is required")
	case req.Input[0] == '[':
		if err := json.Unmarshal(req.Input, &inputs); err != nil {
			return nil, err
		}
		if len(inputs) > 0 && inputs[0][0] != '"' && inputs[0][0] != '[' {
			inputs = inputs[:1] // a single token list
		}
	default:
		inputs = []json.RawMessage{req.Input}
	}
	if req.Model == "" {
		req.Model = c.Model
	}
	out := []byte(`{"object":"list","data":[`)
	tokens := 0
	vec := make([]float32, c.EmbeddingDims)
	for i, in := range inputs {
		tokens += max(1, len(in)/4)
		for d := range vec {
			vec[d] = float32(math.Sin(float64(i*31+d+len(in)))) / 10
		}
		if i > 0 {
			out = append(out, ',')
		}
		out = fmt.Appendf(out, `{"object":"embedding","index":%d,"embedding":`, i)
		if req.EncodingFormat == "base64" {
			raw := make([]byte, 4*len(vec))
			for d, v := range vec {
				binary.LittleEndian.PutUint32(raw[4*d:], math.Float32bits(v))
			}
			out = appendJSONString(out, base64.StdEncoding.EncodeToString(raw))
		} else {
			out = append(out, '[')
			for d, v := range vec {
				if d > 0 {
					out = append(out, ',')
				}
				out = strconv.AppendFloat(out, float64(v), 'g', -1, 32)
			}
			out = append(out, ']')
		}
		out = append(out, '}')
	}
	out = append(out, `],"model":`...)
	out = appendJSONString(out, req.Model)
	return fmt.Appendf(out, `,"usage":{"prompt_tokens":%d,"total_tokens":%d}}`, tokens, tokens), nil
}

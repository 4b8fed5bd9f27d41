package billing

import (
	"encoding/json"
	"strings"
	"sync"

	"github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

// Token counting for Estimated events, with OpenAI's tokenizers (tiktoken)
// loaded from the tables embedded in tiktoken-go-loader: nothing is
// downloaded. It runs on the meter's counting goroutine (about 0.3 µs per
// byte of text, and 80–300 ms to load an encoding the first time), and for
// the gateway's token counting endpoint (Tokenizer).

// Encodings, with the split patterns of tiktoken-go's encoding.go (built
// here rather than through tiktoken.GetEncoding, whose loader is a
// package-level variable).
const (
	o200kPattern = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?` +
		`|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?` +
		`|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	cl100kPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// Chat accounting, as OpenAI documents it for its chat models: every
// message costs 3 tokens of framing plus its fields, a name 1 more, and
// every answer is primed with 3.
const (
	tokensPerMessage = 3
	tokensPerName    = 1
	tokensPerReply   = 3
	tokensPerImage   = 85 // a low-detail image; the real count depends on its size
	bytesPerToken    = 4  // for text too large to keep, or when counting must be quick
)

// encodingFor returns the name of the tiktoken encoding of model: o200k for
// the GPT-4o generation and later (gpt-4o, gpt-4.1, gpt-4.5, gpt-5, o1, o3,
// o4, chatgpt-*), cl100k for the rest (gpt-4, gpt-3.5, embeddings, and
// other vendors' models, for which it is an approximation).
func encodingFor(model string) string {
	for _, p := range [...]string{"gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-", "gpt-oss"} {
		if strings.HasPrefix(model, p) {
			return tiktoken.MODEL_O200K_BASE
		}
	}
	return tiktoken.MODEL_CL100K_BASE
}

// tokenCounter counts tokens; its encodings load on first use. Safe for
// concurrent use.
type tokenCounter struct {
	o200k, cl100k lazyEncoding
}

// lazyEncoding is an encoding loaded on first use; enc is nil when it
// could not be loaded.
type lazyEncoding struct {
	once sync.Once
	enc  *tiktoken.Tiktoken
}

func newTokenCounter() *tokenCounter { return &tokenCounter{} }

// encoding loads (once) and returns the encoding for model; nil when it
// cannot be loaded (then text is counted at bytesPerToken).
func (c *tokenCounter) encoding(model string) *tiktoken.Tiktoken {
	name := encodingFor(model)
	e := &c.cl100k
	if name == tiktoken.MODEL_O200K_BASE {
		e = &c.o200k
	}
	e.once.Do(func() { e.enc, _ = loadEncoding(name) })
	return e.enc
}

// Tokenizer counts the prompt tokens of a chat request body (OpenAI's
// format) with tiktoken, as the meter counts an Estimated event's prompt:
// OpenAI's accounting of messages (3 tokens of framing each, 3 to prime
// the answer), their text, tool calls and tool definitions; images at a
// fixed 85 tokens. For models that are not OpenAI's it is an
// approximation (cl100k_base). Build it with NewTokenizer; its encodings
// load on first use (80–300 ms). Safe for concurrent use.
type Tokenizer struct {
	c tokenCounter
}

// NewTokenizer returns a Tokenizer.
func NewTokenizer() *Tokenizer { return &Tokenizer{} }

// PromptTokens returns the prompt tokens of body for model (the upstream
// model's name picks the encoding). A body that is not JSON is counted at
// 4 bytes per token.
func (t *Tokenizer) PromptTokens(model string, body []byte) int64 {
	return t.c.prompt(t.c.encoding(model), body)
}

func loadEncoding(name string) (*tiktoken.Tiktoken, error) {
	file, pattern := "cl100k_base.tiktoken", cl100kPattern
	special := map[string]int{tiktoken.ENDOFTEXT: 100257, tiktoken.FIM_PREFIX: 100258,
		tiktoken.FIM_MIDDLE: 100259, tiktoken.FIM_SUFFIX: 100260, tiktoken.ENDOFPROMPT: 100276}
	if name == tiktoken.MODEL_O200K_BASE {
		file, pattern = "o200k_base.tiktoken", o200kPattern
		special = map[string]int{tiktoken.ENDOFTEXT: 199999, tiktoken.ENDOFPROMPT: 200018}
	}
	ranks, err := tiktoken_loader.NewOfflineLoader().LoadTiktokenBpe(file)
	if err != nil {
		return nil, err
	}
	bpe, err := tiktoken.NewCoreBPE(ranks, special, pattern)
	if err != nil {
		return nil, err
	}
	set := make(map[string]any, len(special))
	for k := range special {
		set[k] = true
	}
	return tiktoken.NewTiktoken(bpe, &tiktoken.Encoding{Name: name, PatStr: pattern, MergeableRanks: ranks, SpecialTokens: special}, set), nil
}

// text returns the number of tokens of s.
func (c *tokenCounter) text(enc *tiktoken.Tiktoken, s string) int64 {
	if s == "" {
		return 0
	}
	if enc == nil {
		return int64((len(s) + bytesPerToken - 1) / bytesPerToken)
	}
	return int64(len(enc.EncodeOrdinary(s)))
}

// count replaces e.Usage by the tokens of the text e carries: the prompt
// (chat messages or embeddings input) and what was generated (collected
// stream deltas or a response body). Reasoning and cached tokens are
// unknown and left at 0.
func (c *tokenCounter) count(e *Event) {
	enc := c.encoding(firstNonEmpty(e.UpstreamModel, e.Model))
	var u = e.Usage
	u.PromptTokens = c.prompt(enc, e.prompt) + (e.promptDropped+bytesPerToken-1)/bytesPerToken
	completion := int64(0)
	if len(e.output) > 0 {
		completion += c.text(enc, unquoteRaw(e.output))
	}
	if len(e.response) > 0 {
		completion += c.response(enc, e.response)
	}
	completion += (e.dropped + bytesPerToken - 1) / bytesPerToken
	u.CompletionTokens = completion
	u.CachedTokens, u.ReasoningTokens = 0, 0
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	e.Usage = u
}

// countRough is count without a tokenizer: bytes/4, for when the counting
// queue is full.
func countRough(e *Event) {
	var u = e.Usage
	u.PromptTokens = (int64(len(e.prompt)) + e.promptDropped + bytesPerToken - 1) / bytesPerToken
	u.CompletionTokens = (int64(len(e.output)+len(e.response)) + e.dropped + bytesPerToken - 1) / bytesPerToken
	u.CachedTokens, u.ReasoningTokens = 0, 0
	u.TotalTokens = u.PromptTokens + u.CompletionTokens
	e.Usage = u
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// unquoteRaw decodes concatenated JSON string contents (escapes kept).
func unquoteRaw(raw []byte) string {
	q := make([]byte, 0, len(raw)+2)
	q = append(q, '"')
	q = append(q, raw...)
	q = append(q, '"')
	var s string
	if err := json.Unmarshal(q, &s); err != nil {
		return string(raw) // count what is there
	}
	return s
}

// chatMessage is what counting reads from a message.
type chatMessage struct {
	Role       string          `json:"role"`
	Name       string          `json:"name"`
	Content    json.RawMessage `json:"content"`
	ToolCallID string          `json:"tool_call_id"`
	ToolCalls  []struct {
		Function struct {
			Name      string `json:"name"`
			Arguments string `json:"arguments"`
		} `json:"function"`
	} `json:"tool_calls"`
}

// prompt counts a request body: chat messages (and tool definitions), or
// an embeddings input. A body it cannot read is counted at bytesPerToken.
func (c *tokenCounter) prompt(enc *tiktoken.Tiktoken, body []byte) int64 {
	if len(body) == 0 {
		return 0
	}
	var req struct {
		Messages []chatMessage   `json:"messages"`
		Tools    json.RawMessage `json:"tools"`
		Input    json.RawMessage `json:"input"`
		System   json.RawMessage `json:"system"` // Anthropic
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return (int64(len(body)) + bytesPerToken - 1) / bytesPerToken
	}
	var n int64
	if req.Messages != nil {
		for i := range req.Messages {
			msg := &req.Messages[i]
			n += tokensPerMessage + c.text(enc, msg.Role) + c.content(enc, msg.Content)
			if msg.Name != "" {
				n += tokensPerName + c.text(enc, msg.Name)
			}
			if msg.ToolCallID != "" {
				n += c.text(enc, msg.ToolCallID)
			}
			for _, tc := range msg.ToolCalls {
				n += c.text(enc, tc.Function.Name) + c.text(enc, tc.Function.Arguments)
			}
		}
		n += tokensPerReply
	}
	if len(req.System) > 0 {
		n += c.content(enc, req.System)
	}
	if len(req.Tools) > 0 && string(req.Tools) != "null" {
		n += c.text(enc, string(req.Tools))
	}
	if len(req.Input) > 0 {
		n += c.input(enc, req.Input)
	}
	return n
}

// content counts a message's content: a string, or an array of parts
// (text parts by their text, images at tokensPerImage).
func (c *tokenCounter) content(enc *tiktoken.Tiktoken, raw json.RawMessage) int64 {
	if len(raw) == 0 || string(raw) == "null" {
		return 0
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return c.text(enc, s)
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if json.Unmarshal(raw, &parts) != nil {
		return c.text(enc, string(raw))
	}
	var n int64
	for _, p := range parts {
		switch p.Type {
		case "image_url", "image", "input_image":
			n += tokensPerImage
		default:
			n += c.text(enc, p.Text)
		}
	}
	return n
}

// input counts an embeddings input: a string, strings, or token arrays.
func (c *tokenCounter) input(enc *tiktoken.Tiktoken, raw json.RawMessage) int64 {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return c.text(enc, s)
	}
	var ss []string
	if json.Unmarshal(raw, &ss) == nil {
		var n int64
		for _, s := range ss {
			n += c.text(enc, s)
		}
		return n
	}
	var ids []int64
	if json.Unmarshal(raw, &ids) == nil {
		return int64(len(ids))
	}
	var idss [][]int64
	if json.Unmarshal(raw, &idss) == nil {
		var n int64
		for _, ids := range idss {
			n += int64(len(ids))
		}
		return n
	}
	return c.text(enc, string(raw))
}

// response counts the generated text of a non-streamed chat answer.
func (c *tokenCounter) response(enc *tiktoken.Tiktoken, body []byte) int64 {
	var resp struct {
		Choices []struct {
			Message struct {
				Content          json.RawMessage `json:"content"`
				ReasoningContent string          `json:"reasoning_content"`
				Refusal          string          `json:"refusal"`
				ToolCalls        []struct {
					Function struct {
						Name      string `json:"name"`
						Arguments string `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		return (int64(len(body)) + bytesPerToken - 1) / bytesPerToken
	}
	var n int64
	for _, ch := range resp.Choices {
		msg := &ch.Message
		n += c.content(enc, msg.Content) + c.text(enc, msg.ReasoningContent) + c.text(enc, msg.Refusal)
		for _, tc := range msg.ToolCalls {
			n += c.text(enc, tc.Function.Name) + c.text(enc, tc.Function.Arguments)
		}
	}
	return n
}

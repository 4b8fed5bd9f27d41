package chat

import (
	"strings"
	"sync"

	"github.com/pkoukk/tiktoken-go"
	tiktoken_loader "github.com/pkoukk/tiktoken-go-loader"
)

// DefaultContextWindow is the context window, in tokens, of a model the
// table below does not know: small enough for most self-hosted models
// (vLLM, Ollama) and the mock.
const DefaultContextWindow = 8192

// DefaultAnswerTokens is the room kept for the answer when a request sets
// no max_tokens (a quarter of the window when that is less).
const DefaultAnswerTokens = 4096

// contextWindows are published context windows (input and output
// together), in tokens, by model-name prefix; the longest matching prefix
// wins, so that snapshots ("gpt-4o-2024-08-06") share their family's.
var contextWindows = []struct {
	prefix string
	tokens int
}{
	{"gpt-5", 400_000},
	{"gpt-4.1", 1_047_576},
	{"gpt-4.5", 128_000},
	{"gpt-4o", 128_000},
	{"chatgpt-4o", 128_000},
	{"gpt-4-turbo", 128_000},
	{"gpt-4-1106", 128_000},
	{"gpt-4-0125", 128_000},
	{"gpt-4-32k", 32_768},
	{"gpt-4", 8_192},
	{"gpt-3.5-turbo", 16_385},
	{"gpt-oss", 131_072},
	{"o1", 200_000},
	{"o1-mini", 128_000},
	{"o3", 200_000},
	{"o4-mini", 200_000},
	{"claude-", 200_000},
	{"anthropic.claude-", 200_000}, // Bedrock model ids
}

// ContextWindow returns model's context window in tokens: the table's
// entry for the longest prefix of model, else DefaultContextWindow.
func ContextWindow(model string) int {
	best, n := DefaultContextWindow, 0
	for _, w := range contextWindows {
		if len(w.prefix) > n && strings.HasPrefix(model, w.prefix) {
			best, n = w.tokens, len(w.prefix)
		}
	}
	return best
}

// AnswerRoom is the room kept in a window for the answer: maxTokens when
// set (> 0), else DefaultAnswerTokens or a quarter of the window, whichever
// is less.
func AnswerRoom(window int, maxTokens int64) int {
	if maxTokens > 0 {
		return int(min(maxTokens, int64(window)))
	}
	return min(DefaultAnswerTokens, window/4)
}

// Chat accounting, as OpenAI documents it for its chat models: a message
// costs its content plus 3 tokens of framing and 1 for its role; an answer
// is primed with 3.
const (
	messageOverhead = 4
	replyPriming    = 3
)

// Counter counts tokens with OpenAI's tokenizers (tiktoken: o200k_base for
// the GPT-4o generation and later, cl100k_base for other models, where it
// approximates), loaded from the tables embedded in tiktoken-go-loader:
// nothing is downloaded. An encoding is loaded on first use (80–300 ms);
// a counting costs about 0.3 µs per byte, so Window counts only when a
// byte-size bound says the history might not fit. Build it with
// NewCounter; safe for concurrent use.
type Counter struct {
	o200k, cl100k encoding
}

type encoding struct {
	once sync.Once
	enc  *tiktoken.Tiktoken // nil when it could not be loaded
}

// NewCounter returns a Counter whose encodings load on first use.
func NewCounter() *Counter { return &Counter{} }

// usesO200k reports whether model is tokenized with o200k_base.
func usesO200k(model string) bool {
	for _, p := range [...]string{"gpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "o1", "o3", "o4", "chatgpt-", "gpt-oss"} {
		if strings.HasPrefix(model, p) {
			return true
		}
	}
	return false
}

// Split patterns of tiktoken-go's encoding.go, built here rather than
// through tiktoken.GetEncoding, whose loader is a package-level variable.
const (
	o200kPattern = `[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?` +
		`|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?` +
		`|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	cl100kPattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

func (c *Counter) encoding(model string) *tiktoken.Tiktoken {
	e, o200k := &c.cl100k, usesO200k(model)
	if o200k {
		e = &c.o200k
	}
	e.once.Do(func() { e.enc = loadEncoding(o200k) })
	return e.enc
}

func loadEncoding(o200k bool) *tiktoken.Tiktoken {
	name, file, pattern := tiktoken.MODEL_CL100K_BASE, "cl100k_base.tiktoken", cl100kPattern
	special := map[string]int{tiktoken.ENDOFTEXT: 100257, tiktoken.FIM_PREFIX: 100258,
		tiktoken.FIM_MIDDLE: 100259, tiktoken.FIM_SUFFIX: 100260, tiktoken.ENDOFPROMPT: 100276}
	if o200k {
		name, file, pattern = tiktoken.MODEL_O200K_BASE, "o200k_base.tiktoken", o200kPattern
		special = map[string]int{tiktoken.ENDOFTEXT: 199999, tiktoken.ENDOFPROMPT: 200018}
	}
	ranks, err := tiktoken_loader.NewOfflineLoader().LoadTiktokenBpe(file)
	if err != nil {
		return nil
	}
	bpe, err := tiktoken.NewCoreBPE(ranks, special, pattern)
	if err != nil {
		return nil
	}
	set := make(map[string]any, len(special))
	for k := range special {
		set[k] = true
	}
	return tiktoken.NewTiktoken(bpe, &tiktoken.Encoding{Name: name, PatStr: pattern, MergeableRanks: ranks, SpecialTokens: special}, set)
}

// Tokens returns the number of tokens of text for model (special tokens
// are counted as ordinary text). Should the tokenizer fail to load, it
// counts one token per byte, an upper bound.
func (c *Counter) Tokens(model, text string) int {
	if text == "" {
		return 0
	}
	enc := c.encoding(model)
	if enc == nil {
		return len(text)
	}
	return len(enc.EncodeOrdinary(text))
}

// MessageTokens returns what m costs in a chat request to model: its
// content and its framing.
func (c *Counter) MessageTokens(model string, m Message) int {
	return c.Tokens(model, m.Content) + messageOverhead
}

// Window returns the newest part of history that fits, with the fixed
// messages (the tenant's system prompt, the new message), in model's
// window less answerRoom tokens. Older messages go first; the result is a
// suffix of history (never a message with a gap before it). Since a token
// is at least one byte, a history whose bytes fit is returned without
// counting.
func (c *Counter) Window(model string, window, answerRoom int, fixed, history []Message) []Message {
	budget := window - answerRoom - replyPriming
	if budget >= bytesBound(fixed)+bytesBound(history) {
		return history
	}
	for _, m := range fixed {
		budget -= c.MessageTokens(model, m)
	}
	i := len(history)
	for i > 0 {
		n := c.MessageTokens(model, history[i-1])
		if n > budget {
			break
		}
		budget -= n
		i--
	}
	return history[i:]
}

// bytesBound is an upper bound of the tokens of msgs.
func bytesBound(msgs []Message) int {
	n := 0
	for _, m := range msgs {
		n += len(m.Content) + messageOverhead
	}
	return n
}

package billing

import (
	"testing"

	"github.com/mtai-dev/mtai/providers"
)

// Token counts below were computed by hand with OpenAI's tiktoken
// (cl100k_base, o200k_base) and its chat accounting: 3 tokens per message,
// 1 per name, 3 to prime the answer.
func TestCountTokens(t *testing.T) {
	tc := newTokenCounter()
	cases := []struct {
		name  string
		model string
		setup func(e *Event)
		want  providers.Usage
	}{
		{"chat prompt only (cancelled before any output)", "gpt-4o", func(e *Event) {
			e.CountPrompt([]byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"Hello world"}]}`))
		}, providers.Usage{PromptTokens: 3 + 1 + 2 + 3, TotalTokens: 9}},
		{"two messages with a name, parts, and a stream's output", "gpt-4", func(e *Event) {
			e.CountPrompt([]byte(`{"messages":[{"role":"system","content":"You are helpful."},` +
				`{"role":"user","name":"bob","content":[{"type":"text","text":"Hello world"},{"type":"image_url","image_url":{"url":"x"}}]}]}`))
			e.CollectChunk([]byte(`{"choices":[{"delta":{"content":"Hello"}}]}`))
			e.CollectChunk([]byte(`{"choices":[{"delta":{"content":" world"}}]}`))
		}, providers.Usage{
			// system: 3 + "system" 1 + "You are helpful." 4; user: 3 + "user" 1 + name 1+1 + text 2 + image 85; reply 3
			PromptTokens: 3 + 1 + 4 + 3 + 1 + 2 + 2 + tokensPerImage + 3, CompletionTokens: 2, TotalTokens: 106}},
		{"non-streamed answer without usage", "gpt-4o-mini", func(e *Event) {
			e.CountPrompt([]byte(`{"messages":[{"role":"user","content":"Hi"}]}`))
			e.CountResponse([]byte(`{"choices":[{"index":0,"message":{"role":"assistant","content":"Hello world","tool_calls":[{"function":{"name":"get","arguments":"{}"}}]}}]}`))
		}, providers.Usage{PromptTokens: 3 + 1 + 1 + 3, CompletionTokens: 2 + 1 + 1, TotalTokens: 12}},
		{"embeddings input", "text-embedding-3-small", func(e *Event) {
			e.CountPrompt([]byte(`{"model":"text-embedding-3-small","input":["Hello world","Hello"]}`))
		}, providers.Usage{PromptTokens: 3, TotalTokens: 3}},
		{"upstream usage replaced, cached and reasoning unknown", "gpt-4o", func(e *Event) {
			e.Usage = providers.Usage{PromptTokens: 99, CachedTokens: 50, ReasoningTokens: 7}
			e.CollectChunk([]byte(`{"choices":[{"delta":{"content":"Hello"}}]}`))
		}, providers.Usage{CompletionTokens: 1, TotalTokens: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := &Event{UpstreamModel: c.model}
			c.setup(e)
			tc.count(e)
			if e.Usage != c.want {
				t.Errorf("count = %+v, want %+v", e.Usage, c.want)
			}
		})
	}
}

func TestEncodingFor(t *testing.T) {
	for model, want := range map[string]string{
		"gpt-4o": "o200k_base", "gpt-4o-mini-2024-07-18": "o200k_base", "gpt-4.1": "o200k_base", "gpt-5-mini": "o200k_base",
		"o3-mini": "o200k_base", "gpt-4": "cl100k_base", "gpt-3.5-turbo": "cl100k_base", "claude-sonnet-4-5": "cl100k_base",
	} {
		if got := encodingFor(model); got != want {
			t.Errorf("encodingFor(%q) = %s, want %s", model, got, want)
		}
	}
}

// TestTokenizer: the exported counter counts a prompt as the meter does,
// from any goroutine.
func TestTokenizer(t *testing.T) {
	tk := NewTokenizer()
	body := []byte(`{"model":"gpt-4o","messages":[{"role":"user","content":"Hello world"}]}`)
	const want = 3 + 1 + 2 + 3
	done := make(chan int64, 4)
	for range 4 {
		go func() { done <- tk.PromptTokens("gpt-4o", body) }()
	}
	for range 4 {
		if got := <-done; got != want {
			t.Errorf("PromptTokens = %d, want %d", got, want)
		}
	}
	if got := tk.PromptTokens("gpt-4o", []byte("not json!")); got != 3 {
		t.Errorf("PromptTokens(not JSON) = %d, want 9 bytes / 4 = 3", got)
	}
}

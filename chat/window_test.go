package chat_test

import (
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/mtai-dev/mtai/chat"
)

func TestContextWindow(t *testing.T) {
	tests := []struct {
		model string
		want  int
	}{
		{"gpt-4o", 128_000},
		{"gpt-4o-mini-2024-07-18", 128_000},
		{"gpt-4", 8_192},
		{"gpt-4-0613", 8_192},
		{"gpt-4-turbo-2024-04-09", 128_000},
		{"gpt-4-32k", 32_768},
		{"gpt-4.1-nano", 1_047_576},
		{"gpt-5-mini", 400_000},
		{"gpt-3.5-turbo", 16_385},
		{"o1", 200_000},
		{"o1-mini", 128_000},
		{"o3-mini", 200_000},
		{"claude-sonnet-4-5-20250929", 200_000},
		{"anthropic.claude-3-5-haiku-20241022-v1:0", 200_000},
		{"llama3.1:8b", chat.DefaultContextWindow},
		{"mock-gpt", chat.DefaultContextWindow},
		{"", chat.DefaultContextWindow},
	}
	for _, tc := range tests {
		if got := chat.ContextWindow(tc.model); got != tc.want {
			t.Errorf("ContextWindow(%q) = %d, want %d", tc.model, got, tc.want)
		}
	}
}

func TestAnswerRoom(t *testing.T) {
	tests := []struct {
		window    int
		maxTokens int64
		want      int
	}{
		{128_000, 0, chat.DefaultAnswerTokens},
		{8192, 0, 2048},
		{8192, 100, 100},
		{8192, 100_000, 8192},
	}
	for _, tc := range tests {
		if got := chat.AnswerRoom(tc.window, tc.maxTokens); got != tc.want {
			t.Errorf("AnswerRoom(%d, %d) = %d, want %d", tc.window, tc.maxTokens, got, tc.want)
		}
	}
}

func TestTokens(t *testing.T) {
	c := chat.NewCounter()
	tests := []struct {
		model, text string
		want        int
	}{
		// tiktoken's published counts
		{"gpt-4", "hello world", 2},
		{"gpt-4o", "hello world", 2},
		{"gpt-4", "tiktoken is great!", 6},
		{"gpt-4", "", 0},
		{"gpt-4", "<|endoftext|>", 7}, // special tokens count as text
	}
	for _, tc := range tests {
		if got := c.Tokens(tc.model, tc.text); got != tc.want {
			t.Errorf("Tokens(%q, %q) = %d, want %d", tc.model, tc.text, got, tc.want)
		}
	}
	// gpt-4o's o200k_base is much better at non-Latin scripts than cl100k_base.
	hindi := "नमस्ते, आप कैसे हैं? मैं ठीक हूँ, धन्यवाद।"
	if o, cl := c.Tokens("gpt-4o", hindi), c.Tokens("gpt-4", hindi); o >= cl {
		t.Errorf("Tokens(gpt-4o) = %d, Tokens(gpt-4) = %d for Hindi: want o200k below cl100k", o, cl)
	}
	if got := c.MessageTokens("gpt-4", chat.Message{Role: chat.RoleUser, Content: "hello world"}); got != 2+4 {
		t.Errorf("MessageTokens = %d, want 6 (content and framing)", got)
	}
}

// TestCounterConcurrent: one Counter serves concurrent requests (run with -race).
func TestCounterConcurrent(t *testing.T) {
	c := chat.NewCounter()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			model := []string{"gpt-4", "gpt-4o"}[i%2]
			if got := c.Tokens(model, "hello world"); got != 2 {
				t.Errorf("Tokens(%s) = %d, want 2", model, got)
			}
		})
	}
	wg.Wait()
}

// msgs returns n user messages of words " word" each (one token each in
// both encodings) after a label.
func msgs(n, words int) []chat.Message {
	out := make([]chat.Message, n)
	for i := range out {
		out[i] = chat.Message{Role: chat.RoleUser, Content: fmt.Sprintf("m%d", i) + strings.Repeat(" word", words)}
	}
	return out
}

func TestWindow(t *testing.T) {
	c := chat.NewCounter()
	fixed := []chat.Message{{Role: chat.RoleUser, Content: "question"}}
	per := c.MessageTokens("gpt-4", msgs(1, 100)[0]) // every message of msgs(_, 100) costs the same
	fixedTokens := c.MessageTokens("gpt-4", fixed[0])
	tests := []struct {
		name    string
		history []chat.Message
		window  int
		answer  int
		want    int // messages kept (the newest)
	}{
		{"all fit", msgs(10, 100), 128_000, 4096, 10},
		{"none", nil, 8192, 1000, 0},
		{"cut", msgs(10, 100), 3 + fixedTokens + 4*per + 500, 500, 4},
		{"exactly", msgs(10, 100), 3 + fixedTokens + 4*per, 0, 4},
		{"one short", msgs(10, 100), 3 + fixedTokens + 4*per - 1, 0, 3},
		{"no room", msgs(10, 100), 1000, 1000, 0},
		{"answer larger than the window", msgs(3, 10), 100, 5000, 0},
	}
	for _, tc := range tests {
		got := c.Window("gpt-4", tc.window, tc.answer, fixed, tc.history)
		if len(got) != tc.want {
			t.Errorf("%s: kept %d messages, want %d", tc.name, len(got), tc.want)
			continue
		}
		if tc.want > 0 && &got[len(got)-1] != &tc.history[len(tc.history)-1] {
			t.Errorf("%s: the window is not the newest messages", tc.name)
		}
	}
	// The window is contiguous: a large message ends it even when older
	// small ones would fit.
	history := append(msgs(3, 5), chat.Message{Role: chat.RoleAssistant, Content: strings.Repeat(" word", 5000)})
	history = append(history, msgs(2, 5)...)
	got := c.Window("gpt-4", 2000, 0, fixed, history)
	if len(got) != 2 {
		t.Errorf("kept %d messages past a large one, want the 2 after it", len(got))
	}
}

func BenchmarkWindow(b *testing.B) {
	c := chat.NewCounter()
	history := msgs(200, 200) // ~40k tokens: counted
	fixed := []chat.Message{{Role: chat.RoleUser, Content: "question"}}
	c.Tokens("gpt-4", "warm up")
	b.ReportAllocs()
	for b.Loop() {
		c.Window("gpt-4", 8192, 1024, fixed, history)
	}
}

package billing

import (
	"strings"
	"testing"
)

func TestCollectChunk(t *testing.T) {
	cases := []struct {
		name   string
		chunks []string
		want   string
	}{
		{"openai content", []string{
			`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}`,
			`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}`,
			`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"lo \"w\"\n"},"finish_reason":null}]}`,
			`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
			`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1}}`,
		}, `Hello "w"` + "\n"},
		{"openai tool call", []string{
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"get","arguments":""}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"city\":"}}]}}]}`,
			`{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"Paris\"}"}}]}}]}`,
		}, `{"city":"Paris"}`},
		{"two choices", []string{
			`{"choices":[{"index":0,"delta":{"content":"a"}},{"index":1,"delta":{"content":"b"}}]}`,
		}, "ab"},
		{"reasoning", []string{`{"choices":[{"delta":{"reasoning_content":"think"}}]}`, `{"choices":[{"delta":{"content":"!"}}]}`}, "think!"},
		{"anthropic", []string{
			`{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Bon"}}`,
			`{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":1}"}}`,
			`{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":15}}`,
		}, `Bon{"a":1}`},
		{"not json", []string{`"delta": nope`}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var e Event
			for _, c := range tc.chunks {
				e.CollectChunk([]byte(c))
			}
			if got := unquoteRaw(e.output); got != tc.want {
				t.Errorf("collected %q, want %q", got, tc.want)
			}
		})
	}
}

func TestCollectBounded(t *testing.T) {
	var e Event
	chunk := []byte(`{"choices":[{"delta":{"content":"` + strings.Repeat(`ab\n`, 1000) + `"}}]}`)
	n := 0
	for len(e.output) < maxCollect {
		e.CollectChunk(chunk)
		n++
	}
	for range 10 {
		e.CollectChunk(chunk)
		n++
	}
	if len(e.output) > maxCollect {
		t.Fatalf("kept %d bytes, want at most %d", len(e.output), maxCollect)
	}
	if total := int64(len(e.output)) + e.dropped; total != int64(n*4000) {
		t.Errorf("kept+dropped = %d, want %d", total, n*4000)
	}
	if s := unquoteRaw(e.output); strings.Contains(s, `\`) {
		t.Error("the cut split an escape sequence")
	}
	e.reset()
	if len(e.output) != 0 || e.dropped != 0 || cap(e.output) != 0 {
		t.Errorf("reset kept a %d-byte buffer (len %d)", cap(e.output), len(e.output))
	}
}

// TestCollectChunkAllocs: collecting is on the relay's path: no allocation
// once the buffer has grown.
func TestCollectChunkAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	chunk := []byte(`{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}`)
	var e Event
	e.output = make([]byte, 0, 1<<16)
	allocs := testing.AllocsPerRun(1000, func() {
		if len(e.output) > 1<<15 {
			e.output = e.output[:0]
		}
		e.CollectChunk(chunk)
	})
	if allocs != 0 {
		t.Errorf("CollectChunk allocates %.1f times, want 0", allocs)
	}
}

func BenchmarkCollectChunk(b *testing.B) {
	chunk := []byte(`{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}`)
	var e Event
	b.ReportAllocs()
	for b.Loop() {
		if len(e.output) > 1<<15 {
			e.output = e.output[:0]
		}
		e.CollectChunk(chunk)
	}
}

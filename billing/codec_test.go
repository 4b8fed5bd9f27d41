package billing

import (
	"bytes"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/providers"
)

func sampleEvent() Event {
	return Event{
		ID: EventID{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}, Time: time.Date(2025, 7, 1, 12, 30, 0, 123456000, time.UTC),
		RequestID: "req_1", TenantID: 42, Tenant: "acme", UserID: 7, KeyID: 9, Endpoint: "chat_completions",
		Model: "fast", UpstreamModel: "gpt-4o-mini", Deployment: "oai-1", Provider: "openai", Stream: true,
		Usage: providers.Usage{PromptTokens: 1 << 40, CompletionTokens: 12, TotalTokens: 1<<40 + 12, CachedTokens: 3, ReasoningTokens: 4},
		Cost:  -5, Priced: true, Estimated: true, Latency: 1500 * time.Millisecond, TTFT: 250 * time.Microsecond,
		Status: 499, ErrorCode: "client_closed_request",
	}
}

func TestCodecRoundTrip(t *testing.T) {
	for _, e := range []Event{sampleEvent(), {Time: time.UnixMicro(0).UTC()}} {
		b := appendEvent(nil, &e)
		var d decoder
		var got Event
		if err := d.decode(b, &got); err != nil {
			t.Fatalf("decode = %v", err)
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(e)
		if !bytes.Equal(gj, wj) {
			t.Errorf("decode(encode(e)) =\n %s\nwant\n %s", gj, wj)
		}
		// Every truncation is detected.
		for n := range len(b) {
			if err := d.decode(b[:n], &got); !errors.Is(err, errCorrupt) {
				t.Fatalf("decode(%d of %d bytes) = %v, want errCorrupt", n, len(b), err)
			}
		}
	}
}

func TestEventIDString(t *testing.T) {
	id := EventID{0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0x7c, 0xde, 0x80, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07}
	if got, want := id.String(), "01234567-89ab-7cde-8001-020304050607"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func TestCleanString(t *testing.T) {
	long := string(bytes.Repeat([]byte("é"), 200)) // 400 bytes
	cases := []struct{ in, want string }{
		{"gpt-4o", "gpt-4o"},
		{"a\x00b", "a\uFFFDb"},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{long, long[:maxString]},
	}
	for _, tc := range cases {
		if got := cleanString(tc.in); got != tc.want {
			t.Errorf("cleanString(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

package load

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/mtai-dev/mtai/bench/upstream"
)

const (
	roleChunk    = `{"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null}}]}`
	contentChunk = `{"choices":[{"index":0,"delta":{"content":"Hi"}}]}`
	finishChunk  = `{"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`
)

func TestReadEvents(t *testing.T) {
	stream := func(sep string, events ...string) string {
		var b strings.Builder
		for _, e := range events {
			b.WriteString(e)
			b.WriteString(sep)
		}
		return b.String()
	}
	tests := []struct {
		name      string
		body      string
		events    int
		firstTok  bool
		wantError error
	}{
		{"lf", stream("\n\n", "data: "+roleChunk, "data: "+contentChunk, "data: "+finishChunk, "data: [DONE]"), 3, true, nil},
		{"crlf", stream("\r\n\r\n", "data: "+roleChunk, "data: "+contentChunk, "data: [DONE]"), 2, true, nil},
		{"no space after colon", stream("\n\n", "data:"+contentChunk, "data:[DONE]"), 1, true, nil},
		{"comments and event names", stream("\n\n", ": keep-alive", "event: message\ndata: "+contentChunk, "data: [DONE]"), 1, true, nil},
		{"role only", stream("\n\n", "data: "+roleChunk, "data: [DONE]"), 1, false, nil},
		{"truncated", stream("\n\n", "data: "+roleChunk, "data: "+contentChunk), 2, true, ErrNoDone},
		{"unterminated last event", "data: " + contentChunk + "\n\ndata: [DONE]", 1, true, nil},
		{"error event", stream("\n\n", "data: "+contentChunk, `data: {"error":{"message":"x","type":"server_error"}}`), 2, true, ErrErrorEvent},
		{"named error event", stream("\n\n", "event: error\ndata: {}", "data: [DONE]"), 1, false, ErrErrorEvent},
		{"empty", "", 0, false, ErrNoDone},
	}
	for _, tc := range tests {
		for _, rd := range []struct {
			name string
			r    func(string) io.Reader
		}{
			{"whole", func(s string) io.Reader { return strings.NewReader(s) }},
			{"one byte at a time", func(s string) io.Reader { return iotest.OneByteReader(strings.NewReader(s)) }},
			{"half", func(s string) io.Reader { return iotest.HalfReader(strings.NewReader(s)) }},
		} {
			t.Run(tc.name+"/"+rd.name, func(t *testing.T) {
				sc := sseScanner{buf: make([]byte, 8)} // tiny, to exercise growth
				var o Outcome
				err := readEvents(rd.r(tc.body), &sc, &o)
				if !errors.Is(err, tc.wantError) {
					t.Errorf("readEvents err = %v, want %v", err, tc.wantError)
				}
				if o.Events != tc.events {
					t.Errorf("events = %d, want %d", o.Events, tc.events)
				}
				if got := !o.FirstToken.IsZero(); got != tc.firstTok {
					t.Errorf("first token seen = %v, want %v", got, tc.firstTok)
				}
			})
		}
	}
}

func TestFirstTokenIsContentNotRole(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, "data: "+roleChunk+"\n\n")
		time.Sleep(50 * time.Millisecond)
		_, _ = io.WriteString(pw, "data: "+contentChunk+"\n\ndata: [DONE]\n\n")
		_ = pw.Close()
	}()
	begin := time.Now()
	var o Outcome
	if err := readEvents(pr, &sseScanner{buf: make([]byte, 64)}, &o); err != nil {
		t.Fatal(err)
	}
	if d := o.FirstToken.Sub(begin); d < 50*time.Millisecond {
		t.Errorf("first token after %v; the content chunk came after 50ms", d)
	}
}

func TestHasContent(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{contentChunk, true},
		{roleChunk, false},
		{finishChunk, false},
		{`{"delta":{"content": "x"}}`, true},
		{`{"delta":{"content":null}}`, false},
		{`{"delta":{"tool_calls":[]},"x":"content"}`, false},
		{`{"delta":{"content":""},"y":{"content":"z"}}`, true},
	}
	for _, tc := range tests {
		if got := hasContent([]byte(tc.in)); got != tc.want {
			t.Errorf("hasContent(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func startUpstream(t *testing.T, cfg upstream.Config) *upstream.Server {
	t.Helper()
	s, err := upstream.Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func newCaller(t *testing.T, tg HTTPTarget) *HTTPCaller {
	t.Helper()
	c, err := NewHTTPCaller(tg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func TestHTTPCallerAgainstUpstream(t *testing.T) {
	up := startUpstream(t, upstream.Config{
		Default: upstream.Profile{ContentBytes: 512},
		Profiles: map[string]upstream.Profile{
			"slow": {Chunks: 3, FirstByte: 30 * time.Millisecond, ChunkDelay: 10 * time.Millisecond},
		},
	})
	ctx := context.Background()
	open := Open{Rate: 200, Duration: 250 * time.Millisecond}

	t.Run("plain", func(t *testing.T) {
		c := newCaller(t, HTTPTarget{URL: up.URL() + "/chat/completions", Body: []byte(`{"model":"m","messages":[]}`), APIKey: "k"})
		r, err := RunOpen(ctx, c, open)
		if err != nil {
			t.Fatal(err)
		}
		if r.OK != 50 || r.Failed != 0 || r.Statuses[200] != 50 {
			t.Fatalf("ok %d failed %d (%s), want 50 ok", r.OK, r.Failed, r.FirstError)
		}
		if r.TTFT.TotalCount() != 0 || r.Events != 0 {
			t.Errorf("a plain answer recorded %d TTFTs and %d events", r.TTFT.TotalCount(), r.Events)
		}
	})

	streams := []struct {
		name, body   string
		eventsPerReq int64
	}{
		// role + 3 content + finish (+ usage); [DONE] is not counted.
		{"stream", `{"model":"m","stream":true}`, 5},
		{"stream with usage", `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`, 6},
	}
	for _, tc := range streams {
		t.Run(tc.name, func(t *testing.T) {
			c := newCaller(t, HTTPTarget{URL: up.ProfileURL("slow") + "/chat/completions", Body: []byte(tc.body), Stream: true})
			r, err := RunOpen(ctx, c, open)
			if err != nil {
				t.Fatal(err)
			}
			if r.OK != 50 || r.Failed != 0 {
				t.Fatalf("ok %d failed %d (%s), want 50 ok", r.OK, r.Failed, r.FirstError)
			}
			if r.Events != tc.eventsPerReq*50 {
				t.Errorf("events = %d, want %d", r.Events, tc.eventsPerReq*50)
			}
			// Sleeps never end early: TTFT >= first byte; total >= first byte + 2 pauses.
			if got := r.TTFT.Min(); r.TTFT.TotalCount() != 50 || got < 30_000 {
				t.Errorf("TTFT: %d values, min %dµs; want 50 values >= 30000µs", r.TTFT.TotalCount(), got)
			}
			if got := r.Latency.Min(); got < 50_000 {
				t.Errorf("stream total min %dµs, want >= 50000µs", got)
			}
			// The first token comes before the end: streaming is not buffered.
			if r.TTFT.ValueAtQuantile(50) >= r.Latency.ValueAtQuantile(50) {
				t.Errorf("TTFT p50 %dµs not below total p50 %dµs", r.TTFT.ValueAtQuantile(50), r.Latency.ValueAtQuantile(50))
			}
		})
	}

	t.Run("status error", func(t *testing.T) {
		c := newCaller(t, HTTPTarget{URL: "http://" + up.Addr() + "/nope/chat/completions", Body: []byte(`{}`), Stream: true})
		var o Outcome
		err := c.Call(time.Now().Add(5*time.Second), &o)
		var se *StatusError
		if !errors.As(err, &se) || se.Status != 404 || o.Status != 404 {
			t.Errorf("Call = %v (status %d), want a 404 StatusError", err, o.Status)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		c := newCaller(t, HTTPTarget{URL: up.ProfileURL("slow") + "/chat/completions", Body: []byte(`{"stream":true}`), Stream: true})
		var o Outcome
		if err := c.Call(time.Now().Add(5*time.Millisecond), &o); err == nil {
			t.Error("Call with a 5ms deadline to a 30ms upstream succeeded")
		}
	})
}

func TestNewHTTPCallerRejectsBadURL(t *testing.T) {
	for _, u := range []string{"https://x/v1", "127.0.0.1:80/v1", "http:///v1", "::"} {
		if _, err := NewHTTPCaller(HTTPTarget{URL: u}); err == nil {
			t.Errorf("NewHTTPCaller(%q) = nil error", u)
		}
	}
}

func TestHoldStreams(t *testing.T) {
	up := startUpstream(t, upstream.Config{Profiles: map[string]upstream.Profile{"silent": {Silent: true, SilentHold: time.Minute}}})
	tg := HTTPTarget{URL: up.ProfileURL("silent") + "/chat/completions", Body: []byte(`{"stream":true}`), APIKey: "k"}
	h := HoldStreams(tg, 50, 8, time.Now().Add(10*time.Second))
	if h.Opened != 50 || h.Failed != 0 {
		t.Fatalf("opened %d failed %d (%s), want 50 opened", h.Opened, h.Failed, h.FirstError)
	}
	if got := up.Stats().SilentOpen; got != 50 {
		t.Errorf("upstream holds %d silent streams, want 50", got)
	}
	if n := h.Close(); n != 50 {
		t.Errorf("Close() = %d, want 50", n)
	}
	deadline := time.Now().Add(5 * time.Second)
	for up.Stats().SilentOpen != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("upstream still holds %d streams after the clients closed", up.Stats().SilentOpen)
		}
		time.Sleep(5 * time.Millisecond)
	}

	bad := HoldStreams(HTTPTarget{URL: "http://" + up.Addr() + "/nope/v1/chat/completions", Body: []byte(`{}`)}, 3, 2, time.Now().Add(5*time.Second))
	if bad.Opened != 0 || bad.Failed != 3 || !strings.Contains(bad.FirstError, "404") {
		t.Errorf("against a 404: opened %d failed %d (%s)", bad.Opened, bad.Failed, bad.FirstError)
	}
	bad.Close()
}

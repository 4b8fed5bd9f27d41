package sse_test

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/sse"
)

// open starts a real HTTP server running h and returns a Stream over its
// streamed response, closed at the end of the test.
func open(t *testing.T, h http.HandlerFunc, done string) *sse.Stream {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	hc := &fasthttp.HostClient{Addr: strings.TrimPrefix(srv.URL, "http://"), Dial: sse.DialIdle(5 * time.Second)}
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.SetRequestURI(srv.URL)
	resp := fasthttp.AcquireResponse()
	resp.StreamBody = true
	if err := hc.Do(req, resp); err != nil {
		fasthttp.ReleaseResponse(resp)
		t.Fatalf("Do: %v", err)
	}
	s := new(sse.Stream)
	s.Init(resp, new(sse.Buffers), done)
	t.Cleanup(func() { s.Close(nil) })
	return s
}

// write sends body in one chunk, flushed.
func write(body string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, body)
		w.(http.Flusher).Flush()
	}
}

func TestNext(t *testing.T) {
	big := strings.Repeat("x", sse.MaxEvent)
	tests := []struct {
		name    string
		body    string
		done    string
		want    []string // "name|data" per event
		wantErr error
	}{
		{"LF", "data: {\"a\":1}\n\ndata: {\"b\":2}\n\ndata: [DONE]\n\n", "[DONE]",
			[]string{`|{"a":1}`, `|{"b":2}`}, io.EOF},
		{"CRLF", "data: {\"a\":1}\r\n\r\ndata:{\"b\":2}\r\n\r\ndata: [DONE]\r\n\r\n", "[DONE]",
			[]string{`|{"a":1}`, `|{"b":2}`}, io.EOF},
		{"comments and ignored fields", ": keep-alive\n\nid: 7\nretry: 10\ndata: 1\n\n: ping\ndata: [DONE]\n\n", "[DONE]",
			[]string{"|1"}, io.EOF},
		{"event names", "event: message_start\ndata: 1\n\nevent: ping\n\ndata: 2\n\nevent: message_stop\r\ndata: 3\n\n", "",
			[]string{"message_start|1", "|2", "message_stop|3"}, sse.ErrTruncated},
		{"multi-line data joined with a space", "event: chunk\ndata: {\"b\":\ndata: 2}\n\ndata: [DONE]\n\n", "[DONE]",
			[]string{`chunk|{"b": 2}`}, io.EOF},
		{"[DONE] is data only when done is set", "data: [DONE]\n\n", "",
			[]string{"|[DONE]"}, sse.ErrTruncated},
		{"truncated without done", "data: 1\n\ndata: 2\n\n", "[DONE]",
			[]string{"|1", "|2"}, sse.ErrTruncated},
		{"pending data at the end is an event", "data: 1\n", "[DONE]",
			[]string{"|1"}, sse.ErrTruncated},
		{"last line without newline, no done: kept", "data: 1\n\ndata: 2", "",
			[]string{"|1", "|2"}, sse.ErrTruncated},
		{"last line without newline, done set: dropped", "data: 1\n\ndata: [DO", "[DONE]",
			[]string{"|1"}, sse.ErrTruncated},
		{"empty body", "", "[DONE]", nil, sse.ErrTruncated},
		{"oversize line", "data: " + big + "\n\n", "", nil, sse.ErrLineTooLarge},
		{"oversize event", "data: " + big[:sse.MaxEvent/2] + "\ndata: " + big[:sse.MaxEvent/2] + "\n\n", "",
			nil, sse.ErrEventTooLarge},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t, write(tc.body), tc.done)
			var got []string
			var err error
			for {
				var ev sse.Event
				if ev, err = s.Next(); err != nil {
					break
				}
				got = append(got, string(ev.Name)+"|"+string(ev.Data))
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("Next events = %q, want %q", got, tc.want)
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Next error = %v, want %v", err, tc.wantErr)
			}
			if _, again := s.Next(); again != err {
				t.Errorf("Next after %v = %v, want the same error", err, again)
			}
		})
	}
}

// TestReadFromMemory covers a response that fasthttp read whole.
func TestReadFromMemory(t *testing.T) {
	resp := fasthttp.AcquireResponse()
	resp.SetBodyString("data: 1\r\n\r\ndata: [DONE]\r\n\r\n")
	var s sse.Stream
	s.Init(resp, nil, "[DONE]")
	defer s.Close(nil)
	if ev, err := s.Next(); err != nil || string(ev.Data) != "1" {
		t.Fatalf("Next() = %q, %v, want \"1\", nil", ev.Data, err)
	}
	if _, err := s.Next(); err != io.EOF {
		t.Fatalf("Next() error = %v, want io.EOF", err)
	}
}

// TestCloseInterruptsNext proves that Close, from another goroutine,
// ends a Next blocked on a silent upstream, and that Next then returns
// ErrClosed or the closed body's error.
func TestCloseInterruptsNext(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	s := open(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "data: 1\n\n")
		w.(http.Flusher).Flush()
		select { // silent until the client goes or the test ends
		case <-r.Context().Done():
		case <-release:
		}
	}, "[DONE]")
	if ev, err := s.Next(); err != nil || !bytes.Equal(ev.Data, []byte("1")) {
		t.Fatalf("Next() = %q, %v, want \"1\", nil", ev.Data, err)
	}
	errc := make(chan error, 1) // 1: the reader never blocks on the send
	go func() {
		_, err := s.Next()
		errc <- err
	}()
	time.Sleep(50 * time.Millisecond) // let Next block in the read
	s.Close(nil)
	select {
	case err := <-errc:
		if err == nil || err == io.EOF {
			t.Errorf("blocked Next after Close = %v, want an error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt a blocked Next")
	}
	if _, err := s.Next(); !errors.Is(err, sse.ErrClosed) {
		t.Errorf("Next after Close = %v, want %v", err, sse.ErrClosed)
	}
	s.Close(nil) // a second Close does nothing (the response is released once)
}

func TestMarkTimeout(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"fasthttp timeout", fasthttp.ErrTimeout, true},
		{"dial timeout", fasthttp.ErrDialTimeout, true},
		{"other", io.ErrUnexpectedEOF, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := sse.MarkTimeout(tc.err)
			if got := errors.Is(err, providers.ErrTimeout); got != tc.want || !strings.Contains(err.Error(), tc.err.Error()) {
				t.Errorf("MarkTimeout(%v) = %v, timeout %v, want %v", tc.err, err, got, tc.want)
			}
		})
	}
}

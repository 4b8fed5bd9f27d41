package gateway

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/mock"
	"github.com/mtai-dev/mtai/providers/openai"
	"github.com/mtai-dev/mtai/tenancy"
)

// blockingUpstream sends its first event, then blocks until its request is
// cancelled, and reports the cancellation on cancelled.
func blockingUpstream(t *testing.T) (url string, cancelled chan struct{}) {
	cancelled = make(chan struct{}, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, `data: {"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hel"},"finish_reason":null}]}`+"\n\n")
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
			cancelled <- struct{}{}
		case <-time.After(20 * time.Second):
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL, cancelled
}

func openaiServer(t *testing.T, upstream string, timeout time.Duration) *Server {
	t.Helper()
	router, err := providers.NewRouter(providers.Config{Models: []providers.ModelConfig{
		{Name: "m", Deployments: []providers.DeploymentConfig{{Provider: "openai", BaseURL: upstream + "/v1", Timeout: timeout}}},
		{Name: "mock-slow", Deployments: []providers.DeploymentConfig{{Provider: "mock",
			Mock: providers.MockConfig{Words: 8, Chunks: 8, ChunkInterval: 100 * time.Millisecond}}}},
	}}, map[string]providers.Factory{
		"openai": func(d providers.DeploymentConfig) (providers.Provider, error) { return openai.New(d) },
		"mock":   func(d providers.DeploymentConfig) (providers.Provider, error) { return mock.New(d) },
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: Config{Addr: "127.0.0.1:0", ShutdownGrace: 2 * time.Second}, Router: router,
		Keys: tenancy.NewStaticKeys(map[string]string{testKey: "t1"})})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// rawStream opens a streamed chat request on a raw TCP connection and
// returns the connection and a reader positioned after the headers.
func rawStream(t *testing.T, base, model string) (net.Conn, *bufio.Reader) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"model":"` + model + `","stream":true,"messages":[{"role":"user","content":"hi"}]}`
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", testKey, len(body), body)
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("status line %q, %v", status, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if line == "\r\n" {
			return conn, br
		}
	}
}

// readUntil reads the chunked body until it contains want.
func readUntil(t *testing.T, br *bufio.Reader, want string) string {
	t.Helper()
	var sb strings.Builder
	for !strings.Contains(sb.String(), want) {
		line, err := br.ReadString('\n')
		sb.WriteString(line)
		if err != nil {
			t.Fatalf("reading for %q: %v (got %q)", want, err, sb.String())
		}
	}
	return sb.String()
}

// TestClientDisconnectCancelsUpstream proves that a client going away
// cancels the upstream request at once, even while the upstream is silent.
func TestClientDisconnectCancelsUpstream(t *testing.T) {
	upstream, cancelled := blockingUpstream(t)
	s := openaiServer(t, upstream, 30*time.Second)
	base := start(t, s)
	conn, br := rawStream(t, base, "m")
	readUntil(t, br, `"content":"hel"`)
	closedAt := time.Now()
	conn.Close()
	select {
	case <-cancelled:
		t.Logf("upstream saw the cancellation %v after the client closed", time.Since(closedAt))
	case <-time.After(5 * time.Second):
		t.Fatal("the upstream request was not cancelled within 5s of the client closing")
	}
	waitFor(t, func() bool { return s.openStreams() == 0 }, "the stream to be released")
}

// TestUpstreamIdleTimeout: an upstream silent for longer than the
// deployment's timeout ends the stream with an error event, no [DONE].
func TestUpstreamIdleTimeout(t *testing.T) {
	upstream, _ := blockingUpstream(t)
	s := openaiServer(t, upstream, 300*time.Millisecond)
	base := start(t, s)
	conn, br := rawStream(t, base, "m")
	defer conn.Close()
	got := readUntil(t, br, `"error"`)
	if !strings.Contains(got, `"code":"upstream_timeout"`) || strings.Contains(got, "[DONE]") {
		t.Errorf("stream after timeout:\n%s", got)
	}
}

// TestShutdownLetsStreamsFinish: SIGTERM (ctx cancel) during a stream lets
// it finish within the grace period, and new requests are refused.
func TestShutdownLetsStreamsFinish(t *testing.T) {
	s := openaiServer(t, "http://127.0.0.1:1", time.Second)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	conn, br := rawStream(t, "http://"+ln.Addr().String(), "mock-slow")
	defer conn.Close()
	readUntil(t, br, `"role":"assistant"`)
	cancel()
	rest := readUntil(t, br, "[DONE]")
	if strings.Contains(rest, `"error"`) {
		t.Errorf("stream was cut during the grace period:\n%s", rest)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after the stream finished")
	}
}

// TestShutdownCutsStreamsAfterGrace: a stream longer than the grace period
// ends with a shutdown error event.
func TestShutdownCutsStreamsAfterGrace(t *testing.T) {
	upstream, cancelled := blockingUpstream(t)
	s := openaiServer(t, upstream, time.Minute)
	s.cfg.ShutdownGrace = 200 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	conn, br := rawStream(t, "http://"+ln.Addr().String(), "m")
	defer conn.Close()
	readUntil(t, br, `"content":"hel"`)
	cancel()
	got := readUntil(t, br, `"error"`)
	if !strings.Contains(got, "server_shutting_down") {
		t.Errorf("cut stream ended with:\n%s", got)
	}
	select {
	case <-cancelled:
	case <-time.After(5 * time.Second):
		t.Error("upstream request not cancelled at shutdown")
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
}

// TestKeepAliveAfterStream: the connection serves another request after a
// stream (the disconnect watcher gives the connection back intact).
func TestKeepAliveAfterStream(t *testing.T) {
	s := openaiServer(t, "http://127.0.0.1:1", time.Second)
	base := start(t, s)
	conn, br := rawStream(t, base, "mock-slow")
	defer conn.Close()
	readUntil(t, br, "[DONE]")
	readUntil(t, br, "0\r\n")
	if line, _ := br.ReadString('\n'); line != "\r\n" {
		t.Fatalf("chunked body ends with %q", line)
	}
	body := `{"model":"mock-slow","messages":[{"role":"user","content":"again"}]}`
	fmt.Fprintf(conn, "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n%s", testKey, len(body), body)
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(br, conn)), nil)
	if err != nil {
		t.Fatalf("second request on the same connection: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !strings.Contains(string(b), `"chat.completion"`) {
		t.Errorf("second response %d: %s", resp.StatusCode, b)
	}
}

// TestUsageChunkHidden: the usage chunk the gateway asked for is hidden
// from a client that did not ask, and "usage":null keys are removed.
func TestUsageChunkHidden(t *testing.T) {
	events := [][]byte{
		[]byte(`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"a"},"finish_reason":null}],"usage":null}`),
		[]byte(`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"finish_reason":"stop"}],"usage":null}`),
		[]byte(`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1,"total_tokens":4}}`),
	}
	for _, ask := range []bool{false, true} {
		t.Run(fmt.Sprint("include_usage=", ask), func(t *testing.T) {
			rec := &recorder{events: events}
			s := newTestServer(t, rec, nil)
			body := `{"model":"same","stream":true,"messages":[{"role":"user","content":"x"}]}`
			if ask {
				body = `{"model":"same","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`
			}
			resp := do(s.Handler(), "POST", "/v1/chat/completions", body)
			got := string(resp.Body())
			hasUsage := strings.Contains(got, `"usage":{`)
			if hasUsage != ask {
				t.Errorf("usage chunk shown = %v, want %v:\n%s", hasUsage, ask, got)
			}
			if !ask && strings.Contains(got, `"usage"`) {
				t.Errorf("a usage key reached a client that did not ask:\n%s", got)
			}
			if !strings.HasSuffix(got, "data: [DONE]\n\n") || strings.Count(got, "[DONE]") != 1 {
				t.Errorf("stream does not end with one [DONE]:\n%s", got)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

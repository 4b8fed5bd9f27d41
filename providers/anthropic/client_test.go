package anthropic_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/anthropic"
	"github.com/mtai-dev/mtai/providers/providerstest"
)

const upModel = "claude-sonnet-4-20250514"

var fixedClock = anthropic.WithClock(func() time.Time { return time.Unix(1700000000, 0) })

func newClient(t *testing.T, fake *providerstest.Anthropic, timeout time.Duration, opts ...anthropic.Option) *anthropic.Client {
	t.Helper()
	c, err := anthropic.New(providers.DeploymentConfig{Name: "anthropic-test", Provider: "anthropic", BaseURL: fake.URL + "/v1",
		APIKey: fake.Key, Model: upModel, Timeout: timeout, MaxConns: 8}, append([]anthropic.Option{fixedClock}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(body []byte) *providers.Request {
	return &providers.Request{Body: body, Model: upModel, RequestID: "req-123"}
}

func TestNewRejectsBadBaseURL(t *testing.T) {
	for _, u := range []string{"ftp://x", "http://", "::"} {
		if _, err := anthropic.New(providers.DeploymentConfig{Name: "d", BaseURL: u}); err == nil {
			t.Errorf("New(base_url %q) = nil error", u)
		}
	}
	if _, err := anthropic.New(providers.DeploymentConfig{Name: "d"}); err != nil {
		t.Errorf("New without base_url: %v (want the default %s)", err, anthropic.DefaultBaseURL)
	}
}

func TestClientComplete(t *testing.T) {
	fake := providerstest.NewAnthropic(t)
	c := newClient(t, fake, 5*time.Second)
	in := providerstest.Sample(t, "openai/chat-completion-request.json")
	resp, err := c.Complete(context.Background(), request(in))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()

	reqs := fake.Requests()
	if len(reqs) != 1 {
		t.Fatalf("%d upstream requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Path != "/v1/messages" || r.Header.Get("x-api-key") != fake.Key || r.Header.Get("anthropic-version") != "2023-06-01" ||
		r.Header.Get("Authorization") != "" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") ||
		r.Header.Get("X-Request-ID") != "req-123" {
		t.Errorf("upstream request %s with headers %v", r.Path, r.Header)
	}
	golden(t, "from-openai/sample-chat-completion-request.golden.json", r.Body)
	golden(t, "responses/sample-messages-response-text.openai.json", resp.Body)
	if u := resp.Usage; u.PromptTokens != 11 || u.CompletionTokens != 6 || u.TotalTokens != 17 {
		t.Errorf("usage %+v, want 11+6", u)
	}
}

func TestClientCompleteDefaultMaxTokens(t *testing.T) {
	fake := providerstest.NewAnthropic(t)
	c := newClient(t, fake, 5*time.Second, anthropic.WithDefaultMaxTokens(1234))
	resp, err := c.Complete(context.Background(), request([]byte(`{"model":"x","messages":[{"role":"system","content":"sys"},{"role":"user","content":"hi"}]}`)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Release()
	if got, want := string(fake.LastBody()), `{"model":"claude-sonnet-4-20250514","max_tokens":1234,"system":"sys","messages":[{"role":"user","content":"hi"}]}`; got != want {
		t.Errorf("upstream body\n got %s\nwant %s", got, want)
	}
}

func TestClientStreamTranscripts(t *testing.T) {
	fake := providerstest.NewAnthropic(t)
	c := newClient(t, fake, 5*time.Second)
	for _, tc := range anthropicTranscripts(t) {
		t.Run(tc.name, func(t *testing.T) {
			fake.SetTranscript(tc.in)
			st, err := c.Stream(context.Background(), request([]byte(`{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}`)))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close(nil)
			var out bytes.Buffer
			for {
				ev, err := st.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("Next: %v", err)
				}
				out.WriteString("data: " + string(ev) + "\n\n")
			}
			// Over the wire, the same chunks as the translator alone.
			golden(t, "streams/"+tc.name+".openai.sse", out.Bytes())
			if _, err := st.Next(); err == nil {
				t.Error("Next after EOF returned no error")
			}
			if b := fake.LastBody(); !bytes.Contains(b, []byte(`"stream":true`)) || !bytes.Contains(b, []byte(`"max_tokens":4096`)) {
				t.Errorf("upstream body %s", b)
			}
		})
	}
}

func upstreamError(t *testing.T, err error) *providers.UpstreamError {
	t.Helper()
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T) is not an UpstreamError", err, err)
	}
	return ue
}

func TestClientErrors(t *testing.T) {
	cases := []struct {
		name       string
		fail       providerstest.Failure
		status     int
		typ, code  string
		msg        string
		retryAfter time.Duration
		retryable  bool
	}{
		{"overloaded 529", providerstest.Failure{Status: 529, Header: http.Header{"Retry-After": {"3"}, "X-Should-Retry": {"true"}},
			Body: providerstest.Sample(t, "anthropic/error-529-overloaded.json")}, 529, "server_error", "upstream_overloaded", "Overloaded", 3 * time.Second, true},
		{"rate limit 429", providerstest.Failure{Status: 429, Header: http.Header{"Retry-After": {"20"}},
			Body: []byte(`{"type":"error","error":{"type":"rate_limit_error","message":"Number of request tokens has exceeded your per-minute rate limit"}}`)},
			429, "requests", "rate_limit_exceeded", "Number of request tokens has exceeded your per-minute rate limit", 20 * time.Second, true},
		{"invalid 400", providerstest.Failure{Status: 400, Body: providerstest.Sample(t, "anthropic/error-400-max-tokens-missing.json")},
			400, "invalid_request_error", "", "max_tokens: Field required", 0, false},
		{"auth 401", providerstest.Failure{Status: 401, Body: providerstest.Sample(t, "anthropic/error-401-authentication.json")},
			401, "invalid_request_error", "invalid_api_key", "invalid x-api-key", 0, false},
		{"billing 402", providerstest.Failure{Status: 402, Body: []byte(`{"type":"error","error":{"type":"billing_error","message":"Your credit balance is too low."}}`)},
			402, "insufficient_quota", "insufficient_quota", "Your credit balance is too low.", 0, false},
		{"api 500 not json", providerstest.Failure{Status: 500, Body: []byte("upstream connect error")},
			500, "", "", "upstream connect error", 0, true},
	}
	for _, tc := range cases {
		for _, stream := range []bool{false, true} {
			name := tc.name
			if stream {
				name += " stream"
			}
			t.Run(name, func(t *testing.T) {
				fake := providerstest.NewAnthropic(t)
				fake.Fail(tc.fail)
				c := newClient(t, fake, 5*time.Second)
				var err error
				if stream {
					_, err = c.Stream(context.Background(), request([]byte(`{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}`)))
				} else {
					_, err = c.Complete(context.Background(), request([]byte(`{"model":"x","messages":[{"role":"user","content":"hi"}]}`)))
				}
				ue := upstreamError(t, err)
				if ue.Status != tc.status || ue.Type != tc.typ || ue.Code != tc.code || ue.Message != tc.msg ||
					ue.RetryAfter != tc.retryAfter || ue.Retryable() != tc.retryable || ue.Provider != "anthropic" || ue.Deployment != "anthropic-test" {
					t.Errorf("error = %+v (retryable %v), want status %d type %q code %q message %q retry-after %v retryable %v",
						ue, ue.Retryable(), tc.status, tc.typ, tc.code, tc.msg, tc.retryAfter, tc.retryable)
				}
			})
		}
	}
}

func TestClientWrongKey(t *testing.T) {
	fake := providerstest.NewAnthropic(t)
	c, err := anthropic.New(providers.DeploymentConfig{Name: "d", BaseURL: fake.URL, APIKey: "sk-wrong", Model: upModel})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Complete(context.Background(), request([]byte(`{"model":"x","messages":[{"role":"user","content":"hi"}]}`)))
	if ue := upstreamError(t, err); ue.Status != 401 || ue.Code != "invalid_api_key" {
		t.Errorf("error %+v, want 401 invalid_api_key", ue)
	}
}

func TestClientUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c, err := anthropic.New(providers.DeploymentConfig{Name: "d", BaseURL: "http://" + addr, Model: upModel, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Complete(context.Background(), request([]byte(`{"model":"x","messages":[{"role":"user","content":"hi"}]}`)))
	if ue := upstreamError(t, err); ue.Status != 0 || ue.Err == nil || !ue.Retryable() {
		t.Errorf("error %+v, want a retryable connection failure", ue)
	}
}

func TestClientUntranslatableRequest(t *testing.T) {
	fake := providerstest.NewAnthropic(t)
	c := newClient(t, fake, time.Second)
	_, err := c.Complete(context.Background(), request([]byte(`{"model":"x","n":3,"messages":[{"role":"user","content":"hi"}]}`)))
	if ue := upstreamError(t, err); ue.Status != 400 || ue.Type != "invalid_request_error" || ue.Retryable() {
		t.Errorf("error %+v, want a 400 that is not retried", ue)
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("%d requests reached the upstream, want 0", n)
	}
}

// TestClientStreamErrorFirst: an error event before any chunk (an overloaded
// upstream that answered 200) is returned by Stream, so the router can still
// fall back.
func TestClientStreamErrorFirst(t *testing.T) {
	fake := providerstest.NewAnthropic(t)
	fake.SetTranscript([]byte("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n"))
	c := newClient(t, fake, 5*time.Second)
	st, err := c.Stream(context.Background(), request([]byte(`{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}`)))
	if st != nil {
		t.Fatal("Stream returned a stream")
	}
	if ue := upstreamError(t, err); ue.Status != 529 || ue.Code != "upstream_overloaded" || !ue.Retryable() {
		t.Errorf("error %+v, want a retryable 529", ue)
	}
}

func TestClientStreamTruncated(t *testing.T) {
	fake := providerstest.NewAnthropic(t)
	full := providerstest.Sample(t, "anthropic/messages-stream-text.sse")
	fake.SetTranscript(full[:bytes.Index(full, []byte("event: message_delta"))])
	c := newClient(t, fake, 5*time.Second)
	st, err := c.Stream(context.Background(), request([]byte(`{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}`)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(nil)
	for {
		_, err := st.Next()
		if err == nil {
			continue
		}
		if err == io.EOF {
			t.Fatal("a stream cut before message_stop ended with io.EOF")
		}
		if ue := upstreamError(t, err); !errors.Is(ue, io.ErrUnexpectedEOF) {
			t.Errorf("error %+v, want unexpected EOF", ue)
		}
		return
	}
}

// TestClientStreamCloseInterruptsNext: Close from another goroutine ends a
// Next blocked on a silent upstream, and the upstream sees its request go.
func TestClientStreamCloseInterruptsNext(t *testing.T) {
	fake := providerstest.NewAnthropic(t)
	fake.BlockAfter(3)
	c := newClient(t, fake, 30*time.Second)
	st, err := c.Stream(context.Background(), request([]byte(`{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}`)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Next(); err != nil { // the role chunk
		t.Fatal(err)
	}
	if !fake.WaitBlocked(5 * time.Second) {
		t.Fatal("the fake never blocked")
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := st.Next(); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond) // let Next block in its read
	start := time.Now()
	var wg sync.WaitGroup
	for range 3 { // Close is safe to call concurrently and more than once
		wg.Add(1)
		go func() { defer wg.Done(); st.Close(errors.New("client left")) }()
	}
	wg.Wait()
	select {
	case err := <-done:
		if err == nil || err == io.EOF {
			t.Errorf("Next after Close = %v, want an error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt Next")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Next took %v to return after Close", d)
	}
	if !fake.WaitCancelled(5 * time.Second) {
		t.Error("the upstream did not see the request cancelled")
	}
	if _, err := st.Next(); err == nil {
		t.Error("Next after Close returned no error")
	}
}

func TestClientStreamIdleTimeout(t *testing.T) {
	fake := providerstest.NewAnthropic(t)
	fake.BlockAfter(3)
	c := newClient(t, fake, 200*time.Millisecond)
	st, err := c.Stream(context.Background(), request([]byte(`{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}`)))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(nil)
	start := time.Now()
	for {
		_, err := st.Next()
		if err == nil {
			continue
		}
		if !errors.Is(err, providers.ErrTimeout) {
			t.Errorf("Next = %v, want ErrTimeout", err)
		}
		break
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the timeout took %v", d)
	}
}

// TestClientConcurrent runs streams and completions in parallel (run with -race).
func TestClientConcurrent(t *testing.T) {
	fake := providerstest.NewAnthropic(t)
	fake.SetTranscript(providerstest.Sample(t, "anthropic/sdk-fixture-tool-use-stream.sse"))
	c := newClient(t, fake, 5*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				resp, err := c.Complete(context.Background(), request([]byte(`{"model":"x","messages":[{"role":"user","content":"hi"}]}`)))
				if err != nil {
					errs <- err
					return
				}
				resp.Release()
				return
			}
			st, err := c.Stream(context.Background(), request([]byte(`{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}`)))
			if err != nil {
				errs <- err
				return
			}
			defer st.Close(nil)
			n := 0
			for {
				_, err := st.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					errs <- err
					return
				}
				n++
			}
			if n != 10 {
				errs <- errors.New("wrong chunk count")
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestClientCountTokens: a chat request is counted by the upstream's
// /v1/messages/count_tokens, translated as Complete would send it but
// without the fields that endpoint refuses.
func TestClientCountTokens(t *testing.T) {
	fake := providerstest.NewAnthropic(t)
	c := newClient(t, fake, 5*time.Second)
	in := []byte(`{"model":"x","max_tokens":50,"temperature":0.2,"stream":true,"stop":["END"],"user":"u1",` +
		`"messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"What is the weather in Paris?"}],` +
		`"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}]}`)
	n, err := c.CountTokens(context.Background(), request(in))
	if err != nil {
		t.Fatal(err)
	}
	reqs := fake.Requests()
	if len(reqs) != 1 || reqs[0].Path != "/v1/messages/count_tokens" || reqs[0].Header.Get("x-api-key") != fake.Key {
		t.Fatalf("requests %+v, want one to /v1/messages/count_tokens with the key", reqs)
	}
	got := string(reqs[0].Body)
	want := `{"model":"` + upModel + `","system":"Be brief.","messages":[{"role":"user","content":"What is the weather in Paris?"}],` +
		`"tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}]}`
	if got != want {
		t.Errorf("count_tokens body\n got %s\nwant %s", got, want)
	}
	if want := int64(providerstest.CountTokens(reqs[0].Body)); n != want || n == 0 {
		t.Errorf("CountTokens = %d, want the upstream's %d", n, want)
	}

	fake.Fail(providerstest.Failure{Status: 401, Body: providerstest.Sample(t, "anthropic/error-401-authentication.json")})
	if _, err := c.CountTokens(context.Background(), request(in)); upstreamError(t, err).Status != 401 {
		t.Errorf("CountTokens with the key refused: %v, want the upstream's 401", err)
	}
}

package openai

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/providers"
)

type seen struct {
	path, query, auth, apiKey, reqID, body string
}

func upstream(t *testing.T, handler func(w http.ResponseWriter, r *http.Request)) (string, chan seen) {
	t.Helper()
	ch := make(chan seen, 8)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		ch <- seen{r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("api-key"), r.Header.Get("X-Request-ID"), string(b)}
		handler(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, ch
}

func okJSON(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"id":"x","object":"chat.completion","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5,"prompt_tokens_details":{"cached_tokens":1}}}`)
}

func TestURLsAndAuth(t *testing.T) {
	cases := []struct {
		name      string
		cfg       providers.DeploymentConfig
		wantPath  string
		wantQuery string
		wantAuth  string
		wantKey   string
	}{
		{"openai", providers.DeploymentConfig{Provider: "openai", Model: "gpt-4o", APIKey: "sk-up"},
			"/v1/chat/completions", "", "Bearer sk-up", ""},
		{"compatible without key", providers.DeploymentConfig{Provider: "openai", Model: "llama"},
			"/v1/chat/completions", "", "", ""},
		{"azure", providers.DeploymentConfig{Provider: "azure", Model: "my-dep", APIKey: "az-key", APIVersion: "2024-10-21"},
			"/openai/deployments/my-dep/chat/completions", "api-version=2024-10-21", "", "az-key"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			url, ch := upstream(t, okJSON)
			tc.cfg.BaseURL = url
			if tc.cfg.Provider == "openai" {
				tc.cfg.BaseURL = url + "/v1"
			}
			tc.cfg.Timeout = 5 * time.Second
			c, err := New(tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.Complete(context.Background(), &providers.Request{Body: []byte(`{"model":"x"}`), RequestID: "req_1"})
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Release()
			got := <-ch
			if got.path != tc.wantPath || got.query != tc.wantQuery || got.auth != tc.wantAuth || got.apiKey != tc.wantKey {
				t.Errorf("upstream saw %+v", got)
			}
			if got.reqID != "req_1" || got.body != `{"model":"x"}` {
				t.Errorf("request id %q body %q", got.reqID, got.body)
			}
			if resp.Usage != (providers.Usage{PromptTokens: 3, CompletionTokens: 2, TotalTokens: 5, CachedTokens: 1}) {
				t.Errorf("usage = %+v", resp.Usage)
			}
		})
	}
}

func TestUpstreamErrors(t *testing.T) {
	url, _ := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(429)
		fmt.Fprint(w, `{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}`)
	})
	c, _ := New(providers.DeploymentConfig{Provider: "openai", BaseURL: url, Timeout: time.Second})
	_, err := c.Complete(context.Background(), &providers.Request{Body: []byte(`{}`)})
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) || ue.Status != 429 || ue.Code != "rate_limit_exceeded" || ue.RetryAfter != 7*time.Second || ue.Message != "slow down" {
		t.Fatalf("err = %#v", err)
	}
	if !ue.Retryable() {
		t.Error("429 not retryable")
	}

	c2, _ := New(providers.DeploymentConfig{Provider: "openai", BaseURL: "http://127.0.0.1:1", Timeout: time.Second})
	_, err = c2.Complete(context.Background(), &providers.Request{Body: []byte(`{}`)})
	if !errors.As(err, &ue) || ue.Status != 0 {
		t.Fatalf("connection refused: err = %v", err)
	}
}

func TestStreamParsing(t *testing.T) {
	url, _ := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		// CRLF line ends, a comment, an event: line, a multi-line data event
		fmt.Fprint(w, ": keep-alive\r\n\r\ndata: {\"a\":1}\r\n\r\nevent: chunk\ndata: {\"b\":\ndata: 2}\n\n")
		w.(http.Flusher).Flush()
		fmt.Fprint(w, "data: {\"c\":3}\n\ndata: [DONE]\n\n")
	})
	c, _ := New(providers.DeploymentConfig{Provider: "openai", BaseURL: url, Timeout: 5 * time.Second})
	st, err := c.Stream(context.Background(), &providers.Request{Body: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(nil)
	var got []string
	for {
		ev, err := st.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(ev))
	}
	want := []string{`{"a":1}`, `{"b": 2}`, `{"c":3}`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events = %q, want %q", got, want)
	}
}

func TestStreamTruncated(t *testing.T) {
	url, _ := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"a\":1}\n\n")
	})
	c, _ := New(providers.DeploymentConfig{Provider: "openai", BaseURL: url, Timeout: 5 * time.Second})
	st, err := c.Stream(context.Background(), &providers.Request{Body: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(nil)
	if _, err := st.Next(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Next(); err == nil || err == io.EOF {
		t.Fatalf("stream without [DONE]: err = %v, want an upstream error", err)
	}
}

// TestCloseInterruptsNext: Close from another goroutine unblocks a Next
// waiting on a silent upstream, and the upstream sees its request end.
func TestCloseInterruptsNext(t *testing.T) {
	gone := make(chan struct{})
	url, _ := upstream(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: {\"a\":1}\n\n")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		close(gone)
	})
	c, _ := New(providers.DeploymentConfig{Provider: "openai", BaseURL: url, Timeout: time.Minute})
	st, err := c.Stream(context.Background(), &providers.Request{Body: []byte(`{}`)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Next(); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() { _, err := st.Next(); errc <- err }()
	time.Sleep(50 * time.Millisecond)
	st.Close(errors.New("client went away"))
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Next returned no error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next still blocked 5s after Close")
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Fatal("upstream request not cancelled")
	}
	st.Close(nil) // a second Close is harmless
}

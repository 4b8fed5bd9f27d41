package upstream

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func post(t *testing.T, url, body string) (int, string, []byte) {
	t.Helper()
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyString(body)
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return resp.StatusCode(), string(resp.Header.ContentType()), append([]byte(nil), resp.Body()...)
}

// sampleConfig reproduces the identity fields of contracts/samples/openai/chat-stream-*.sse.
func sampleConfig() Config {
	return Config{
		ID:                "chatcmpl-123",
		Created:           1694268190,
		Model:             "gpt-4o-mini",
		SystemFingerprint: "fp_44709d6fcb",
		Default:           Profile{Chunks: 2, Tokens: []string{"Hello", "!"}, PromptTokens: 19},
	}
}

func TestStreamMatchesSamples(t *testing.T) {
	s := start(t, sampleConfig())
	tests := []struct {
		name, body, golden string
	}{
		{"without usage", `{"model":"gpt-4o-mini","stream":true,"messages":[]}`, "testdata/chat-stream-text.sse"},
		{"include_usage", `{"model":"gpt-4o-mini","stream": true,"stream_options":{"include_usage" : true},"messages":[]}`, "testdata/chat-stream-include-usage.sse"},
		{"include_usage false", `{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":false}}`, "testdata/chat-stream-text.sse"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			want, err := os.ReadFile(tc.golden)
			if err != nil {
				t.Fatal(err)
			}
			status, ct, got := post(t, s.URL()+"/chat/completions", tc.body)
			if status != 200 || !strings.HasPrefix(ct, "text/event-stream") {
				t.Fatalf("status %d, content-type %q; want 200 text/event-stream", status, ct)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("stream body differs from %s\ngot:\n%s\nwant:\n%s", tc.golden, got, want)
			}
		})
	}
}

func TestCompletionMatchesSample(t *testing.T) {
	s := start(t, Config{
		ID:                "chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG",
		Created:           1741570283,
		Model:             "gpt-4o-2024-08-06",
		SystemFingerprint: "fp_fc9f1d7035",
		Default:           Profile{Content: "Hello! How can I help you today?", CompletionTokens: 10, PromptTokens: 19},
	})
	status, ct, got := post(t, s.URL()+"/chat/completions", `{"model":"x","stream":false,"messages":[{"role":"user","content":"say \"stream\":true"}]}`)
	if status != 200 || ct != "application/json" {
		t.Fatalf("status %d, content-type %q; want 200 application/json", status, ct)
	}
	assertJSONEqual(t, got, "testdata/chat-completion-response.json")
}

func assertJSONEqual(t *testing.T, got []byte, golden string) {
	t.Helper()
	raw, err := os.ReadFile(golden)
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("answer is not JSON: %v\n%s", err, got)
	}
	if err := json.Unmarshal(raw, &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Errorf("answer differs from %s\ngot:  %s\nwant: %s", golden, got, raw)
	}
}

func TestContentAndChunkSizes(t *testing.T) {
	s := start(t, Config{
		Default:  Profile{ContentBytes: 1000},
		Profiles: map[string]Profile{"long": {Chunks: 40, ChunkBytes: 7}},
	})
	_, _, body := post(t, s.URL()+"/chat/completions", `{"messages":[]}`)
	var c struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &c); err != nil || len(c.Choices) != 1 {
		t.Fatalf("bad completion (%v): %s", err, body)
	}
	if n := len(c.Choices[0].Message.Content); n != 1000 {
		t.Errorf("content is %d bytes, want 1000", n)
	}

	tests := []struct {
		name, url, body string
		chunks          int
		usage           bool
	}{
		{"default", s.URL(), `{"stream":true}`, 8, false},
		{"default usage", s.URL(), `{"stream":true,"stream_options":{"include_usage":true}}`, 8, true},
		{"long", s.ProfileURL("long"), `{"stream":true}`, 40, false},
		{"long usage", s.ProfileURL("long"), `{"stream":true,"stream_options":{"include_usage":true}}`, 40, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, body := post(t, tc.url+"/chat/completions", tc.body)
			checkStream(t, body, tc.chunks, tc.usage)
		})
	}
}

// checkStream verifies SSE framing: "data: JSON\n\n" events, a role chunk,
// chunks content chunks, a finish chunk, the usage chunk (choices: []) when
// asked, and [DONE] last.
func checkStream(t *testing.T, body []byte, chunks int, usage bool) {
	t.Helper()
	if !bytes.HasSuffix(body, []byte("\n\n")) {
		t.Fatalf("stream does not end with a blank line: %q", body[max(0, len(body)-40):])
	}
	events := strings.Split(strings.TrimSuffix(string(body), "\n\n"), "\n\n")
	want := 1 + chunks + 1 + 1
	if usage {
		want++
	}
	if len(events) != want {
		t.Fatalf("%d events, want %d", len(events), want)
	}
	if events[len(events)-1] != "data: [DONE]" {
		t.Errorf("last event %q, want data: [DONE]", events[len(events)-1])
	}
	type chunk struct {
		Choices []struct {
			Delta        map[string]any `json:"delta"`
			FinishReason *string        `json:"finish_reason"`
		} `json:"choices"`
		Usage *struct {
			TotalTokens int `json:"total_tokens"`
		} `json:"usage"`
	}
	for i, ev := range events[:len(events)-1] {
		data, ok := strings.CutPrefix(ev, "data: ")
		if !ok || strings.Contains(data, "\n") {
			t.Fatalf("event %d is not one data line: %q", i, ev)
		}
		var c chunk
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("event %d is not JSON: %v", i, err)
		}
		hasUsageKey := strings.Contains(data, `"usage":`)
		if hasUsageKey != usage {
			t.Errorf("event %d has usage key %v, want %v", i, hasUsageKey, usage)
		}
		switch {
		case i == 0:
			if len(c.Choices) != 1 || c.Choices[0].Delta["role"] != "assistant" {
				t.Errorf("first event is not the role chunk: %s", data)
			}
		case i <= chunks:
			if len(c.Choices) != 1 || c.Choices[0].Delta["content"] == "" || c.Choices[0].FinishReason != nil {
				t.Errorf("event %d is not a content chunk: %s", i, data)
			}
		case i == chunks+1:
			if len(c.Choices) != 1 || c.Choices[0].FinishReason == nil || *c.Choices[0].FinishReason != "stop" {
				t.Errorf("event %d is not the finish chunk: %s", i, data)
			}
		default:
			if len(c.Choices) != 0 || c.Usage == nil || c.Usage.TotalTokens == 0 {
				t.Errorf("event %d is not the usage chunk: %s", i, data)
			}
		}
	}
}

func TestPauses(t *testing.T) {
	s := start(t, Config{Default: Profile{Chunks: 4, FirstByte: 40 * time.Millisecond, ChunkDelay: 20 * time.Millisecond}})
	begin := time.Now()
	post(t, s.URL()+"/chat/completions", `{"stream":true}`)
	// first byte + 3 pauses between 4 content chunks; sleeps never end early.
	if d, min := time.Since(begin), 100*time.Millisecond; d < min {
		t.Errorf("stream took %v, want at least %v", d, min)
	}
	begin = time.Now()
	post(t, s.URL()+"/chat/completions", `{"stream":false}`)
	if d, min := time.Since(begin), 40*time.Millisecond; d < min {
		t.Errorf("completion took %v, want at least %v", d, min)
	}
}

// openSilent sends a streamed request on a raw connection and reads until
// the first event has arrived.
func openSilent(t *testing.T, s *Server) (net.Conn, *bufio.Reader) {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	body := `{"model":"m","stream":true,"stream_options":{"include_usage":true}}`
	req := "POST /silent/v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var head strings.Builder
	for !strings.Contains(head.String(), "data: ") || !strings.HasSuffix(head.String(), "\n\n\r\n") {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("reading first event: %v (so far %q)", err, head.String())
		}
		head.WriteString(line)
	}
	if !strings.HasPrefix(head.String(), "HTTP/1.1 200 OK\r\n") || !strings.Contains(head.String(), "text/event-stream") {
		t.Fatalf("unexpected head: %q", head.String())
	}
	return c, br
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestSilentReleaseAndClose(t *testing.T) {
	s := start(t, Config{Profiles: map[string]Profile{"silent": {Silent: true, Chunks: 3, SilentHold: time.Minute}}})

	c1, br1 := openSilent(t, s)
	c2, _ := openSilent(t, s)
	waitFor(t, "2 silent streams", func() bool { return s.Stats().SilentOpen == 2 })

	// Nothing more may arrive while silent.
	_ = c1.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	if b, err := br1.ReadByte(); err == nil {
		t.Fatalf("silent stream sent %q before release", b)
	}

	// A client that closes ends its stream without a release.
	_ = c2.Close()
	waitFor(t, "the closed stream to end", func() bool { return s.Stats().SilentOpen == 1 })

	if n := s.Release(); n != 1 {
		t.Errorf("Release() = %d, want 1", n)
	}
	_ = c1.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(br1)
	if err != nil {
		t.Fatalf("reading the released stream: %v", err)
	}
	if !bytes.HasSuffix(rest, []byte("data: [DONE]\n\n\r\n0\r\n\r\n")) {
		t.Errorf("released stream does not end with [DONE] and the last chunk: %q", rest)
	}
	// 3 content chunks + finish + usage + [DONE], each one HTTP chunk.
	if n := bytes.Count(rest, []byte("data: ")); n != 6 {
		t.Errorf("released stream sent %d events, want 6", n)
	}
	waitFor(t, "no silent streams", func() bool { return s.Stats().SilentOpen == 0 })
}

func TestSilentHold(t *testing.T) {
	s := start(t, Config{Profiles: map[string]Profile{"silent": {Silent: true, Chunks: 1, SilentHold: 100 * time.Millisecond}}})
	c, br := openSilent(t, s)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(rest, []byte("data: [DONE]")) {
		t.Errorf("stream did not finish after its hold time: %q", rest)
	}
}

func TestRoutes(t *testing.T) {
	s := start(t, Config{Models: []string{"bench-model", "bench-embed"}, EmbeddingDims: 4})
	tests := []struct {
		name, method, path, body string
		status                   int
	}{
		{"unknown path", "POST", "/v2/chat/completions", "{}", 404},
		{"unknown profile", "POST", "/nope/v1/chat/completions", "{}", 404},
		{"GET chat", "GET", "/v1/chat/completions", "", 405},
		{"models", "GET", "/v1/models", "", 200},
		{"embeddings", "POST", "/v1/embeddings", `{"model":"bench-embed","input":["a","bb"]}`, 200},
		{"bad embeddings", "POST", "/v1/embeddings", `{"model":"bench-embed"}`, 400},
		{"stats", "GET", "/_bench/stats", "", 200},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + s.Addr() + tc.path)
			req.Header.SetMethod(tc.method)
			req.SetBodyString(tc.body)
			if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode() != tc.status {
				t.Errorf("%s %s = %d, want %d", tc.method, tc.path, resp.StatusCode(), tc.status)
			}
			if !json.Valid(resp.Body()) {
				t.Errorf("body is not JSON: %s", resp.Body())
			}
		})
	}
}

func TestModelsAndEmbeddingsShapes(t *testing.T) {
	s := start(t, Config{Created: 1721172741, Models: []string{"gpt-4o-mini", "text-embedding-3-small"}, EmbeddingDims: 3})
	req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.SetRequestURI(s.URL() + "/models")
	if err := fasthttp.DoTimeout(req, resp, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var list struct {
		Object string
		Data   []struct{ ID, Object, OwnedBy string }
	}
	if err := json.Unmarshal(resp.Body(), &list); err != nil || list.Object != "list" || len(list.Data) != 2 ||
		list.Data[1].ID != "text-embedding-3-small" || list.Data[0].Object != "model" {
		t.Errorf("models = %s (%v)", resp.Body(), err)
	}

	type embeddingsAnswer struct {
		Object string
		Data   []struct {
			Object    string
			Index     int
			Embedding json.RawMessage
		}
		Model string
		Usage struct {
			PromptTokens int `json:"prompt_tokens"`
			TotalTokens  int `json:"total_tokens"`
		}
	}
	tests := []struct {
		name, body string
		n          int
		base64     bool
	}{
		{"one string", `{"model":"text-embedding-3-small","input":"hello"}`, 1, false},
		{"two strings", `{"model":"text-embedding-3-small","input":["The quick brown fox","hello"]}`, 2, false},
		{"token list", `{"model":"e","input":[1,2,3]}`, 1, false},
		{"token lists", `{"model":"e","input":[[1,2],[3]]}`, 2, false},
		{"base64", `{"model":"e","input":["a"],"encoding_format":"base64"}`, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, body := post(t, s.URL()+"/embeddings", tc.body)
			var a embeddingsAnswer
			if err := json.Unmarshal(body, &a); err != nil {
				t.Fatalf("not JSON: %v: %s", err, body)
			}
			if a.Object != "list" || len(a.Data) != tc.n || a.Usage.TotalTokens == 0 {
				t.Fatalf("answer %s: want %d embeddings", body, tc.n)
			}
			for i, d := range a.Data {
				if d.Index != i || d.Object != "embedding" {
					t.Errorf("data[%d] = index %d object %q", i, d.Index, d.Object)
				}
				if tc.base64 {
					var s string
					if err := json.Unmarshal(d.Embedding, &s); err != nil {
						t.Fatal(err)
					}
					raw, err := base64.StdEncoding.DecodeString(s)
					if err != nil || len(raw) != 12 {
						t.Errorf("base64 embedding decodes to %d bytes (%v), want 12", len(raw), err)
					}
				} else {
					var v []float64
					if err := json.Unmarshal(d.Embedding, &v); err != nil || len(v) != 3 {
						t.Errorf("embedding %s: want 3 floats (%v)", d.Embedding, err)
					}
				}
			}
		})
	}
}

func TestJSONTrue(t *testing.T) {
	tests := []struct {
		body string
		want bool
	}{
		{`{"stream":true}`, true},
		{`{"stream" : true}`, true},
		{"{\"stream\":\n\ttrue}", true},
		{`{"stream":false}`, false},
		{`{"stream_options":{"include_usage":true}}`, false},
		{`{"messages":[{"content":"\"stream\":true"}],"stream":false}`, false},
		{`{"messages":[{"content":"stream"}],"stream":true}`, true},
		{`{}`, false},
		{`{"stream":`, false},
	}
	for _, tc := range tests {
		if got := jsonTrue([]byte(tc.body), keyStream); got != tc.want {
			t.Errorf("jsonTrue(%q, stream) = %v, want %v", tc.body, got, tc.want)
		}
	}
}

func TestStartRejectsBadProfiles(t *testing.T) {
	for _, cfg := range []Config{
		{Profiles: map[string]Profile{"a/b": {}}},
		{Profiles: map[string]Profile{"v1": {}}},
		{Default: Profile{ChunkDelay: -time.Second}},
	} {
		if s, err := Start(cfg); err == nil {
			_ = s.Close()
			t.Errorf("Start(%+v) = nil error, want one", cfg)
		}
	}
}

func TestCloseEndsSilentStreams(t *testing.T) {
	s, err := Start(Config{Profiles: map[string]Profile{"silent": {Silent: true}}})
	if err != nil {
		t.Fatal(err)
	}
	openSilent(t, s)
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return with a silent stream open")
	}
}

package providerstest_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/providers/providerstest"
)

func post(t *testing.T, url, body string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST %s: reading body: %v", url, err)
	}
	return resp, b
}

func TestStrictEvents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		body string
		want int
		bad  bool
	}{
		{name: "two events", body: "data: {}\n\ndata: [DONE]\n\n", want: 2},
		{name: "empty", body: "", want: 0},
		{name: "event line", body: "event: x\ndata: {}\n\n", bad: true},
		{name: "no blank line", body: "data: {}\n", bad: true},
		{name: "no space", body: "data:{}\n\n", bad: true},
		{name: "crlf", body: "data: {}\r\n\r\n", bad: true},
		{name: "comment", body: ": ping\n\ndata: {}\n\n", bad: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := providerstest.StrictEvents([]byte(tc.body))
			if tc.bad {
				if !errors.Is(err, providerstest.ErrBadFraming) {
					t.Fatalf("StrictEvents(%q) error = %v, want ErrBadFraming", tc.body, err)
				}
				return
			}
			if err != nil || len(got) != tc.want {
				t.Fatalf("StrictEvents(%q) = %d events, %v; want %d, nil", tc.body, len(got), err, tc.want)
			}
		})
	}
}

func TestUpstreamStreamUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		transcript   string
		includeUsage bool
		wantUsage    string // the usage object expected in the chunk before [DONE]; "" = none anywhere
	}{
		{name: "text without usage", transcript: "openai/chat-stream-text.sse"},
		{name: "text synthesized usage", transcript: "openai/chat-stream-text.sse", includeUsage: true,
			wantUsage: `{"prompt_tokens":19,"completion_tokens":2,"total_tokens":21}`},
		{name: "recorded usage hidden", transcript: "openai/chat-stream-include-usage.sse"},
		{name: "recorded usage kept", transcript: "openai/chat-stream-include-usage.sse", includeUsage: true,
			wantUsage: `{"prompt_tokens":19,"completion_tokens":2,"total_tokens":21,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}`},
		{name: "recorded length usage kept", transcript: "openai/recorded-openai-python-chat-stream-length.sse", includeUsage: true,
			wantUsage: `{"prompt_tokens":79,"completion_tokens":1,"total_tokens":80,"completion_tokens_details":{"reasoning_tokens":0}}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			u := providerstest.NewUpstream(t)
			u.SetTranscript(providerstest.Sample(t, tc.transcript))
			body := `{"model":"m","messages":[],"stream":true}`
			if tc.includeUsage {
				body = `{"model":"m","messages":[],"stream":true,"stream_options":{"include_usage":true}}`
			}
			resp, b := post(t, u.URL+"/chat/completions", body)
			if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
				t.Fatalf("Content-Type = %q, want text/event-stream", ct)
			}
			events, err := providerstest.StrictEvents(b)
			if err != nil {
				t.Fatal(err)
			}
			if n := len(events); n < 2 || string(events[n-1]) != providerstest.Done {
				t.Fatalf("stream does not end with [DONE]: %q", b)
			}
			for i, ev := range events[:len(events)-1] {
				var c map[string]json.RawMessage
				if err := json.Unmarshal(ev, &c); err != nil {
					t.Fatalf("event %d is not JSON: %v", i, err)
				}
				u, has := c["usage"]
				last := i == len(events)-2
				switch {
				case tc.wantUsage == "" && has:
					t.Errorf("event %d has a usage key without include_usage: %s", i, ev)
				case tc.wantUsage != "" && last && string(u) != tc.wantUsage:
					t.Errorf("usage chunk = %s, want usage %s", ev, tc.wantUsage)
				case tc.wantUsage != "" && last && string(c["choices"]) != "[]":
					t.Errorf("usage chunk has choices %s, want []", c["choices"])
				}
			}
		})
	}
}

func TestUpstreamNonStream(t *testing.T) {
	t.Parallel()
	u := providerstest.NewUpstream(t)
	want := providerstest.Sample(t, "openai/chat-completion-response.json")
	resp, b := post(t, u.URL+"/chat/completions", `{"model":"m","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 || !bytes.Equal(b, want) {
		t.Fatalf("POST /v1/chat/completions = %d %s, want 200 and the sample", resp.StatusCode, b)
	}
	if got := string(u.LastBody()); got != `{"model":"m","messages":[{"role":"user","content":"hi"}]}` {
		t.Errorf("LastBody() = %s", got)
	}
	if n := u.Count("/v1/chat/completions"); n != 1 {
		t.Errorf("Count = %d, want 1", n)
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Parallel()
	u := providerstest.NewUpstream(t)
	rate := providerstest.Sample(t, "openai/error-429-rate-limit.json")
	u.FailFirst(2, providerstest.Failure{Status: 429, Header: http.Header{"Retry-After": {"20"}}, Body: rate})
	for i := range 2 {
		resp, b := post(t, u.URL+"/chat/completions", `{"model":"m","messages":[]}`)
		if resp.StatusCode != 429 || resp.Header.Get("Retry-After") != "20" || !bytes.Equal(b, rate) {
			t.Fatalf("request %d = %d (Retry-After %q) %s; want 429, 20, the sample", i, resp.StatusCode, resp.Header.Get("Retry-After"), b)
		}
	}
	if resp, _ := post(t, u.URL+"/chat/completions", `{"model":"m","messages":[]}`); resp.StatusCode != 200 {
		t.Fatalf("third request = %d, want 200 after FailFirst(2)", resp.StatusCode)
	}
	u.Fail(providerstest.Failure{Status: 500, Body: providerstest.Sample(t, "openai/error-500-server-error.json")})
	for range 3 {
		if resp, _ := post(t, u.URL+"/embeddings", `{"model":"e","input":"x"}`); resp.StatusCode != 500 {
			t.Fatalf("embeddings after Fail = %d, want 500", resp.StatusCode)
		}
	}
}

func TestUpstreamEmbeddings(t *testing.T) {
	t.Parallel()
	u := providerstest.NewUpstream(t)
	u.SetEmbeddingDims(5)
	type resp struct {
		Data []struct {
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
		Model string `json:"model"`
	}
	for _, format := range []string{"float", "base64"} {
		r, b := post(t, u.URL+"/embeddings", `{"model":"emb","input":["a","b"],"encoding_format":"`+format+`"}`)
		if r.StatusCode != 200 {
			t.Fatalf("%s: status %d %s", format, r.StatusCode, b)
		}
		var got resp
		if err := json.Unmarshal(b, &got); err != nil || len(got.Data) != 2 || got.Model != "emb" {
			t.Fatalf("%s: body %s (%v)", format, b, err)
		}
		for i, d := range got.Data {
			var vec []float32
			if format == "float" {
				if err := json.Unmarshal(d.Embedding, &vec); err != nil {
					t.Fatalf("float embedding %s: %v", d.Embedding, err)
				}
			} else {
				var s string
				_ = json.Unmarshal(d.Embedding, &s)
				raw, err := base64.StdEncoding.DecodeString(s)
				if err != nil {
					t.Fatalf("base64 embedding %s: %v", d.Embedding, err)
				}
				for j := 0; j+4 <= len(raw); j += 4 {
					vec = append(vec, math.Float32frombits(binary.LittleEndian.Uint32(raw[j:])))
				}
			}
			want := providerstest.EmbeddingVector(i, 5)
			if len(vec) != len(want) {
				t.Fatalf("%s: vector %d has %d dims, want %d", format, i, len(vec), len(want))
			}
			for j := range vec {
				if vec[j] != want[j] {
					t.Fatalf("%s: vector %d = %v, want %v", format, i, vec, want)
				}
			}
		}
	}
}

func TestUpstreamBlockSeesCancellation(t *testing.T) {
	t.Parallel()
	u := providerstest.NewUpstream(t)
	u.Block()
	req, _ := http.NewRequest("POST", u.URL+"/chat/completions", strings.NewReader(`{"model":"m","messages":[],"stream":true}`))
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	first := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, first); err != nil || string(first) != "data:" {
		t.Fatalf("first bytes = %q, %v", first, err)
	}
	if !u.WaitBlocked(2 * time.Second) {
		t.Fatal("the stream never blocked")
	}
	if u.WaitCancelled(50 * time.Millisecond) {
		t.Fatal("WaitCancelled reported a cancellation while the client is still there")
	}
	closed := time.Now()
	resp.Body.Close()
	if !u.WaitCancelled(2 * time.Second) {
		t.Fatal("the upstream did not see the client go away")
	}
	if d := u.CancelledAt().Sub(closed); d < 0 || d > time.Second {
		t.Errorf("cancellation seen %v after the close, want within 1s", d)
	}
}

func TestUpstreamCutAfter(t *testing.T) {
	t.Parallel()
	u := providerstest.NewUpstream(t)
	u.CutAfter(2)
	resp, err := http.Post(u.URL+"/chat/completions", "application/json", strings.NewReader(`{"model":"m","messages":[],"stream":true}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Fatalf("reading a cut stream succeeded: %q", b)
	}
	if n := len(providerstest.Events(b)); n != 2 {
		t.Errorf("cut stream had %d events, want 2", n)
	}
}

func TestUpstreamModels(t *testing.T) {
	t.Parallel()
	u := providerstest.NewUpstream(t)
	resp, err := http.Get(u.URL + "/models/some-model")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || m["id"] != "some-model" || m["object"] != "model" {
		t.Fatalf("GET /v1/models/some-model = %v (%v)", m, err)
	}
}

func TestUpstreamMultilineEvent(t *testing.T) {
	t.Parallel()
	u := providerstest.NewUpstream(t)
	sse := "data: {\"a\":\ndata: 1}\n\ndata: [DONE]\n\n"
	u.SetTranscript([]byte(sse))
	_, b := post(t, u.URL+"/chat/completions", `{"model":"m","messages":[],"stream":true}`)
	if string(b) != sse {
		t.Fatalf("multi-line event sent as %q, want %q", b, sse)
	}
	if ev := providerstest.Events(b); len(ev) != 2 || string(ev[0]) != "{\"a\":\n1}" {
		t.Fatalf("Events(%q) = %q", b, ev)
	}
}

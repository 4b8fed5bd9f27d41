package gateway

// Tests of POST /v1/messages (the Anthropic Messages API served for every
// routed model) and of the Anthropic and Bedrock providers behind the
// gateway: a real gateway on a loopback port, fake upstreams speaking each
// wire format (providerstest.Upstream for OpenAI, providerstest.Anthropic,
// providerstest.Bedrock with AWS event-stream frames, the mock), golden
// files in testdata/messages (go test ./gateway -run Messages -update), and
// the official Anthropic Go SDK as a client.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/anthropics/anthropic-sdk-go/v2/option"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/openai/openai-go/v3"
	oaoption "github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/shared"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/anthropic"
	"github.com/mtai-dev/mtai/providers/bedrock"
	"github.com/mtai-dev/mtai/providers/mock"
	oaprovider "github.com/mtai-dev/mtai/providers/openai"
	"github.com/mtai-dev/mtai/providers/providerstest"
	"github.com/mtai-dev/mtai/tenancy"
)

// msgUpdate reports -update; it shares the flag with the package's other
// tests, whichever defines it first.
var msgUpdate = func() func() bool {
	if f := flag.Lookup("update"); f != nil {
		return func() bool { return f.Value.String() == "true" }
	}
	b := flag.Bool("update", false, "rewrite golden files in testdata/")
	return func() bool { return *b }
}()

func msgGolden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "messages", filepath.FromSlash(name))
	if msgUpdate() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file %s: %v (go test ./gateway -run Messages -update creates it)", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from its golden file (rerun with -update if intended):\n got: %s\nwant: %s", path, got, want)
	}
}

// msgFixedClock stamps "created" in translated answers.
var msgFixedClock = func() time.Time { return time.Unix(1700000000, 0) }

// msgFactories builds every provider; Bedrock gets static fake credentials.
var msgFactories = map[string]providers.Factory{
	"openai": func(d providers.DeploymentConfig) (providers.Provider, error) { return oaprovider.New(d) },
	"mock":   func(d providers.DeploymentConfig) (providers.Provider, error) { return mock.New(d) },
	"anthropic": func(d providers.DeploymentConfig) (providers.Provider, error) {
		return anthropic.New(d, anthropic.WithClock(msgFixedClock))
	},
	"bedrock": func(d providers.DeploymentConfig) (providers.Provider, error) {
		return bedrock.New(d, bedrock.WithClock(msgFixedClock), bedrock.WithAWSConfig(aws.Config{Region: "us-east-1",
			Credentials: credentials.NewStaticCredentialsProvider("AKIDFAKE", "fake-secret", "")}))
	},
}

// msgMeter records the usage events the gateway hands over.
type msgMeter struct {
	mu     sync.Mutex
	events []*billing.Event
}

func (m *msgMeter) NewEvent() *billing.Event { return &billing.Event{} }
func (m *msgMeter) Record(e *billing.Event) {
	m.mu.Lock()
	m.events = append(m.events, e)
	m.mu.Unlock()
}
func (m *msgMeter) Cost(string, string, providers.Usage) (tenancy.MicroUSD, bool) { return 0, false }

func (m *msgMeter) all() []*billing.Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]*billing.Event(nil), m.events...)
}

// msgEnv is a gateway in front of one fake upstream of each protocol:
// "gpt" (OpenAI), "claude" (Anthropic), "nova" (Bedrock), "mock".
type msgEnv struct {
	s     *Server
	url   string
	oa    *providerstest.Upstream
	an    *providerstest.Anthropic
	br    *providerstest.Bedrock
	logs  *observer.ObservedLogs
	meter *msgMeter
}

const (
	msgUpOpenAI    = "gpt-4o-mini"
	msgUpAnthropic = "claude-sonnet-4-20250514"
	msgUpBedrock   = "anthropic.claude-3-5-haiku-20241022-v1:0"
)

func newMsgEnv(t *testing.T, policy *tenancy.Policy, extra ...providers.ModelConfig) *msgEnv {
	t.Helper()
	e := &msgEnv{oa: providerstest.NewUpstream(t), an: providerstest.NewAnthropic(t), br: providerstest.NewBedrock(t), meter: &msgMeter{}}
	models := append([]providers.ModelConfig{
		{Name: "gpt", Deployments: []providers.DeploymentConfig{{Name: "oai", Provider: "openai", BaseURL: e.oa.URL, Model: msgUpOpenAI, Timeout: 10 * time.Second}}},
		{Name: "claude", Deployments: []providers.DeploymentConfig{{Name: "ant", Provider: "anthropic", BaseURL: e.an.URL, APIKey: e.an.Key, Model: msgUpAnthropic, Timeout: 10 * time.Second}}},
		{Name: "nova", Deployments: []providers.DeploymentConfig{{Name: "brk", Provider: "bedrock", BaseURL: e.br.URL, Model: msgUpBedrock, Timeout: 10 * time.Second}}},
		{Name: "mock", Deployments: []providers.DeploymentConfig{{Name: "mock", Provider: "mock"}}},
		{Name: "embed", Embeddings: true, Deployments: []providers.DeploymentConfig{{Name: "mock-embed", Provider: "mock"}}},
	}, extra...)
	router, err := providers.NewRouter(providers.Config{Models: models,
		Retry:   providers.RetryConfig{Attempts: 2, Backoff: time.Millisecond, MaxBackoff: 100 * time.Millisecond},
		Breaker: providers.BreakerConfig{Failures: -1}}, msgFactories)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	e.logs = logs
	keys := &policyKeys{p: &tenancy.Principal{Tenant: "t1", TenantID: 1, Role: tenancy.RoleMember, Policy: policy}}
	e.s, err = New(Options{Config: Config{Addr: "127.0.0.1:0", ShutdownGrace: 2 * time.Second}, Router: router, Keys: keys,
		Logger: zap.New(core), Meter: e.meter})
	if err != nil {
		t.Fatal(err)
	}
	e.url = start(t, e.s)
	return e
}

// post sends body to path with the tenant key as x-api-key.
func (e *msgEnv) post(t *testing.T, path, body string, header ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, e.url+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("x-api-key", testKey)
	req.Header.Set("anthropic-version", "2023-06-01")
	for i := 0; i+1 < len(header); i += 2 {
		if header[i+1] == "" {
			req.Header.Del(header[i])
		} else {
			req.Header.Set(header[i], header[i+1])
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, b
}

// msgEvent is one SSE event of a Messages stream.
type msgEvent struct{ name, data string }

// msgEvents parses a Messages stream strictly: every event is one
// "event: NAME" line, one "data: JSON" line whose type is NAME, and a
// blank line; it feeds the events to the Anthropic SDK's accumulator.
func msgEvents(t *testing.T, body []byte) ([]msgEvent, sdk.Message) {
	t.Helper()
	var evs []msgEvent
	var msg sdk.Message
	rest := body
	for len(rest) > 0 {
		end := bytes.Index(rest, []byte("\n\n"))
		if end < 0 {
			t.Fatalf("event %d not ended by a blank line: %q", len(evs), rest)
		}
		lines := strings.Split(string(rest[:end]), "\n")
		rest = rest[end+2:]
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "event: ") || !strings.HasPrefix(lines[1], "data: ") {
			t.Fatalf("event %d is not an event: line and a data: line: %q", len(evs), lines)
		}
		ev := msgEvent{strings.TrimPrefix(lines[0], "event: "), strings.TrimPrefix(lines[1], "data: ")}
		var typ struct{ Type string }
		if err := json.Unmarshal([]byte(ev.data), &typ); err != nil || typ.Type != ev.name {
			t.Errorf("event %q carries type %q (%v)", ev.name, typ.Type, err)
		}
		evs = append(evs, ev)
		if ev.name == "ping" || ev.name == "error" {
			continue
		}
		var u sdk.MessageStreamEventUnion
		if err := json.Unmarshal([]byte(ev.data), &u); err != nil {
			t.Fatalf("the SDK cannot read %s: %v", ev.data, err)
		}
		if err := msg.Accumulate(u); err != nil {
			t.Fatalf("Accumulate(%s): %v", ev.data, err)
		}
	}
	return evs, msg
}

func msgNames(evs []msgEvent) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.name
	}
	return out
}

// TestMessagesGolden runs Anthropic requests through /v1/messages to every
// kind of upstream and compares, byte for byte, what the upstream received
// and what the client got (JSON, or the SSE transcript).
func TestMessagesGolden(t *testing.T) {
	weather := string(providerstest.Sample(t, "anthropic/messages-request.json"))
	toolResult := string(providerstest.Sample(t, "anthropic/messages-request-tool-result.json"))
	cases := []struct {
		name       string
		model      string
		request    string
		setup      func(e *msgEnv)
		upstream   func(e *msgEnv) []byte // the last upstream request body
		wantStop   string
		wantOutput int64
	}{
		{"openai-text", "gpt", weather, func(e *msgEnv) {}, func(e *msgEnv) []byte { return e.oa.LastBody() }, "end_turn", 10},
		{"openai-tools", "gpt", toolResult, func(e *msgEnv) {
			e.oa.SetCompletion(providerstest.Sample(t, "openai/chat-completion-response-tool-calls.json"))
			e.oa.SetTranscript(providerstest.Sample(t, "openai/chat-stream-tool-calls.sse"))
		}, func(e *msgEnv) []byte { return e.oa.LastBody() }, "tool_use", 17},
		{"anthropic-tools", "claude", weather, func(e *msgEnv) {
			e.an.SetResponse(providerstest.Sample(t, "anthropic/messages-response-tool-use.json"))
			e.an.SetTranscript(providerstest.Sample(t, "anthropic/sdk-fixture-tool-use-stream.sse"))
		}, func(e *msgEnv) []byte { return e.an.LastBody() }, "tool_use", 65},
		{"bedrock-tools", "nova", toolResult, func(e *msgEnv) {
			e.br.SetConverse([]byte(providerstest.BedrockConverseTool))
			e.br.SetEvents(providerstest.BedrockToolStream)
		}, func(e *msgEnv) []byte { return e.br.LastBody() }, "tool_use", 30},
		{"mock", "mock", weather, func(e *msgEnv) {}, nil, "end_turn", 12},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newMsgEnv(t, nil)
			tc.setup(e)
			req := strings.Replace(tc.request, `"claude-sonnet-4-20250514"`, `"`+tc.model+`"`, 1)

			resp, body := e.post(t, "/v1/messages", req)
			if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
				t.Fatalf("status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			msgGolden(t, tc.name+".json", body)
			var m sdk.Message
			if err := json.Unmarshal(body, &m); err != nil {
				t.Fatalf("the SDK cannot read the answer: %v", err)
			}
			if string(m.StopReason) != tc.wantStop || m.Usage.OutputTokens != tc.wantOutput || m.Role != "assistant" {
				t.Errorf("stop %s output %d, want %s %d", m.StopReason, m.Usage.OutputTokens, tc.wantStop, tc.wantOutput)
			}
			if tc.upstream != nil {
				msgGolden(t, tc.name+".upstream.json", tc.upstream(e))
			}

			var m2 map[string]any
			if err := json.Unmarshal([]byte(req), &m2); err != nil {
				t.Fatal(err)
			}
			m2["stream"] = true
			sr, _ := json.Marshal(m2)
			streamReq := string(sr)
			resp, body = e.post(t, "/v1/messages", streamReq)
			if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
				t.Fatalf("stream status %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
			}
			msgGolden(t, tc.name+".stream.sse", body)
			evs, acc := msgEvents(t, body)
			names := msgNames(evs)
			if names[0] != "message_start" || names[1] != "ping" || names[len(names)-1] != "message_stop" || names[len(names)-2] != "message_delta" {
				t.Errorf("events %v", names)
			}
			// The OpenAI fake's text transcript ("Hello!") is not its completion.
			same := tc.name != "openai-text"
			if string(acc.StopReason) != tc.wantStop || same && acc.Usage.OutputTokens != tc.wantOutput {
				t.Errorf("streamed: stop %s output %d, want %s %d", acc.StopReason, acc.Usage.OutputTokens, tc.wantStop, tc.wantOutput)
			}
			if got, want := msgContent(acc), msgContent(m); same && got != want {
				t.Errorf("streamed content %s, want the non-streamed %s", got, want)
			}
			if tc.upstream != nil {
				up := tc.upstream(e)
				if tc.name != "bedrock-tools" && !bytes.Contains(up, []byte(`"stream":true`)) {
					t.Errorf("upstream stream request %s", up)
				}
			}
		})
	}
}

func msgContent(m sdk.Message) string {
	var b strings.Builder
	for _, c := range m.Content {
		switch c.Type {
		case "text":
			b.WriteString("text:" + c.Text + ";")
		case "tool_use":
			var in any
			_ = json.Unmarshal(c.Input, &in)
			j, _ := json.Marshal(in)
			b.WriteString("tool:" + c.ID + ":" + c.Name + ":" + string(j) + ";")
		}
	}
	return b.String()
}

// TestMessagesConformance checks CONFORMANCE 7 for the Anthropic-compatible
// endpoint: "event:" names on every event, usage in message_delta from the
// upstream's usage, the stop-reason map, and the system prompt reaching an
// OpenAI upstream as its first (system) message.
func TestMessagesConformance(t *testing.T) {
	e := newMsgEnv(t, nil)
	resp, body := e.post(t, "/v1/messages", `{"model":"gpt","max_tokens":50,"stream":true,"system":"Be brief.","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if bytes.Contains(body, []byte("data: [DONE]")) {
		t.Error("the Messages stream carries an OpenAI [DONE]")
	}
	evs, acc := msgEvents(t, body)
	var delta struct {
		Usage struct {
			InputTokens  int64 `json:"input_tokens"`
			OutputTokens int64 `json:"output_tokens"`
		} `json:"usage"`
	}
	for _, ev := range evs {
		if ev.name == "message_delta" {
			_ = json.Unmarshal([]byte(ev.data), &delta)
		}
	}
	// chat-stream-text.sse has no usage chunk: the fake synthesizes 19
	// prompt tokens and counts the chunks' content.
	if delta.Usage.InputTokens != 19 || delta.Usage.OutputTokens == 0 || acc.Usage.InputTokens != 19 {
		t.Errorf("message_delta usage %+v, accumulated %+v: want the upstream's usage", delta.Usage, acc.Usage)
	}
	var up struct {
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
		MaxCompletionTokens int  `json:"max_completion_tokens"`
		StreamOptions       any  `json:"stream_options"`
		Stream              bool `json:"stream"`
		Model               string
	}
	if err := json.Unmarshal(e.oa.LastBody(), &up); err != nil {
		t.Fatal(err)
	}
	if len(up.Messages) != 2 || up.Messages[0].Role != "system" || up.Messages[0].Content != "Be brief." ||
		up.MaxCompletionTokens != 50 || !up.Stream || up.StreamOptions == nil || up.Model != msgUpOpenAI {
		t.Errorf("upstream request %s", e.oa.LastBody())
	}
}

// TestMessagesPolicy: the tenant's default model, allowed models and system
// prompt apply to /v1/messages as to chat completions.
func TestMessagesPolicy(t *testing.T) {
	e := newMsgEnv(t, &tenancy.Policy{DefaultModel: "gpt", AllowedModels: []string{"gpt", "mock"}, SystemPrompt: "Tenant rules."})
	resp, body := e.post(t, "/v1/messages", `{"max_tokens":5,"system":"Mine.","messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got, want := string(e.oa.LastBody()), `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"Tenant rules."},{"role":"system","content":"Mine."},{"role":"user","content":"hi"}],"max_completion_tokens":5}`; got != want {
		t.Errorf("upstream body\n got %s\nwant %s", got, want)
	}
	resp, body = e.post(t, "/v1/messages", `{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`)
	checkAnthropicError(t, resp, body, 403, "permission_error")
}

func checkAnthropicError(t *testing.T, resp *http.Response, body []byte, status int, typ string) {
	t.Helper()
	var e struct {
		Type  string `json:"type"`
		Error struct {
			Type    string `json:"type"`
			Message string `json:"message"`
		} `json:"error"`
		RequestID string `json:"request_id"`
	}
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if resp.StatusCode != status || e.Type != "error" || e.Error.Type != typ || e.Error.Message == "" ||
		e.RequestID == "" || e.RequestID != resp.Header.Get("X-Request-Id") ||
		!strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		t.Errorf("answer %d %s, want %d with error type %s, a message and the request id", resp.StatusCode, body, status, typ)
	}
}

// TestMessagesErrors: every refusal and upstream failure is answered in
// Anthropic's error shape, with the gateway's statuses and headers.
func TestMessagesErrors(t *testing.T) {
	ok := `{"model":"%s","max_tokens":5,"messages":[{"role":"user","content":"hi"}]%s}`
	cases := []struct {
		name       string
		body       string
		header     []string
		setup      func(e *msgEnv)
		status     int
		typ        string
		retryAfter string
	}{
		{"no key", fmt.Sprintf(ok, "gpt", ""), []string{"x-api-key", ""}, nil, 401, "authentication_error", ""},
		{"wrong key", fmt.Sprintf(ok, "gpt", ""), []string{"x-api-key", "sk-nope"}, nil, 401, "authentication_error", ""},
		{"bearer works", fmt.Sprintf(ok, "nope", ""), []string{"x-api-key", "", "Authorization", "Bearer " + testKey}, nil, 404, "not_found_error", ""},
		{"not json", `{"model":`, nil, nil, 400, "invalid_request_error", ""},
		{"max_tokens missing", `{"model":"gpt","messages":[{"role":"user","content":"hi"}]}`, nil, nil, 400, "invalid_request_error", ""},
		{"no model", `{"max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`, nil, nil, 400, "invalid_request_error", ""},
		{"unknown model", fmt.Sprintf(ok, "nope", ""), nil, nil, 404, "not_found_error", ""},
		{"embeddings model", fmt.Sprintf(ok, "embed", ""), nil, nil, 400, "invalid_request_error", ""},
		{"anthropic overloaded", fmt.Sprintf(ok, "claude", ""), nil, func(e *msgEnv) {
			e.an.Fail(providerstest.Failure{Status: 529, Body: providerstest.Sample(t, "anthropic/error-529-overloaded.json")})
		}, 503, "overloaded_error", "1"},
		{"anthropic overloaded stream", fmt.Sprintf(ok, "claude", `,"stream":true`), nil, func(e *msgEnv) {
			e.an.Fail(providerstest.Failure{Status: 529, Body: providerstest.Sample(t, "anthropic/error-529-overloaded.json")})
		}, 503, "overloaded_error", "1"},
		{"openai rate limit", fmt.Sprintf(ok, "gpt", ""), nil, func(e *msgEnv) {
			e.oa.Fail(providerstest.Failure{Status: 429, Header: http.Header{"Retry-After": {"20"}}, Body: providerstest.Sample(t, "openai/error-429-rate-limit.json")})
		}, 429, "rate_limit_error", "20"},
		{"bedrock throttled", fmt.Sprintf(ok, "nova", `,"stream":true`), nil, func(e *msgEnv) {
			e.br.Fail(429, "ThrottlingException", "Too many requests")
		}, 429, "rate_limit_error", "1"},
		{"upstream rejects request", fmt.Sprintf(ok, "claude", ""), nil, func(e *msgEnv) {
			e.an.Fail(providerstest.Failure{Status: 400, Body: []byte(`{"type":"error","error":{"type":"invalid_request_error","message":"messages.0: bad"}}`)})
		}, 400, "invalid_request_error", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newMsgEnv(t, nil)
			if tc.setup != nil {
				tc.setup(e)
			}
			resp, body := e.post(t, "/v1/messages", tc.body, tc.header...)
			checkAnthropicError(t, resp, body, tc.status, tc.typ)
			if got := resp.Header.Get("Retry-After"); got != tc.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tc.retryAfter)
			}
		})
	}
}

// TestMessagesMidstreamErrors: a failure after the stream started is an
// "event: error" event that ends the stream.
func TestMessagesMidstreamErrors(t *testing.T) {
	for _, tc := range []struct {
		name, model string
		setup       func(t *testing.T, e *msgEnv)
		typ         string
	}{
		{"openai", "gpt", func(t *testing.T, e *msgEnv) {
			e.oa.SetTranscript(providerstest.Sample(t, "openai/chat-stream-error-midstream.sse"))
		}, "api_error"},
		{"anthropic", "claude", func(t *testing.T, e *msgEnv) {
			e.an.SetTranscript(providerstest.Sample(t, "anthropic/messages-stream-error-midstream.sse"))
		}, "overloaded_error"},
		{"bedrock", "nova", func(t *testing.T, e *msgEnv) {
			e.br.SetEvents([]providerstest.BedrockEvent{providerstest.BedrockTextStream[0], providerstest.BedrockTextStream[1],
				{Type: "modelStreamErrorException", Exception: true, Payload: `{"message":"the model failed"}`}})
		}, "api_error"},
		{"openai cut", "gpt", func(t *testing.T, e *msgEnv) { e.oa.CutAfter(2) }, "api_error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newMsgEnv(t, nil)
			tc.setup(t, e)
			resp, body := e.post(t, "/v1/messages", `{"model":"`+tc.model+`","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode, body)
			}
			evs, _ := msgEvents(t, body)
			last := evs[len(evs)-1]
			var e2 struct {
				Error struct{ Type, Message string } `json:"error"`
			}
			_ = json.Unmarshal([]byte(last.data), &e2)
			if last.name != "error" || e2.Error.Type != tc.typ || e2.Error.Message == "" {
				t.Errorf("last event %s %s, want an error event of type %s", last.name, last.data, tc.typ)
			}
			for _, ev := range evs[:len(evs)-1] {
				if ev.name == "error" || ev.name == "message_stop" {
					t.Errorf("event %s before the end", ev.name)
				}
			}
			if tc.name == "openai" {
				msgGolden(t, "openai-error-midstream.stream.sse", body)
			}
		})
	}
}

// TestMessagesAccessLogAndMetering: /v1/messages requests end through the
// same finish as chat completions: one access-log line with the usage, and
// one usage event for the meter.
func TestMessagesAccessLogAndMetering(t *testing.T) {
	e := newMsgEnv(t, nil)
	for _, stream := range []string{"", `,"stream":true`} {
		resp, body := e.post(t, "/v1/messages", `{"model":"claude","max_tokens":5,"messages":[{"role":"user","content":"hi"}]`+stream+`}`)
		if resp.StatusCode != 200 {
			t.Fatalf("status %d: %s", resp.StatusCode, body)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.logs.FilterMessage("request").Len() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // a stream finishes after its last byte was written
	}
	lines := e.logs.FilterMessage("request").All()
	if len(lines) != 2 {
		t.Fatalf("%d access-log lines, want 2", len(lines))
	}
	for i, l := range lines {
		f := l.ContextMap()
		if f["path"] != "/v1/messages" || f["status"] != int64(200) || f["model"] != "claude" || f["deployment"] != "ant" ||
			f["prompt_tokens"] != int64(11) || f["completion_tokens"] != int64(6) || (i == 1) != (f["stream"] == true) {
			t.Errorf("access-log line %d: %v", i, f)
		}
	}
	events := e.meter.all()
	if len(events) != 2 {
		t.Fatalf("%d usage events, want 2 (metered() must include routeMessages)", len(events))
	}
	for i, ev := range events {
		if ev.Endpoint != routeMessages || ev.Model != "claude" || ev.UpstreamModel != msgUpAnthropic || ev.Provider != "anthropic" ||
			ev.Usage.PromptTokens != 11 || ev.Usage.CompletionTokens != 6 || ev.Stream != (i == 1) || ev.Status != 200 {
			t.Errorf("usage event %d: %+v", i, ev)
		}
	}
}

// TestMessagesClientDisconnect: a client leaving a /v1/messages stream
// cancels the upstream request at once, and the request is logged as 499.
func TestMessagesClientDisconnect(t *testing.T) {
	e := newMsgEnv(t, nil)
	e.an.BlockAfter(4)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"model":"claude","max_tokens":5,"stream":true,"messages":[{"role":"user","content":"hi"}]}`
	fmt.Fprintf(conn, "POST /v1/messages HTTP/1.1\r\nHost: gw\r\nx-api-key: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", testKey, len(body), body)
	br := bufio.NewReader(conn)
	status, err := br.ReadString('\n')
	if err != nil || !strings.Contains(status, " 200 ") {
		t.Fatalf("status line %q, %v", status, err)
	}
	if !e.an.WaitBlocked(5 * time.Second) {
		t.Fatal("the upstream never blocked")
	}
	for { // read up to the first text delta
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(line, "text_delta") || strings.Contains(line, "content_block_start") {
			break
		}
	}
	conn.Close()
	if !e.an.WaitCancelled(5 * time.Second) {
		t.Fatal("the upstream request was not cancelled")
	}
	deadline := time.Now().Add(5 * time.Second)
	for e.logs.FilterMessage("request").Len() < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	lines := e.logs.FilterMessage("request").All()
	if len(lines) != 1 || lines[0].ContextMap()["status"] != int64(499) {
		t.Errorf("access log %v, want one line with status 499", lines)
	}
}

// TestCrossProtocolFallback: a route whose first deployment is a failing
// upstream of one protocol falls back to a deployment of another, on both
// endpoints, plain and streamed.
func TestCrossProtocolFallback(t *testing.T) {
	oa := providerstest.NewUpstream(t)
	an := providerstest.NewAnthropic(t)   // failing
	anUp := providerstest.NewAnthropic(t) // working
	br := providerstest.NewBedrock(t)     // failing
	e := newMsgEnv(t, nil,
		providers.ModelConfig{Name: "ant-then-oai", Deployments: []providers.DeploymentConfig{
			{Name: "ant-down", Provider: "anthropic", BaseURL: an.URL, APIKey: an.Key, Model: msgUpAnthropic},
			{Name: "oai-up", Provider: "openai", BaseURL: oa.URL, Model: msgUpOpenAI}}},
		providers.ModelConfig{Name: "brk-then-ant", Deployments: []providers.DeploymentConfig{
			{Name: "brk-down", Provider: "bedrock", BaseURL: br.URL, Model: msgUpBedrock},
			{Name: "ant-up", Provider: "anthropic", BaseURL: anUp.URL, APIKey: anUp.Key, Model: msgUpAnthropic}}},
	)
	// (newMsgEnv disables the breakers: ant-down fails 8 times in a row here.)
	an.Fail(providerstest.Failure{Status: 529, Body: providerstest.Sample(t, "anthropic/error-529-overloaded.json")})
	for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
		for _, stream := range []bool{false, true} {
			body := fmt.Sprintf(`{"model":"ant-then-oai","max_tokens":5,"stream":%v,"messages":[{"role":"user","content":"hi"}]}`, stream)
			before := len(an.Requests())
			resp, out := e.post(t, path, body, "Authorization", "Bearer "+testKey)
			if resp.StatusCode != 200 || resp.Header.Get("X-Mtai-Deployment") != "oai-up" {
				t.Errorf("%s stream=%v: status %d deployment %q: %s", path, stream, resp.StatusCode, resp.Header.Get("X-Mtai-Deployment"), out)
			}
			if n := len(an.Requests()) - before; n != 2 {
				t.Errorf("%s stream=%v: %d attempts on the failing Anthropic deployment, want 2", path, stream, n)
			}
		}
	}
	br.Fail(503, "ServiceUnavailableException", "busy")
	for _, stream := range []bool{false, true} {
		resp, out := e.post(t, "/v1/chat/completions", fmt.Sprintf(`{"model":"brk-then-ant","stream":%v,"messages":[{"role":"user","content":"hi"}]}`, stream),
			"Authorization", "Bearer "+testKey)
		if resp.StatusCode != 200 || resp.Header.Get("X-Mtai-Deployment") != "ant-up" || !bytes.Contains(out, []byte("Hello")) {
			t.Errorf("bedrock→anthropic stream=%v: status %d deployment %q: %s", stream, resp.StatusCode, resp.Header.Get("X-Mtai-Deployment"), out)
		}
	}
}

// ---- the official Anthropic Go SDK against the gateway ----

func msgSDK(e *msgEnv, key string) sdk.Client {
	return sdk.NewClient(option.WithBaseURL(e.url+"/"), option.WithAPIKey(key), option.WithMaxRetries(0))
}

func msgCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func TestMessagesSDK(t *testing.T) {
	for _, model := range []string{"gpt", "claude", "nova", "mock"} {
		t.Run(model, func(t *testing.T) {
			e := newMsgEnv(t, nil)
			c := msgSDK(e, testKey)
			params := sdk.MessageNewParams{Model: model, MaxTokens: 64,
				System:   []sdk.TextBlockParam{{Text: "Be brief."}},
				Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("Say hello"))}}

			m, err := c.Messages.New(msgCtx(t), params)
			if err != nil {
				t.Fatalf("Messages.New: %v", err)
			}
			if m.Type != "message" || m.Role != "assistant" || len(m.Content) == 0 || m.Content[0].Type != "text" ||
				m.Content[0].Text == "" || m.StopReason != sdk.StopReasonEndTurn || m.Usage.OutputTokens == 0 {
				t.Errorf("message %s", m.RawJSON())
			}

			stream := c.Messages.NewStreaming(msgCtx(t), params)
			var acc sdk.Message
			var types []string
			for stream.Next() {
				ev := stream.Current()
				types = append(types, ev.Type)
				if err := acc.Accumulate(ev); err != nil {
					t.Fatalf("Accumulate: %v", err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v (events %v)", err, types)
			}
			same := model != "gpt" // the OpenAI fake's transcript and completion say different things
			if acc.StopReason != sdk.StopReasonEndTurn || len(acc.Content) != 1 || acc.Content[0].Text == "" || acc.Usage.OutputTokens == 0 ||
				same && (acc.Content[0].Text != m.Content[0].Text || acc.Usage.OutputTokens != m.Usage.OutputTokens || acc.Usage.InputTokens != m.Usage.InputTokens) {
				t.Errorf("accumulated %s, want the content and usage of %s (events %v)", acc.RawJSON(), m.RawJSON(), types)
			}
		})
	}
}

// TestMessagesSDKToolUse: a tool-use round trip with the SDK, through an
// OpenAI upstream and through an Anthropic one.
func TestMessagesSDKToolUse(t *testing.T) {
	for _, model := range []string{"gpt", "claude"} {
		t.Run(model, func(t *testing.T) {
			e := newMsgEnv(t, nil)
			e.oa.SetTranscript(providerstest.Sample(t, "openai/chat-stream-tool-calls.sse"))
			e.an.SetTranscript(providerstest.Sample(t, "anthropic/sdk-fixture-tool-use-stream.sse"))
			c := msgSDK(e, testKey)
			tool := sdk.ToolUnionParamOfTool(sdk.ToolInputSchemaParam{
				Properties: map[string]any{"location": map[string]any{"type": "string"}}, Required: []string{"location"}}, "get_weather")
			params := sdk.MessageNewParams{Model: model, MaxTokens: 256, Tools: []sdk.ToolUnionParam{tool},
				ToolChoice: sdk.ToolChoiceParamOfTool("get_weather"),
				Messages:   []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("What's the weather in Paris?"))}}
			stream := c.Messages.NewStreaming(msgCtx(t), params)
			var acc sdk.Message
			for stream.Next() {
				if err := acc.Accumulate(stream.Current()); err != nil {
					t.Fatal(err)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			var use *sdk.ContentBlockUnion
			for i := range acc.Content {
				if acc.Content[i].Type == "tool_use" {
					use = &acc.Content[i]
				}
			}
			if acc.StopReason != sdk.StopReasonToolUse || use == nil || use.Name == "" || use.ID == "" || !json.Valid(use.Input) {
				t.Fatalf("accumulated %s: want a tool_use", acc.RawJSON())
			}
			var args map[string]any
			if err := json.Unmarshal(use.Input, &args); err != nil || args["location"] == nil {
				t.Errorf("tool input %s", use.Input)
			}

			// Second turn: the tool result goes back.
			params.Messages = append(params.Messages, acc.ToParam(),
				sdk.NewUserMessage(sdk.NewToolResultBlock(use.ID, "18C, sunny", false)))
			params.ToolChoice = sdk.ToolChoiceUnionParam{}
			m, err := c.Messages.New(msgCtx(t), params)
			if err != nil {
				t.Fatalf("second turn: %v", err)
			}
			if m.Role != "assistant" || len(m.Content) == 0 {
				t.Errorf("second turn answer %s", m.RawJSON())
			}
			var last []byte
			if model == "gpt" {
				last = e.oa.LastBody()
				var up struct {
					Messages []struct {
						Role       string `json:"role"`
						ToolCallID string `json:"tool_call_id"`
						ToolCalls  []struct {
							ID string `json:"id"`
						} `json:"tool_calls"`
					} `json:"messages"`
				}
				_ = json.Unmarshal(last, &up)
				n := len(up.Messages)
				if n < 3 || up.Messages[n-1].Role != "tool" || up.Messages[n-1].ToolCallID != use.ID ||
					up.Messages[n-2].Role != "assistant" || len(up.Messages[n-2].ToolCalls) != 1 || up.Messages[n-2].ToolCalls[0].ID != use.ID {
					t.Errorf("the OpenAI upstream got %s", last)
				}
			} else {
				last = e.an.LastBody()
				if !bytes.Contains(last, []byte(`{"type":"tool_result","tool_use_id":"`+use.ID+`","content":"18C, sunny"}`)) ||
					!bytes.Contains(last, []byte(`"type":"tool_use","id":"`+use.ID+`"`)) {
					t.Errorf("the Anthropic upstream got %s", last)
				}
			}
		})
	}
}

func TestMessagesSDKErrors(t *testing.T) {
	e := newMsgEnv(t, nil)
	params := sdk.MessageNewParams{Model: "gpt", MaxTokens: 8, Messages: []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("hi"))}}

	bad := msgSDK(e, "sk-wrong")
	good := msgSDK(e, testKey)
	_, err := bad.Messages.New(msgCtx(t), params)
	var ae *sdk.Error
	if !errors.As(err, &ae) || ae.StatusCode != 401 || ae.Type() != "authentication_error" || ae.RequestID == "" {
		t.Errorf("wrong key: %v, want a 401 authentication_error with a request id", err)
	}

	params.Model = "no-such-model"
	_, err = good.Messages.New(msgCtx(t), params)
	if !errors.As(err, &ae) || ae.StatusCode != 404 || ae.Type() != "not_found_error" {
		t.Errorf("unknown model: %v, want a 404 not_found_error", err)
	}

	e.an.Fail(providerstest.Failure{Status: 529, Body: providerstest.Sample(t, "anthropic/error-529-overloaded.json")})
	params.Model = "claude"
	stream := good.Messages.NewStreaming(msgCtx(t), params)
	for stream.Next() {
	}
	if err := stream.Err(); !errors.As(err, &ae) || ae.StatusCode != 503 || ae.Type() != "overloaded_error" {
		t.Errorf("overloaded upstream: %v, want a 503 overloaded_error", err)
	}

	e.an.FailFirst(0, providerstest.Failure{}) // stop failing
	e.an.SetTranscript(providerstest.Sample(t, "anthropic/messages-stream-error-midstream.sse"))
	stream = good.Messages.NewStreaming(msgCtx(t), params)
	n := 0
	for stream.Next() {
		n++
	}
	if err := stream.Err(); err == nil || n == 0 || !strings.Contains(err.Error(), "overloaded") {
		t.Errorf("mid-stream error after %d events: %v, want the overloaded error", n, err)
	}
}

// ---- the official OpenAI Go SDK through the gateway to the Anthropic and Bedrock fakes ----

// TestOpenAISDKToTranslatedProviders: openai-go, unchanged but for its base
// URL, talks to Anthropic and Bedrock deployments: plain completions,
// streams (with and without include_usage) and streamed tool calls.
func TestOpenAISDKToTranslatedProviders(t *testing.T) {
	weather := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:       "get_weather",
		Parameters: shared.FunctionParameters{"type": "object", "properties": map[string]any{"location": map[string]any{"type": "string"}}},
	})
	for _, tc := range []struct {
		model         string
		text          string // the non-streamed and streamed answer
		prompt        int64  // prompt tokens of the text answer
		toolSetup     func(e *msgEnv)
		toolName      string
		toolArgs      string
		toolUsageSeen int64 // total tokens of the tool stream
	}{
		{"claude", "Hello there!", 11, func(e *msgEnv) {
			e.an.SetTranscript(providerstest.Sample(t, "anthropic/sdk-fixture-tool-use-stream.sse"))
		}, "get_weather", `{"location": "Paris"}`, 442},
		{"nova", "Hello there!", 12, func(e *msgEnv) { e.br.SetEvents(providerstest.BedrockToolStream) },
			"get_weather", `{"city": "Paris"}`, 1150},
	} {
		t.Run(tc.model, func(t *testing.T) {
			e := newMsgEnv(t, nil)
			client := openai.NewClient(oaoption.WithBaseURL(e.url+"/v1/"), oaoption.WithAPIKey(testKey), oaoption.WithMaxRetries(0))
			params := openai.ChatCompletionNewParams{Model: tc.model, Messages: []openai.ChatCompletionMessageParamUnion{
				openai.SystemMessage("Be brief."), openai.UserMessage("Say hello")}}

			c, err := client.Chat.Completions.New(msgCtx(t), params)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			if len(c.Choices) != 1 || c.Choices[0].Message.Content != tc.text || c.Choices[0].FinishReason != "stop" ||
				c.Usage.PromptTokens != tc.prompt || c.Usage.TotalTokens != c.Usage.PromptTokens+c.Usage.CompletionTokens || c.Object != "chat.completion" {
				t.Errorf("completion %s", c.RawJSON())
			}

			for _, includeUsage := range []bool{false, true} {
				p := params
				if includeUsage {
					p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
				}
				stream := client.Chat.Completions.NewStreaming(msgCtx(t), p)
				var acc openai.ChatCompletionAccumulator
				for stream.Next() {
					if !acc.AddChunk(stream.Current()) {
						t.Fatalf("the accumulator refused %s", stream.Current().RawJSON())
					}
				}
				if err := stream.Err(); err != nil {
					t.Fatalf("stream: %v", err)
				}
				stream.Close()
				if len(acc.Choices) != 1 || acc.Choices[0].Message.Content != tc.text || acc.Choices[0].FinishReason != "stop" {
					t.Errorf("include_usage=%v: accumulated %+v", includeUsage, acc.Choices)
				}
				if includeUsage != (acc.Usage.TotalTokens > 0) || includeUsage && acc.Usage.PromptTokens != tc.prompt {
					t.Errorf("include_usage=%v: usage %+v", includeUsage, acc.Usage)
				}
			}

			tc.toolSetup(e)
			p := params
			p.Tools = []openai.ChatCompletionToolUnionParam{weather}
			p.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			stream := client.Chat.Completions.NewStreaming(msgCtx(t), p)
			defer stream.Close()
			var acc openai.ChatCompletionAccumulator
			var finished []string
			for stream.Next() {
				if !acc.AddChunk(stream.Current()) {
					t.Fatalf("the accumulator refused %s", stream.Current().RawJSON())
				}
				if tool, ok := acc.JustFinishedToolCall(); ok {
					finished = append(finished, tool.Name+" "+tool.Arguments)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("tool stream: %v", err)
			}
			calls := acc.Choices[0].Message.ToolCalls
			if len(calls) != 1 || calls[0].Function.Name != tc.toolName || calls[0].Function.Arguments != tc.toolArgs || calls[0].ID == "" ||
				acc.Choices[0].FinishReason != "tool_calls" || acc.Usage.TotalTokens != tc.toolUsageSeen {
				t.Errorf("tool calls %+v, finish %q, usage %+v", calls, acc.Choices[0].FinishReason, acc.Usage)
			}
			if len(finished) != 1 || finished[0] != tc.toolName+" "+tc.toolArgs {
				t.Errorf("JustFinishedToolCall reported %q", finished)
			}
		})
	}
}

// TestOpenAISDKProviderErrors: upstream failures of the translated
// providers reach openai-go as the gateway's OpenAI-shaped errors.
func TestOpenAISDKProviderErrors(t *testing.T) {
	e := newMsgEnv(t, nil)
	client := openai.NewClient(oaoption.WithBaseURL(e.url+"/v1/"), oaoption.WithAPIKey(testKey), oaoption.WithMaxRetries(0))
	e.an.Fail(providerstest.Failure{Status: 529, Body: providerstest.Sample(t, "anthropic/error-529-overloaded.json")})
	e.br.Fail(400, "ValidationException", "The model returned the following errors: bad input")
	for _, tc := range []struct {
		model  string
		status int
		code   string
	}{{"claude", 503, "upstream_overloaded"}, {"nova", 400, ""}} {
		_, err := client.Chat.Completions.New(msgCtx(t), openai.ChatCompletionNewParams{Model: tc.model,
			Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")}})
		var oe *openai.Error
		if !errors.As(err, &oe) || oe.StatusCode != tc.status || oe.Code != tc.code || oe.Message == "" {
			t.Errorf("%s: %v, want status %d code %q", tc.model, err, tc.status, tc.code)
		}
	}
}

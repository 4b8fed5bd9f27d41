package gateway_test

// Conformance of the gateway's OpenAI-compatible API with the published
// OpenAI contract: shared/contracts/CONFORMANCE.md (beside the repo), OpenAI side.
// Every answer is checked against contracts/openai-openapi.yaml (kin-openapi,
// default mode) and the streams against the recorded transcripts in
// contracts/samples/openai, relayed through a real gateway from a real HTTP
// upstream (providerstest.Upstream) and from the built-in mock provider.

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/gateway"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/mock"
	"github.com/mtai-dev/mtai/providers/providerstest"
)

const chatPath = "/v1/chat/completions"

// TestConformanceValidatorRejects proves that the schema checks used below
// can fail: the spec accepts the samples and rejects broken bodies.
func TestConformanceValidatorRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		schema string
		body   []byte
		valid  bool
	}{
		{"completion sample", "CreateChatCompletionResponse", providerstest.Sample(t, "openai/chat-completion-response.json"), true},
		{"tool-call completion sample", "CreateChatCompletionResponse", providerstest.Sample(t, "openai/chat-completion-response-tool-calls.json"), true},
		{"completion without choices", "CreateChatCompletionResponse", []byte(`{"id":"x","object":"chat.completion","created":1,"model":"m"}`), false},
		{"chunk", "CreateChatCompletionStreamResponse", []byte(`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"content":"hi"},"logprobs":null,"finish_reason":null}]}`), true},
		{"usage chunk", "CreateChatCompletionStreamResponse", []byte(`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`), true},
		{"chunk without id", "CreateChatCompletionStreamResponse", []byte(`{"object":"chat.completion.chunk","created":1,"model":"m","choices":[]}`), false},
		{"chunk with a bad finish_reason", "CreateChatCompletionStreamResponse", []byte(`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"done"}]}`), false},
		{"error sample", "ErrorResponse", providerstest.Sample(t, "openai/error-429-rate-limit.json"), true},
		{"error without type", "ErrorResponse", []byte(`{"error":{"message":"m","param":null,"code":null}}`), false},
		{"error without param", "ErrorResponse", []byte(`{"error":{"message":"m","type":"t","code":null}}`), false},
		{"models sample", "ListModelsResponse", providerstest.Sample(t, "openai/models-list.json"), true},
		{"model sample", "Model", providerstest.Sample(t, "openai/model-retrieve.json"), true},
		{"model without owned_by", "Model", []byte(`{"id":"m","object":"model","created":1}`), false},
		{"float embeddings sample", "CreateEmbeddingResponse", providerstest.Sample(t, "openai/embeddings-response.json"), true},
		{"base64 embeddings are not the float form", "CreateEmbeddingResponse", providerstest.Sample(t, "openai/embeddings-response-base64.json"), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := validate(t, tc.schema, tc.body)
			if tc.valid && err != nil {
				t.Errorf("validate(%s) = %v, want valid", tc.schema, err)
			}
			if !tc.valid && err == nil {
				t.Errorf("validate(%s) = nil, want a rejection of %s", tc.schema, tc.body)
			}
		})
	}
}

// TestConformanceChatCompletion: non-streamed answers validate, reach the
// client byte for byte, and the upstream gets the client's bytes with only
// the model rewritten.
func TestConformanceChatCompletion(t *testing.T) {
	t.Parallel()
	plain := providerstest.NewUpstream(t)
	tools := providerstest.NewUpstream(t)
	tools.SetCompletion(providerstest.Sample(t, "openai/chat-completion-response-tool-calls.json"))
	gw := startGateway(t, append(mockRoutes(),
		upstreamRoute("gpt-4o-mini", plain),
		upstreamRoute("tools-model", tools)))

	tests := []struct {
		name     string
		model    string
		upstream *providerstest.Upstream // nil: the mock provider
		sample   string
	}{
		{"openai upstream", "gpt-4o-mini", plain, "openai/chat-completion-response.json"},
		{"openai upstream tool calls", "tools-model", tools, "openai/chat-completion-response-tool-calls.json"},
		{"mock provider", "mock-gpt", nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			body := `{"model": "` + tc.model + `", "messages": [{"role":"developer","content":"Be brief."},{"role":"user","content":"Hello! \u00e9 😀"}],
  "max_completion_tokens": 256, "temperature": 0.2, "stream": false, "x_vendor": {"keep": [1, 2.50, null]}}`
			r := gw.post(t, chatPath, body)
			if r.status != 200 {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			if !isJSONContentType(r.header.Get("Content-Type")) {
				t.Errorf("Content-Type = %q, want application/json", r.header.Get("Content-Type"))
			}
			if r.header.Get("X-Request-Id") == "" {
				t.Errorf("no x-request-id")
			}
			if err := validate(t, "CreateChatCompletionResponse", r.body); err != nil {
				t.Errorf("%v\n%s", err, r.body)
			}
			if tc.upstream == nil {
				var c struct {
					Choices []struct {
						Message struct{ Content string } `json:"message"`
					} `json:"choices"`
					Usage struct{ PromptTokens, CompletionTokens, TotalTokens int64 } `json:"usage"`
				}
				if err := json.Unmarshal(r.body, &c); err != nil || len(c.Choices) != 1 || c.Choices[0].Message.Content == "" {
					t.Errorf("mock answer %s has no content (%v)", r.body, err)
				}
				return
			}
			if want := providerstest.Sample(t, tc.sample); !bytes.Equal(r.body, want) {
				t.Errorf("the client got\n%s\nthe upstream sent\n%s", r.body, want)
			}
			wantUp := strings.Replace(body, `"model": "`+tc.model+`"`, `"model": "`+tc.model+`-upstream"`, 1)
			if got := string(tc.upstream.LastBody()); got != wantUp {
				t.Errorf("the upstream got\n%s\nwant (only the model rewritten)\n%s", got, wantUp)
			}
			req, _ := tc.upstream.LastRequest()
			if got := req.Header.Get("Authorization"); got != "Bearer "+upstreamKey {
				t.Errorf("upstream Authorization = %q, want the deployment's key", got)
			}
		})
	}
}

// TestConformanceRequestSplicing: a streamed request reaches the upstream
// with the model rewritten and stream_options.include_usage set, and every
// other member byte-identical (tools, response_format, logprobs, unknown
// fields), whatever the client's stream_options were.
func TestConformanceRequestSplicing(t *testing.T) {
	t.Parallel()
	tools := string(providerstest.Sample(t, "openai/chat-completion-request-stream-tools.json"))
	var toolsReq map[string]json.RawMessage
	if err := json.Unmarshal([]byte(tools), &toolsReq); err != nil {
		t.Fatal(err)
	}
	rest := `"messages": [ {"role": "user", "content": "Weather in \"Boston\"? \u00e9 😀"} ],
  "tools": ` + string(toolsReq["tools"]) + `,
  "tool_choice":"auto",
  "response_format": {"type": "json_schema", "json_schema": {"name": "w", "strict": true, "schema": {"type": "object", "properties": {"t": {"type": "number"}}}}},
  "logprobs": true, "top_logprobs": 2, "seed": 42, "temperature": 0.0, "parallel_tool_calls": false,
  "metadata": {"k": "v"}, "x_unknown": {"a": [1, 2.50, {"b": null}], "c": "\u00e9"}`
	tests := []struct {
		name          string
		streamOptions string // the member as the client writes it; "" for none
		wantOther     string // other stream_options members the upstream must still get, as JSON
		clientUsage   bool
	}{
		{name: "no stream_options"},
		{name: "empty stream_options", streamOptions: `"stream_options": {}`},
		{name: "include_usage false", streamOptions: `"stream_options": {"include_usage": false}`},
		{name: "include_usage false spaced", streamOptions: `"stream_options" : { "include_usage" :false }`},
		{name: "stream_options null", streamOptions: `"stream_options": null`},
		{name: "other stream option", streamOptions: `"stream_options": {"include_obfuscation": false}`, wantOther: `{"include_obfuscation":false}`},
		{name: "include_usage true", streamOptions: `"stream_options": {"include_usage": true}`, clientUsage: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := providerstest.NewUpstream(t)
			gw := startGateway(t, []providers.ModelConfig{upstreamRoute("gpt-4o", up)})
			body := "{\n  \"model\": \"gpt-4o\", \"stream\": true,\n  " + rest
			if tc.streamOptions != "" {
				body += ",\n  " + tc.streamOptions
			}
			body += "\n}"
			r := gw.post(t, chatPath, body)
			checkStream(t, r, streamWant{includeUsage: tc.clientUsage})

			got := up.LastBody()
			var in, out map[string]json.RawMessage
			if err := json.Unmarshal([]byte(body), &in); err != nil {
				t.Fatalf("test body: %v", err)
			}
			if err := json.Unmarshal(got, &out); err != nil {
				t.Fatalf("the upstream got invalid JSON %v:\n%s", err, got)
			}
			for k, v := range in {
				switch k {
				case "model", "stream_options":
					continue
				}
				if !bytes.Equal(out[k], v) {
					t.Errorf("member %q reached the upstream as %s, the client sent %s", k, out[k], v)
				}
			}
			for k := range out {
				if _, ok := in[k]; !ok && k != "stream_options" {
					t.Errorf("the upstream got a member %q the client did not send", k)
				}
			}
			if string(out["model"]) != `"gpt-4o-upstream"` {
				t.Errorf("upstream model = %s, want \"gpt-4o-upstream\"", out["model"])
			}
			var so map[string]json.RawMessage
			if err := json.Unmarshal(out["stream_options"], &so); err != nil || string(so["include_usage"]) != "true" {
				t.Errorf("upstream stream_options = %s, want include_usage:true", out["stream_options"])
			}
			if tc.wantOther != "" {
				var other map[string]json.RawMessage
				_ = json.Unmarshal([]byte(tc.wantOther), &other)
				for k, v := range other {
					if !bytes.Equal(so[k], v) {
						t.Errorf("stream_options.%s = %s at the upstream, want %s", k, so[k], v)
					}
				}
			}
		})
	}
}

// transcriptEvents is what a client must receive for a recorded transcript:
// its events as they are when the client asked include_usage; otherwise
// without the usage chunk and without "usage":null members.
func transcriptEvents(transcript []byte, includeUsage bool) [][]byte {
	var out [][]byte
	for _, ev := range providerstest.Events(transcript) {
		if !includeUsage {
			if providerstest.IsUsageChunk(ev) {
				continue
			}
			ev = providerstest.StripUsageNull(ev)
		}
		out = append(out, ev)
	}
	return out
}

// TestConformanceStreams replays every OpenAI transcript through the
// gateway, with and without include_usage: framing, schema, ids, finish
// reasons, usage, tool-call deltas, and the events' bytes.
func TestConformanceStreams(t *testing.T) {
	t.Parallel()
	transcripts := []struct {
		file      string
		toolCalls int
		finish    string
	}{
		{file: "chat-stream-text.sse", finish: "stop"},
		{file: "chat-stream-include-usage.sse", finish: "stop"},
		{file: "chat-stream-tool-calls.sse", toolCalls: 1, finish: "tool_calls"},
		{file: "recorded-openai-python-chat-stream-length.sse", finish: "length"},
		{file: "recorded-openai-python-chat-stream-tool-calls.sse", toolCalls: 1, finish: "tool_calls"},
		{file: "recorded-openai-python-chat-stream-parallel-tool-calls.sse", toolCalls: 2, finish: "tool_calls"},
	}
	for _, tr := range transcripts {
		for _, includeUsage := range []bool{false, true} {
			name := tr.file
			if includeUsage {
				name += "/include_usage"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				sse := providerstest.Sample(t, "openai/"+tr.file)
				up := providerstest.NewUpstream(t)
				up.SetTranscript(sse)
				gw := startGateway(t, []providers.ModelConfig{upstreamRoute("gpt-4o", up)})
				body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}`
				if includeUsage {
					body = `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`
				}
				r := gw.post(t, chatPath, body)
				res := checkStream(t, r, streamWant{includeUsage: includeUsage})

				want := transcriptEvents(sse, includeUsage)
				got := res.payloads
				hasUsage := false
				for _, ev := range providerstest.Events(sse) {
					hasUsage = hasUsage || providerstest.IsUsageChunk(ev)
				}
				if includeUsage && !hasUsage {
					// The upstream made a usage chunk up (the transcript has
					// none): it is the one event the file cannot predict.
					if len(got) != len(want)+1 || !providerstest.IsUsageChunk(got[len(got)-2]) {
						t.Fatalf("got %d events, want the transcript's %d plus a usage chunk", len(got), len(want))
					}
					got = append(got[:len(got)-2:len(got)-2], got[len(got)-1])
				}
				if len(got) != len(want) {
					t.Fatalf("the client got %d events, the transcript calls for %d", len(got), len(want))
				}
				for i := range want {
					if !bytes.Equal(got[i], want[i]) {
						t.Errorf("event %d:\n got %s\nwant %s", i, got[i], want[i])
					}
				}
				calls := map[int]bool{}
				for _, c := range res.chunks {
					for _, ch := range c.Choices {
						for _, tc := range ch.Delta.ToolCalls {
							if tc.Index != nil {
								calls[*tc.Index] = true
							}
						}
						if ch.FinishReason != nil && *ch.FinishReason != tr.finish {
							t.Errorf("finish_reason = %q, want %q", *ch.FinishReason, tr.finish)
						}
					}
				}
				if len(calls) != tr.toolCalls {
					t.Errorf("%d tool calls, want %d", len(calls), tr.toolCalls)
				}
			})
		}
	}
}

// TestConformanceStreamFailures: an upstream failure after the first byte
// ends the stream with data: {"error":{...}} and no [DONE]; one before it is
// a plain JSON error answer.
func TestConformanceStreamFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		setup    func(t *testing.T, u *providerstest.Upstream)
		timeout  time.Duration
		chunks   int    // chat chunks before the error event
		wantCode string // the error event's code
	}{
		// the upstream's own error event, in the gateway's words (upstreamAPIError)
		{name: "upstream error event", chunks: 2, wantCode: "upstream_error", setup: func(t *testing.T, u *providerstest.Upstream) {
			u.SetTranscript(providerstest.Sample(t, "openai/chat-stream-error-midstream.sse"))
		}},
		{name: "upstream connection dropped", chunks: 2, wantCode: "upstream_unreachable", setup: func(t *testing.T, u *providerstest.Upstream) {
			u.CutAfter(2)
		}},
		{name: "upstream silent past the timeout", chunks: 1, wantCode: "upstream_timeout", timeout: 300 * time.Millisecond,
			setup: func(t *testing.T, u *providerstest.Upstream) { u.Block() }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := providerstest.NewUpstream(t)
			tc.setup(t, up)
			route := upstreamRoute("gpt-4o", up)
			if tc.timeout > 0 {
				route.Deployments[0].Timeout = tc.timeout
			}
			gw := startGateway(t, []providers.ModelConfig{route})
			for _, includeUsage := range []bool{false, true} {
				body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}`
				if includeUsage {
					body = `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`
				}
				r := gw.post(t, chatPath, body)
				res := checkStream(t, r, streamWant{failed: true, includeUsage: includeUsage})
				if len(res.chunks) != tc.chunks {
					t.Errorf("include_usage=%v: %d chunks before the error, want %d", includeUsage, len(res.chunks), tc.chunks)
				}
				var e struct{ Error struct{ Code *string } }
				_ = json.Unmarshal(res.errorEv, &e)
				if e.Error.Code == nil || *e.Error.Code != tc.wantCode {
					t.Errorf("error event %s, want code %q", res.errorEv, tc.wantCode)
				}
			}
		})
	}

	t.Run("before the first byte", func(t *testing.T) {
		t.Parallel()
		up := providerstest.NewUpstream(t)
		up.Fail(providerstest.Failure{Status: 429, Header: http.Header{"Retry-After": {"20"}},
			Body: providerstest.Sample(t, "openai/error-429-rate-limit.json")})
		gw := startGateway(t, []providers.ModelConfig{upstreamRoute("gpt-4o", up)})
		r := gw.post(t, chatPath, `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}`)
		checkError(t, r, wantError{status: 429, typ: "tokens", code: "rate_limit_exceeded"})
		if got := r.header.Get("Retry-After"); got != "20" {
			t.Errorf("Retry-After = %q, want the upstream's 20", got)
		}
	})
}

// TestConformanceErrors: every error answer has OpenAI's shape, status,
// type and code (CONFORMANCE.md section 2, DESIGN.md "Errors"); the bodies
// are pinned in testdata/errors (rewrite with -update).
func TestConformanceErrors(t *testing.T) {
	t.Parallel()
	sample := func(name string) []byte { return providerstest.Sample(t, "openai/"+name) }
	failing := func(f providerstest.Failure) *providerstest.Upstream {
		u := providerstest.NewUpstream(t)
		u.Fail(f)
		return u
	}
	var (
		up429   = failing(providerstest.Failure{Status: 429, Header: http.Header{"Retry-After": {"20"}}, Body: sample("error-429-rate-limit.json")})
		up429ms = failing(providerstest.Failure{Status: 429, Header: http.Header{"Retry-After-Ms": {"20500"}}, Body: sample("error-429-rate-limit.json")})
		upQuota = failing(providerstest.Failure{Status: 429, Body: sample("error-429-insufficient-quota.json")})
		up500   = failing(providerstest.Failure{Status: 500, Body: sample("error-500-server-error.json")})
		up503   = failing(providerstest.Failure{Status: 503, Body: sample("error-503-overloaded.json")})
		up400   = failing(providerstest.Failure{Status: 400, Body: sample("error-400-invalid-request.json")})
		up401   = failing(providerstest.Failure{Status: 401, Body: sample("error-401-invalid-api-key.json")})
		upSlow  = providerstest.NewUpstream(t)
	)
	upSlow.SetDelay(10 * time.Second)
	slow := upstreamRoute("up-slow", upSlow)
	slow.Deployments[0].Timeout = 200 * time.Millisecond
	down := providers.ModelConfig{Name: "up-down", Deployments: []providers.DeploymentConfig{
		{Provider: "openai", BaseURL: "http://" + closedAddr(t) + "/v1", Model: "x"}}}
	models := append(mockRoutes(),
		upstreamRoute("up-429", up429), upstreamRoute("up-429ms", up429ms), upstreamRoute("up-quota", upQuota),
		upstreamRoute("up-500", up500), upstreamRoute("up-503", up503), upstreamRoute("up-400", up400),
		upstreamRoute("up-401", up401), slow, down)
	gw := startGateway(t, models, withServer(func(c *gateway.Config) { c.MaxBodyBytes = 4096 }))

	chat := func(model string) string {
		return `{"model":"` + model + `","messages":[{"role":"user","content":"hi"}]}`
	}
	big := `{"model":"mock-gpt","messages":[{"role":"user","content":"` + strings.Repeat("a", 8192) + `"}]}`
	tests := []struct {
		name    string
		method  string
		path    string
		body    string
		headers []string
		want    wantError
		// upstream, when set, must have received exactly calls requests.
		upstream *providerstest.Upstream
		calls    int
		// retryAfter, when set, is the Retry-After the client must get
		// (the upstream's, rounded up to whole seconds).
		retryAfter string
	}{
		{name: "malformed JSON", body: `{"model":"mock-gpt","messages":[`, want: wantError{status: 400, typ: "invalid_request_error", noRetry: true}},
		{name: "not an object", body: `["mock-gpt"]`, want: wantError{status: 400, typ: "invalid_request_error", noRetry: true}},
		{name: "missing model", body: `{"messages":[{"role":"user","content":"hi"}]}`, want: wantError{status: 400, typ: "invalid_request_error", param: "model", noRetry: true}},
		{name: "missing messages", body: `{"model":"mock-gpt"}`, want: wantError{status: 400, typ: "invalid_request_error", param: "messages", noRetry: true}},
		{name: "empty messages", body: `{"model":"mock-gpt","messages":[]}`, want: wantError{status: 400, typ: "invalid_request_error", param: "messages", noRetry: true}},
		{name: "temperature too high", body: `{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}],"temperature":2.5}`, want: wantError{status: 400, typ: "invalid_request_error", param: "temperature", noRetry: true}},
		{name: "temperature negative", body: `{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}],"temperature":-0.1}`, want: wantError{status: 400, typ: "invalid_request_error", param: "temperature", noRetry: true}},
		{name: "embeddings model on chat", body: chat("mock-embed"), want: wantError{status: 400, typ: "invalid_request_error", param: "model", noRetry: true}},
		{name: "unknown model", body: chat("gpt-nope"), want: wantError{status: 404, typ: "invalid_request_error", code: "model_not_found", param: "model", noRetry: true}},
		{name: "no key", body: chat("mock-gpt"), headers: []string{"Authorization", noKey}, want: wantError{status: 401, typ: "invalid_request_error", code: "invalid_api_key", noRetry: true}},
		{name: "wrong key", body: chat("mock-gpt"), headers: []string{"Authorization", "Bearer sk-wrong-key-000000000000"}, want: wantError{status: 401, typ: "invalid_request_error", code: "invalid_api_key", noRetry: true}},
		{name: "body over the limit", body: big, want: wantError{status: 413, typ: "invalid_request_error", code: "request_too_large", noRetry: true}},
		{name: "upstream 429", body: chat("up-429"), want: wantError{status: 429, typ: "tokens", code: "rate_limit_exceeded"}, upstream: up429, calls: 1, retryAfter: "20"},
		{name: "upstream 429 retry-after-ms", body: chat("up-429ms"), want: wantError{status: 429, typ: "tokens", code: "rate_limit_exceeded"}, upstream: up429ms, calls: 1, retryAfter: "21"},
		// The operator's account is out of quota: not the tenant's 429 insufficient_quota (its own budget).
		{name: "upstream insufficient quota", body: chat("up-quota"), want: wantError{status: 502, typ: "server_error", code: "upstream_quota_exceeded"}},
		{name: "upstream 500", body: chat("up-500"), want: wantError{status: 502, typ: "server_error", code: "upstream_error"}, upstream: up500, calls: 2},
		{name: "upstream 503", body: chat("up-503"), want: wantError{status: 503, typ: "server_error", code: "upstream_overloaded"}, upstream: up503, calls: 2},
		// The upstream's own 400 reaches the client whole: its param ("messages") included.
		{name: "upstream 400 not retried", body: chat("up-400"), want: wantError{status: 400, typ: "invalid_request_error", code: "missing_required_parameter", param: "messages", noRetry: true}, upstream: up400, calls: 1},
		{name: "upstream refuses our key", body: chat("up-401"), want: wantError{status: 502, typ: "server_error", code: "upstream_auth_failed"}},
		// A silent upstream is not waited for twice (providers.Router falls back at once).
		{name: "upstream timeout", body: chat("up-slow"), want: wantError{status: 504, typ: "server_error", code: "upstream_timeout"}, upstream: upSlow, calls: 1},
		{name: "upstream unreachable", body: chat("up-down"), want: wantError{status: 502, typ: "server_error", code: "upstream_unreachable"}},
		{name: "embeddings without input", path: "/v1/embeddings", body: `{"model":"mock-embed"}`, want: wantError{status: 400, typ: "invalid_request_error", param: "input", noRetry: true}},
		{name: "embeddings unknown model", path: "/v1/embeddings", body: `{"model":"emb-nope","input":"x"}`, want: wantError{status: 404, typ: "invalid_request_error", code: "model_not_found", noRetry: true}},
		{name: "embeddings bad encoding", path: "/v1/embeddings", body: `{"model":"mock-embed","input":"x","encoding_format":"int8"}`, want: wantError{status: 400, typ: "invalid_request_error", param: "encoding_format", noRetry: true}},
		{name: "embeddings no key", path: "/v1/embeddings", body: `{"model":"mock-embed","input":"x"}`, headers: []string{"Authorization", noKey}, want: wantError{status: 401, typ: "invalid_request_error", code: "invalid_api_key", noRetry: true}},
		{name: "models no key", method: "GET", path: "/v1/models", headers: []string{"Authorization", noKey}, want: wantError{status: 401, typ: "invalid_request_error", code: "invalid_api_key", noRetry: true}},
		{name: "model unknown", method: "GET", path: "/v1/models/gpt-nope", want: wantError{status: 404, typ: "invalid_request_error", code: "model_not_found", noRetry: true}},
		{name: "unknown route", method: "GET", path: "/v1/nothing-here", want: wantError{status: 404, typ: "invalid_request_error", code: "not_found", noRetry: true}},
		{name: "wrong method", method: "GET", path: chatPath, want: wantError{status: 405, typ: "invalid_request_error", code: "method_not_allowed", noRetry: true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			method, path := tc.method, tc.path
			if method == "" {
				method = http.MethodPost
			}
			if path == "" {
				path = chatPath
			}
			r := gw.do(t, method, path, tc.body, tc.headers...)
			checkError(t, r, tc.want)
			golden(t, "errors/"+strings.ReplaceAll(tc.name, " ", "-")+".json", r.body)
			if tc.retryAfter != "" && r.header.Get("Retry-After") != tc.retryAfter {
				t.Errorf("Retry-After = %q, want %q", r.header.Get("Retry-After"), tc.retryAfter)
			}
			if tc.upstream != nil {
				if n := tc.upstream.Count("/v1/chat/completions"); n != tc.calls {
					t.Errorf("the upstream got %d requests, want %d", n, tc.calls)
				}
			}
		})
	}
}

// closedAddr returns a loopback address where nothing listens.
func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// TestConformanceRetriesAndFallback: retryable failures are retried, then
// the next deployment answers; a request the upstream rejects is not retried.
func TestConformanceRetriesAndFallback(t *testing.T) {
	t.Parallel()
	s500 := func(t *testing.T) providerstest.Failure {
		return providerstest.Failure{Status: 500, Body: providerstest.Sample(t, "openai/error-500-server-error.json")}
	}
	tests := []struct {
		name   string
		stream bool
		setup  func(t *testing.T, first, second *providerstest.Upstream)
		down   bool // the first deployment is unreachable
		// the answer expected, and the requests each upstream must have got
		status        int
		served        string // X-Mtai-Deployment
		first, second int
	}{
		{name: "5xx falls back", setup: func(t *testing.T, a, _ *providerstest.Upstream) { a.Fail(s500(t)) },
			status: 200, served: "gpt-4o-d1", first: 2, second: 1},
		{name: "5xx falls back stream", stream: true, setup: func(t *testing.T, a, _ *providerstest.Upstream) { a.Fail(s500(t)) },
			status: 200, served: "gpt-4o-d1", first: 2, second: 1},
		{name: "one 5xx retried", setup: func(t *testing.T, a, _ *providerstest.Upstream) { a.FailFirst(1, s500(t)) },
			status: 200, served: "gpt-4o-d0", first: 2, second: 0},
		{name: "one 503 retried stream", stream: true, setup: func(t *testing.T, a, _ *providerstest.Upstream) {
			a.FailFirst(1, providerstest.Failure{Status: 503, Body: providerstest.Sample(t, "openai/error-503-overloaded.json")})
		}, status: 200, served: "gpt-4o-d0", first: 2, second: 0},
		{name: "429 with a long Retry-After falls back", setup: func(t *testing.T, a, _ *providerstest.Upstream) {
			a.Fail(providerstest.Failure{Status: 429, Header: http.Header{"Retry-After": {"20"}}, Body: providerstest.Sample(t, "openai/error-429-rate-limit.json")})
		}, status: 200, served: "gpt-4o-d1", first: 1, second: 1},
		{name: "unreachable falls back", down: true, status: 200, served: "gpt-4o-d1", second: 1},
		{name: "400 is not retried", setup: func(t *testing.T, a, _ *providerstest.Upstream) {
			a.Fail(providerstest.Failure{Status: 400, Body: providerstest.Sample(t, "openai/error-400-invalid-request.json")})
		}, status: 400, first: 1, second: 0},
		{name: "400 is not retried stream", stream: true, setup: func(t *testing.T, a, _ *providerstest.Upstream) {
			a.Fail(providerstest.Failure{Status: 400, Body: providerstest.Sample(t, "openai/error-400-invalid-request.json")})
		}, status: 400, first: 1, second: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			a, b := providerstest.NewUpstream(t), providerstest.NewUpstream(t)
			if tc.setup != nil {
				tc.setup(t, a, b)
			}
			route := upstreamRoute("gpt-4o", a, b)
			if tc.down {
				route.Deployments[0].BaseURL = "http://" + closedAddr(t) + "/v1"
			}
			gw := startGateway(t, []providers.ModelConfig{route})
			body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}`
			if tc.stream {
				body = `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}`
			}
			r := gw.post(t, chatPath, body)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			switch {
			case tc.status != 200:
				checkError(t, r, wantError{status: tc.status, typ: "invalid_request_error", code: "missing_required_parameter", noRetry: true})
			case tc.stream:
				checkStream(t, r, streamWant{})
			default:
				if err := validate(t, "CreateChatCompletionResponse", r.body); err != nil {
					t.Error(err)
				}
			}
			if tc.served != "" {
				if got := r.header.Get("X-Mtai-Deployment"); got != tc.served {
					t.Errorf("served by %q, want %q", got, tc.served)
				}
			}
			if n := a.Count(chatPath); n != tc.first {
				t.Errorf("the first deployment got %d requests, want %d", n, tc.first)
			}
			if n := b.Count(chatPath); n != tc.second {
				t.Errorf("the second deployment got %d requests, want %d", n, tc.second)
			}
		})
	}
}

var generatedID = regexp.MustCompile(`^req_[0-9a-f]{32}$`)

// TestConformanceRequestID: X-Request-ID is honoured when sent (and
// forwarded upstream), generated otherwise, on success and on errors.
func TestConformanceRequestID(t *testing.T) {
	t.Parallel()
	up := providerstest.NewUpstream(t)
	gw := startGateway(t, []providers.ModelConfig{upstreamRoute("gpt-4o", up)})
	tests := []struct {
		name   string
		sent   string // "" sends none
		key    string
		stream bool
		want   string // "" expects a generated id
	}{
		{name: "honoured", sent: "trace-7f3a-0001", want: "trace-7f3a-0001"},
		{name: "honoured on a stream", sent: "trace-7f3a-0002", stream: true, want: "trace-7f3a-0002"},
		{name: "honoured on an error", sent: "trace-7f3a-0003", key: "Bearer sk-wrong-key-000000000000", want: "trace-7f3a-0003"},
		{name: "generated"},
		{name: "generated on an error", key: "Bearer sk-wrong-key-000000000000"},
		{name: "unprintable replaced", sent: "has space"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// Each subtest sends its own message so that it can find its upstream request.
			marker := strings.ReplaceAll(tc.name, " ", "_")
			body := `{"model":"gpt-4o","messages":[{"role":"user","content":"` + marker + `"}]`
			if tc.stream {
				body += `,"stream":true`
			}
			body += "}"
			var h []string
			if tc.sent != "" {
				h = append(h, "X-Request-ID", tc.sent)
			}
			if tc.key != "" {
				h = append(h, "Authorization", tc.key)
			}
			r := gw.post(t, chatPath, body, h...)
			got := r.header.Get("X-Request-Id")
			switch {
			case tc.want != "" && got != tc.want:
				t.Errorf("x-request-id = %q, want %q", got, tc.want)
			case tc.want == "" && !generatedID.MatchString(got):
				t.Errorf("x-request-id = %q, want a generated req_<32 hex>", got)
			}
			if tc.key != "" {
				return
			}
			for _, req := range up.Requests() {
				if bytes.Contains(req.Body, []byte(`"`+marker+`"`)) {
					if fwd := req.Header.Get("X-Request-Id"); fwd != got {
						t.Errorf("the upstream got X-Request-ID %q, the client %q", fwd, got)
					}
					return
				}
			}
			t.Errorf("the upstream never got the request")
		})
	}
}

// TestConformanceModels: /v1/models and /v1/models/{id} validate against
// ListModelsResponse and Model, names with a slash included.
func TestConformanceModels(t *testing.T) {
	t.Parallel()
	up := providerstest.NewUpstream(t)
	gw := startGateway(t, append(mockRoutes(), upstreamRoute("meta-llama/Llama-3.1-8B-Instruct", up)))
	r := gw.do(t, http.MethodGet, "/v1/models", "")
	if r.status != 200 || !isJSONContentType(r.header.Get("Content-Type")) {
		t.Fatalf("GET /v1/models = %d %q: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	if err := validate(t, "ListModelsResponse", r.body); err != nil {
		t.Fatalf("%v\n%s", err, r.body)
	}
	var list struct {
		Data []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(r.body, &list); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, m := range list.Data {
		var v struct{ ID string }
		_ = json.Unmarshal(m, &v)
		ids[v.ID] = true
		t.Run(v.ID, func(t *testing.T) {
			if err := validate(t, "Model", m); err != nil {
				t.Errorf("list item: %v", err)
			}
			one := gw.do(t, http.MethodGet, "/v1/models/"+v.ID, "")
			if one.status != 200 {
				t.Fatalf("GET /v1/models/%s = %d %s", v.ID, one.status, one.body)
			}
			if err := validate(t, "Model", one.body); err != nil {
				t.Errorf("retrieve: %v", err)
			}
			if !bytes.Equal(one.body, m) {
				t.Errorf("retrieve = %s, the list says %s", one.body, m)
			}
		})
	}
	for _, want := range []string{"mock-gpt", "mock-embed", "meta-llama/Llama-3.1-8B-Instruct"} {
		if !ids[want] {
			t.Errorf("/v1/models does not list %q", want)
		}
	}
}

// decodeBase64Floats decodes OpenAI's base64 embedding (little-endian float32).
func decodeBase64Floats(t testing.TB, s string) []float32 {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw)%4 != 0 {
		t.Fatalf("base64 embedding %.40q: %v (%d bytes)", s, err, len(raw))
	}
	out := make([]float32, len(raw)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
	return out
}

// TestConformanceEmbeddings: the float form validates against
// CreateEmbeddingResponse; the base64 form decodes to the same vectors;
// the request reaches the upstream with only the model rewritten.
func TestConformanceEmbeddings(t *testing.T) {
	t.Parallel()
	up := providerstest.NewUpstream(t)
	up.SetEmbeddingDims(16)
	gw := startGateway(t, append(mockRoutes(), upstreamRoute("text-embedding-3-small", up)))
	type embeddings struct {
		Data []struct {
			Index     int             `json:"index"`
			Embedding json.RawMessage `json:"embedding"`
		} `json:"data"`
	}
	vectors := func(t *testing.T, r reply) [][]float32 {
		t.Helper()
		if r.status != 200 || !isJSONContentType(r.header.Get("Content-Type")) {
			t.Fatalf("status %d %q: %s", r.status, r.header.Get("Content-Type"), r.body)
		}
		var e embeddings
		if err := json.Unmarshal(r.body, &e); err != nil {
			t.Fatal(err)
		}
		var out [][]float32
		for _, d := range e.Data {
			var v []float32
			var s string
			if json.Unmarshal(d.Embedding, &s) == nil {
				v = decodeBase64Floats(t, s)
			} else if err := json.Unmarshal(d.Embedding, &v); err != nil {
				t.Fatalf("embedding %.60s: %v", d.Embedding, err)
			}
			out = append(out, v)
		}
		return out
	}
	for _, tc := range []struct {
		model string
		dims  int
		want  func(i int) []float32
	}{
		{"text-embedding-3-small", 16, func(i int) []float32 { return providerstest.EmbeddingVector(i, 16) }},
		{"mock-embed", mock.EmbeddingDims, nil},
	} {
		t.Run(tc.model, func(t *testing.T) {
			t.Parallel()
			body := `{"model": "` + tc.model + `", "input": ["The quick brown fox", "hello \u00e9"], "encoding_format": "float", "user": "u-1"}`
			fl := gw.post(t, "/v1/embeddings", body)
			if err := validate(t, "CreateEmbeddingResponse", fl.body); err != nil {
				t.Errorf("float: %v\n%.300s", err, fl.body)
			}
			fv := vectors(t, fl)
			b64 := gw.post(t, "/v1/embeddings", strings.Replace(body, `"float"`, `"base64"`, 1))
			bv := vectors(t, b64)
			if len(fv) != 2 || len(bv) != 2 {
				t.Fatalf("got %d float and %d base64 vectors, want 2 each", len(fv), len(bv))
			}
			for i := range fv {
				if len(fv[i]) != tc.dims || len(bv[i]) != tc.dims {
					t.Fatalf("vector %d has %d (float) and %d (base64) dims, want %d", i, len(fv[i]), len(bv[i]), tc.dims)
				}
				for j := range fv[i] {
					if fv[i][j] != bv[i][j] {
						t.Fatalf("vector %d: float and base64 forms differ at %d: %v vs %v", i, j, fv[i][j], bv[i][j])
					}
					if tc.want != nil && fv[i][j] != tc.want(i)[j] {
						t.Fatalf("vector %d = %v, the upstream sent %v", i, fv[i], tc.want(i))
					}
				}
			}
			if tc.want != nil {
				wantUp := strings.Replace(strings.Replace(body, `"float"`, `"base64"`, 1), `"`+tc.model+`"`, `"`+tc.model+`-upstream"`, 1)
				if got := string(up.LastBody()); got != wantUp {
					t.Errorf("the upstream got\n%s\nwant\n%s", got, wantUp)
				}
			}
		})
	}
}

// TestConformanceMockProvider: the built-in mock provider's chat answers
// and streams meet the same contract as a relayed upstream.
func TestConformanceMockProvider(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, mockRoutes())
	for _, tc := range []struct {
		name string
		body string
		want streamWant
	}{
		{"stream", `{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}],"stream":true}`, streamWant{}},
		{"stream include_usage", `{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`, streamWant{includeUsage: true}},
		{"stream max_tokens", `{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}],"stream":true,"max_tokens":3}`, streamWant{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := gw.post(t, chatPath, tc.body)
			res := checkStream(t, r, tc.want)
			if res.content == "" {
				t.Errorf("the stream has no content")
			}
			// The same request without stream answers the same content.
			plain := gw.post(t, chatPath, strings.Replace(tc.body, `"stream":true`, `"stream":false`, 1))
			if err := validate(t, "CreateChatCompletionResponse", plain.body); err != nil {
				t.Errorf("%v\n%s", err, plain.body)
			}
			var c struct {
				Choices []struct {
					Message struct{ Content string } `json:"message"`
				} `json:"choices"`
			}
			if err := json.Unmarshal(plain.body, &c); err != nil || len(c.Choices) != 1 || c.Choices[0].Message.Content != res.content {
				t.Errorf("non-streamed content %s, streamed %q", plain.body, res.content)
			}
		})
	}
}

// recordingTB is a testing.TB that records failures instead of failing, to
// prove that the checkers above can fail. Fatal ends the calling goroutine.
type recordingTB struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (r *recordingTB) Helper() {}

func (r *recordingTB) Errorf(format string, args ...any) {
	r.mu.Lock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
	r.mu.Unlock()
}

func (r *recordingTB) Error(args ...any) { r.Errorf("%s", fmt.Sprint(args...)) }

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.Errorf(format, args...)
	runtime.Goexit()
}

func (r *recordingTB) Fatal(args ...any) { r.Fatalf("%s", fmt.Sprint(args...)) }

// failures runs check with a recordingTB and returns what it reported.
func failures(t *testing.T, check func(tb testing.TB)) []string {
	rec := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		check(rec)
	}()
	<-done
	return rec.errs
}

// TestConformanceCheckersCatch feeds the stream and error checkers broken
// answers: each must be reported, and the well-formed ones must not.
func TestConformanceCheckersCatch(t *testing.T) {
	t.Parallel()
	const (
		c1     = `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"hi"},"logprobs":null,"finish_reason":null}]}`
		stop   = `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}`
		usage  = `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}`
		tool1  = `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\""}}]},"logprobs":null,"finish_reason":null}]}`
		tool2  = `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"logprobs":null,"finish_reason":null}]}`
		toolFn = `{"id":"c1","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"tool_calls"}]}`
		errEv  = `{"error":{"message":"boom","type":"server_error","param":null,"code":"upstream_error"}}`
	)
	sse := func(events ...string) []byte {
		var b []byte
		for _, e := range events {
			b = append(b, "data: "+e+"\n\n"...)
		}
		return b
	}
	stream := func(body []byte) reply {
		return reply{status: 200, header: http.Header{"Content-Type": {"text/event-stream; charset=utf-8"}}, body: body}
	}
	streams := []struct {
		name string
		r    reply
		want streamWant
		ok   bool
	}{
		{name: "valid", r: stream(sse(c1, stop, "[DONE]")), ok: true},
		{name: "valid with usage", r: stream(sse(c1, stop, usage, "[DONE]")), want: streamWant{includeUsage: true}, ok: true},
		{name: "valid tool calls", r: stream(sse(tool1, tool2, toolFn, "[DONE]")), ok: true},
		{name: "valid failure", r: stream(sse(c1, errEv)), want: streamWant{failed: true}, ok: true},
		{name: "wrong content type", r: reply{status: 200, header: http.Header{"Content-Type": {"application/json"}}, body: sse(c1, stop, "[DONE]")}},
		{name: "event line", r: stream([]byte("event: chunk\n" + string(sse(c1, stop, "[DONE]"))))},
		{name: "no blank line at the end", r: stream(bytes.TrimSuffix(sse(c1, stop, "[DONE]"), []byte("\n")))},
		{name: "no [DONE]", r: stream(sse(c1, stop))},
		{name: "two [DONE]", r: stream(sse(c1, stop, "[DONE]", "[DONE]"))},
		{name: "usage null without include_usage", r: stream(sse(strings.Replace(c1, `]}`, `],"usage":null}`, 1), stop, "[DONE]"))},
		{name: "usage chunk without include_usage", r: stream(sse(c1, stop, usage, "[DONE]"))},
		{name: "no usage chunk with include_usage", r: stream(sse(c1, stop, "[DONE]")), want: streamWant{includeUsage: true}},
		{name: "usage does not add up", r: stream(sse(c1, stop, strings.Replace(usage, `"total_tokens":3`, `"total_tokens":4`, 1), "[DONE]")), want: streamWant{includeUsage: true}},
		{name: "error key in a chunk", r: stream(sse(strings.Replace(c1, `{"id"`, `{"error":null,"id"`, 1), stop, "[DONE]"))},
		{name: "id changes", r: stream(sse(c1, strings.Replace(stop, `"c1"`, `"c2"`, 1), "[DONE]"))},
		{name: "created changes", r: stream(sse(c1, strings.Replace(stop, `"created":1`, `"created":2`, 1), "[DONE]"))},
		{name: "no finish_reason", r: stream(sse(c1, "[DONE]"))},
		{name: "two finish_reasons", r: stream(sse(c1, stop, stop, "[DONE]"))},
		{name: "chunk off the schema", r: stream(sse(strings.Replace(c1, `"object":"chat.completion.chunk",`, ``, 1), stop, "[DONE]"))},
		{name: "tool fragment without index", r: stream(sse(tool1, strings.Replace(tool2, `"index":0,"function"`, `"function"`, 1), toolFn, "[DONE]"))},
		{name: "first tool fragment without id", r: stream(sse(strings.Replace(tool1, `"id":"call_1",`, ``, 1), tool2, toolFn, "[DONE]"))},
		{name: "tool arguments not JSON", r: stream(sse(tool1, toolFn, "[DONE]"))},
		{name: "tool calls finishing with stop", r: stream(sse(tool1, tool2, stop, "[DONE]"))},
		{name: "failure with [DONE]", r: stream(sse(c1, errEv, "[DONE]")), want: streamWant{failed: true}},
		{name: "failure without error event", r: stream(sse(c1)), want: streamWant{failed: true}},
	}
	for _, tc := range streams {
		t.Run("stream/"+tc.name, func(t *testing.T) {
			errs := failures(t, func(tb testing.TB) { checkStream(tb, tc.r, tc.want) })
			if tc.ok && len(errs) > 0 {
				t.Errorf("checkStream reported a well-formed stream: %q", errs)
			}
			if !tc.ok && len(errs) == 0 {
				t.Errorf("checkStream accepted %q", tc.r.body)
			}
		})
	}

	const e401 = `{"error":{"message":"bad key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}`
	hdr := func(kv ...string) http.Header {
		h := http.Header{}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	w401 := wantError{status: 401, typ: "invalid_request_error", code: "invalid_api_key", noRetry: true}
	w429 := wantError{status: 429, typ: "requests", code: "rate_limit_exceeded"}
	e429 := `{"error":{"message":"slow down","type":"requests","param":null,"code":"rate_limit_exceeded"}}`
	errorsTable := []struct {
		name string
		r    reply
		want wantError
		ok   bool
	}{
		{name: "valid", r: reply{401, hdr("Content-Type", "application/json", "X-Request-Id", "r", "X-Should-Retry", "false"), []byte(e401)}, want: w401, ok: true},
		{name: "valid 429", r: reply{429, hdr("Content-Type", "application/json", "X-Request-Id", "r", "Retry-After", "3"), []byte(e429)}, want: w429, ok: true},
		{name: "wrong status", r: reply{403, hdr("Content-Type", "application/json", "X-Request-Id", "r", "X-Should-Retry", "false"), []byte(e401)}, want: w401},
		{name: "text content type", r: reply{401, hdr("Content-Type", "text/plain", "X-Request-Id", "r", "X-Should-Retry", "false"), []byte(e401)}, want: w401},
		{name: "no request id", r: reply{401, hdr("Content-Type", "application/json", "X-Should-Retry", "false"), []byte(e401)}, want: w401},
		{name: "no x-should-retry", r: reply{401, hdr("Content-Type", "application/json", "X-Request-Id", "r"), []byte(e401)}, want: w401},
		{name: "param missing", r: reply{401, hdr("Content-Type", "application/json", "X-Request-Id", "r", "X-Should-Retry", "false"), []byte(strings.Replace(e401, `"param":null,`, ``, 1))}, want: w401},
		{name: "wrong code", r: reply{401, hdr("Content-Type", "application/json", "X-Request-Id", "r", "X-Should-Retry", "false"), []byte(strings.Replace(e401, `invalid_api_key`, `nope`, 1))}, want: w401},
		{name: "not the OpenAI shape", r: reply{401, hdr("Content-Type", "application/json", "X-Request-Id", "r", "X-Should-Retry", "false"), []byte(`{"message":"bad key"}`)}, want: w401},
		{name: "429 without Retry-After", r: reply{429, hdr("Content-Type", "application/json", "X-Request-Id", "r"), []byte(e429)}, want: w429},
		{name: "429 with a fractional Retry-After", r: reply{429, hdr("Content-Type", "application/json", "X-Request-Id", "r", "Retry-After", "0.5"), []byte(e429)}, want: w429},
		{name: "x-should-retry false on a retryable error", r: reply{429, hdr("Content-Type", "application/json", "X-Request-Id", "r", "Retry-After", "3", "X-Should-Retry", "false"), []byte(e429)}, want: w429},
	}
	for _, tc := range errorsTable {
		t.Run("error/"+tc.name, func(t *testing.T) {
			errs := failures(t, func(tb testing.TB) { checkError(tb, tc.r, tc.want) })
			if tc.ok && len(errs) > 0 {
				t.Errorf("checkError reported a well-formed error: %q", errs)
			}
			if !tc.ok && len(errs) == 0 {
				t.Errorf("checkError accepted %d %v %s", tc.r.status, tc.r.header, tc.r.body)
			}
		})
	}
}

// pythonJSON re-spaces compact JSON as Python's json.dumps writes it
// (", " and ": "), as OpenAI-compatible servers built on it (LiteLLM and
// others) send their chunks.
func pythonJSON(b []byte) []byte {
	var out []byte
	inString, escaped := false, false
	for _, c := range b {
		out = append(out, c)
		switch {
		case inString && escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ',' || c == ':'):
			out = append(out, ' ')
		}
	}
	return out
}

// meteredTokens reads mtai_tokens_total{kind,model} from /metrics.
func meteredTokens(t *testing.T, gw *testGateway, kind, model string) float64 {
	t.Helper()
	r := gw.do(t, http.MethodGet, "/metrics", "", "Authorization", noKey)
	prefix := `mtai_tokens_total{kind="` + kind + `",model="` + model + `"} `
	for _, line := range strings.Split(string(r.body), "\n") {
		if v, ok := strings.CutPrefix(line, prefix); ok {
			var f float64
			fmt.Sscan(v, &f)
			return f
		}
	}
	return 0
}

// TestConformanceUpstreamFraming: whatever valid SSE an OpenAI-compatible
// upstream writes (CRLF line ends, comments, "data:" without a space, JSON
// with spaces, an event's data over several lines), the client gets OpenAI's
// framing, the usage chunk is still hidden from clients that did not ask
// for it, and the usage is still metered.
func TestConformanceUpstreamFraming(t *testing.T) {
	t.Parallel()
	original := providerstest.Sample(t, "openai/chat-stream-include-usage.sse")
	events := providerstest.Events(original)
	rebuild := func(f func(ev []byte) string) []byte {
		var b strings.Builder
		for _, ev := range events {
			b.WriteString(f(ev))
		}
		return []byte(b.String())
	}
	tests := []struct {
		name       string
		transcript []byte
		exact      bool // the payloads must equal the original's byte for byte
	}{
		{name: "crlf", exact: true, transcript: rebuild(func(ev []byte) string { return "data: " + string(ev) + "\r\n\r\n" })},
		{name: "comments and no space", exact: true, transcript: rebuild(func(ev []byte) string {
			return ": keep-alive\n\ndata:" + string(ev) + "\n\n"
		})},
		{name: "python spacing", transcript: rebuild(func(ev []byte) string {
			if string(ev) == providerstest.Done {
				return "data: [DONE]\n\n"
			}
			return "data: " + string(pythonJSON(ev)) + "\n\n"
		})},
		{name: "data over two lines", transcript: rebuild(func(ev []byte) string {
			s := string(ev)
			if i := strings.Index(s, `,"object"`); i > 0 {
				return "data: " + s[:i+1] + "\ndata: " + s[i+1:] + "\n\n"
			}
			return "data: " + s + "\n\n"
		})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := providerstest.NewUpstream(t)
			up.SetTranscript(tc.transcript)
			gw := startGateway(t, []providers.ModelConfig{upstreamRoute("gpt-4o", up)})
			for _, includeUsage := range []bool{false, true} {
				body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}`
				if includeUsage {
					body = `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true,"stream_options":{"include_usage":true}}`
				}
				res := checkStream(t, gw.post(t, chatPath, body), streamWant{includeUsage: includeUsage})
				if res.content != "Hello!" {
					t.Errorf("include_usage=%v: content %q, want %q", includeUsage, res.content, "Hello!")
				}
				want := transcriptEvents(original, includeUsage)
				if len(res.payloads) != len(want) {
					t.Errorf("include_usage=%v: %d events, want %d", includeUsage, len(res.payloads), len(want))
					continue
				}
				if tc.exact {
					for i := range want {
						if !bytes.Equal(res.payloads[i], want[i]) {
							t.Errorf("include_usage=%v: event %d\n got %s\nwant %s", includeUsage, i, res.payloads[i], want[i])
						}
					}
				}
			}
			// Both streams are billed: 19 prompt and 2 completion tokens each.
			deadline := time.Now().Add(2 * time.Second)
			var prompt, completion float64
			for time.Now().Before(deadline) {
				prompt, completion = meteredTokens(t, gw, "prompt", "gpt-4o"), meteredTokens(t, gw, "completion", "gpt-4o")
				if prompt == 38 && completion == 4 {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if prompt != 38 || completion != 4 {
				t.Errorf("metered %v prompt and %v completion tokens for two streams, want 38 and 4", prompt, completion)
			}
		})
	}
}

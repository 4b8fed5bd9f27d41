package gateway

// Upstream errors as tenants see them (upstreamAPIError): an upstream's
// words are written to the operator's account, so the tenant never reads
// the operator's key prefix, organisation, project, AWS account or the
// upstream's request ids, while its own mistakes keep their status, type,
// code and param; the operator's log line has the original.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mtai-dev/mtai/providers/providerstest"
)

// operatorSecrets appear in the upstreams' messages of the cases below and
// must never reach a tenant.
var operatorSecrets = []string{"sk-proj", "sk-ant", "org-AbC123xyz", "org-XXXX", "proj_Q1w2E3r4T5y6", "acct_9ZyX8wV7",
	"req_540c6eaab7f4556b2baa22bcba915d51", "req_011CSHoEeqs5C35K2UUqR7Fy", "123456789012", "AKIAIOSFODNN7EXAMPLE",
	"5a0b2c1d-3e4f-4a5b-8c7d-9e0f1a2b3c4d"}

func openAIErrorBody(message, typ, param, code string) []byte {
	b, _ := json.Marshal(map[string]any{"error": map[string]any{"message": message, "type": typ,
		"param": nullIfEmpty(param), "code": nullIfEmpty(code)}})
	return b
}

func anthropicErrorBody(typ, message string) []byte {
	b, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]string{"type": typ, "message": message},
		"request_id": "req_011CSHoEeqs5C35K2UUqR7Fy"})
	return b
}

func nullIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// TestUpstreamErrorsHideOperatorSecrets sends each failure of the OpenAI,
// Anthropic and Bedrock fakes through /v1/chat/completions (OpenAI's
// shape) and /v1/messages (Anthropic's), plain and streamed.
func TestUpstreamErrorsHideOperatorSecrets(t *testing.T) {
	const (
		keyMsg     = "Incorrect API key provided: sk-proj-abc***xyz. You can find your API key at https://platform.openai.com/account/api-keys."
		projectMsg = "Project proj_Q1w2E3r4T5y6 in organization org-AbC123xyz does not have access to model gpt-4o-mini"
		contextMsg = "This model's maximum context length is 128000 tokens. However, your messages resulted in 130512 tokens (account acct_9ZyX8wV7)."
		antLongMsg = "prompt is too long: 210000 tokens > 200000 maximum (organization 5a0b2c1d-3e4f-4a5b-8c7d-9e0f1a2b3c4d)"
		billingMsg = "Your credit balance is too low for organization 5a0b2c1d-3e4f-4a5b-8c7d-9e0f1a2b3c4d."
		arnMsg     = "User: arn:aws:iam::123456789012:user/ops is not authorized to perform: bedrock:InvokeModel"
		tokenMsg   = "The security token included in the request is invalid: AKIAIOSFODNN7EXAMPLE"
		validMsg   = "Malformed input request: #: extraneous key [foo] is not permitted (account 123456789012)"
		midMsg     = "Rate limit reached in organization org-AbC123xyz; see req_540c6eaab7f4556b2baa22bcba915d51"
	)
	quota := providerstest.Sample(t, "openai/error-429-insufficient-quota.json")
	rateLimit := providerstest.Sample(t, "openai/error-429-rate-limit.json")
	openAIMid := bytes.Replace(providerstest.Sample(t, "openai/chat-stream-error-midstream.sse"),
		[]byte(`{"error":{"message":"The server had an error while processing your request. Sorry about that!","type":"server_error","param":null,"code":null}}`),
		openAIErrorBody(midMsg, "tokens", "", "rate_limit_exceeded"), 1)
	antMid := bytes.Replace(providerstest.Sample(t, "anthropic/messages-stream-error-midstream.sse"),
		[]byte(`{"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}`),
		anthropicErrorBody("api_error", billingMsg), 1)
	brMid := []providerstest.BedrockEvent{providerstest.BedrockTextStream[0], providerstest.BedrockTextStream[1],
		{Type: "internalServerException", Exception: true, Payload: `{"message":"` + arnMsg + `"}`}}

	cases := []struct {
		name  string
		model string
		setup func(e *msgEnv)
		// midstream: the failure comes after the stream started (stream variants only)
		midstream bool
		// what the tenant gets on /v1/chat/completions, and error.type on /v1/messages
		status             int
		typ, code, param   string
		antType            string
		keep               string // a part of the upstream's message the tenant must still read
		original           string // the upstream's message, in the operator's log
		level              zapcore.Level
		upstreamRetryAfter string
	}{
		{name: "openai refuses the key", model: "gpt", setup: func(e *msgEnv) {
			e.oa.Fail(providerstest.Failure{Status: 401, Body: openAIErrorBody(keyMsg, "invalid_request_error", "", "invalid_api_key")})
		}, status: 502, typ: "server_error", code: "upstream_auth_failed", antType: "api_error", original: keyMsg, level: zapcore.WarnLevel},
		{name: "openai project without access", model: "gpt", setup: func(e *msgEnv) {
			e.oa.Fail(providerstest.Failure{Status: 403, Body: openAIErrorBody(projectMsg, "invalid_request_error", "", "model_not_found")})
		}, status: 502, typ: "server_error", code: "upstream_permission_denied", antType: "api_error", original: projectMsg, level: zapcore.WarnLevel},
		{name: "openai account out of quota", model: "gpt", setup: func(e *msgEnv) {
			e.oa.Fail(providerstest.Failure{Status: 429, Body: quota})
		}, status: 502, typ: "server_error", code: "upstream_quota_exceeded", antType: "api_error",
			original: "You exceeded your current quota, please check your plan and billing details.", level: zapcore.WarnLevel},
		{name: "openai rate limit of the operator's organisation", model: "gpt", setup: func(e *msgEnv) {
			e.oa.Fail(providerstest.Failure{Status: 429, Header: http.Header{"Retry-After": {"20"}}, Body: rateLimit})
		}, status: 429, typ: "tokens", code: "rate_limit_exceeded", antType: "rate_limit_error", upstreamRetryAfter: "20",
			original: "Rate limit reached for gpt-4o in organization org-XXXX", level: zapcore.WarnLevel},
		{name: "openai context too long (the tenant's fault)", model: "gpt", setup: func(e *msgEnv) {
			e.oa.Fail(providerstest.Failure{Status: 400, Body: openAIErrorBody(contextMsg, "invalid_request_error", "messages", "context_length_exceeded")})
		}, status: 400, typ: "invalid_request_error", code: "context_length_exceeded", param: "messages", antType: "invalid_request_error",
			keep: "maximum context length is 128000 tokens", original: contextMsg, level: zapcore.InfoLevel},
		{name: "openai content policy (the tenant's fault)", model: "gpt", setup: func(e *msgEnv) {
			e.oa.Fail(providerstest.Failure{Status: 400, Body: openAIErrorBody("Your request was rejected as a result of our safety system (request req_540c6eaab7f4556b2baa22bcba915d51).",
				"invalid_request_error", "prompt", "content_policy_violation")})
		}, status: 400, typ: "invalid_request_error", code: "content_policy_violation", param: "prompt", antType: "invalid_request_error",
			keep: "rejected as a result of our safety system", original: "rejected as a result of our safety system", level: zapcore.InfoLevel},
		{name: "anthropic refuses the key", model: "claude", setup: func(e *msgEnv) {
			e.an.Fail(providerstest.Failure{Status: 401, Body: anthropicErrorBody("authentication_error", "invalid x-api-key sk-ant-api03-AbCdEf")})
		}, status: 502, typ: "server_error", code: "upstream_auth_failed", antType: "api_error", original: "invalid x-api-key sk-ant-api03-AbCdEf", level: zapcore.WarnLevel},
		{name: "anthropic billing", model: "claude", setup: func(e *msgEnv) {
			e.an.Fail(providerstest.Failure{Status: 402, Body: anthropicErrorBody("billing_error", billingMsg)})
		}, status: 502, typ: "server_error", code: "upstream_quota_exceeded", antType: "api_error", original: billingMsg, level: zapcore.WarnLevel},
		{name: "anthropic prompt too long (the tenant's fault)", model: "claude", setup: func(e *msgEnv) {
			e.an.Fail(providerstest.Failure{Status: 400, Body: anthropicErrorBody("invalid_request_error", antLongMsg)})
		}, status: 400, typ: "invalid_request_error", antType: "invalid_request_error", keep: "prompt is too long: 210000 tokens > 200000 maximum",
			original: antLongMsg, level: zapcore.InfoLevel},
		{name: "bedrock access denied", model: "nova", setup: func(e *msgEnv) {
			e.br.Fail(403, "AccessDeniedException", arnMsg)
		}, status: 502, typ: "server_error", code: "upstream_permission_denied", antType: "api_error", original: arnMsg, level: zapcore.WarnLevel},
		{name: "bedrock bad credentials", model: "nova", setup: func(e *msgEnv) {
			e.br.Fail(403, "UnrecognizedClientException", tokenMsg)
		}, status: 502, typ: "server_error", code: "upstream_auth_failed", antType: "api_error", original: tokenMsg, level: zapcore.WarnLevel},
		{name: "bedrock validation (the tenant's fault)", model: "nova", setup: func(e *msgEnv) {
			e.br.Fail(400, "ValidationException", validMsg)
		}, status: 400, typ: "invalid_request_error", antType: "invalid_request_error", keep: "extraneous key [foo] is not permitted",
			original: validMsg, level: zapcore.InfoLevel},
		{name: "openai error event mid-stream", model: "gpt", midstream: true, setup: func(e *msgEnv) { e.oa.SetTranscript(openAIMid) },
			status: 200, typ: "tokens", code: "rate_limit_exceeded", antType: "rate_limit_error", original: midMsg, level: zapcore.WarnLevel},
		{name: "anthropic error event mid-stream", model: "claude", midstream: true, setup: func(e *msgEnv) { e.an.SetTranscript(antMid) },
			status: 200, typ: "server_error", code: "upstream_error", antType: "api_error", original: billingMsg, level: zapcore.WarnLevel},
		{name: "bedrock exception mid-stream", model: "nova", midstream: true, setup: func(e *msgEnv) { e.br.SetEvents(brMid) },
			status: 200, typ: "server_error", code: "upstream_error", antType: "api_error", original: arnMsg, level: zapcore.WarnLevel},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newMsgEnv(t, nil)
			tc.setup(e)
			for _, path := range []string{"/v1/chat/completions", "/v1/messages"} {
				for _, stream := range []bool{false, true} {
					if tc.midstream && !stream {
						continue
					}
					what := fmt.Sprintf("%s stream=%v", path, stream)
					body := fmt.Sprintf(`{"model":%q,"max_tokens":16,"stream":%v,"messages":[{"role":"user","content":"hi"}]}`, tc.model, stream)
					resp, out := e.post(t, path, body)
					for _, s := range operatorSecrets {
						if bytes.Contains(out, []byte(s)) {
							t.Errorf("%s: the tenant reads %q: %s", what, s, out)
						}
						for k, vs := range resp.Header {
							if strings.Contains(strings.Join(vs, " "), s) {
								t.Errorf("%s: header %s carries %q", what, k, s)
							}
						}
					}
					if resp.StatusCode != tc.status {
						t.Errorf("%s: status %d, want %d: %s", what, resp.StatusCode, tc.status, out)
					}
					if tc.upstreamRetryAfter != "" && resp.Header.Get("Retry-After") != tc.upstreamRetryAfter {
						t.Errorf("%s: Retry-After %q, want the upstream's %q", what, resp.Header.Get("Retry-After"), tc.upstreamRetryAfter)
					}
					msg := checkTenantError(t, what, path, tc.midstream, out, tc.typ, tc.code, tc.param, tc.antType)
					if tc.keep != "" && (!strings.Contains(msg, tc.keep) || !strings.Contains(msg, redacted)) {
						t.Errorf("%s: message %q, want the upstream's (%q) with its ids redacted", what, msg, tc.keep)
					}
					checkOperatorLog(t, what, e.logs, resp.Header.Get("X-Request-Id"), tc.level, tc.original)
				}
			}
		})
	}
}

// checkTenantError reads the error the tenant got, as a JSON answer or as
// the final event of a stream, in OpenAI's shape (/v1/chat/completions) or
// Anthropic's (/v1/messages), checks its type (and code and param), and
// returns its message.
func checkTenantError(t *testing.T, what, path string, midstream bool, out []byte, typ, code, param, antType string) string {
	t.Helper()
	payload := out
	if midstream {
		i := bytes.LastIndex(out, []byte("data: "))
		if i < 0 {
			t.Errorf("%s: no event in %s", what, out)
			return ""
		}
		payload = bytes.TrimSpace(out[i+len("data: "):])
		if path == "/v1/messages" && !bytes.Contains(out[:i], []byte("event: error\n")) {
			t.Errorf("%s: the last event is not an error event: %s", what, out)
		}
	}
	if path == "/v1/messages" {
		var a struct {
			Type  string `json:"type"`
			Error struct{ Type, Message string }
		}
		if err := json.Unmarshal(payload, &a); err != nil || a.Type != "error" || a.Error.Type != antType || a.Error.Message == "" {
			t.Errorf("%s: %s, want an Anthropic error of type %s (%v)", what, payload, antType, err)
		}
		return a.Error.Message
	}
	var o struct {
		Error struct {
			Message, Type string
			Code, Param   *string
		}
	}
	if err := json.Unmarshal(payload, &o); err != nil {
		t.Errorf("%s: %s is not an OpenAI error: %v", what, payload, err)
		return ""
	}
	got := o.Error
	if got.Type != typ || deref(got.Code) != code || deref(got.Param) != param || got.Message == "" {
		t.Errorf("%s: error %s, want type %q code %q param %q", what, payload, typ, code, param)
	}
	return got.Message
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// checkOperatorLog waits for the "upstream error" line of the request
// (a stream's is written once the stream ends) and checks that it has the
// upstream's own message, at level.
func checkOperatorLog(t *testing.T, what string, logs *observer.ObservedLogs, requestID string, level zapcore.Level, original string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, l := range logs.FilterMessage("upstream error").FilterField(stringField("request_id", requestID)).All() {
			m := l.ContextMap()
			msg, _ := m["upstream_message"].(string)
			if l.Level != level || !strings.Contains(msg, original) || m["deployment"] == "" || m["tenant"] != "t1" {
				t.Errorf("%s: operator log %v at %v, want the upstream's message %q at %v", what, m, l.Level, original, level)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%s: no \"upstream error\" log line for request %s", what, requestID)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func stringField(key, value string) zapcore.Field {
	return zapcore.Field{Key: key, Type: zapcore.StringType, String: value}
}

package gateway

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/mtai-dev/mtai/tenancy"
)

// TestChatSplice checks the body the upstream receives: only the model,
// stream_options and the tenant's additions change; every other byte is
// the client's.
func TestChatSplice(t *testing.T) {
	cases := []struct {
		name   string
		policy *tenancy.Policy
		in     string
		want   string
	}{
		{"same model untouched", nil,
			`{"model":"same","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"logprobs":true}`,
			`{"model":"same","messages":[{"role":"user","content":"hi"}],"tools":[{"type":"function","function":{"name":"f","parameters":{}}}],"logprobs":true}`},
		{"alias rewritten", nil,
			`{"messages":[{"role":"user","content":"hi"}], "model" : "alias","response_format":{"type":"json_object"}}`,
			`{"messages":[{"role":"user","content":"hi"}], "model" : "up-model","response_format":{"type":"json_object"}}`},
		{"stream gets include_usage", nil,
			`{"model":"same","stream":true,"messages":[{"role":"user","content":"hi"}]}`,
			`{"model":"same","stream":true,"messages":[{"role":"user","content":"hi"}],"stream_options":{"include_usage":true}}`},
		{"stream_options empty", nil,
			`{"model":"alias","stream":true,"stream_options":{ },"messages":[{"role":"user","content":"hi"}]}`,
			`{"model":"up-model","stream":true,"stream_options":{"include_usage":true },"messages":[{"role":"user","content":"hi"}]}`},
		{"stream_options other field", nil,
			`{"model":"same","stream":true,"stream_options":{"include_obfuscation":false},"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"same","stream":true,"stream_options":{"include_usage":true,"include_obfuscation":false},"messages":[{"role":"user","content":"x"}]}`},
		{"include_usage false", nil,
			`{"model":"same","stream":true,"stream_options":{"include_usage":false},"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"same","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`},
		{"stream_options null", nil,
			`{"model":"same","stream":true,"stream_options":null,"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"same","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`},
		{"client asked usage: untouched", nil,
			`{"model":"same","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"same","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"x"}]}`},
		{"default model inserted", &tenancy.Policy{DefaultModel: "alias"},
			`{"messages":[{"role":"user","content":"x"}]}`,
			`{"model":"up-model","messages":[{"role":"user","content":"x"}]}`},
		{"empty model uses default", &tenancy.Policy{DefaultModel: "same"},
			`{"model":"","messages":[{"role":"user","content":"x"}]}`,
			`{"model":"same","messages":[{"role":"user","content":"x"}]}`},
		{"system prompt first", &tenancy.Policy{SystemPrompt: "Be \"brief\"."},
			`{"model":"alias","messages":[{"role":"user","content":"x"}],"stream":true}`,
			`{"model":"up-model","messages":[{"role":"system","content":"Be \"brief\"."},{"role":"user","content":"x"}],"stream":true,"stream_options":{"include_usage":true}}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{answer: answerJSON, events: [][]byte{[]byte(`{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[]}`)}}
			s := newTestServer(t, rec, tc.policy)
			resp := do(s.Handler(), "POST", "/v1/chat/completions", tc.in)
			if resp.StatusCode() != 200 {
				t.Fatalf("status %d: %s", resp.StatusCode(), resp.Body())
			}
			got := string(rec.last())
			if got != tc.want {
				t.Errorf("upstream body\n got %s\nwant %s", got, tc.want)
			}
			if !json.Valid(rec.last()) {
				t.Errorf("upstream body is not valid JSON: %s", got)
			}
		})
	}
}

func TestChatRequestErrors(t *testing.T) {
	cases := []struct {
		name   string
		policy *tenancy.Policy
		body   string
		key    string
		status int
		code   string
		param  string
	}{
		{"malformed", nil, `{"model":"same","messages":[}`, testKey, 400, "", ""},
		{"not an object", nil, `[1]`, testKey, 400, "", ""},
		{"trailing data", nil, `{"model":"same","messages":[{"role":"user","content":"x"}]} x`, testKey, 400, "", ""},
		{"missing messages", nil, `{"model":"same"}`, testKey, 400, "", "messages"},
		{"empty messages", nil, `{"model":"same","messages":[]}`, testKey, 400, "", "messages"},
		{"messages not array", nil, `{"model":"same","messages":"hi"}`, testKey, 400, "", "messages"},
		{"missing model", nil, `{"messages":[{"role":"user","content":"x"}]}`, testKey, 400, "", "model"},
		{"model not string", nil, `{"model":3,"messages":[{"role":"user","content":"x"}]}`, testKey, 400, "", "model"},
		{"temperature high", nil, `{"model":"same","temperature":2.5,"messages":[{"role":"user","content":"x"}]}`, testKey, 400, "", "temperature"},
		{"temperature negative", nil, `{"model":"same","temperature":-1,"messages":[{"role":"user","content":"x"}]}`, testKey, 400, "", "temperature"},
		{"temperature string", nil, `{"model":"same","temperature":"hot","messages":[{"role":"user","content":"x"}]}`, testKey, 400, "", "temperature"},
		{"max_tokens zero", nil, `{"model":"same","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`, testKey, 400, "", "max_tokens"},
		{"stream not bool", nil, `{"model":"same","stream":"yes","messages":[{"role":"user","content":"x"}]}`, testKey, 400, "", "stream"},
		{"unknown model", nil, `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, testKey, 404, "model_not_found", "model"},
		{"embeddings model", nil, `{"model":"embed","messages":[{"role":"user","content":"x"}]}`, testKey, 400, "", "model"},
		{"not allowed", &tenancy.Policy{AllowedModels: []string{"alias"}}, `{"model":"same","messages":[{"role":"user","content":"x"}]}`, testKey, 403, "model_not_allowed", "model"},
		{"wrong key", nil, `{"model":"same","messages":[{"role":"user","content":"x"}]}`, "sk-wrong", 401, "invalid_api_key", ""},
		{"no key", nil, `{"model":"same","messages":[{"role":"user","content":"x"}]}`, "", 401, "invalid_api_key", ""},
		{"too large", nil, `{"model":"same","messages":[{"role":"user","content":"` + strings.Repeat("x", 70<<10) + `"}]}`, testKey, 413, "request_too_large", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{answer: answerJSON}
			s := newTestServer(t, rec, tc.policy)
			var resp = doWithKey(t, s, tc.body, tc.key)
			if resp.StatusCode() != tc.status {
				t.Fatalf("status = %d, want %d: %s", resp.StatusCode(), tc.status, resp.Body())
			}
			if ct := string(resp.Header.ContentType()); ct != "application/json" {
				t.Errorf("content type %q", ct)
			}
			if len(resp.Header.Peek("X-Request-ID")) == 0 {
				t.Error("no x-request-id")
			}
			_, code, param := errorOf(t, resp.Body())
			if code != tc.code {
				t.Errorf("code = %q, want %q", code, tc.code)
			}
			if tc.param != "" && (param == nil || *param != tc.param) {
				t.Errorf("param = %v, want %q", param, tc.param)
			}
			if len(rec.bodies) != 0 {
				t.Errorf("upstream was called %d times for a refused request", len(rec.bodies))
			}
		})
	}
}

func TestAllowedHosts(t *testing.T) {
	rec := &recorder{answer: answerJSON}
	router := newTestServer(t, rec, nil).router
	s, err := New(Options{Config: Config{Addr: "127.0.0.1:0", AllowedHosts: []string{"api.example.com"}}, Router: router,
		Keys: &policyKeys{p: &tenancy.Principal{Tenant: "t1"}}})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"model":"same","messages":[{"role":"user","content":"x"}]}`
	if resp := do(s.Handler(), "POST", "/v1/chat/completions", body, "Host", "evil.example.com"); resp.StatusCode() != 400 {
		t.Errorf("other host: status %d", resp.StatusCode())
	}
	if resp := do(s.Handler(), "POST", "/v1/chat/completions", body, "Host", "API.example.com:443"); resp.StatusCode() != 200 {
		t.Errorf("allowed host: status %d %s", resp.StatusCode(), resp.Body())
	}
}

package gateway

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"
	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/mock"
	"github.com/mtai-dev/mtai/providers/providerstest"
	"github.com/mtai-dev/mtai/tenancy"
	"github.com/mtai-dev/mtai/tenancy/ratelimit"
)

const countPolicyPrompt = "You are the ACME assistant. Answer in French."

// TestCountTokensSDK: anthropic-sdk-go's Messages.CountTokens through the
// gateway, to an Anthropic deployment (counted upstream, the tenant's
// system prompt included) and to others (counted locally with tiktoken).
func TestCountTokensSDK(t *testing.T) {
	policy := &tenancy.Policy{SystemPrompt: countPolicyPrompt, AllowedModels: []string{"claude", "gpt", "nova", "mock", "embed"}}
	e := newMsgEnv(t, policy, providers.ModelConfig{Name: "forbidden", Deployments: []providers.DeploymentConfig{{Name: "f", Provider: "mock"}}})
	client := msgSDK(e, testKey)
	question := []sdk.MessageParam{sdk.NewUserMessage(sdk.NewTextBlock("What is the weather in Paris?"))}
	weather := sdk.MessageCountTokensToolUnionParam{OfTool: &sdk.ToolParam{Name: "get_weather",
		InputSchema: sdk.ToolInputSchemaParam{Properties: map[string]any{"city": map[string]any{"type": "string"}}}}}
	params := func(model string, tools bool) sdk.MessageCountTokensParams {
		p := sdk.MessageCountTokensParams{Model: sdk.Model(model), Messages: question,
			System: sdk.MessageCountTokensParamsSystemUnion{OfString: sdk.String("Be brief.")}}
		if tools {
			p.Tools = []sdk.MessageCountTokensToolUnionParam{weather}
		}
		return p
	}

	t.Run("anthropic deployment counts upstream", func(t *testing.T) {
		res, err := client.Messages.CountTokens(msgCtx(t), params("claude", true))
		if err != nil {
			t.Fatal(err)
		}
		reqs := e.an.Requests()
		if len(reqs) != 1 || reqs[0].Path != "/v1/messages/count_tokens" {
			t.Fatalf("the Anthropic fake got %+v, want one count_tokens request", reqs)
		}
		var up struct {
			Model  string
			System json.RawMessage
			Tools  []struct{ Name string }
		}
		if err := json.Unmarshal(reqs[0].Body, &up); err != nil {
			t.Fatal(err)
		}
		if up.Model != msgUpAnthropic || !strings.Contains(string(up.System), countPolicyPrompt) ||
			!strings.Contains(string(up.System), "Be brief.") || len(up.Tools) != 1 || up.Tools[0].Name != "get_weather" {
			t.Errorf("upstream count body %s, want the deployment's model, the tenant's and the client's system prompts, the tool", reqs[0].Body)
		}
		if want := int64(providerstest.CountTokens(reqs[0].Body)); res.InputTokens != want {
			t.Errorf("input_tokens = %d, want the upstream's %d", res.InputTokens, want)
		}
	})

	t.Run("other deployments count locally", func(t *testing.T) {
		res, err := client.Messages.CountTokens(msgCtx(t), params("gpt", false))
		if err != nil {
			t.Fatal(err)
		}
		// What the OpenAI deployment would get: the tenant's prompt first.
		sent := `{"model":"` + msgUpOpenAI + `","messages":[{"role":"system","content":"` + countPolicyPrompt + `"},` +
			`{"role":"system","content":"Be brief."},{"role":"user","content":"What is the weather in Paris?"}]}`
		want := billing.NewTokenizer().PromptTokens(msgUpOpenAI, []byte(sent))
		if res.InputTokens != want || want < 20 {
			t.Errorf("input_tokens = %d, want tiktoken's %d", res.InputTokens, want)
		}
		withTools, err := client.Messages.CountTokens(msgCtx(t), params("gpt", true))
		if err != nil || withTools.InputTokens <= res.InputTokens {
			t.Errorf("with a tool: %v, %v; want more than %d tokens", withTools, err, res.InputTokens)
		}
		for _, model := range []string{"nova", "mock"} {
			if res, err := client.Messages.CountTokens(msgCtx(t), params(model, false)); err != nil || res.InputTokens < 20 {
				t.Errorf("%s: %v, %v; want a count", model, res, err)
			}
		}
		if n, m := e.oa.Count(""), len(e.br.Requests()); n != 0 || m != 0 {
			t.Errorf("the OpenAI and Bedrock fakes got %d and %d requests, want none", n, m)
		}
	})

	t.Run("errors in Anthropic's shape", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			client sdk.Client
			params sdk.MessageCountTokensParams
			status int
			typ    string
		}{
			{"model not allowed", client, params("forbidden", false), 403, "permission_error"},
			{"unknown model", client, params("no-such-model", false), 404, "not_found_error"},
			{"embeddings model", client, params("embed", false), 400, "invalid_request_error"},
			{"no messages", client, sdk.MessageCountTokensParams{Model: "gpt"}, 400, "invalid_request_error"},
			{"wrong key", msgSDK(e, "sk-wrong"), params("gpt", false), 401, "authentication_error"},
		} {
			_, err := tc.client.Messages.CountTokens(msgCtx(t), tc.params)
			var ae *sdk.Error
			if !errors.As(err, &ae) || ae.StatusCode != tc.status || string(ae.Type()) != tc.typ || ae.RequestID == "" {
				t.Errorf("%s: %v, want a %d %s with a request id", tc.name, err, tc.status, tc.typ)
			}
		}
		// The upstream refusing the gateway's key is the operator's business.
		e.an.Fail(providerstest.Failure{Status: 401, Body: anthropicErrorBody("authentication_error", "invalid x-api-key sk-ant-api03-AbCdEf")})
		_, err := client.Messages.CountTokens(msgCtx(t), params("claude", false))
		var ae *sdk.Error
		if !errors.As(err, &ae) || ae.StatusCode != 502 || ae.Type() != "api_error" || strings.Contains(err.Error(), "sk-ant") {
			t.Errorf("upstream refusing the key: %v, want a 502 api_error without the key", err)
		}
		e.an.FailFirst(0, providerstest.Failure{})
	})

	for _, ev := range e.meter.all() {
		if ev.Endpoint == routeCountTokens {
			t.Errorf("a count was metered: %+v", ev)
		}
	}
}

// TestCountTokensLimits: a count takes a request from the tenant's
// request buckets, and no tokens: a tokens-per-minute limit that refuses
// any completion lets counts through.
func TestCountTokensLimits(t *testing.T) {
	router, err := providers.NewRouter(providers.Config{Models: []providers.ModelConfig{
		{Name: "mock", Deployments: []providers.DeploymentConfig{{Provider: "mock"}}}}},
		map[string]providers.Factory{"mock": func(d providers.DeploymentConfig) (providers.Provider, error) { return mock.New(d) }})
	if err != nil {
		t.Fatal(err)
	}
	lim, err := NewLimiter(LimiterOptions{Backend: ratelimit.NewLocal(ratelimit.LocalOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	policy := &tenancy.Policy{RequestsPerMinute: 2, TokensPerMinute: 5, MonthlyBudget: 1}
	s, err := New(Options{Config: Config{Addr: "127.0.0.1:0"}, Router: router, Limiter: lim,
		Keys: &policyKeys{p: &tenancy.Principal{Tenant: "t1", TenantID: 1, Role: tenancy.RoleMember, Policy: policy}}})
	if err != nil {
		t.Fatal(err)
	}
	h := s.Handler()
	msg := `{"model":"mock","max_tokens":5,"messages":[{"role":"user","content":"hello there"}]}`
	if r := do(h, "POST", "/v1/messages", msg); r.StatusCode() != 429 {
		t.Fatalf("a message past the tokens limit: %d %s, want 429", r.StatusCode(), r.Body())
	}
	count := `{"model":"mock","messages":[{"role":"user","content":"hello there"}]}`
	for i := 1; i <= 2; i++ {
		r := do(h, "POST", "/v1/messages/count_tokens", count)
		if r.StatusCode() != 200 {
			t.Fatalf("count %d: %d %s, want 200", i, r.StatusCode(), r.Body())
		}
		checkSchema(t, "CountTokensResponse", r.Body())
		if got := string(r.Header.Peek("x-ratelimit-remaining-requests")); got != string(rune('0'+2-i)) {
			t.Errorf("count %d: x-ratelimit-remaining-requests %q, want %d", i, got, 2-i)
		}
		if got := r.Header.Peek("x-ratelimit-limit-tokens"); got != nil {
			t.Errorf("count %d: x-ratelimit-limit-tokens %q, want none (a count takes no tokens)", i, got)
		}
	}
	r := do(h, "POST", "/v1/messages/count_tokens", count)
	var e struct{ Error struct{ Type string } }
	_ = json.Unmarshal(r.Body(), &e)
	if r.StatusCode() != fasthttp.StatusTooManyRequests || e.Error.Type != "rate_limit_error" || len(r.Header.Peek("Retry-After")) == 0 {
		t.Errorf("third count in the minute: %d %s, want a 429 rate_limit_error with Retry-After", r.StatusCode(), r.Body())
	}
}

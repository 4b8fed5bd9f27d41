package gateway

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/tenancy"
	"github.com/mtai-dev/mtai/tenancy/ratelimit"
	"github.com/mtai-dev/mtai/tenancy/ratelimit/ratelimittest"
	"github.com/mtai-dev/mtai/tenancy/redislimit"
	"github.com/mtai-dev/mtai/tenancy/redislimit/redislimittest"
)

// keyLimitBackends builds the limiters the key-limit tests run on, on the
// test's clock: in process, and on Redis (where the tenant's and the key's
// buckets are reserved by the one script).
var keyLimitBackends = []struct {
	name string
	new  func(t *testing.T, clock *ratelimittest.Clock) ratelimit.Limiter
}{
	{"local", func(_ *testing.T, clock *ratelimittest.Clock) ratelimit.Limiter {
		return ratelimit.NewLocal(ratelimit.LocalOptions{Now: clock.Now})
	}},
	{"redis", func(t *testing.T, clock *ratelimittest.Clock) ratelimit.Limiter {
		cfg := exactCfg
		cfg.URL = "redis://" + redislimittest.Addr(t)
		cfg.KeyPrefix = redislimittest.Prefix(t)
		l, err := redislimit.New(cfg, redislimit.Options{Now: clock.Now})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.Close() })
		return l
	}},
}

// TestKeyLimits: a key with limits of its own is refused at its limit, with
// its bucket in the x-ratelimit-* headers and in the message, while
// another key of the same tenant still passes; both take from the
// tenant's buckets, which refuse both once spent.
func TestKeyLimits(t *testing.T) {
	const limitedKey, otherKey, tinyKey = "sk-limited-0123456789", "sk-other-0123456789ab", "sk-tiny-0123456789abc"
	pol := &tenancy.Policy{RequestsPerMinute: 5, TokensPerMinute: 100_000}
	keyLimits := func(id int64, l tenancy.RateLimits) *tenancy.KeyLimits {
		return &tenancy.KeyLimits{RateLimits: l, Scope: fmt.Sprint("k", id)}
	}
	keys := keyring{
		limitedKey: {Tenant: "t1", TenantID: 42, KeyID: 7, Policy: pol,
			KeyLimits: keyLimits(7, tenancy.RateLimits{RequestsPerMinute: 2, TokensPerMinute: 1000})},
		otherKey: {Tenant: "t1", TenantID: 42, KeyID: 8, Policy: pol},
		tinyKey: {Tenant: "t1", TenantID: 42, KeyID: 9, Policy: pol,
			KeyLimits: keyLimits(9, tenancy.RateLimits{TokensPerMinute: 10})},
	}
	noUsage := &usageUpstream{answer: []byte(`{"id":"x","object":"chat.completion","created":1,"model":"m","choices":[]}`)}
	body, _, est := chatBody("free", "hello there", 50, false)
	for _, bc := range keyLimitBackends {
		t.Run(bc.name, func(t *testing.T) {
			clock := ratelimittest.NewClock(limitStart)
			h := limitServer(t, noUsage, keys, bc.new(t, clock)).Handler()
			call := func(key string) *fasthttp.Response {
				return do(h, "POST", "/v1/chat/completions", body, "Authorization", "Bearer "+key)
			}
			wantHeaders := func(step string, r *fasthttp.Response, want map[string]string) {
				t.Helper()
				for name, v := range want {
					if got := header(r, name); got != v {
						t.Errorf("%s: %s = %q, want %q", step, name, got, v)
					}
				}
			}
			for i := int64(1); i <= 2; i++ {
				r := call(limitedKey)
				if r.StatusCode() != 200 {
					t.Fatalf("limited key, request %d: %d %s", i, r.StatusCode(), r.Body())
				}
				// The key's buckets are the tighter ones: they are shown.
				wantHeaders(fmt.Sprint("limited key, request ", i), r, map[string]string{
					hLimitRequests: "2", hRemainingRequests: fmt.Sprint(2 - i), hResetRequests: (time.Duration(i) * 30 * time.Second).String(),
					hLimitTokens: "1000", hRemainingTokens: fmt.Sprint(1000 - i*est),
				})
			}
			r := call(limitedKey)
			if r.StatusCode() != 429 {
				t.Fatalf("limited key, request 3: %d %s", r.StatusCode(), r.Body())
			}
			if typ, code, _ := errorOf(t, r.Body()); typ != "requests" || code != "rate_limit_exceeded" {
				t.Errorf("limited key, request 3: type %q code %q", typ, code)
			}
			wantHeaders("limited key, request 3", r, map[string]string{
				"Retry-After": "30", hRetryAfterMs: "30000", hLimitRequests: "2", hRemainingRequests: "0",
			})
			if !strings.Contains(string(r.Body()), "Rate limit reached for this API key's requests per minute (RPM): Limit 2, Remaining 0, Requested 1. Please try again in 30s.") {
				t.Errorf("limited key, request 3: %s", r.Body())
			}

			// Another key of the tenant passes: the refusal took nothing
			// from the tenant's buckets, the two admissions did.
			for i := int64(1); i <= 3; i++ {
				r := call(otherKey)
				if r.StatusCode() != 200 {
					t.Fatalf("other key, request %d: %d %s", i, r.StatusCode(), r.Body())
				}
				wantHeaders(fmt.Sprint("other key, request ", i), r, map[string]string{
					hLimitRequests: "5", hRemainingRequests: fmt.Sprint(3 - i), hLimitTokens: "100000",
					hRemainingTokens: fmt.Sprint(100_000 - (2+i)*est),
				})
			}
			r = call(otherKey)
			if r.StatusCode() != 429 || !strings.Contains(string(r.Body()), "Rate limit reached for requests per minute (RPM): Limit 5, Remaining 0") {
				t.Errorf("other key, the tenant's sixth request: %d %s", r.StatusCode(), r.Body())
			}

			// 30s later the tenant has 2 requests again and the limited key 1.
			clock.Advance(30 * time.Second)
			r = call(limitedKey)
			if r.StatusCode() != 200 {
				t.Fatalf("limited key, 30s later: %d %s", r.StatusCode(), r.Body())
			}
			wantHeaders("limited key, 30s later", r, map[string]string{hLimitRequests: "2", hRemainingRequests: "0"})
			if r := call(limitedKey); r.StatusCode() != 429 || !strings.Contains(string(r.Body()), "this API key's") {
				t.Errorf("limited key, again: %d %s", r.StatusCode(), r.Body())
			}
			if r := call(otherKey); r.StatusCode() != 200 || header(r, hRemainingRequests) != "0" {
				t.Errorf("other key, 30s later: %d, remaining %s; want 200, 0", r.StatusCode(), header(r, hRemainingRequests))
			}

			// A request larger than the key's token bucket can never pass.
			r = call(tinyKey)
			if r.StatusCode() != 429 || header(r, "X-Should-Retry") != "false" ||
				!strings.Contains(string(r.Body()), "Request too large for this API key's tokens per minute (TPM): Limit 10") {
				t.Errorf("tiny key: %d %s\n%s", r.StatusCode(), r.Header.String(), r.Body())
			}
		})
	}
}

// TestKeyLimitsAPI: limits set through /api/v1/keys are applied on /v1,
// a PATCH applies from the key's next request, and only the tenant's
// admins (and platform admins) may change them.
func TestKeyLimitsAPI(t *testing.T) {
	clock := ratelimittest.NewClock(limitStart)
	lim, err := NewLimiter(LimiterOptions{Backend: ratelimit.NewLocal(ratelimit.LocalOptions{Now: clock.Now})})
	if err != nil {
		t.Fatal(err)
	}
	e := newPlatformEnvWith(t, lim)
	a, b := e.t["alpha"], e.t["beta"]
	chat := func(key string) (int, []byte) {
		return e.call("POST", "/v1/chat/completions", `{"model":"mock-gpt","messages":[{"role":"user","content":"x"}]}`, key, "")
	}

	// a type error names the field as the client wrote it (not the Go
	// struct the limits are embedded in)
	if code, body := e.call("POST", "/api/v1/keys", `{"name":"big","requests_per_minute":1e20}`, a.adminJWT, "alpha"); code != 400 ||
		!strings.Contains(string(body), `"param":"requests_per_minute"`) {
		t.Errorf("POST a limit beyond int64: %d %s, want 400 on requests_per_minute", code, body)
	}
	code, body := e.call("POST", "/api/v1/keys", `{"name":"batch","requests_per_minute":2,"tokens_per_minute":100000}`, a.adminJWT, "alpha")
	var created struct {
		tenancy.APIKey
		Key string `json:"key"`
	}
	if code != 201 || json.Unmarshal(body, &created) != nil || created.RequestsPerMinute != 2 || created.TokensPerMinute != 100_000 ||
		created.RequestsPerHour != 0 {
		t.Fatalf("create a key with limits: %d %s", code, body)
	}
	checkSchema(t, "APIKeyCreated", body)
	keyPath := fmt.Sprint("/api/v1/keys/", created.ID)
	code, body = e.call("GET", keyPath, "", a.adminJWT, "alpha")
	if code != 200 || !strings.Contains(string(body), `"requests_per_minute":2,"requests_per_hour":0,"tokens_per_minute":100000`) {
		t.Errorf("GET %s: %d %s", keyPath, code, body)
	}
	checkSchema(t, "APIKey", body)
	code, body = e.call("GET", "/api/v1/keys", "", a.adminJWT, "alpha")
	if code != 200 || !strings.Contains(string(body), `"name":"batch"`) || !strings.Contains(string(body), `"tokens_per_minute":100000`) {
		t.Errorf("GET /api/v1/keys: %d %s", code, body)
	}
	checkSchema(t, "APIKeyList", body)

	for i := 1; i <= 2; i++ {
		if code, body := chat(created.Key); code != 200 {
			t.Fatalf("limited key, request %d: %d %s", i, code, body)
		}
	}
	if code, body := chat(created.Key); code != 429 || !strings.Contains(string(body), "this API key's requests per minute (RPM): Limit 2") {
		t.Fatalf("limited key, request 3: %d %s", code, body)
	}
	if code, body := chat(a.memberKey); code != 200 {
		t.Errorf("another key of the tenant: %d %s", code, body)
	}

	// Raised to 3: the next request sees it (2 used, 1 left).
	code, body = e.call("PATCH", keyPath, `{"requests_per_minute":3}`, a.adminJWT, "alpha")
	if code != 200 || !strings.Contains(string(body), `"requests_per_minute":3,"requests_per_hour":0,"tokens_per_minute":100000`) ||
		!strings.Contains(string(body), `"name":"batch"`) {
		t.Fatalf("PATCH %s: %d %s", keyPath, code, body)
	}
	checkSchema(t, "APIKey", body)
	if code, body := chat(created.Key); code != 200 {
		t.Errorf("after raising the key's limit to 3: %d %s", code, body)
	}
	if code, body := chat(created.Key); code != 429 || !strings.Contains(string(body), "Limit 3") {
		t.Errorf("fourth request with a limit of 3: %d %s", code, body)
	}

	refused := []struct {
		name, path, body, bearer, tenant string
		want                             int
		param                            string
	}{
		{"a member", keyPath, `{"requests_per_minute":100}`, a.memberJWT, "alpha", 403, ""},
		{"a member's API key", keyPath, `{"requests_per_minute":100}`, a.memberKey, "", 403, ""},
		{"beta's admin", keyPath, `{"requests_per_minute":100}`, b.adminJWT, "beta", 404, ""},
		{"beta's admin naming alpha", keyPath + "?tenant=alpha", `{"requests_per_minute":100}`, b.adminJWT, "beta", 404, ""},
		{"negative", keyPath, `{"requests_per_minute":-1}`, a.adminJWT, "alpha", 400, "requests_per_minute"},
		{"unknown field", keyPath, `{"monthly_budget_usd":5}`, a.adminJWT, "alpha", 400, "monthly_budget_usd"},
		{"empty name", keyPath, `{"name":""}`, a.adminJWT, "alpha", 400, "name"},
		{"beyond int64", keyPath, `{"requests_per_minute":1e20}`, a.adminJWT, "alpha", 400, "requests_per_minute"},
		{"a string", keyPath, `{"tokens_per_minute":"lots"}`, a.adminJWT, "alpha", 400, "tokens_per_minute"},
		{"unknown key", "/api/v1/keys/999999", `{"requests_per_minute":1}`, a.adminJWT, "alpha", 404, ""},
	}
	for _, r := range refused {
		code, body := e.call("PATCH", r.path, r.body, r.bearer, r.tenant)
		if r.body == `{"requests_per_minute":1e20}` && !strings.Contains(string(body), `'requests_per_minute' must be an integer`) {
			t.Errorf("PATCH %s: %s, want the field named as the client wrote it", r.body, body)
		}
		if code != r.want || r.param != "" && !strings.Contains(string(body), `"param":"`+r.param+`"`) {
			t.Errorf("PATCH by %s: %d %s, want %d (param %q)", r.name, code, body, r.want, r.param)
		}
	}
	if code, body := e.call("GET", keyPath, "", b.adminJWT, "beta"); code != 404 {
		t.Errorf("GET alpha's key as beta's admin: %d %s", code, body)
	}
	// A member reads their own key, not the admin's.
	if code, body := e.call("GET", fmt.Sprint("/api/v1/keys/", a.keyID), "", a.memberJWT, "alpha"); code != 200 || !strings.Contains(string(body), `"alice key"`) {
		t.Errorf("GET own key as a member: %d %s", code, body)
	}
	if code, body := e.call("GET", keyPath, "", a.memberJWT, "alpha"); code != 404 {
		t.Errorf("GET the admin's key as a member: %d %s", code, body)
	}

	// A platform admin removes the limit; the key is then bound by its
	// tenant only (which has none).
	code, body = e.call("PATCH", keyPath+"?tenant=alpha", `{"requests_per_minute":0,"tokens_per_minute":0}`, e.adminJWT, "demo")
	if code != 200 || !strings.Contains(string(body), `"requests_per_minute":0,"requests_per_hour":0,"tokens_per_minute":0`) {
		t.Fatalf("PATCH as the platform admin: %d %s", code, body)
	}
	for i := range 5 {
		if code, body := chat(created.Key); code != 200 {
			t.Fatalf("without limits, request %d: %d %s", i+1, code, body)
		}
	}
	k, err := e.svc.GetKey(t.Context(), a.tenant.ID, created.ID)
	if err != nil || k.Name != "batch" || !k.RateLimits.IsZero() {
		t.Errorf("stored key: %+v, %v", k, err)
	}
}

// TestChatCompletionKeyLimitsAllocs: a key's own buckets add no
// allocation to the hot path (their scope is built with the principal);
// with the tenant's limits, at most the tenant id's string, as without.
func TestChatCompletionKeyLimitsAllocs(t *testing.T) {
	keys := newSwapKeys(123456, &tenancy.Policy{RequestsPerMinute: 1 << 40, RequestsPerHour: 1 << 40, TokensPerMinute: 1 << 40, MonthlyBudget: 1 << 50})
	p := *keys.p.Load()
	p.KeyID = 4242
	p.KeyLimits = &tenancy.KeyLimits{RateLimits: tenancy.RateLimits{RequestsPerMinute: 1 << 40, RequestsPerHour: 1 << 40, TokensPerMinute: 1 << 40}, Scope: "k4242"}
	keys.p.Store(&p)
	base, allocs := limitAllocs(t, keys)
	t.Logf("allocations per request: %.1f without limits, %.1f with the tenant's three buckets, a budget and the key's three buckets", base, allocs)
	if allocs > base+1 {
		t.Errorf("limits add %.1f allocations per request, want at most 1", allocs-base)
	}
}

package gateway

import (
	"encoding/json"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/mock"
	"github.com/mtai-dev/mtai/store/sqlite"
	"github.com/mtai-dev/mtai/tenancy"
)

// platformEnv is a gateway over a real SQLite store with two tenants, each
// with a tenant admin, a member and the member's API key.
type platformEnv struct {
	h        fasthttp.RequestHandler
	svc      *tenancy.Service
	adminJWT string // platform admin (tenant demo)
	t        map[string]*tenantFixture
}

type tenantFixture struct {
	tenant    *tenancy.Tenant
	adminJWT  string
	memberJWT string
	memberKey string
	keyID     int64
	memberID  int64
	adminID   int64
}

var cheapArgon = tenancy.Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

func newPlatformEnv(t *testing.T) *platformEnv {
	t.Helper()
	return newPlatformEnvWith(t, nil)
}

// newPlatformEnvWith is newPlatformEnv with rate limits applied by lim.
func newPlatformEnvWith(t *testing.T, lim *Limiter) *platformEnv {
	t.Helper()
	ctx := t.Context()
	_, cache, svc := tenancyStack(t, t.TempDir(), tenancy.BootstrapConfig{AdminPassword: "admin-password-1"})
	router, err := providers.NewRouter(providers.Config{Models: []providers.ModelConfig{
		{Name: "mock-gpt", Deployments: []providers.DeploymentConfig{{Provider: "mock"}}},
		{Name: "mock-b", Deployments: []providers.DeploymentConfig{{Provider: "mock"}}},
	}}, map[string]providers.Factory{"mock": func(d providers.DeploymentConfig) (providers.Provider, error) { return mock.New(d) }})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: Config{Addr: "127.0.0.1:0"}, Router: router, Keys: cache, Platform: svc, Limiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	e := &platformEnv{h: s.Handler(), svc: svc, t: map[string]*tenantFixture{}}
	e.adminJWT = e.login(t, "demo", "admin", "admin-password-1")
	for _, name := range []string{"alpha", "beta"} {
		allowed := []string{"mock-gpt"}
		if name == "beta" {
			allowed = []string{"mock-b"}
		}
		n := name
		tn, err := svc.CreateTenant(ctx, tenancy.TenantUpdate{Name: &n, AllowedModels: &allowed})
		if err != nil {
			t.Fatal(err)
		}
		f := &tenantFixture{tenant: tn}
		boss, err := svc.CreateUser(ctx, tn.ID, "boss", "boss-password-1", tenancy.RoleTenantAdmin)
		if err != nil {
			t.Fatal(err)
		}
		alice, err := svc.CreateUser(ctx, tn.ID, "alice", "alice-password-"+name, tenancy.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		f.adminID, f.memberID = boss.ID, alice.ID
		k, secret, err := svc.CreateKey(ctx, tn.ID, alice.ID, "alice key", nil)
		if err != nil {
			t.Fatal(err)
		}
		f.memberKey, f.keyID = secret, k.ID
		f.adminJWT = e.login(t, name, "boss", "boss-password-1")
		f.memberJWT = e.login(t, name, "alice", "alice-password-"+name)
		e.t[name] = f
	}
	return e
}

// call runs one request with a bearer credential and an optional X-Tenant-ID.
func (e *platformEnv) call(method, path, body, bearer, tenant string) (int, []byte) {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI("http://gw" + path)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if tenant != "" {
		req.Header.Set("X-Tenant-ID", tenant)
	}
	if body != "" {
		req.SetBodyString(body)
	}
	var rc fasthttp.RequestCtx
	rc.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	e.h(&rc)
	return rc.Response.StatusCode(), append([]byte(nil), rc.Response.Body()...)
}

func (e *platformEnv) login(t *testing.T, tenant, user, password string) string {
	t.Helper()
	code, body := e.call("POST", "/api/v1/auth/login", fmt.Sprintf(`{"username":%q,"password":%q}`, user, password), "", tenant)
	if code != 200 {
		t.Fatalf("login %s/%s: %d %s", tenant, user, code, body)
	}
	var r struct {
		AccessToken string `json:"access_token"`
		TokenType   string `json:"token_type"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.Unmarshal(body, &r); err != nil || r.AccessToken == "" || r.TokenType != "bearer" || r.ExpiresIn <= 0 {
		t.Fatalf("login answer %s", body)
	}
	return r.AccessToken
}

// TestIsolationMatrix: every caller of tenant alpha (API key, tenant admin,
// member) tries to read, list, change and delete beta's things.
func TestIsolationMatrix(t *testing.T) {
	e := newPlatformEnv(t)
	a, b := e.t["alpha"], e.t["beta"]
	callers := []struct {
		name, bearer, tenant string
		admin                bool
	}{
		{"api key", a.memberKey, "", false},
		{"api key with header", a.memberKey, "alpha", false},
		{"tenant admin jwt", a.adminJWT, "alpha", true},
		{"member jwt", a.memberJWT, "alpha", false},
	}
	bid := fmt.Sprint(b.tenant.ID)
	for _, c := range callers {
		t.Run(c.name, func(t *testing.T) {
			refused := []struct {
				method, path, body string
				want               []int
			}{
				{"GET", "/api/v1/tenants/" + bid, "", []int{404}},
				{"PUT", "/api/v1/tenants/" + bid, `{"display_name":"pwned"}`, []int{404}},
				{"DELETE", "/api/v1/tenants/" + bid, "", []int{404}},
				{"GET", "/api/v1/tenants/", "", []int{403}},
				{"POST", "/api/v1/tenants/", `{"name":"evil"}`, []int{403}},
				{"GET", "/api/v1/keys?tenant=beta", "", []int{404}},
				{"POST", "/api/v1/keys", `{"name":"x","tenant":"beta"}`, []int{404}},
				{"DELETE", fmt.Sprintf("/api/v1/keys/%d", b.keyID), "", []int{404}},
				{"DELETE", fmt.Sprintf("/api/v1/keys/%d?tenant=beta", b.keyID), "", []int{404}},
				{"GET", fmt.Sprintf("/api/v1/keys/%d", b.keyID), "", []int{404}},
				{"GET", fmt.Sprintf("/api/v1/keys/%d?tenant=beta", b.keyID), "", []int{404}},
				// a member may change no key's limits (403); a tenant admin cannot find beta's (404)
				{"PATCH", fmt.Sprintf("/api/v1/keys/%d", b.keyID), `{"requests_per_minute":1}`, []int{forAdmin(c.admin, 404, 403)}},
				{"PATCH", fmt.Sprintf("/api/v1/keys/%d?tenant=beta", b.keyID), `{"requests_per_minute":1}`, []int{forAdmin(c.admin, 404, 403)}},
				{"GET", fmt.Sprintf("/api/v1/admin/users/%d", b.memberID), "", []int{404, 403}},
				{"PUT", fmt.Sprintf("/api/v1/admin/users/%d", b.memberID), `{"disabled":true}`, []int{404, 403}},
				{"GET", "/api/v1/admin/users?tenant=beta", "", []int{404, 403}},
				{"POST", "/api/v1/admin/users", `{"username":"mole","password":"mole-password-1","tenant":"beta"}`, []int{404, 403}},
			}
			for _, r := range refused {
				code, body := e.call(r.method, r.path, r.body, c.bearer, c.tenant)
				ok := false
				for _, w := range r.want {
					ok = ok || code == w
				}
				if !ok {
					t.Errorf("%s %s: %d %s, want one of %v", r.method, r.path, code, body, r.want)
				}
				if !c.admin && code == 404 && strings.Contains(r.path, "admin/users") {
					t.Errorf("%s %s: a member reached the user lookup (404) instead of being refused by role", r.method, r.path)
				}
			}
			// lists show only alpha's things
			code, body := e.call("GET", "/api/v1/keys", "", c.bearer, c.tenant)
			if code != 200 || strings.Contains(string(body), fmt.Sprintf(`"tenant_id":%d`, b.tenant.ID)) {
				t.Errorf("GET /api/v1/keys: %d %s", code, body)
			}
			if c.admin {
				code, body = e.call("GET", "/api/v1/admin/users", "", c.bearer, c.tenant)
				if code != 200 || strings.Contains(string(body), fmt.Sprintf(`"tenant_id":%d`, b.tenant.ID)) || !strings.Contains(string(body), `"alice"`) {
					t.Errorf("GET /api/v1/admin/users: %d %s", code, body)
				}
			}
			// another tenant named in X-Tenant-ID is refused
			if code, body := e.call("GET", "/api/v1/keys", "", c.bearer, "beta"); code != 403 && code != 401 {
				t.Errorf("X-Tenant-ID beta with alpha's credential: %d %s", code, body)
			}
			// /v1 shows only alpha's models and refuses beta's
			code, body = e.call("GET", "/v1/models", "", c.bearer, c.tenant)
			if code != 200 || strings.Contains(string(body), "mock-b") || !strings.Contains(string(body), "mock-gpt") {
				t.Errorf("/v1/models: %d %s", code, body)
			}
			if code, _ := e.call("GET", "/v1/models/mock-b", "", c.bearer, c.tenant); code != 404 {
				t.Errorf("/v1/models/mock-b: %d, want 404", code)
			}
			code, _ = e.call("POST", "/v1/chat/completions", `{"model":"mock-b","messages":[{"role":"user","content":"x"}]}`, c.bearer, c.tenant)
			if code != 403 {
				t.Errorf("chat with beta's model: %d, want 403", code)
			}
		})
	}
	// beta is untouched
	if code, _ := e.call("POST", "/v1/chat/completions", `{"model":"mock-b","messages":[{"role":"user","content":"x"}]}`, b.memberKey, ""); code != 200 {
		t.Errorf("beta's key stopped working: %d", code)
	}
	tn, _ := e.svc.GetTenant(t.Context(), b.tenant.ID)
	if tn.DisplayName == "pwned" || tn.Disabled {
		t.Errorf("beta was changed: %+v", tn)
	}
	if k, _ := e.svc.GetKey(t.Context(), b.tenant.ID, b.keyID); k == nil || !k.RateLimits.IsZero() || k.Revoked {
		t.Errorf("beta's key was changed: %+v", k)
	}
}

// forAdmin returns admin when the caller is an admin, else other.
func forAdmin(isAdmin bool, admin, other int) int {
	if isAdmin {
		return admin
	}
	return other
}

func TestPlatformAdmin(t *testing.T) {
	e := newPlatformEnv(t)
	b := e.t["beta"]
	code, body := e.call("GET", "/api/v1/tenants/", "", e.adminJWT, "demo")
	if code != 200 || !strings.Contains(string(body), `"beta"`) || !strings.Contains(string(body), `"total":3`) {
		t.Fatalf("list tenants: %d %s", code, body)
	}
	code, body = e.call("POST", "/api/v1/tenants/", `{"name":"gamma","display_name":"Gamma","requests_per_minute":60,"monthly_budget_usd":12.5,"rag":{"enabled":true}}`, e.adminJWT, "demo")
	if code != 201 || !strings.Contains(string(body), `"monthly_budget_usd":12.5`) || !strings.Contains(string(body), `"top_k":4`) {
		t.Fatalf("create tenant: %d %s", code, body)
	}
	if code, body := e.call("POST", "/api/v1/tenants/", `{"name":"gamma"}`, e.adminJWT, "demo"); code != 409 {
		t.Errorf("duplicate tenant: %d %s", code, body)
	}
	if code, body := e.call("POST", "/api/v1/tenants/", `{"name":"Bad Name!"}`, e.adminJWT, "demo"); code != 400 || !strings.Contains(string(body), `"param":"name"`) {
		t.Errorf("bad tenant name: %d %s", code, body)
	}
	if code, body := e.call("POST", "/api/v1/tenants/", `{"name":"x","bogus":1}`, e.adminJWT, "demo"); code != 400 || !strings.Contains(string(body), `"param":"bogus"`) {
		t.Errorf("unknown field: %d %s", code, body)
	}
	bid := fmt.Sprint(b.tenant.ID)
	code, body = e.call("PUT", "/api/v1/tenants/"+bid, `{"system_prompt":"Be brief."}`, e.adminJWT, "demo")
	if code != 200 || !strings.Contains(string(body), `"system_prompt":"Be brief."`) || !strings.Contains(string(body), `"allowed_models":["mock-b"]`) {
		t.Errorf("partial update: %d %s", code, body)
	}
	// a key for beta, made by the platform admin, works on /v1
	code, body = e.call("POST", "/api/v1/keys", `{"name":"ops","tenant":"beta"}`, e.adminJWT, "demo")
	var k struct {
		Key    string `json:"key"`
		Prefix string `json:"prefix"`
	}
	if code != 201 || json.Unmarshal(body, &k) != nil || !strings.HasPrefix(k.Key, "sk-mtai-") || !strings.HasPrefix(k.Key, k.Prefix) {
		t.Fatalf("create key for beta: %d %s", code, body)
	}
	if code, body := e.call("POST", "/v1/chat/completions", `{"messages":[{"role":"user","content":"x"}],"model":"mock-b"}`, k.Key, ""); code != 200 {
		t.Errorf("new key: %d %s", code, body)
	}
	// deleting beta stops its keys and tokens at once
	if code, body := e.call("DELETE", "/api/v1/tenants/"+bid, "", e.adminJWT, "demo"); code != 204 {
		t.Fatalf("delete tenant: %d %s", code, body)
	}
	for _, cred := range []struct{ bearer, tenant string }{{k.Key, ""}, {b.memberKey, ""}, {b.adminJWT, "beta"}} {
		if code, _ := e.call("GET", "/v1/models", "", cred.bearer, cred.tenant); code != 401 {
			t.Errorf("credential of a deleted tenant: %d, want 401", code)
		}
	}
}

func TestAuthRefusals(t *testing.T) {
	e := newPlatformEnv(t)
	a := e.t["alpha"]
	parts := strings.Split(a.memberJWT, ".")
	cases := []struct{ name, bearer, tenant string }{
		{"no credential", "", "alpha"},
		{"garbage token", "not.a.token", "alpha"},
		{"alg none", "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0." + parts[1] + ".", "alpha"},
		{"tampered payload", parts[0] + "." + parts[1] + "x." + parts[2], "alpha"},
		{"unknown key", "sk-mtai-unknownunknownunknownunknown", ""},
	}
	for _, c := range cases {
		if code, body := e.call("GET", "/api/v1/keys", "", c.bearer, c.tenant); code != 401 {
			t.Errorf("%s: %d %s, want 401", c.name, code, body)
		}
	}
	if code, body := e.call("POST", "/api/v1/auth/login", `{"username":"alice","password":"wrong-password"}`, "", "alpha"); code != 401 {
		t.Errorf("wrong password: %d %s", code, body)
	}
	if code, _ := e.call("POST", "/api/v1/auth/login", `{"username":"alice","password":"alice-password-alpha"}`, "", "beta"); code != 401 {
		t.Errorf("login to the wrong tenant: %d", code)
	}
	// revoke: the member revokes their own key; it stops working
	if code, body := e.call("DELETE", fmt.Sprintf("/api/v1/keys/%d", a.keyID), "", a.memberJWT, "alpha"); code != 204 {
		t.Fatalf("revoke own key: %d %s", code, body)
	}
	if code, _ := e.call("GET", "/v1/models", "", a.memberKey, ""); code != 401 {
		t.Errorf("revoked key: %d, want 401", code)
	}
}

func TestRoles(t *testing.T) {
	e := newPlatformEnv(t)
	a := e.t["alpha"]
	// a tenant admin creates a member but cannot make a platform admin
	code, body := e.call("POST", "/api/v1/admin/users", `{"username":"bob","password":"bob-password-1"}`, a.adminJWT, "alpha")
	if code != 201 || !strings.Contains(string(body), `"role":"member"`) || strings.Contains(string(body), "password") {
		t.Fatalf("create member: %d %s", code, body)
	}
	if code, _ := e.call("POST", "/api/v1/admin/users", `{"username":"eve","password":"eve-password-1","role":"platform_admin"}`, a.adminJWT, "alpha"); code != 403 {
		t.Errorf("tenant admin granted platform_admin: %d", code)
	}
	if code, _ := e.call("POST", "/api/v1/admin/users", `{"username":"eve","password":"eve-password-1"}`, a.memberJWT, "alpha"); code != 403 {
		t.Errorf("member created a user: %d", code)
	}
	// disabling a user stops their token
	code, body = e.call("PUT", fmt.Sprintf("/api/v1/admin/users/%d", a.memberID), `{"disabled":true}`, a.adminJWT, "alpha")
	if code != 200 || !strings.Contains(string(body), `"disabled":true`) {
		t.Fatalf("disable: %d %s", code, body)
	}
	if code, _ := e.call("GET", "/api/v1/keys", "", a.memberJWT, "alpha"); code != 401 {
		t.Errorf("disabled user's token: %d, want 401", code)
	}
	// pagination bounds
	if code, _ := e.call("GET", "/api/v1/admin/users?limit=0", "", a.adminJWT, "alpha"); code != 400 {
		t.Errorf("limit=0: %d", code)
	}
}

func TestTenantsPathWithoutSlash(t *testing.T) {
	e := newPlatformEnv(t)
	for _, p := range []string{"/api/v1/tenants/", "/api/v1/tenants"} {
		if code, body := e.call("GET", p, "", e.adminJWT, "demo"); code != 200 {
			t.Errorf("GET %s: %d %s", p, code, body)
		}
	}
}

// tenancyStack is a migrated SQLite store in dir with the tenancy service
// over it (cheap password hashing), its key cache, and boot bootstrapped.
// Everything is closed when tb ends.
func tenancyStack(tb testing.TB, dir string, boot tenancy.BootstrapConfig) (*sqlite.DB, *tenancy.KeyCache, *tenancy.Service) {
	tb.Helper()
	ctx := tb.Context()
	db, err := sqlite.Open(ctx, filepath.Join(dir, "mtai.db"))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		tb.Fatal(err)
	}
	stores := tenancy.Stores{Tenants: db, Users: db, Keys: db}
	issuer, err := tenancy.NewIssuer([]byte(strings.Repeat("k", 32)), 0, nil)
	if err != nil {
		tb.Fatal(err)
	}
	cache, err := tenancy.NewKeyCache(ctx, stores, tenancy.KeyCacheConfig{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cache.Close() })
	svc, err := tenancy.NewService(tenancy.ServiceConfig{Stores: stores, Issuer: issuer, Invalidator: cache, Argon2: cheapArgon})
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := svc.Bootstrap(ctx, boot); err != nil {
		tb.Fatal(err)
	}
	return db, cache, svc
}

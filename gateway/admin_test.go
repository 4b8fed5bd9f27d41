package gateway

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/admin"
	"github.com/mtai-dev/mtai/admin/admintest"
	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/mock"
	"github.com/mtai-dev/mtai/store/postgres"
	"github.com/mtai-dev/mtai/store/sqlite"
	"github.com/mtai-dev/mtai/store/storetest"
	"github.com/mtai-dev/mtai/tenancy"
)

// adminNow is the clock of the admin tests: admintest's events are 1, 1,
// 2, 3, 50 and 240 hours before it.
var adminNow = time.Date(2026, 3, 15, 12, 30, 0, 0, time.UTC)

// adminStore is what the admin tests need from a store.
type adminStore interface {
	tenancy.TenantStore
	tenancy.UserStore
	tenancy.KeyStore
	billing.UsageWriter
	admin.Store
}

// newAdminEnv is a gateway over store (migrated, empty) with the bootstrap
// tenant demo (platform admin "admin") and admintest's seed.
func newAdminEnv(t *testing.T, db adminStore) (*platformEnv, *admintest.Fixture) {
	t.Helper()
	ctx := t.Context()
	stores := tenancy.Stores{Tenants: db, Users: db, Keys: db}
	issuer, err := tenancy.NewIssuer([]byte(strings.Repeat("k", 32)), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := tenancy.NewKeyCache(ctx, stores, tenancy.KeyCacheConfig{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cache.Close() })
	svc, err := tenancy.NewService(tenancy.ServiceConfig{Stores: stores, Issuer: issuer, Invalidator: cache, Argon2: cheapArgon})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Bootstrap(ctx, tenancy.BootstrapConfig{AdminPassword: "admin-password-1"}); err != nil {
		t.Fatal(err)
	}
	fx, err := admintest.Seed(ctx, svc, db, adminNow)
	if err != nil {
		t.Fatal(err)
	}
	router, err := providers.NewRouter(providers.Config{Models: []providers.ModelConfig{
		{Name: "mock-gpt", Deployments: []providers.DeploymentConfig{{Provider: "mock"}}},
	}}, map[string]providers.Factory{"mock": func(d providers.DeploymentConfig) (providers.Provider, error) { return mock.New(d) }})
	if err != nil {
		t.Fatal(err)
	}
	clock := func() time.Time { return adminNow }
	s, err := New(Options{Config: Config{Addr: "127.0.0.1:0"}, Router: router, Keys: cache, Platform: svc,
		Admin: admin.New(db, clock), Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	e := &platformEnv{h: s.Handler(), svc: svc, t: map[string]*tenantFixture{}}
	e.adminJWT = e.login(t, "demo", "admin", "admin-password-1")
	e.t["acme"] = &tenantFixture{tenant: fx.Acme, adminJWT: e.login(t, "acme", "boss", admintest.BossPassword)}
	e.t["globex"] = &tenantFixture{tenant: fx.Globex, adminJWT: e.login(t, "globex", "boss", admintest.BossPassword)}
	return e, fx
}

func adminStores(t *testing.T) map[string]func(t *testing.T) adminStore {
	return map[string]func(t *testing.T) adminStore{
		"sqlite": func(t *testing.T) adminStore {
			db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "mtai.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if err := db.Migrate(t.Context()); err != nil {
				t.Fatal(err)
			}
			return db
		},
		"postgres": func(t *testing.T) adminStore {
			db, err := postgres.Open(t.Context(), storetest.NewPostgresDatabase(t))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if err := db.Migrate(t.Context()); err != nil {
				t.Fatal(err)
			}
			return db
		},
	}
}

// TestAdminAPI checks the answers of /api/v1/admin/stats and /usage over
// the seeded events against totals computed by hand from the table in
// admintest.Events, on both stores.
func TestAdminAPI(t *testing.T) {
	for name, open := range adminStores(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e, _ := newAdminEnv(t, open(t))
			platform, acme := e.adminJWT, e.t["acme"].adminJWT
			t.Run("stats", func(t *testing.T) { testAdminStats(t, e, platform, acme) })
			t.Run("usage", func(t *testing.T) { testAdminUsage(t, e, platform, acme) })
			t.Run("refusals", func(t *testing.T) { testAdminRefusals(t, e, platform, acme) })
		})
	}
}

// get calls GET path as bearer (a JWT of tenant) and decodes the answer.
func (e *platformEnv) adminGet(t *testing.T, path, bearer, tenant string) map[string]any {
	t.Helper()
	code, body := e.call("GET", path, "", bearer, tenant)
	if code != 200 {
		t.Fatalf("GET %s: %d %s", path, code, body)
	}
	var v map[string]any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET %s: %v in %s", path, err, body)
	}
	return v
}

// want compares the fields of got named in want (JSON numbers as float64).
func wantFields(t *testing.T, what string, got map[string]any, want map[string]any) {
	t.Helper()
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			t.Errorf("%s: no field %q in %v", what, k, got)
			continue
		}
		if fmt.Sprint(g) != fmt.Sprint(w) {
			t.Errorf("%s: %s = %v, want %v", what, k, g, w)
		}
	}
}

func testAdminStats(t *testing.T, e *platformEnv, platform, acme string) {
	tests := []struct {
		name, path, bearer, tenant string
		want                       map[string]any
	}{
		{"platform last 24h", "/api/v1/admin/stats", platform, "demo", map[string]any{
			"from": "2026-03-14T13:00:00Z", "to": "2026-03-15T13:00:00Z", "tenant": nil,
			"tenants": 3, "users": 3, "keys": 3,
			"requests": 4, "errors": 1, "error_rate": 0.25, "prompt_tokens": 1600, "completion_tokens": 650,
			"total_tokens": 2250, "cost_usd": 0.016, "cost_micro_usd": 16000,
			"latency_avg_ms": 520, "latency_p50_ms": 250, "latency_p95_ms": 2000, "latency_p99_ms": 2000}},
		{"platform since the 8th", "/api/v1/admin/stats?from=2026-03-08", platform, "demo", map[string]any{
			"from": "2026-03-08T00:00:00Z", "requests": 5, "errors": 1, "error_rate": 0.2,
			"prompt_tokens": 5600, "completion_tokens": 1650, "total_tokens": 7250, "cost_usd": 0.056,
			"latency_avg_ms": 536, "latency_p50_ms": 500, "latency_p95_ms": 2000}},
		{"platform a month", "/api/v1/admin/stats?from=2026-02-15T00:00:00Z&to=2026-03-15T12:30:00Z", platform, "demo", map[string]any{
			"to": "2026-03-15T13:00:00Z", "requests": 6, "errors": 1, "prompt_tokens": 15600, "completion_tokens": 6650,
			"total_tokens": 22250, "cost_usd": 0.156, "cost_micro_usd": 156000, "latency_avg_ms": 946.6666666666666,
			"latency_p50_ms": 500, "latency_p95_ms": 5000}},
		{"platform one model", "/api/v1/admin/stats?from=2026-02-15&model=claude", platform, "demo", map[string]any{
			"requests": 2, "errors": 1, "error_rate": 0.5, "prompt_tokens": 10300, "completion_tokens": 5000, "cost_usd": 0.103}},
		{"platform one tenant", "/api/v1/admin/stats?tenant=globex", platform, "demo", map[string]any{
			"tenant": "globex", "tenants": 1, "users": 1, "keys": 1,
			"requests": 1, "errors": 0, "total_tokens": 1500, "cost_usd": 0.01, "latency_p50_ms": 250}},
		{"tenant admin sees own tenant", "/api/v1/admin/stats", acme, "acme", map[string]any{
			"tenant": "acme", "tenants": 1, "users": 1, "keys": 1,
			"requests": 3, "errors": 1, "prompt_tokens": 600, "completion_tokens": 150, "cost_usd": 0.006,
			"latency_p50_ms": 500, "latency_p95_ms": 2000}},
		{"tenant admin names own tenant", "/api/v1/admin/stats?tenant=acme&from=2026-01-01", acme, "acme", map[string]any{
			"requests": 4, "cost_usd": 0.106}},
		{"empty period", "/api/v1/admin/stats?from=2025-01-01&to=2025-02-01", platform, "demo", map[string]any{
			"requests": 0, "errors": 0, "error_rate": 0, "cost_usd": 0, "latency_avg_ms": 0, "latency_p50_ms": nil}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := e.adminGet(t, tc.path, tc.bearer, tc.tenant)
			if got["object"] != "admin.stats" {
				t.Errorf("object = %v", got["object"])
			}
			wantFields(t, tc.path, got, tc.want)
		})
	}
}

func testAdminUsage(t *testing.T, e *platformEnv, platform, acme string) {
	type row = map[string]any
	tests := []struct {
		name, path, bearer, tenant string
		bucket                     string
		want                       []row
	}{
		{"by hour", "/api/v1/admin/usage", platform, "demo", "hour", []row{
			{"time": "2026-03-15T09:00:00Z", "requests": 1, "cost_usd": 0.01, "total_tokens": 1500},
			{"time": "2026-03-15T10:00:00Z", "requests": 1, "errors": 1, "cost_usd": 0.003},
			{"time": "2026-03-15T11:00:00Z", "requests": 2, "cost_usd": 0.003, "prompt_tokens": 300, "latency_avg_ms": 190}}},
		{"by day (the default past 72 hours)", "/api/v1/admin/usage?from=2026-03-08", platform, "demo", "day", []row{
			{"time": "2026-03-13T00:00:00Z", "requests": 1, "cost_usd": 0.04},
			{"time": "2026-03-15T00:00:00Z", "requests": 4, "cost_usd": 0.016}}},
		{"by tenant and model", "/api/v1/admin/usage?from=2026-03-08&group_by=tenant,model&bucket=none", platform, "demo", "none", []row{
			{"tenant": "acme", "model": "claude", "requests": 1, "errors": 1, "cost_usd": 0.003},
			{"tenant": "acme", "model": "gpt-4o", "requests": 2, "total_tokens": 450, "cost_usd": 0.003},
			{"tenant": "globex", "model": "gpt-4o", "requests": 2, "total_tokens": 6500, "cost_usd": 0.05}}},
		{"by tenant per day", "/api/v1/admin/usage?from=2026-03-01&group_by=tenant&bucket=day", platform, "demo", "day", []row{
			{"time": "2026-03-05T00:00:00Z", "tenant": "acme", "requests": 1, "cost_usd": 0.1},
			{"time": "2026-03-13T00:00:00Z", "tenant": "globex", "requests": 1, "cost_usd": 0.04},
			{"time": "2026-03-15T00:00:00Z", "tenant": "acme", "requests": 3, "cost_usd": 0.006},
			{"time": "2026-03-15T00:00:00Z", "tenant": "globex", "requests": 1, "cost_usd": 0.01}}},
		{"top keys", "/api/v1/admin/usage?from=2026-02-15&group_by=key", platform, "demo", "none", []row{
			{"tenant": "acme", "key_name": "acme-prod", "requests": 4, "errors": 1, "cost_usd": 0.106, "total_tokens": 15750},
			{"tenant": "globex", "key_name": "globex-prod", "requests": 2, "cost_usd": 0.05, "total_tokens": 6500}}},
		{"top users, one model", "/api/v1/admin/usage?from=2026-02-15&group_by=user&model=gpt-4o", platform, "demo", "none", []row{
			{"tenant": "globex", "username": "boss", "requests": 2, "cost_usd": 0.05},
			{"tenant": "acme", "username": "boss", "requests": 2, "cost_usd": 0.003}}},
		{"keys per day", "/api/v1/admin/usage?from=2026-03-01&group_by=key&bucket=day", platform, "demo", "day", []row{
			{"time": "2026-03-05T00:00:00Z", "key_name": "acme-prod", "requests": 1, "cost_usd": 0.1},
			{"time": "2026-03-13T00:00:00Z", "key_name": "globex-prod", "requests": 1, "cost_usd": 0.04},
			{"time": "2026-03-15T00:00:00Z", "key_name": "acme-prod", "requests": 3, "errors": 1, "cost_usd": 0.006},
			{"time": "2026-03-15T00:00:00Z", "key_name": "globex-prod", "requests": 1, "cost_usd": 0.01}}},
		{"the top key per day", "/api/v1/admin/usage?from=2026-03-01&group_by=key&bucket=day&limit=1", platform, "demo", "day", []row{
			{"time": "2026-03-05T00:00:00Z", "key_name": "acme-prod", "requests": 1},
			{"time": "2026-03-15T00:00:00Z", "key_name": "acme-prod", "requests": 3}}},
		{"users per hour", "/api/v1/admin/usage?from=2026-03-15T10:30:00Z&group_by=user&bucket=hour", platform, "demo", "hour", []row{
			{"time": "2026-03-15T10:00:00Z", "tenant": "acme", "username": "boss", "requests": 1, "errors": 1},
			{"time": "2026-03-15T11:00:00Z", "tenant": "acme", "username": "boss", "requests": 2, "prompt_tokens": 300}}},
		{"tenant admin by model", "/api/v1/admin/usage?group_by=model&bucket=none", acme, "acme", "none", []row{
			{"model": "claude", "requests": 1, "cost_usd": 0.003},
			{"model": "gpt-4o", "requests": 2, "cost_usd": 0.003}}},
		{"tenant admin top keys", "/api/v1/admin/usage?group_by=key&from=2026-01-01", acme, "acme", "none", []row{
			{"tenant": "acme", "key_name": "acme-prod", "requests": 4}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := e.adminGet(t, tc.path, tc.bearer, tc.tenant)
			if got["object"] != "list" || got["bucket"] != tc.bucket {
				t.Errorf("object, bucket = %v, %v; want list, %s", got["object"], got["bucket"], tc.bucket)
			}
			data, _ := got["data"].([]any)
			if len(data) != len(tc.want) {
				t.Fatalf("%s: %d rows, want %d: %v", tc.path, len(data), len(tc.want), data)
			}
			for i, w := range tc.want {
				wantFields(t, fmt.Sprintf("%s row %d", tc.path, i), data[i].(map[string]any), w)
			}
		})
	}

	t.Run("csv", func(t *testing.T) {
		var req fasthttp.Request
		req.SetRequestURI("http://gw/api/v1/admin/usage?group_by=model&bucket=none&format=csv")
		req.Header.Set("Authorization", "Bearer "+platform)
		req.Header.Set("X-Tenant-ID", "demo")
		code, body := e.call("GET", "/api/v1/admin/usage?group_by=model&bucket=none&format=csv", "", platform, "demo")
		if code != 200 {
			t.Fatalf("csv: %d %s", code, body)
		}
		want := "model,requests,errors,error_rate,prompt_tokens,completion_tokens,total_tokens,cost_usd," +
			"latency_avg_ms,latency_p50_ms,latency_p95_ms,latency_p99_ms\n" +
			"claude,1,1,1,300,0,300,0.003,1500.000,2000,2000,2000\n" +
			"gpt-4o,3,0,0,1300,650,1950,0.013,193.333,250,500,500\n"
		if string(body) != want {
			t.Errorf("csv =\n%s\nwant\n%s", body, want)
		}
	})
}

func testAdminRefusals(t *testing.T, e *platformEnv, platform, acme string) {
	tests := []struct {
		name, path, bearer, tenant string
		status                     int
		param                      string
	}{
		{"no credentials", "/api/v1/admin/stats", "", "", 401, ""},
		{"other tenant is not found", "/api/v1/admin/stats?tenant=globex", acme, "acme", 404, ""},
		{"other tenant's usage is not found", "/api/v1/admin/usage?tenant=globex&group_by=key", acme, "acme", 404, ""},
		{"unknown tenant", "/api/v1/admin/usage?tenant=nope", platform, "demo", 404, ""},
		{"from after to", "/api/v1/admin/stats?from=2026-03-10&to=2026-03-01", platform, "demo", 400, "from"},
		{"bad time", "/api/v1/admin/stats?to=yesterday", platform, "demo", 400, "to"},
		{"too long", "/api/v1/admin/stats?from=2020-01-01", platform, "demo", 400, "from"},
		{"bad bucket", "/api/v1/admin/usage?bucket=week", platform, "demo", 400, ""},
		{"bad group", "/api/v1/admin/usage?group_by=key,model", platform, "demo", 400, ""},
		{"bad format", "/api/v1/admin/usage?format=xml", platform, "demo", 400, "format"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.call("GET", tc.path, "", tc.bearer, tc.tenant)
			if code != tc.status {
				t.Fatalf("GET %s = %d %s, want %d", tc.path, code, body, tc.status)
			}
			_, _, param := errorOf(t, body)
			if tc.param != "" && (param == nil || *param != tc.param) {
				t.Errorf("GET %s: param = %v, want %q", tc.path, param, tc.param)
			}
			if tc.status == 404 && strings.Contains(string(body), "globex-prod") {
				t.Errorf("a 404 shows the other tenant's data: %s", body)
			}
		})
	}
	// A member of a tenant is refused (403).
	ctx := context.Background()
	u, err := e.svc.CreateUser(ctx, e.t["acme"].tenant.ID, "carol", "carol-password-1", tenancy.RoleMember)
	if err != nil || u == nil {
		t.Fatal(err)
	}
	member := e.login(t, "acme", "carol", "carol-password-1")
	if code, body := e.call("GET", "/api/v1/admin/stats", "", member, "acme"); code != 403 {
		t.Errorf("member: %d %s, want 403", code, body)
	}
}

// TestAdminNotConfigured: without Options.Admin the admin API answers 501,
// and the dashboard is served all the same.
func TestAdminNotConfigured(t *testing.T) {
	e := newPlatformEnv(t)
	code, body := e.call("GET", "/api/v1/admin/stats", "", e.adminJWT, "demo")
	if code != 501 {
		t.Errorf("stats without Admin: %d %s, want 501", code, body)
	}
	for _, p := range []string{"/admin", "/admin/app.js", "/admin/app.css"} {
		var req fasthttp.Request
		req.SetRequestURI("http://gw" + p)
		var rc fasthttp.RequestCtx
		rc.Init(&req, nil, nil)
		e.h(&rc)
		if rc.Response.StatusCode() != 200 || len(rc.Response.Body()) < 100 {
			t.Errorf("GET %s: %d, %d bytes", p, rc.Response.StatusCode(), len(rc.Response.Body()))
		}
		if csp := string(rc.Response.Header.Peek("Content-Security-Policy")); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", p, csp)
		}
	}
	code, _ = e.call("GET", "/admin/../gateway.go", "", "", "")
	if code != 404 {
		t.Errorf("GET /admin/../gateway.go: %d, want 404", code)
	}
}

// BenchmarkAdminPostgres answers the dashboard's queries over 1,000,000
// usage events (30 days, 20 tenants, 5 models, 200 keys) in PostgreSQL
// (MTAI_TEST_DATABASE_URL, else storetest.DefaultPostgresURL), written with
// the store's usage writer (COPY, batches of 10,000). Run with
//
//	go test ./gateway -run '^$' -bench AdminPostgres -benchtime 20x
//
// and read ms/op of each query: the dashboard needs each under 100 ms.
// MTAI_BENCH_KEEP_DB=1 keeps the database (its name is logged).
func BenchmarkAdminPostgres(b *testing.B) {
	ctx := b.Context()
	server := os.Getenv("MTAI_TEST_DATABASE_URL")
	if server == "" {
		server = storetest.DefaultPostgresURL
	}
	conn, err := pgx.Connect(ctx, server)
	if err != nil {
		b.Fatalf("PostgreSQL unreachable: %v (scripts/services.sh)", err)
	}
	name := fmt.Sprintf("mtai_bench_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if os.Getenv("MTAI_BENCH_KEEP_DB") != "" { // to EXPLAIN the queries
			b.Logf("kept database %s", name)
		} else {
			conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
		}
		conn.Close(context.Background())
	})
	u, _ := url.Parse(server)
	u.Path = "/" + name
	db, err := postgres.Open(ctx, u.String())
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(ctx); err != nil {
		b.Fatal(err)
	}
	const events, tenants, models, keys = 1_000_000, 20, 5, 200
	now := time.Date(2026, 3, 31, 0, 0, 0, 0, time.UTC)
	span := 30 * 24 * time.Hour
	start := time.Now()
	batch := make([]billing.Event, 0, 10_000)
	for i := range events {
		var id billing.EventID
		binary.BigEndian.PutUint64(id[8:], uint64(i+1))
		binary.BigEndian.PutUint64(id[:8], uint64(now.UnixMilli())<<16)
		tn, k := int64(i%tenants+1), int64(i%keys+1)
		lat := time.Duration(50+(i*7919)%3000) * time.Millisecond
		status := 200
		if i%50 == 0 {
			status = 502
		}
		batch = append(batch, billing.Event{
			ID: id, Time: now.Add(-span + time.Duration(int64(span)/events*int64(i))), RequestID: "bench",
			TenantID: tn, Tenant: fmt.Sprintf("tenant-%02d", tn), UserID: k, KeyID: k, Endpoint: "chat_completions",
			Model: fmt.Sprintf("model-%d", i%models), UpstreamModel: "m", Deployment: "d", Provider: "mock",
			Usage: providers.Usage{PromptTokens: int64(100 + i%900), CompletionTokens: int64(20 + i%300)},
			Cost:  tenancy.MicroUSD(100 + i%5000), Priced: true, Latency: lat, Status: status,
		})
		if len(batch) == cap(batch) {
			if err := db.WriteUsage(ctx, batch); err != nil {
				b.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if _, err := conn.Exec(ctx, "SELECT 1"); err != nil {
		b.Fatal(err)
	}
	b.Logf("seeded %d events in %s", events, time.Since(start).Round(time.Millisecond))
	dbConn, err := pgx.Connect(ctx, u.String())
	if err == nil {
		// the seeding's upserts left 3 dead rows for each daily rollup row;
		// in service autovacuum keeps them under its 20 % threshold
		dbConn.Exec(ctx, "VACUUM ANALYZE")
		dbConn.Close(ctx)
	}

	svc := admin.New(db, func() time.Time { return now })
	all := admin.Filter{AllTenants: true, From: now.Add(-span), To: now}
	day := admin.Filter{AllTenants: true, From: now.Add(-24 * time.Hour), To: now}
	one := admin.Filter{TenantID: 3, From: now.Add(-span), To: now}
	unaligned := admin.Filter{AllTenants: true, From: now.Add(-span + 5*time.Hour), To: now.Add(-7 * time.Hour)}
	queries := []struct {
		name string
		run  func() error
	}{
		{"stats/30d", func() error { _, err := svc.Stats(ctx, all, ""); return err }},
		{"usage/30d/day", func() error { _, err := svc.Usage(ctx, admin.Query{Filter: all, Bucket: admin.BucketDay}); return err }},
		{"usage/30d/day/tenant,model", func() error {
			_, err := svc.Usage(ctx, admin.Query{Filter: all, Bucket: admin.BucketDay, By: []admin.Dimension{byTenantModel[0], byTenantModel[1]}})
			return err
		}},
		{"usage/24h/hour", func() error { _, err := svc.Usage(ctx, admin.Query{Filter: day, Bucket: admin.BucketHour}); return err }},
		{"usage/30d/tenant", func() error {
			_, err := svc.Usage(ctx, admin.Query{Filter: all, By: []admin.Dimension{admin.ByTenant}})
			return err
		}},
		{"usage/24h/key", func() error {
			_, err := svc.Usage(ctx, admin.Query{Filter: day, By: []admin.Dimension{admin.ByKey}, Limit: 10})
			return err
		}},
		{"usage/30d/key/one-tenant", func() error {
			_, err := svc.Usage(ctx, admin.Query{Filter: one, By: []admin.Dimension{admin.ByKey}, Limit: 10})
			return err
		}},
		{"usage/30d/key", func() error {
			_, err := svc.Usage(ctx, admin.Query{Filter: all, By: []admin.Dimension{admin.ByKey}, Limit: 10})
			return err
		}},
		{"usage/30d-unaligned/key", func() error { // whole days plus 19 + 17 hours
			_, err := svc.Usage(ctx, admin.Query{Filter: unaligned, By: []admin.Dimension{admin.ByKey}, Limit: 10})
			return err
		}},
		{"usage/30d/user", func() error {
			_, err := svc.Usage(ctx, admin.Query{Filter: all, By: []admin.Dimension{admin.ByUser}, Limit: 10})
			return err
		}},
		{"usage/30d/key/day", func() error { // the top 10 keys' days
			_, err := svc.Usage(ctx, admin.Query{Filter: all, Bucket: admin.BucketDay, By: []admin.Dimension{admin.ByKey}, Limit: 10})
			return err
		}},
		{"usage/24h/key/hour", func() error {
			_, err := svc.Usage(ctx, admin.Query{Filter: day, Bucket: admin.BucketHour, By: []admin.Dimension{admin.ByKey}, Limit: 10})
			return err
		}},
		// what the dashboard asks at once on a refresh (admin/web/app.js),
		// over its 30 days ending at the next whole hour
		{"dashboard/30d", func() error { return dashboardRefresh(ctx, svc, unaligned, admin.BucketDay) }},
		{"dashboard/24h", func() error {
			f := admin.Filter{AllTenants: true, From: now.Add(-31 * time.Hour), To: now.Add(-7 * time.Hour)}
			return dashboardRefresh(ctx, svc, f, admin.BucketHour)
		}},
		{"usage/7d/key/one-model", func() error {
			f := admin.Filter{AllTenants: true, Model: "model-1", From: now.Add(-7 * 24 * time.Hour), To: now}
			_, err := svc.Usage(ctx, admin.Query{Filter: f, By: []admin.Dimension{admin.ByKey}, Limit: 10})
			return err
		}},
	}
	for _, q := range queries {
		b.Run(q.name, func(b *testing.B) {
			for b.Loop() {
				if err := q.run(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
		})
	}
}

// dashboardRefresh runs the queries of a dashboard refresh concurrently,
// as the page does: stats, the series, by tenant, by model, the top keys.
func dashboardRefresh(ctx context.Context, svc *admin.Service, f admin.Filter, bucket admin.Bucket) error {
	queries := []func() error{
		func() error { _, err := svc.Stats(ctx, f, ""); return err },
		func() error { _, err := svc.Usage(ctx, admin.Query{Filter: f, Bucket: bucket}); return err },
		func() error {
			_, err := svc.Usage(ctx, admin.Query{Filter: f, By: []admin.Dimension{admin.ByTenant}})
			return err
		},
		func() error {
			_, err := svc.Usage(ctx, admin.Query{Filter: f, By: []admin.Dimension{admin.ByModel}})
			return err
		},
		func() error {
			_, err := svc.Usage(ctx, admin.Query{Filter: f, By: []admin.Dimension{admin.ByKey}, Limit: 10})
			return err
		},
	}
	errs := make([]error, len(queries))
	var wg sync.WaitGroup
	for i, q := range queries {
		wg.Go(func() { errs[i] = q() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// byTenantModel groups by tenant and model.
var byTenantModel = []admin.Dimension{admin.ByTenant, admin.ByModel}

package tenancy_test

import (
	"context"
	"encoding/base64"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/mtai-dev/mtai/tenancy"
)

func TestLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{})
	ctx := context.Background()
	acme := e.tenant(t, "acme")
	other := e.tenant(t, "other")
	gone := e.tenant(t, "gone")
	alice := e.user(t, acme.ID, "Alice", "correct horse", tenancy.RoleTenantAdmin)
	e.user(t, other.ID, "bob", "bob's password", tenancy.RoleMember)
	carol := e.user(t, acme.ID, "carol", "carol's password", tenancy.RoleMember)
	e.user(t, gone.ID, "dave", "dave's password", tenancy.RoleMember)
	if _, err := e.svc.UpdateUser(ctx, acme.ID, carol.ID, tenancy.UserUpdate{Disabled: ptr(true)}); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.DeleteTenant(ctx, gone.ID); err != nil {
		t.Fatal(err)
	}

	token, expiresIn, err := e.svc.Login(ctx, "acme", "alice", "correct horse")
	if err != nil {
		t.Fatalf("Login(acme, alice) = %v", err)
	}
	if expiresIn != time.Hour {
		t.Errorf("expiresIn = %v, want 1h", expiresIn)
	}
	p, err := e.svc.AuthenticateJWT(ctx, token, "acme")
	if err != nil {
		t.Fatalf("AuthenticateJWT(login token) = %v", err)
	}
	if p.Tenant != "acme" || p.TenantID != acme.ID || p.UserID != alice.ID || p.Role != tenancy.RoleTenantAdmin || p.KeyID != 0 || p.Policy == nil {
		t.Errorf("AuthenticateJWT = %+v, want alice of acme as tenant_admin with a policy", p)
	}

	failures := []struct {
		name, tenant, user, password string
	}{
		{"unknown tenant", "nobody", "alice", "correct horse"},
		{"user of another tenant", "acme", "bob", "bob's password"},
		{"unknown user", "acme", "zed", "correct horse"},
		{"wrong password", "acme", "alice", "wrong horse"},
		{"empty password", "acme", "alice", ""},
		{"disabled user", "acme", "carol", "carol's password"},
		{"disabled tenant", "gone", "dave", "dave's password"},
		{"invalid username", "acme", "al ice", "correct horse"},
	}
	for _, tc := range failures {
		t.Run(tc.name, func(t *testing.T) {
			token, _, err := e.svc.Login(ctx, tc.tenant, tc.user, tc.password)
			if !errors.Is(err, tenancy.ErrUnauthenticated) || token != "" {
				t.Errorf("Login(%q, %q) = %q, %v; want ErrUnauthenticated", tc.tenant, tc.user, token, err)
			}
		})
	}
}

func TestAuthenticateJWTRefuses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{})
	ctx := context.Background()
	acme := e.tenant(t, "acme")
	e.tenant(t, "other")
	alice := e.user(t, acme.ID, "alice", "correct horse", tenancy.RoleMember)
	login := func() string {
		t.Helper()
		token, _, err := e.svc.Login(ctx, "acme", "alice", "correct horse")
		if err != nil {
			t.Fatal(err)
		}
		return token
	}
	token := login()
	now := e.clock.Now()
	claims := func(tenant string, exp time.Time) tenancy.Claims {
		return tenancy.Claims{Tenant: tenant, Role: tenancy.RolePlatformAdmin, RegisteredClaims: jwt.RegisteredClaims{
			Issuer: "mtai", Subject: "1", IssuedAt: jwt.NewNumericDate(now), ExpiresAt: jwt.NewNumericDate(exp)}}
	}
	sign := func(method jwt.SigningMethod, key any, c tenancy.Claims) string {
		t.Helper()
		s, err := jwt.NewWithClaims(method, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// Tampered: the payload of a valid acme token rewritten to say "other".
	parts := strings.Split(token, ".")
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	tampered := parts[0] + "." + base64.RawURLEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"acme"`, `"other"`, 1))) + "." + parts[2]

	tests := []struct {
		name, token, tenant string
		want                error
	}{
		{"alg none", sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims("acme", now.Add(time.Hour))), "acme", tenancy.ErrUnauthenticated},
		{"HS512 with the right secret", sign(jwt.SigningMethodHS512, testSecret, claims("acme", now.Add(time.Hour))), "acme", tenancy.ErrUnauthenticated},
		{"HS256 with another secret", sign(jwt.SigningMethodHS256, []byte("another-secret-another-secret-32"), claims("acme", now.Add(time.Hour))), "acme", tenancy.ErrUnauthenticated},
		{"expired", sign(jwt.SigningMethodHS256, testSecret, claims("acme", now.Add(-time.Second))), "acme", tenancy.ErrUnauthenticated},
		{"tampered tenant claim", tampered, "other", tenancy.ErrUnauthenticated},
		{"header of another tenant", token, "other", tenancy.ErrForbidden},
		{"no header", token, "", tenancy.ErrForbidden},
		{"garbage", "not.a.jwt", "acme", tenancy.ErrUnauthenticated},
		{"empty", "", "acme", tenancy.ErrUnauthenticated},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := e.svc.AuthenticateJWT(ctx, tc.token, tc.tenant)
			if !errors.Is(err, tc.want) || p != nil {
				t.Errorf("AuthenticateJWT = %+v, %v; want %v", p, err, tc.want)
			}
		})
	}

	t.Run("role is the user's current one", func(t *testing.T) {
		if _, err := e.svc.UpdateUser(ctx, acme.ID, alice.ID, tenancy.UserUpdate{Role: ptr(tenancy.RoleTenantAdmin)}); err != nil {
			t.Fatal(err)
		}
		p, err := e.svc.AuthenticateJWT(ctx, token, "acme")
		if err != nil || p.Role != tenancy.RoleTenantAdmin {
			t.Errorf("AuthenticateJWT after promotion = %+v, %v; want tenant_admin", p, err)
		}
	})
	t.Run("expires with time", func(t *testing.T) {
		tok := login()
		e.clock.Advance(time.Hour + time.Second)
		defer e.clock.Advance(-(time.Hour + time.Second))
		if _, err := e.svc.AuthenticateJWT(ctx, tok, "acme"); !errors.Is(err, tenancy.ErrUnauthenticated) {
			t.Errorf("AuthenticateJWT after expiry = %v, want ErrUnauthenticated", err)
		}
	})
	t.Run("disabled user", func(t *testing.T) {
		tok := login()
		if _, err := e.svc.UpdateUser(ctx, acme.ID, alice.ID, tenancy.UserUpdate{Disabled: ptr(true)}); err != nil {
			t.Fatal(err)
		}
		defer e.svc.UpdateUser(ctx, acme.ID, alice.ID, tenancy.UserUpdate{Disabled: ptr(false)})
		if _, err := e.svc.AuthenticateJWT(ctx, tok, "acme"); !errors.Is(err, tenancy.ErrUnauthenticated) {
			t.Errorf("AuthenticateJWT of a disabled user = %v, want ErrUnauthenticated", err)
		}
	})
	t.Run("disabled tenant", func(t *testing.T) {
		tok := login()
		if err := e.svc.DeleteTenant(ctx, acme.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.svc.AuthenticateJWT(ctx, tok, "acme"); !errors.Is(err, tenancy.ErrUnauthenticated) {
			t.Errorf("AuthenticateJWT in a disabled tenant = %v, want ErrUnauthenticated", err)
		}
	})
}

func TestTenantLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{})
	ctx := context.Background()
	tn, err := e.svc.CreateTenant(ctx, tenancy.TenantUpdate{
		Name:          ptr("acme"),
		DisplayName:   ptr("Acme"),
		AllowedModels: &[]string{"mock-gpt", "gpt-4o-mini"},
		DefaultModel:  ptr("mock-gpt"),
		MonthlyBudget: ptr(tenancy.USD(50)),
		RAG:           &tenancy.RAGUpdate{TopK: ptr(8)},
	})
	if err != nil {
		t.Fatalf("CreateTenant = %v", err)
	}
	wantRAG := tenancy.RAGConfig{Enabled: false, TopK: 8, ChunkSize: 512, ChunkOverlap: 64}
	if tn.RAG != wantRAG || tn.CreatedAt != e.clock.Now() || tn.ID == 0 {
		t.Errorf("CreateTenant = %+v, want RAG %+v created now", tn, wantRAG)
	}
	if _, err := e.svc.CreateTenant(ctx, tenancy.TenantUpdate{Name: ptr("acme")}); !errors.Is(err, tenancy.ErrConflict) {
		t.Errorf("CreateTenant(acme twice) = %v, want ErrConflict", err)
	}

	e.clock.Advance(time.Minute)
	upd, err := e.svc.UpdateTenant(ctx, tn.ID, tenancy.TenantUpdate{
		Name:              ptr("acme"), // the same name: allowed
		RequestsPerMinute: ptr(int64(60)),
		RAG:               &tenancy.RAGUpdate{Enabled: ptr(true)},
	})
	if err != nil {
		t.Fatalf("UpdateTenant = %v", err)
	}
	want := *tn
	want.RequestsPerMinute = 60
	want.RAG.Enabled = true
	want.UpdatedAt = e.clock.Now()
	if got, _ := e.svc.GetTenant(ctx, tn.ID); got == nil || !sameTenant(got, &want) || !sameTenant(upd, &want) {
		t.Errorf("after a partial update = %+v, want %+v", got, want)
	}

	invalid := []struct {
		name  string
		upd   tenancy.TenantUpdate
		field string
	}{
		{"rename", tenancy.TenantUpdate{Name: ptr("acme2")}, "name"},
		{"negative rpm", tenancy.TenantUpdate{RequestsPerMinute: ptr(int64(-1))}, "requests_per_minute"},
		{"default not allowed", tenancy.TenantUpdate{DefaultModel: ptr("other")}, "default_model"},
		{"overlap ≥ chunk", tenancy.TenantUpdate{RAG: &tenancy.RAGUpdate{ChunkOverlap: ptr(512)}}, "rag.chunk_overlap"},
		{"negative budget", tenancy.TenantUpdate{MonthlyBudget: ptr(tenancy.MicroUSD(-1))}, "monthly_budget_usd"},
	}
	for _, tc := range invalid {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.UpdateTenant(ctx, tn.ID, tc.upd)
			var ve *tenancy.ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field {
				t.Errorf("UpdateTenant = %v, want a ValidationError on %q", err, tc.field)
			}
		})
	}
	if got, _ := e.svc.GetTenant(ctx, tn.ID); !sameTenant(got, &want) {
		t.Errorf("refused updates changed the tenant: %+v", got)
	}
	if _, err := e.svc.UpdateTenant(ctx, tn.ID+100, tenancy.TenantUpdate{}); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("UpdateTenant(unknown) = %v, want ErrNotFound", err)
	}

	if err := e.svc.DeleteTenant(ctx, tn.ID); err != nil {
		t.Fatalf("DeleteTenant = %v", err)
	}
	if err := e.svc.DeleteTenant(ctx, tn.ID); err != nil {
		t.Errorf("DeleteTenant twice = %v", err)
	}
	got, err := e.svc.GetTenantByName(ctx, "acme")
	if err != nil || !got.Disabled {
		t.Errorf("GetTenantByName after delete = %+v, %v; want disabled", got, err)
	}
	if _, err := e.svc.CreateUser(ctx, tn.ID, "late", "password!", tenancy.RoleMember); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("CreateUser in a disabled tenant = %v, want ErrNotFound", err)
	}
	if _, _, err := e.svc.CreateKey(ctx, tn.ID, 0, "late", nil); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("CreateKey in a disabled tenant = %v, want ErrNotFound", err)
	}
}

func sameTenant(a, b *tenancy.Tenant) bool {
	return a.ID == b.ID && a.Name == b.Name && a.DisplayName == b.DisplayName && a.DefaultModel == b.DefaultModel &&
		strings.Join(a.AllowedModels, ",") == strings.Join(b.AllowedModels, ",") &&
		a.RequestsPerMinute == b.RequestsPerMinute && a.RequestsPerHour == b.RequestsPerHour &&
		a.TokensPerMinute == b.TokensPerMinute && a.MonthlyBudget == b.MonthlyBudget &&
		a.SystemPrompt == b.SystemPrompt && a.RAG == b.RAG && a.Disabled == b.Disabled &&
		a.CreatedAt.Equal(b.CreatedAt) && a.UpdatedAt.Equal(b.UpdatedAt)
}

func TestCreateTenantValidation(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{})
	tests := []struct {
		name  string
		in    tenancy.TenantUpdate
		field string
	}{
		{"no name", tenancy.TenantUpdate{}, "name"},
		{"uppercase", tenancy.TenantUpdate{Name: ptr("Acme")}, "name"},
		{"too long", tenancy.TenantUpdate{Name: ptr(strings.Repeat("a", 64))}, "name"},
		{"space", tenancy.TenantUpdate{Name: ptr("a b")}, "name"},
		{"empty model", tenancy.TenantUpdate{Name: ptr("a"), AllowedModels: &[]string{""}}, "allowed_models"},
		{"duplicate model", tenancy.TenantUpdate{Name: ptr("a"), AllowedModels: &[]string{"m", "m"}}, "allowed_models"},
		{"top_k 0", tenancy.TenantUpdate{Name: ptr("a"), RAG: &tenancy.RAGUpdate{TopK: ptr(0)}}, "rag.top_k"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := e.svc.CreateTenant(context.Background(), tc.in)
			var ve *tenancy.ValidationError
			if !errors.As(err, &ve) || ve.Field != tc.field {
				t.Errorf("CreateTenant = %v, want a ValidationError on %q", err, tc.field)
			}
		})
	}
}

func TestListTenants(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{})
	for _, n := range []string{"a", "b", "c"} {
		e.tenant(t, n)
	}
	tests := []struct {
		limit, offset int
		want          string
		wantErr       string
	}{
		{0, 0, "a,b,c", ""},
		{2, 1, "b,c", ""},
		{100000, 0, "a,b,c", ""}, // lowered to MaxPageSize
		{-1, 0, "", "limit"},
		{1, -1, "", "offset"},
	}
	for _, tc := range tests {
		ts, n, err := e.svc.ListTenants(context.Background(), tc.limit, tc.offset)
		var ve *tenancy.ValidationError
		if tc.wantErr != "" {
			if !errors.As(err, &ve) || ve.Field != tc.wantErr {
				t.Errorf("ListTenants(%d, %d) = %v, want a ValidationError on %s", tc.limit, tc.offset, err, tc.wantErr)
			}
			continue
		}
		var names []string
		for _, tn := range ts {
			names = append(names, tn.Name)
		}
		if err != nil || strings.Join(names, ",") != tc.want || n != 3 {
			t.Errorf("ListTenants(%d, %d) = %v (total %d), %v; want %s (total 3)", tc.limit, tc.offset, names, n, err, tc.want)
		}
	}
}

func TestUsers(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{})
	ctx := context.Background()
	a := e.tenant(t, "a")
	b := e.tenant(t, "b")
	alice := e.user(t, a.ID, "Alice@Example.com", "password-1", tenancy.RoleMember)
	if alice.Username != "alice@example.com" || alice.PasswordHash == "" || strings.Contains(alice.PasswordHash, "password-1") {
		t.Errorf("CreateUser = %+v, want a lowercased name and a hash", alice)
	}
	e.user(t, b.ID, "alice@example.com", "password-2", tenancy.RoleMember) // same name, other tenant

	invalid := []struct {
		name, username, password string
		role                     tenancy.Role
		field                    string
	}{
		{"bad role", "x", "password-1", "root", "role"},
		{"empty role", "x", "password-1", "", "role"},
		{"short password", "x", "short", tenancy.RoleMember, "password"},
		{"bad username", "a b", "password-1", tenancy.RoleMember, "username"},
	}
	for _, tc := range invalid {
		_, err := e.svc.CreateUser(ctx, a.ID, tc.username, tc.password, tc.role)
		var ve *tenancy.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.field {
			t.Errorf("%s: CreateUser = %v, want a ValidationError on %q", tc.name, err, tc.field)
		}
	}
	if _, err := e.svc.CreateUser(ctx, a.ID, "ALICE@example.com", "password-3", tenancy.RoleMember); !errors.Is(err, tenancy.ErrConflict) {
		t.Errorf("CreateUser(same name, other case) = %v, want ErrConflict", err)
	}

	u, err := e.svc.UpdateUser(ctx, a.ID, alice.ID, tenancy.UserUpdate{Password: ptr("new-password")})
	if err != nil {
		t.Fatalf("UpdateUser(password) = %v", err)
	}
	if u.PasswordHash == alice.PasswordHash {
		t.Errorf("password hash unchanged")
	}
	if _, _, err := e.svc.Login(ctx, "a", "alice@example.com", "password-1"); !errors.Is(err, tenancy.ErrUnauthenticated) {
		t.Errorf("Login with the old password = %v, want ErrUnauthenticated", err)
	}
	if _, _, err := e.svc.Login(ctx, "a", "alice@example.com", "new-password"); err != nil {
		t.Errorf("Login with the new password = %v", err)
	}
	if _, err := e.svc.UpdateUser(ctx, b.ID, alice.ID, tenancy.UserUpdate{Role: ptr(tenancy.RolePlatformAdmin)}); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("UpdateUser from another tenant = %v, want ErrNotFound", err)
	}
	if _, err := e.svc.UpdateUser(ctx, a.ID, alice.ID, tenancy.UserUpdate{Role: ptr(tenancy.Role("god"))}); err == nil {
		t.Errorf("UpdateUser(role god) = nil, want a ValidationError")
	}

	users, n, err := e.svc.ListUsers(ctx, a.ID, 0, 0)
	if err != nil || n != 1 || len(users) != 1 || users[0].ID != alice.ID {
		t.Errorf("ListUsers(a) = %v (total %d), %v; want alice only", users, n, err)
	}
	if _, _, err := e.svc.ListUsers(ctx, 0, 0, 0); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("ListUsers(tenant 0) = %v, want ErrNotFound", err)
	}
	if _, n, err := e.svc.ListAllUsers(ctx, 0, 0); err != nil || n != 2 {
		t.Errorf("ListAllUsers = total %d, %v; want 2", n, err)
	}
}

func TestKeys(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{})
	ctx := context.Background()
	a := e.tenant(t, "a")
	b := e.tenant(t, "b")
	ub := e.user(t, b.ID, "bob", "password-b", tenancy.RoleTenantAdmin)

	exp := e.clock.Now().Add(24 * time.Hour)
	k, secret, err := e.svc.CreateKey(ctx, a.ID, 0, "ci", &exp)
	if err != nil {
		t.Fatalf("CreateKey = %v", err)
	}
	if !strings.HasPrefix(secret, "sk-mtai-") || len(secret) != 51 || k.Prefix != secret[:12] ||
		k.Hash != tenancy.HashKey([]byte(secret)) || k.ExpiresAt == nil || !k.ExpiresAt.Equal(exp) {
		t.Errorf("CreateKey = %+v, %q; want an sk-mtai- secret of 51 chars, its prefix and hash", k, secret)
	}
	if _, s2, _ := e.svc.CreateKey(ctx, a.ID, 0, "ci", nil); s2 == secret {
		t.Errorf("two keys with the same secret")
	}

	invalid := []struct {
		name     string
		tenantID int64
		userID   int64
		keyName  string
		exp      *time.Time
		want     string
	}{
		{"no name", a.ID, 0, "", nil, "name"},
		{"101 characters", a.ID, 0, strings.Repeat("é", 101), nil, "name"},
		{"not UTF-8", a.ID, 0, "\xff", nil, "name"},
		{"expired already", a.ID, 0, "x", ptr(e.clock.Now().Add(-time.Second)), "expires_at"},
	}
	for _, tc := range invalid {
		_, _, err := e.svc.CreateKey(ctx, tc.tenantID, tc.userID, tc.keyName, tc.exp)
		var ve *tenancy.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.want {
			t.Errorf("%s: CreateKey = %v, want a ValidationError on %q", tc.name, err, tc.want)
		}
	}
	if _, _, err := e.svc.CreateKey(ctx, a.ID, ub.ID, "cross", nil); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("CreateKey(tenant a, user of b) = %v, want ErrNotFound", err)
	}

	keys, n, err := e.svc.ListKeys(ctx, a.ID, 0, 0)
	if err != nil || n != 2 || len(keys) != 2 {
		t.Fatalf("ListKeys(a) = %d keys (total %d), %v; want 2", len(keys), n, err)
	}
	if _, n, _ := e.svc.ListKeys(ctx, b.ID, 0, 0); n != 0 {
		t.Errorf("ListKeys(b) total = %d, want 0", n)
	}

	if err := e.svc.RevokeKey(ctx, b.ID, k.ID); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("RevokeKey(key of a, as b) = %v, want ErrNotFound", err)
	}
	if _, err := e.cache.ResolveKey(ctx, []byte(secret)); err != nil {
		t.Fatalf("ResolveKey after b's attempt = %v", err)
	}
	if err := e.svc.RevokeKey(ctx, a.ID, k.ID); err != nil {
		t.Fatalf("RevokeKey = %v", err)
	}
	if err := e.svc.RevokeKey(ctx, a.ID, k.ID); err != nil {
		t.Errorf("RevokeKey twice = %v", err)
	}
	if _, err := e.cache.ResolveKey(ctx, []byte(secret)); !errors.Is(err, tenancy.ErrUnauthenticated) {
		t.Errorf("ResolveKey of a revoked key = %v, want ErrUnauthenticated at once", err)
	}
	// names are counted in characters, as a form's maxlength counts them
	if k, _, err := e.svc.CreateKey(ctx, a.ID, 0, strings.Repeat("é", 100), nil); err != nil || k.Name != strings.Repeat("é", 100) {
		t.Errorf("CreateKey(100 characters, 200 bytes) = %v", err)
	}
}

// TestKeyLimits: limits are checked on creation and update, and another
// tenant can neither read nor change a key.
func TestKeyLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{})
	ctx := context.Background()
	a := e.tenant(t, "a")
	b := e.tenant(t, "b")
	limits := tenancy.RateLimits{RequestsPerMinute: 60, RequestsPerHour: 600, TokensPerMinute: 10_000}
	k, _, err := e.svc.CreateKeyWithLimits(ctx, a.ID, 0, "ci", nil, limits)
	if err != nil || k.RateLimits != limits {
		t.Fatalf("CreateKeyWithLimits = %+v, %v; want limits %+v", k, err, limits)
	}
	if got, err := e.svc.GetKey(ctx, a.ID, k.ID); err != nil || got.RateLimits != limits || got.Name != "ci" {
		t.Errorf("GetKey = %+v, %v", got, err)
	}
	for _, tc := range []struct {
		name   string
		limits tenancy.RateLimits
		want   string
	}{
		{"negative rpm", tenancy.RateLimits{RequestsPerMinute: -1}, "requests_per_minute"},
		{"negative rph", tenancy.RateLimits{RequestsPerHour: -1}, "requests_per_hour"},
		{"negative tpm", tenancy.RateLimits{TokensPerMinute: -5}, "tokens_per_minute"},
	} {
		_, _, err := e.svc.CreateKeyWithLimits(ctx, a.ID, 0, "x", nil, tc.limits)
		var ve *tenancy.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.want {
			t.Errorf("%s: CreateKeyWithLimits = %v, want a ValidationError on %q", tc.name, err, tc.want)
		}
	}

	for _, tc := range []struct {
		name string
		upd  tenancy.KeyUpdate
		want string
	}{
		{"empty name", tenancy.KeyUpdate{Name: ptr("")}, "name"},
		{"negative tpm", tenancy.KeyUpdate{TokensPerMinute: ptr(int64(-1))}, "tokens_per_minute"},
	} {
		_, err := e.svc.UpdateKey(ctx, a.ID, k.ID, tc.upd)
		var ve *tenancy.ValidationError
		if !errors.As(err, &ve) || ve.Field != tc.want {
			t.Errorf("%s: UpdateKey = %v, want a ValidationError on %q", tc.name, err, tc.want)
		}
	}
	if _, err := e.svc.GetKey(ctx, b.ID, k.ID); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("GetKey(key of a, as b) = %v, want ErrNotFound", err)
	}
	if _, err := e.svc.UpdateKey(ctx, b.ID, k.ID, tenancy.KeyUpdate{TokensPerMinute: ptr(int64(1))}); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("UpdateKey(key of a, as b) = %v, want ErrNotFound", err)
	}
	got, err := e.svc.UpdateKey(ctx, a.ID, k.ID, tenancy.KeyUpdate{Name: ptr("ci-2"), TokensPerMinute: ptr(int64(0))})
	want := tenancy.RateLimits{RequestsPerMinute: 60, RequestsPerHour: 600}
	if err != nil || got.Name != "ci-2" || got.RateLimits != want {
		t.Errorf("UpdateKey = %+v, %v; want name ci-2 and limits %+v (a partial update)", got, err, want)
	}
}

func TestBootstrap(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{})
	ctx := context.Background()
	given := "sk-mtai-given-bootstrap-key-0123456789"
	got, err := e.svc.Bootstrap(ctx, tenancy.BootstrapConfig{APIKey: given})
	if err != nil || got == nil {
		t.Fatalf("Bootstrap = %+v, %v", got, err)
	}
	if got.Tenant.Name != "demo" || got.Tenant.DefaultModel != "mock-gpt" || got.Admin.Username != "admin" ||
		got.Admin.Role != tenancy.RolePlatformAdmin || got.APIKey != given || got.Key.Prefix != given[:12] || len(got.AdminPassword) < 16 {
		t.Errorf("Bootstrap = %+v", got)
	}
	if _, _, err := e.svc.Login(ctx, "demo", "admin", got.AdminPassword); err != nil {
		t.Errorf("Login(admin, generated password) = %v", err)
	}
	p, err := e.cache.ResolveKey(ctx, []byte(given))
	if err != nil || p.Tenant != "demo" || p.Role != tenancy.RoleMember || p.Policy.DefaultModel != "mock-gpt" {
		t.Errorf("ResolveKey(bootstrap key) = %+v, %v", p, err)
	}
	again, err := e.svc.Bootstrap(ctx, tenancy.BootstrapConfig{})
	if err != nil || again != nil {
		t.Errorf("Bootstrap on a filled store = %+v, %v; want nil, nil", again, err)
	}
	if _, n, _ := e.svc.ListTenants(ctx, 0, 0); n != 1 {
		t.Errorf("%d tenants after two bootstraps, want 1", n)
	}

	if _, err := e.svc.Bootstrap(ctx, tenancy.BootstrapConfig{APIKey: "short"}); err == nil {
		t.Errorf("Bootstrap(short api key) = nil error")
	}
}

func TestBootstrapConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{})
	var wg sync.WaitGroup
	results := make([]*tenancy.Bootstrapped, 8)
	errs := make([]error, 8)
	for i := range results {
		wg.Go(func() {
			results[i], errs[i] = e.svc.Bootstrap(context.Background(), tenancy.BootstrapConfig{AdminPassword: "admin-password"})
		})
	}
	wg.Wait()
	made := 0
	for i := range results {
		if errs[i] != nil {
			t.Errorf("Bootstrap %d = %v", i, errs[i])
		}
		if results[i] != nil {
			made++
		}
	}
	if made != 1 {
		t.Errorf("%d of 8 concurrent bootstraps created something, want 1", made)
	}
}

func TestNewServiceNeeds(t *testing.T) {
	t.Parallel()
	db := openStore(t)
	issuer, _ := tenancy.NewIssuer(testSecret, 0, nil)
	stores := tenancy.Stores{Tenants: db, Users: db, Keys: db}
	tests := []struct {
		name string
		cfg  tenancy.ServiceConfig
	}{
		{"no stores", tenancy.ServiceConfig{Issuer: issuer}},
		{"no issuer", tenancy.ServiceConfig{Stores: stores}},
		{"bad argon2", tenancy.ServiceConfig{Stores: stores, Issuer: issuer, Argon2: tenancy.Argon2Params{Memory: 1}}},
	}
	for _, tc := range tests {
		if _, err := tenancy.NewService(tc.cfg); err == nil {
			t.Errorf("%s: NewService = nil error", tc.name)
		}
	}
}

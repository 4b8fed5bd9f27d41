package tenancy_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/tenancy"
)

func TestKeyCacheResolve(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{})
	ctx := context.Background()
	tn, err := e.svc.CreateTenant(ctx, tenancy.TenantUpdate{
		Name: ptr("acme"), DefaultModel: ptr("m"), AllowedModels: &[]string{"m"}, TokensPerMinute: ptr(int64(1000)),
	})
	if err != nil {
		t.Fatal(err)
	}
	admin := e.user(t, tn.ID, "root", "password-1", tenancy.RoleTenantAdmin)
	k, secret := e.key(t, tn.ID, 0)
	uk, usecret := e.key(t, tn.ID, admin.ID)

	p, err := e.cache.ResolveKey(ctx, []byte(secret))
	if err != nil {
		t.Fatalf("ResolveKey = %v", err)
	}
	want := tenancy.Principal{Tenant: "acme", TenantID: tn.ID, KeyID: k.ID, Role: tenancy.RoleMember}
	if p.Tenant != want.Tenant || p.TenantID != want.TenantID || p.KeyID != want.KeyID || p.UserID != 0 || p.Role != want.Role ||
		p.Policy == nil || p.Policy.DefaultModel != "m" || p.Policy.TokensPerMinute != 1000 || !p.Policy.Allows("m") || p.Policy.Allows("x") {
		t.Errorf("ResolveKey = %+v (policy %+v), want %+v with the tenant's policy", p, p.Policy, want)
	}
	up, err := e.cache.ResolveKey(ctx, []byte(usecret))
	if err != nil || up.UserID != admin.ID || up.KeyID != uk.ID || up.Role != tenancy.RoleTenantAdmin {
		t.Errorf("ResolveKey(key of a user) = %+v, %v; want the user's id and role", up, err)
	}

	// Hits do not touch the store.
	before := e.st.keyLookups.Load()
	for range 100 {
		if _, err := e.cache.ResolveKey(ctx, []byte(secret)); err != nil {
			t.Fatal(err)
		}
	}
	if n := e.st.keyLookups.Load() - before; n != 0 {
		t.Errorf("100 cache hits made %d store lookups, want 0", n)
	}
	// After the TTL, one lookup refreshes the entry.
	e.clock.Advance(6 * time.Second)
	for range 10 {
		e.cache.ResolveKey(ctx, []byte(secret))
	}
	if n := e.st.keyLookups.Load() - before; n != 1 {
		t.Errorf("after the TTL: %d store lookups, want 1", n)
	}
}

func TestKeyCacheRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(t *testing.T, e *env) (secret string) // returns a key that must be refused
	}{
		{"unknown", func(t *testing.T, e *env) string { return tenancy.NewKeySecret() }},
		{"too short", func(t *testing.T, e *env) string { return "sk" }},
		{"revoked", func(t *testing.T, e *env) string {
			tn := e.tenant(t, "a")
			k, s := e.key(t, tn.ID, 0)
			if err := e.svc.RevokeKey(ctx, tn.ID, k.ID); err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"revoked while cached", func(t *testing.T, e *env) string {
			tn := e.tenant(t, "a")
			k, s := e.key(t, tn.ID, 0)
			mustResolve(t, e, s)
			if err := e.svc.RevokeKey(ctx, tn.ID, k.ID); err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"expired while cached", func(t *testing.T, e *env) string {
			tn := e.tenant(t, "a")
			_, s, err := e.svc.CreateKey(ctx, tn.ID, 0, "short-lived", ptr(e.clock.Now().Add(time.Second)))
			if err != nil {
				t.Fatal(err)
			}
			mustResolve(t, e, s)
			e.clock.Advance(time.Second) // within the TTL: the cached entry knows its expiry
			return s
		}},
		{"expired", func(t *testing.T, e *env) string {
			tn := e.tenant(t, "a")
			_, s, err := e.svc.CreateKey(ctx, tn.ID, 0, "short-lived", ptr(e.clock.Now().Add(time.Minute)))
			if err != nil {
				t.Fatal(err)
			}
			e.clock.Advance(time.Hour)
			return s
		}},
		{"tenant disabled while cached", func(t *testing.T, e *env) string {
			tn := e.tenant(t, "a")
			_, s := e.key(t, tn.ID, 0)
			mustResolve(t, e, s)
			if err := e.svc.DeleteTenant(ctx, tn.ID); err != nil {
				t.Fatal(err)
			}
			return s
		}},
		{"user disabled while cached", func(t *testing.T, e *env) string {
			tn := e.tenant(t, "a")
			u := e.user(t, tn.ID, "u", "password-1", tenancy.RoleMember)
			_, s := e.key(t, tn.ID, u.ID)
			mustResolve(t, e, s)
			if _, err := e.svc.UpdateUser(ctx, tn.ID, u.ID, tenancy.UserUpdate{Disabled: ptr(true)}); err != nil {
				t.Fatal(err)
			}
			return s
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tenancy.KeyCacheConfig{TTL: time.Hour}) // only invalidation can make these pass
			secret := tc.setup(t, e)
			p, err := e.cache.ResolveKey(ctx, []byte(secret))
			if !errors.Is(err, tenancy.ErrUnauthenticated) || p != nil {
				t.Errorf("ResolveKey = %+v, %v; want ErrUnauthenticated", p, err)
			}
		})
	}
}

func mustResolve(t *testing.T, e *env, secret string) *tenancy.Principal {
	t.Helper()
	p, err := e.cache.ResolveKey(context.Background(), []byte(secret))
	if err != nil {
		t.Fatalf("ResolveKey = %v", err)
	}
	return p
}

func TestKeyCachePolicyUpdate(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{TTL: time.Hour})
	tn := e.tenant(t, "a")
	_, s := e.key(t, tn.ID, 0)
	if p := mustResolve(t, e, s); p.Policy.SystemPrompt != "" {
		t.Fatalf("SystemPrompt = %q", p.Policy.SystemPrompt)
	}
	if _, err := e.svc.UpdateTenant(context.Background(), tn.ID, tenancy.TenantUpdate{SystemPrompt: ptr("Be kind.")}); err != nil {
		t.Fatal(err)
	}
	if p := mustResolve(t, e, s); p.Policy.SystemPrompt != "Be kind." {
		t.Errorf("after UpdateTenant, cached SystemPrompt = %q, want the new one", p.Policy.SystemPrompt)
	}
}

func TestKeyCacheNegative(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{NegativeTTL: 2 * time.Second, MaxNegative: 10})
	ctx := context.Background()
	unknown := []byte(tenancy.NewKeySecret())
	for range 50 {
		if _, err := e.cache.ResolveKey(ctx, unknown); !errors.Is(err, tenancy.ErrUnauthenticated) {
			t.Fatalf("ResolveKey(unknown) = %v", err)
		}
	}
	if n := e.st.keyLookups.Load(); n != 1 {
		t.Errorf("50 tries of one unknown key made %d store lookups, want 1", n)
	}
	e.clock.Advance(3 * time.Second)
	e.cache.ResolveKey(ctx, unknown)
	if n := e.st.keyLookups.Load(); n != 2 {
		t.Errorf("after the negative TTL: %d lookups, want 2", n)
	}

	for range 100 {
		e.cache.ResolveKey(ctx, []byte(tenancy.NewKeySecret()))
	}
	if _, refused := e.cache.Sizes(); refused > 10 {
		t.Errorf("negative cache holds %d entries, want at most MaxNegative 10", refused)
	}

	// A key created after it was tried works at once.
	tn := e.tenant(t, "a")
	_, secret := e.key(t, tn.ID, 0)
	if _, err := e.cache.ResolveKey(ctx, []byte(secret)); err != nil {
		t.Errorf("ResolveKey(new key) = %v", err)
	}
}

func TestKeyCacheSingleFlight(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{})
	tn := e.tenant(t, "a")
	_, secret := e.key(t, tn.ID, 0)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() {
			if _, err := e.cache.ResolveKey(context.Background(), []byte(secret)); err != nil {
				t.Errorf("ResolveKey = %v", err)
			}
		})
	}
	wg.Wait()
	if n := e.st.keyLookups.Load(); n > 2 {
		t.Errorf("50 concurrent first uses made %d store lookups, want 1 (2 at worst)", n)
	}
}

func TestKeyCacheLastUsed(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{TouchInterval: time.Minute, FlushInterval: time.Hour})
	ctx := context.Background()
	tn := e.tenant(t, "a")
	k, secret := e.key(t, tn.ID, 0)
	start := e.clock.Now()
	for range 100 {
		mustResolve(t, e, secret)
	}
	if n := e.st.marks.Load(); n != 0 {
		t.Fatalf("%d writes of last_used_at on the request path, want 0", n)
	}
	if err := e.cache.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if at, ok := e.st.markedAt(k.ID); !ok || !at.Equal(start) || e.st.marks.Load() != 1 {
		t.Errorf("after Flush: marked %v %v in %d batches, want %v in 1", at, ok, e.st.marks.Load(), start)
	}
	stored, _ := e.db.FindKeyByHash(ctx, k.Hash)
	if stored.LastUsedAt == nil || !stored.LastUsedAt.Equal(start) {
		t.Errorf("stored LastUsedAt = %v, want %v", stored.LastUsedAt, start)
	}

	// Within the interval, even across a refresh: nothing new to write.
	e.clock.Advance(30 * time.Second)
	mustResolve(t, e, secret)
	e.cache.Flush(ctx)
	if n := e.st.marks.Load(); n != 1 {
		t.Errorf("a use 30s later was written (%d batches), want at most one write a minute", n)
	}
	// After the interval: written again, by Close.
	e.clock.Advance(31 * time.Second)
	mustResolve(t, e, secret)
	if err := e.cache.Close(); err != nil {
		t.Fatalf("Close = %v", err)
	}
	if at, _ := e.st.markedAt(k.ID); !at.Equal(e.clock.Now()) {
		t.Errorf("Close did not write the last use: %v, want %v", at, e.clock.Now())
	}
}

func TestKeyCacheFlushRetries(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{FlushInterval: time.Hour})
	ctx := context.Background()
	tn := e.tenant(t, "a")
	k, secret := e.key(t, tn.ID, 0)
	mustResolve(t, e, secret)
	e.st.fail.Store(true)
	if err := e.cache.Flush(ctx); err == nil {
		t.Fatal("Flush with a failing store = nil error")
	}
	e.st.fail.Store(false)
	if err := e.cache.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.st.markedAt(k.ID); !ok {
		t.Errorf("a use whose write failed was lost")
	}
}

func TestKeyCacheStaleIfError(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{TTL: 5 * time.Second, StaleIfError: time.Minute})
	ctx := context.Background()
	tn := e.tenant(t, "a")
	_, secret := e.key(t, tn.ID, 0)
	mustResolve(t, e, secret)

	e.st.fail.Store(true)
	e.clock.Advance(10 * time.Second)
	if _, err := e.cache.ResolveKey(ctx, []byte(secret)); err != nil {
		t.Errorf("ResolveKey while the store fails, entry 10s old = %v, want the cached principal", err)
	}
	lookups := e.st.keyLookups.Load()
	for range 20 {
		e.cache.ResolveKey(ctx, []byte(secret))
	}
	if n := e.st.keyLookups.Load() - lookups; n != 0 {
		t.Errorf("serving stale made %d more lookups within a second, want 0", n)
	}
	e.clock.Advance(2 * time.Minute)
	if _, err := e.cache.ResolveKey(ctx, []byte(secret)); !errors.Is(err, errStoreDown) {
		t.Errorf("ResolveKey past StaleIfError = %v, want the store's error", err)
	}
	// Unknown keys are not refused as unknown when the store cannot say.
	if _, err := e.cache.ResolveKey(ctx, []byte(tenancy.NewKeySecret())); errors.Is(err, tenancy.ErrUnauthenticated) || err == nil {
		t.Errorf("ResolveKey(unknown) while the store fails = %v, want the store's error", err)
	}
}

func TestKeyCacheConcurrent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{FlushInterval: 10 * time.Millisecond})
	ctx := context.Background()
	tn := e.tenant(t, "a")
	var secrets []string
	for range 8 {
		_, s := e.key(t, tn.ID, 0)
		secrets = append(secrets, s)
	}
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for j := range 100 {
				s := secrets[(i+j)%len(secrets)]
				if _, err := e.cache.ResolveKey(ctx, []byte(s)); err != nil {
					t.Errorf("ResolveKey = %v", err)
					return
				}
				if j%25 == 0 {
					e.cache.Invalidate(ctx, tenancy.Invalidation{TenantID: tn.ID})
					e.clock.Advance(time.Second)
				}
			}
		})
	}
	wg.Wait()
}

func TestKeyCacheZeroAllocHit(t *testing.T) {
	e := newEnv(t, tenancy.KeyCacheConfig{})
	tn := e.tenant(t, "a")
	_, secret := e.key(t, tn.ID, 0)
	key := []byte(secret)
	mustResolve(t, e, secret)
	ctx := context.Background()
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := e.cache.ResolveKey(ctx, key); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("a cache hit allocates %v times, want 0", allocs)
	}
}

func BenchmarkKeyCacheHit(b *testing.B) {
	db := openStore(b)
	stores := tenancy.Stores{Tenants: db, Users: db, Keys: db}
	cache, err := tenancy.NewKeyCache(context.Background(), stores, tenancy.KeyCacheConfig{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	issuer, _ := tenancy.NewIssuer(testSecret, 0, nil)
	svc, err := tenancy.NewService(tenancy.ServiceConfig{Stores: stores, Issuer: issuer, Invalidator: cache, Argon2: cheapArgon2})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	tn, err := svc.CreateTenant(ctx, tenancy.TenantUpdate{Name: ptr("bench")})
	if err != nil {
		b.Fatal(err)
	}
	// A realistic cache: 100 keys, one of them hot.
	var key []byte
	for i := range 100 {
		_, s, err := svc.CreateKey(ctx, tn.ID, 0, fmt.Sprint("k", i), nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := cache.ResolveKey(ctx, []byte(s)); err != nil {
			b.Fatal(err)
		}
		key = []byte(s)
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cache.ResolveKey(ctx, key); err != nil {
				b.Fatal(err)
			}
		}
	})
}

func BenchmarkKeyCacheHitSerial(b *testing.B) {
	db := openStore(b)
	stores := tenancy.Stores{Tenants: db, Users: db, Keys: db}
	cache, err := tenancy.NewKeyCache(context.Background(), stores, tenancy.KeyCacheConfig{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	defer cache.Close()
	issuer, _ := tenancy.NewIssuer(testSecret, 0, nil)
	svc, _ := tenancy.NewService(tenancy.ServiceConfig{Stores: stores, Issuer: issuer, Argon2: cheapArgon2})
	ctx := context.Background()
	tn, err := svc.CreateTenant(ctx, tenancy.TenantUpdate{Name: ptr("bench")})
	if err != nil {
		b.Fatal(err)
	}
	_, s, err := svc.CreateKey(ctx, tn.ID, 0, "k", nil)
	if err != nil {
		b.Fatal(err)
	}
	key := []byte(s)
	if _, err := cache.ResolveKey(ctx, key); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := cache.ResolveKey(ctx, key); err != nil {
			b.Fatal(err)
		}
	}
}

// TestKeyCacheKeyLimits: a key's own limits travel in its Principal, and a
// change through UpdateKey reaches the cache at once (TTL an hour).
func TestKeyCacheKeyLimits(t *testing.T) {
	t.Parallel()
	e := newEnv(t, tenancy.KeyCacheConfig{TTL: time.Hour})
	ctx := context.Background()
	tn := e.tenant(t, "a")
	limits := tenancy.RateLimits{RequestsPerMinute: 2, TokensPerMinute: 500}
	k, s, err := e.svc.CreateKeyWithLimits(ctx, tn.ID, 0, "limited", nil, limits)
	if err != nil {
		t.Fatalf("CreateKeyWithLimits = %v", err)
	}
	_, plain := e.key(t, tn.ID, 0)
	want := &tenancy.KeyLimits{RateLimits: limits, Scope: fmt.Sprint("k", k.ID)}
	if p := mustResolve(t, e, s); p.KeyLimits == nil || *p.KeyLimits != *want {
		t.Fatalf("KeyLimits = %+v, want %+v", p.KeyLimits, want)
	}
	if p := mustResolve(t, e, plain); p.KeyLimits != nil {
		t.Errorf("a key without limits: KeyLimits = %+v, want nil", p.KeyLimits)
	}

	if _, err := e.svc.UpdateKey(ctx, tn.ID, k.ID, tenancy.KeyUpdate{RequestsPerMinute: ptr(int64(7))}); err != nil {
		t.Fatalf("UpdateKey = %v", err)
	}
	want.RequestsPerMinute = 7
	if p := mustResolve(t, e, s); p.KeyLimits == nil || *p.KeyLimits != *want {
		t.Errorf("after UpdateKey, cached KeyLimits = %+v, want %+v", p.KeyLimits, want)
	}
	if _, err := e.svc.UpdateKey(ctx, tn.ID, k.ID, tenancy.KeyUpdate{RequestsPerMinute: ptr(int64(0)), TokensPerMinute: ptr(int64(0))}); err != nil {
		t.Fatalf("UpdateKey = %v", err)
	}
	if p := mustResolve(t, e, s); p.KeyLimits != nil {
		t.Errorf("limits removed: KeyLimits = %+v, want nil", p.KeyLimits)
	}
}

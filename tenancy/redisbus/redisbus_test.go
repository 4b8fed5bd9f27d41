package redisbus_test

import (
	"context"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/mtai-dev/mtai/store/sqlite"
	"github.com/mtai-dev/mtai/tenancy"
	"github.com/mtai-dev/mtai/tenancy/redisbus"
)

// newClient connects to the test Redis (MTAI_TEST_REDIS_URL, default
// redis://127.0.0.1:6379/0). It fails, never skips, when Redis is down.
func newClient(t *testing.T) *redis.Client {
	t.Helper()
	url := os.Getenv("MTAI_TEST_REDIS_URL")
	if url == "" {
		url = "redis://127.0.0.1:6379/0"
	}
	opt, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("MTAI_TEST_REDIS_URL: %v", err)
	}
	c := redis.NewClient(opt)
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("Redis unreachable at %s (%v).\nStart the test services with scripts/services.sh, "+
			"or point MTAI_TEST_REDIS_URL at a Redis server.", url, err)
	}
	return c
}

// channel returns a channel name no other test uses.
func channel() string {
	return "mtai:test:" + rand.Text()
}

func TestPublishSubscribe(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	ch := channel()
	bus := redisbus.New(newClient(t), ch)
	got := make(chan tenancy.Invalidation, 10) // more than the test sends: fn never blocks
	sub, err := bus.Subscribe(ctx, func(inv tenancy.Invalidation) { got <- inv })
	if err != nil {
		t.Fatalf("Subscribe = %v", err)
	}
	defer sub.Close()

	// A malformed message on the channel is skipped.
	if err := newClient(t).Publish(ctx, ch, "not json").Err(); err != nil {
		t.Fatal(err)
	}
	sent := []tenancy.Invalidation{
		{KeyHash: tenancy.HashKey([]byte("k"))},
		{TenantID: 42},
		{All: true},
		{KeyHash: "ab", TenantID: 7},
	}
	for _, inv := range sent {
		if err := redisbus.New(newClient(t), ch).Publish(ctx, inv); err != nil {
			t.Fatalf("Publish = %v", err)
		}
	}
	for _, want := range sent {
		select {
		case inv := <-got:
			if inv != want {
				t.Errorf("received %+v, want %+v", inv, want)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("no message within 2s, want %+v", want)
		}
	}
	if err := sub.Close(); err != nil {
		t.Errorf("Close = %v", err)
	}
}

// replica is one gateway replica: its own Redis connection, KeyCache and
// Service, over the shared database.
type replica struct {
	cache *tenancy.KeyCache
	svc   *tenancy.Service
}

func newReplica(t *testing.T, db *sqlite.DB, ch string) *replica {
	t.Helper()
	stores := tenancy.Stores{Tenants: db, Users: db, Keys: db}
	cache, err := tenancy.NewKeyCache(context.Background(), stores, tenancy.KeyCacheConfig{
		TTL: time.Hour, // only the bus can make a revocation visible in time
		Bus: redisbus.New(newClient(t), ch),
	})
	if err != nil {
		t.Fatalf("NewKeyCache = %v", err)
	}
	t.Cleanup(func() {
		if err := cache.Close(); err != nil {
			t.Errorf("KeyCache.Close = %v", err)
		}
	})
	issuer, err := tenancy.NewIssuer([]byte("0123456789abcdef0123456789abcdef"), 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := tenancy.NewService(tenancy.ServiceConfig{
		Stores: stores, Issuer: issuer, Invalidator: cache,
		Argon2: tenancy.Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32},
	})
	if err != nil {
		t.Fatal(err)
	}
	return &replica{cache: cache, svc: svc}
}

// refusedWithin polls r until it refuses secret, and fails t after d.
func refusedWithin(t *testing.T, r *replica, secret string, d time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		_, err := r.cache.ResolveKey(context.Background(), []byte(secret))
		if errors.Is(err, tenancy.ErrUnauthenticated) {
			return time.Since(start)
		}
		if err != nil {
			t.Fatalf("ResolveKey = %v", err)
		}
		if time.Since(start) > d {
			t.Fatalf("replica B still accepts the key %v later", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// twoReplicas returns two replicas over one new database and one bus
// channel, and a tenant "acme" created through the first.
func twoReplicas(t *testing.T) (a, b *replica, tn *tenancy.Tenant) {
	t.Helper()
	ctx := context.Background()
	db, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "mtai.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	ch := channel()
	a, b = newReplica(t, db, ch), newReplica(t, db, ch)
	name := "acme"
	if tn, err = a.svc.CreateTenant(ctx, tenancy.TenantUpdate{Name: &name}); err != nil {
		t.Fatal(err)
	}
	return a, b, tn
}

func TestRevokeReachesOtherReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b, tn := twoReplicas(t)
	k1, s1, err := a.svc.CreateKey(ctx, tn.ID, 0, "one", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, s2, err := a.svc.CreateKey(ctx, tn.ID, 0, "two", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{s1, s2} {
		if _, err := b.cache.ResolveKey(ctx, []byte(s)); err != nil {
			t.Fatalf("replica B: ResolveKey = %v", err)
		}
	}

	// A revokes one key: B refuses it within a second, keeps the other.
	if err := a.svc.RevokeKey(ctx, tn.ID, k1.ID); err != nil {
		t.Fatal(err)
	}
	took := refusedWithin(t, b, s1, time.Second)
	t.Logf("revocation seen by replica B after %v", took)
	if _, err := b.cache.ResolveKey(ctx, []byte(s2)); err != nil {
		t.Errorf("replica B refuses the key that was not revoked: %v", err)
	}

	// A disables the tenant: B refuses its other key too.
	if err := a.svc.DeleteTenant(ctx, tn.ID); err != nil {
		t.Fatal(err)
	}
	refusedWithin(t, b, s2, time.Second)
}

// TestKeyLimitsReachOtherReplicas: a key's new limits, saved through
// replica A, are those replica B resolves within a second.
func TestKeyLimitsReachOtherReplicas(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	a, b, tn := twoReplicas(t)
	k, secret, err := a.svc.CreateKeyWithLimits(ctx, tn.ID, 0, "limited", nil, tenancy.RateLimits{RequestsPerMinute: 5})
	if err != nil {
		t.Fatal(err)
	}
	p, err := b.cache.ResolveKey(ctx, []byte(secret))
	if err != nil || p.KeyLimits == nil || p.KeyLimits.RequestsPerMinute != 5 {
		t.Fatalf("replica B: ResolveKey = %+v, %v; want 5 requests per minute", p, err)
	}
	rpm := int64(50)
	if _, err := a.svc.UpdateKey(ctx, tn.ID, k.ID, tenancy.KeyUpdate{RequestsPerMinute: &rpm}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	for {
		p, err := b.cache.ResolveKey(ctx, []byte(secret))
		if err != nil {
			t.Fatalf("replica B: ResolveKey = %v", err)
		}
		if p.KeyLimits != nil && p.KeyLimits.RequestsPerMinute == rpm {
			t.Logf("new limits seen by replica B after %v", time.Since(start))
			return
		}
		if time.Since(start) > time.Second {
			t.Fatalf("replica B still limits the key with %+v a second later", p.KeyLimits)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

package tenancy_test

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/store/sqlite"
	"github.com/mtai-dev/mtai/tenancy"
)

// cheapArgon2 keeps the suite fast; production costs are tested apart.
var cheapArgon2 = tenancy.Argon2Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}

// testSecret is a valid HS256 secret.
var testSecret = []byte("0123456789abcdef0123456789abcdef")

// clock is a settable clock, safe for concurrent use.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock {
	return &clock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// openStore returns a migrated SQLite database in a temporary directory.
func openStore(t testing.TB) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "mtai.db"))
	if err != nil {
		t.Fatalf("sqlite.Open = %v", err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate = %v", err)
	}
	return db
}

// countingStores wraps real stores, counting reads of the key path and
// failing them on demand.
type countingStores struct {
	tenancy.TenantStore
	tenancy.UserStore
	tenancy.KeyStore
	keyLookups atomic.Int64
	marks      atomic.Int64
	fail       atomic.Bool
	mu         sync.Mutex
	marked     map[int64]time.Time
}

var errStoreDown = errors.New("store down")

func newCounting(db *sqlite.DB) *countingStores {
	return &countingStores{TenantStore: db, UserStore: db, KeyStore: db, marked: map[int64]time.Time{}}
}

func (s *countingStores) stores() tenancy.Stores {
	return tenancy.Stores{Tenants: s, Users: s, Keys: s}
}

func (s *countingStores) FindKeyByHash(ctx context.Context, hash string) (*tenancy.APIKey, error) {
	s.keyLookups.Add(1)
	if s.fail.Load() {
		return nil, errStoreDown
	}
	return s.KeyStore.FindKeyByHash(ctx, hash)
}

func (s *countingStores) MarkKeysUsed(ctx context.Context, used map[int64]time.Time) error {
	s.marks.Add(1)
	if s.fail.Load() {
		return errStoreDown
	}
	s.mu.Lock()
	for id, at := range used {
		s.marked[id] = at
	}
	s.mu.Unlock()
	return s.KeyStore.MarkKeysUsed(ctx, used)
}

func (s *countingStores) markedAt(id int64) (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	at, ok := s.marked[id]
	return at, ok
}

// env is a Service and a KeyCache over one SQLite store.
type env struct {
	db    *sqlite.DB
	st    *countingStores
	clock *clock
	svc   *tenancy.Service
	cache *tenancy.KeyCache
}

func newEnv(t *testing.T, cacheCfg tenancy.KeyCacheConfig) *env {
	t.Helper()
	e := &env{db: openStore(t), clock: newClock()}
	e.st = newCounting(e.db)
	cacheCfg.Now = e.clock.Now
	var err error
	e.cache, err = tenancy.NewKeyCache(context.Background(), e.st.stores(), cacheCfg)
	if err != nil {
		t.Fatalf("NewKeyCache = %v", err)
	}
	t.Cleanup(func() { e.cache.Close() })
	issuer, err := tenancy.NewIssuer(testSecret, time.Hour, e.clock.Now)
	if err != nil {
		t.Fatal(err)
	}
	e.svc, err = tenancy.NewService(tenancy.ServiceConfig{
		Stores:      e.st.stores(),
		Issuer:      issuer,
		Invalidator: e.cache,
		Now:         e.clock.Now,
		Argon2:      cheapArgon2,
	})
	if err != nil {
		t.Fatalf("NewService = %v", err)
	}
	return e
}

func (e *env) tenant(t *testing.T, name string) *tenancy.Tenant {
	t.Helper()
	tn, err := e.svc.CreateTenant(context.Background(), tenancy.TenantUpdate{Name: &name})
	if err != nil {
		t.Fatalf("CreateTenant(%q) = %v", name, err)
	}
	return tn
}

func (e *env) user(t *testing.T, tenantID int64, name, password string, role tenancy.Role) *tenancy.User {
	t.Helper()
	u, err := e.svc.CreateUser(context.Background(), tenantID, name, password, role)
	if err != nil {
		t.Fatalf("CreateUser(%q) = %v", name, err)
	}
	return u
}

func (e *env) key(t *testing.T, tenantID, userID int64) (*tenancy.APIKey, string) {
	t.Helper()
	k, secret, err := e.svc.CreateKey(context.Background(), tenantID, userID, "test", nil)
	if err != nil {
		t.Fatalf("CreateKey = %v", err)
	}
	return k, secret
}

func ptr[T any](v T) *T { return &v }

package tenancy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"
)

// Invalidation names cached credentials that are no longer true. The zero
// value invalidates nothing.
type Invalidation struct {
	// KeyHash drops the key with that HashKey (revoked, or just created and
	// perhaps remembered as unknown).
	KeyHash string
	// TenantID drops every key of that tenant (its policy or state changed,
	// or one of its users').
	TenantID int64
	// All drops everything (e.g. after a lost connection to the bus).
	All bool
}

// Bus carries invalidations between the replicas of the gateway, so that a
// key revoked on one is refused by all within about a second rather than
// within the cache TTL. tenancy/redisbus is the Redis implementation.
// Delivery may be lost (during a reconnection): the TTL still bounds
// staleness.
type Bus interface {
	// Publish sends inv to every subscriber, this replica's included.
	Publish(ctx context.Context, inv Invalidation) error
	// Subscribe returns once subscribed, then calls fn for every
	// invalidation published, from a goroutine it owns, until the returned
	// Closer is closed (which waits for that goroutine).
	Subscribe(ctx context.Context, fn func(Invalidation)) (io.Closer, error)
}

// KeyCacheConfig tunes a KeyCache. The zero value is a good production
// configuration without a bus.
type KeyCacheConfig struct {
	// TTL is how long a resolved key is served without asking the store;
	// default 5s. It bounds how stale a principal can be on a replica that
	// missed an invalidation.
	TTL time.Duration
	// NegativeTTL is how long an unknown, revoked or expired key is refused
	// without asking the store; default 2s.
	NegativeTTL time.Duration
	// MaxNegative bounds how many refused keys are remembered; default 10000.
	// When full, expired entries go first, then arbitrary ones.
	MaxNegative int
	// StaleIfError lets a key resolved less than that long ago be served
	// while the store fails (an outage must not log everyone out); default
	// 5m, negative to disable.
	StaleIfError time.Duration
	// TouchInterval is the least time between two writes of a key's
	// last_used_at; default 1m.
	TouchInterval time.Duration
	// FlushInterval is how often recorded uses are written, in one batch;
	// default 10s.
	FlushInterval time.Duration
	// LookupTimeout bounds one lookup in the store; default 5s.
	LookupTimeout time.Duration
	// MaxConcurrentLookups bounds the store lookups in flight, so that a
	// flood of unknown keys cannot exhaust the connection pool; default 8.
	MaxConcurrentLookups int
	// Bus, when set, shares invalidations with the other replicas.
	Bus Bus
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Logger receives store and bus failures; none when nil.
	Logger *zap.Logger
}

// KeyCache is the KeyResolver of the gateway's hot path: it resolves an API
// key to a Principal (carrying the tenant's Policy) from memory, asking the
// stores at most once per key per TTL, and remembers refused keys for a
// while so that they cannot hammer the database. It refuses revoked and
// expired keys, keys of disabled tenants and keys issued to disabled users.
// Uses are recorded in memory and written in batches (last_used_at) by a
// goroutine that Close stops. A cache hit costs a SHA-256 and a map read
// under a read lock, and allocates nothing.
//
// KeyCache is safe for concurrent use. Call Close when done.
type KeyCache struct {
	keys    KeyStore
	tenants TenantStore
	users   UserStore
	cfg     KeyCacheConfig
	now     func() time.Time
	log     *zap.Logger

	mu  sync.RWMutex
	pos map[[sha256.Size]byte]*keyEntry
	neg map[[sha256.Size]byte]int64 // hash → refused until (unix ns)
	gen uint64                      // bumped by every invalidation

	sf  singleflight.Group
	sem chan struct{} // MaxConcurrentLookups slots

	usedMu sync.Mutex
	used   map[int64]time.Time // key id → last use not yet written

	sub       io.Closer // bus subscription, nil without a bus
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// keyEntry is a resolved key. Its fields never change once it is in the
// map, except lastUsed; a changed entry is replaced by a new one.
type keyEntry struct {
	p          *Principal
	tenantID   int64
	keyID      int64
	keyExpires int64 // unix ns; 0: never
	freshUntil int64 // unix ns; served without lookup before
	fetched    int64 // unix ns of the store read
	lastUsed   atomic.Int64
}

// NewKeyCache returns a KeyCache over stores. With cfg.Bus it subscribes
// before returning (ctx bounds that) and fails if it cannot.
func NewKeyCache(ctx context.Context, stores Stores, cfg KeyCacheConfig) (*KeyCache, error) {
	if stores.Tenants == nil || stores.Users == nil || stores.Keys == nil {
		return nil, errors.New("tenancy: NewKeyCache needs the tenant, user and key stores")
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&cfg.TTL, 5*time.Second)
	def(&cfg.NegativeTTL, 2*time.Second)
	def(&cfg.StaleIfError, 5*time.Minute)
	def(&cfg.TouchInterval, time.Minute)
	def(&cfg.FlushInterval, 10*time.Second)
	def(&cfg.LookupTimeout, 5*time.Second)
	if cfg.MaxNegative <= 0 {
		cfg.MaxNegative = 10000
	}
	if cfg.MaxConcurrentLookups <= 0 {
		cfg.MaxConcurrentLookups = 8
	}
	if cfg.TTL < 0 || cfg.NegativeTTL < 0 || cfg.TouchInterval < 0 || cfg.FlushInterval < 0 || cfg.LookupTimeout < 0 {
		return nil, errors.New("tenancy: KeyCacheConfig: TTL, NegativeTTL, TouchInterval, FlushInterval and LookupTimeout must not be negative")
	}
	c := &KeyCache{
		keys:    stores.Keys,
		tenants: stores.Tenants,
		users:   stores.Users,
		cfg:     cfg,
		now:     cfg.Now,
		log:     cfg.Logger,
		pos:     make(map[[sha256.Size]byte]*keyEntry),
		neg:     make(map[[sha256.Size]byte]int64),
		sem:     make(chan struct{}, cfg.MaxConcurrentLookups),
		used:    make(map[int64]time.Time),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	if cfg.Bus != nil {
		sub, err := cfg.Bus.Subscribe(ctx, c.drop)
		if err != nil {
			return nil, fmt.Errorf("tenancy: subscribe to invalidations: %w", err)
		}
		c.sub = sub
	}
	go c.run()
	return c, nil
}

var _ KeyResolver = (*KeyCache)(nil)
var _ Invalidator = (*KeyCache)(nil)

// ResolveKey implements KeyResolver. An unusable key is ErrUnauthenticated;
// a failing store is another error (unless StaleIfError covers it).
func (c *KeyCache) ResolveKey(ctx context.Context, key []byte) (*Principal, error) {
	if len(key) < minKeyLen || len(key) > maxKeyLen {
		return nil, ErrUnauthenticated
	}
	h := sha256.Sum256(key)
	ns := c.now().UnixNano()
	c.mu.RLock()
	e := c.pos[h]
	if e != nil && ns < e.freshUntil {
		c.mu.RUnlock()
		return c.use(e, ns)
	}
	refusedUntil, refused := c.neg[h]
	c.mu.RUnlock()
	if refused && ns < refusedUntil {
		return nil, ErrUnauthenticated
	}
	return c.miss(ctx, h, e)
}

// use checks the key's expiry and records the use at most once per
// TouchInterval.
func (c *KeyCache) use(e *keyEntry, ns int64) (*Principal, error) {
	if e.keyExpires != 0 && ns >= e.keyExpires {
		return nil, ErrUnauthenticated
	}
	if last := e.lastUsed.Load(); ns-last >= int64(c.cfg.TouchInterval) && e.lastUsed.CompareAndSwap(last, ns) {
		c.usedMu.Lock()
		c.used[e.keyID] = time.Unix(0, ns).UTC()
		c.usedMu.Unlock()
	}
	return e.p, nil
}

// miss asks the store, one lookup per hash at a time.
func (c *KeyCache) miss(ctx context.Context, h [sha256.Size]byte, old *keyEntry) (*Principal, error) {
	hash := hex.EncodeToString(h[:])
	ch := c.sf.DoChan(hash, func() (any, error) { return c.load(ctx, h, hash, old) })
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return c.use(r.Val.(*keyEntry), c.now().UnixNano())
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// load reads the key from the stores and caches the answer.
func (c *KeyCache) load(ctx context.Context, h [sha256.Size]byte, hash string, old *keyEntry) (*keyEntry, error) {
	// The lookup serves every caller waiting on it: one caller leaving must
	// not cancel it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.cfg.LookupTimeout)
	defer cancel()
	select {
	case c.sem <- struct{}{}:
		defer func() { <-c.sem }()
	case <-ctx.Done():
		return nil, fmt.Errorf("resolve key: waiting for a lookup slot: %w", ctx.Err())
	}
	c.mu.RLock()
	gen := c.gen
	c.mu.RUnlock()

	p, k, err := c.fetch(ctx, hash)
	now := c.now().UnixNano()
	switch {
	case err == nil:
		e := &keyEntry{p: p, tenantID: k.TenantID, keyID: k.ID, freshUntil: now + int64(c.cfg.TTL), fetched: now}
		if k.ExpiresAt != nil {
			e.keyExpires = k.ExpiresAt.UnixNano()
		}
		if k.LastUsedAt != nil {
			e.lastUsed.Store(k.LastUsedAt.UnixNano())
		}
		if old != nil && old.lastUsed.Load() > e.lastUsed.Load() {
			e.lastUsed.Store(old.lastUsed.Load())
		}
		c.mu.Lock()
		if c.gen == gen { // else an invalidation raced with the read: don't keep it
			c.pos[h] = e
			delete(c.neg, h)
		}
		c.mu.Unlock()
		return e, nil
	case errors.Is(err, ErrUnauthenticated):
		c.mu.Lock()
		delete(c.pos, h)
		c.refuse(h, now+int64(c.cfg.NegativeTTL))
		c.mu.Unlock()
		return nil, err
	}
	if old != nil && c.cfg.StaleIfError > 0 && now < old.fetched+int64(c.cfg.StaleIfError) {
		c.log.Warn("key store failing; serving a cached key", zap.Int64("key_id", old.keyID), zap.Error(err))
		// Retry the store in a second, not at every request.
		e := &keyEntry{p: old.p, tenantID: old.tenantID, keyID: old.keyID, keyExpires: old.keyExpires,
			freshUntil: now + int64(min(c.cfg.TTL, time.Second)), fetched: old.fetched}
		e.lastUsed.Store(old.lastUsed.Load())
		c.mu.Lock()
		if c.gen == gen {
			c.pos[h] = e
		}
		c.mu.Unlock()
		return e, nil
	}
	return nil, fmt.Errorf("resolve key: %w", err)
}

// fetch builds the principal of the key with that hash, or
// ErrUnauthenticated when the key may not be used.
func (c *KeyCache) fetch(ctx context.Context, hash string) (*Principal, *APIKey, error) {
	unauth := func(err error) error {
		if errors.Is(err, ErrNotFound) {
			return ErrUnauthenticated
		}
		return err
	}
	k, err := c.keys.FindKeyByHash(ctx, hash)
	if err != nil {
		return nil, nil, unauth(err)
	}
	if !k.Usable(c.now()) {
		return nil, nil, ErrUnauthenticated
	}
	t, err := c.tenants.FindTenantByID(ctx, k.TenantID)
	if err != nil {
		return nil, nil, unauth(err)
	}
	if t.Disabled {
		return nil, nil, ErrUnauthenticated
	}
	role := RoleMember
	if k.UserID != 0 {
		u, err := c.users.FindUserByID(ctx, k.TenantID, k.UserID)
		if err != nil {
			return nil, nil, unauth(err)
		}
		if u.Disabled {
			return nil, nil, ErrUnauthenticated
		}
		role = u.Role
	}
	p := &Principal{Tenant: t.Name, TenantID: t.ID, UserID: k.UserID, KeyID: k.ID, Role: role, Policy: t.Policy(),
		KeyLimits: k.keyLimits()}
	return p, k, nil
}

// refuse remembers h as refused until until. c.mu must be held.
func (c *KeyCache) refuse(h [sha256.Size]byte, until int64) {
	if _, ok := c.neg[h]; !ok && len(c.neg) >= c.cfg.MaxNegative {
		now := c.now().UnixNano()
		for k, exp := range c.neg {
			if exp <= now {
				delete(c.neg, k)
			}
		}
		// Still full: forget arbitrary entries (map order), a tenth of them.
		for k := range c.neg {
			if len(c.neg) < c.cfg.MaxNegative*9/10 {
				break
			}
			delete(c.neg, k)
		}
	}
	c.neg[h] = until
}

// Invalidate drops what inv names from this cache and, with a Bus, from the
// other replicas' (a failure to publish is logged: their TTL still applies).
func (c *KeyCache) Invalidate(ctx context.Context, inv Invalidation) {
	c.drop(inv)
	if c.cfg.Bus != nil {
		if err := c.cfg.Bus.Publish(ctx, inv); err != nil {
			c.log.Warn("publish key invalidation", zap.Error(err))
		}
	}
}

// drop applies inv to this cache only.
func (c *KeyCache) drop(inv Invalidation) {
	var h [sha256.Size]byte
	validHash := false
	if inv.KeyHash != "" {
		n, err := hex.Decode(h[:], []byte(inv.KeyHash))
		validHash = err == nil && n == sha256.Size
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.gen++
	if inv.All {
		clear(c.pos)
		clear(c.neg)
		return
	}
	if validHash {
		delete(c.pos, h)
		delete(c.neg, h)
	}
	if inv.TenantID != 0 {
		for k, e := range c.pos {
			if e.tenantID == inv.TenantID {
				delete(c.pos, k)
			}
		}
	}
}

// Flush writes the recorded uses now, in one batch. Uses that fail to be
// written are kept for the next flush.
func (c *KeyCache) Flush(ctx context.Context) error {
	c.usedMu.Lock()
	batch := c.used
	if len(batch) == 0 {
		c.usedMu.Unlock()
		return nil
	}
	c.used = make(map[int64]time.Time, len(batch))
	c.usedMu.Unlock()
	if err := c.keys.MarkKeysUsed(ctx, batch); err != nil {
		c.usedMu.Lock()
		for id, t := range batch {
			if cur, ok := c.used[id]; !ok || t.After(cur) {
				c.used[id] = t
			}
		}
		c.usedMu.Unlock()
		return fmt.Errorf("record key uses: %w", err)
	}
	return nil
}

// run flushes uses and sweeps old entries until Close.
func (c *KeyCache) run() {
	defer close(c.done)
	tick := time.NewTicker(c.cfg.FlushInterval)
	defer tick.Stop()
	for {
		select {
		case <-c.stop:
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.LookupTimeout)
			c.closeErr = c.Flush(ctx)
			cancel()
			return
		case <-tick.C:
			ctx, cancel := context.WithTimeout(context.Background(), c.cfg.LookupTimeout)
			if err := c.Flush(ctx); err != nil {
				c.log.Warn("flush key uses", zap.Error(err))
			}
			cancel()
			c.sweep()
		}
	}
}

// sweep forgets entries too old to be served, even stale.
func (c *KeyCache) sweep() {
	now := c.now().UnixNano()
	keep := int64(max(c.cfg.TTL, c.cfg.StaleIfError))
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, e := range c.pos {
		if now >= e.freshUntil && now-e.fetched > keep {
			delete(c.pos, k)
		}
	}
	for k, exp := range c.neg {
		if exp <= now {
			delete(c.neg, k)
		}
	}
}

// Close stops listening to the bus, writes the pending uses and stops the
// flushing goroutine, waiting for it. It returns the error of the last
// flush. Calling it again returns the same error. After Close, ResolveKey
// still answers, but uses are no longer written.
func (c *KeyCache) Close() error {
	c.closeOnce.Do(func() {
		var subErr error
		if c.sub != nil {
			subErr = c.sub.Close()
		}
		close(c.stop)
		<-c.done
		c.closeErr = errors.Join(c.closeErr, subErr)
	})
	return c.closeErr
}

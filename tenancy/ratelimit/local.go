package ratelimit

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/mtai-dev/mtai/tenancy"
)

// LocalOptions configure NewLocal. The zero value is a working in-process
// limiter on the system clock, whose spend counters start from 0.
type LocalOptions struct {
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Spend rebuilds a month's spend counter the first time a tenant is seen
	// in that month; nil: counters start from 0.
	Spend SpendSource
	// SpendTimeout bounds a call to Spend; default 1s. When Spend fails, the
	// request is admitted without a budget reservation and the counter is
	// rebuilt on the next request (the usage records will include it).
	SpendTimeout time.Duration
	// Share divides every bucket's limit (never below 1) and what remains
	// of a budget when the counter is rebuilt: a replica that limits alone
	// while the shared limiter is unreachable takes its fair share,
	// limit ÷ replicas. 0 or 1: whole limits.
	Share int64
}

// Local is an in-process Limiter: exact for one process, with the same
// semantics as the Redis limiter. State lives in memory (a few hundred
// bytes per tenant and month) until the process ends. Safe for concurrent
// use; requests of one tenant are serialized by a mutex of that tenant.
type Local struct {
	now          func() time.Time
	spend        SpendSource
	spendTimeout time.Duration
	share        int64

	mu      sync.RWMutex
	tenants map[string]*tenantState
}

type tenantState struct {
	mu      sync.Mutex
	buckets map[bucketKey]*bucket
	months  map[int32]*spendState
}

type bucketKey struct {
	scope string
	kind  Kind
}

type spendState struct {
	spent tenancy.MicroUSD // reservations included
	base  tenancy.MicroUSD // the counter when it was rebuilt (Share)
}

var _ Limiter = (*Local)(nil)

// NewLocal returns an in-process limiter.
func NewLocal(o LocalOptions) *Local {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.SpendTimeout <= 0 {
		o.SpendTimeout = time.Second
	}
	return &Local{now: o.Now, spend: o.Spend, spendTimeout: o.SpendTimeout, share: o.Share,
		tenants: make(map[string]*tenantState)}
}

func (l *Local) tenant(name string) *tenantState {
	l.mu.RLock()
	t := l.tenants[name]
	l.mu.RUnlock()
	if t != nil {
		return t
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if t = l.tenants[name]; t == nil {
		t = &tenantState{buckets: make(map[bucketKey]*bucket, 3), months: make(map[int32]*spendState, 1)}
		l.tenants[strings.Clone(name)] = t // the caller may reuse name's bytes
	}
	return t
}

// Reserve implements Limiter.
func (l *Local) Reserve(ctx context.Context, req *Request, res *Result) error {
	if err := req.Validate(); err != nil {
		return err
	}
	now := l.now()
	nowMs := now.UnixMilli()
	*res = Result{Denied: -1}
	monthStart, month := MonthOf(now)
	res.Month = month

	t := l.tenant(req.Tenant)
	t.mu.Lock()
	defer t.mu.Unlock()

	// Decide on copies; write back only what an admission changes, as the
	// Redis script does.
	var bs [MaxBuckets]bucket
	var stored [MaxBuckets]*bucket // what bs[i] was copied from; nil for a new bucket
	var worst int64 = -1
	for i, b := range req.Buckets {
		w := b.Kind.Window().Milliseconds()
		c := b.Capacity(l.share)
		if bk := t.buckets[bucketKey{b.Scope, b.Kind}]; bk != nil {
			stored[i] = bk
			bs[i] = *bk
			bs[i].advance(nowMs, w, c)
		} else {
			bs[i] = newBucket(nowMs, w, c)
		}
		res.States[i] = bs[i].state(w)
		ms, tooLarge := bs[i].wait(b.Amount(req), w)
		switch {
		case tooLarge:
			if !res.TooLarge {
				res.TooLarge, res.Denied, worst = true, i, -1
			}
		case ms > 0 && !res.TooLarge && ms > worst:
			res.Denied, worst = i, ms
		}
	}

	var sp *spendState
	if req.Budget > 0 {
		sp = t.months[month]
		if sp == nil {
			sp = l.rebuild(ctx, t, req, monthStart, month)
		}
		if sp != nil {
			limit := req.Budget
			if l.share > 1 && limit > sp.base {
				limit = sp.base + (limit-sp.base)/tenancy.MicroUSD(l.share)
			}
			res.Spent = sp.spent
			if sp.spent >= limit || sp.spent+req.Cost > limit {
				res.OverBudget, res.Denied, res.TooLarge = true, -1, false
				return nil
			}
		}
	}
	if res.Denied >= 0 {
		if !res.TooLarge {
			res.RetryAfter = time.Duration(worst) * time.Millisecond
		}
		return nil
	}
	for i, b := range req.Buckets {
		w := b.Kind.Window().Milliseconds()
		bs[i].take(b.Amount(req), w)
		res.States[i] = bs[i].state(w)
		if bk := stored[i]; bk != nil {
			*bk = bs[i]
		} else {
			nb := bs[i]
			t.buckets[bucketKey{strings.Clone(b.Scope), b.Kind}] = &nb
		}
	}
	if sp != nil {
		sp.spent += req.Cost
		res.Spent, res.Budgeted = sp.spent, true
	}
	res.Allowed = true
	return nil
}

// rebuild creates the month's spend counter from the SpendSource; nil when
// that failed (the request then goes without a budget reservation). Called
// with t.mu held.
func (l *Local) rebuild(ctx context.Context, t *tenantState, req *Request, monthStart time.Time, month int32) *spendState {
	var seed tenancy.MicroUSD
	if l.spend != nil && req.TenantID != 0 {
		ctx, cancel := context.WithTimeout(ctx, l.spendTimeout)
		v, err := l.spend.MonthSpend(ctx, req.TenantID, monthStart)
		cancel()
		if err != nil {
			return nil
		}
		seed = v
	}
	for m := range t.months {
		if m < month {
			delete(t.months, m) // a past month is never reserved in again
		}
	}
	sp := &spendState{spent: seed, base: seed}
	t.months[month] = sp
	return sp
}

// Settle implements Limiter; it applies at once.
func (l *Local) Settle(_ context.Context, req *Request, res *Result, used Used) error {
	if !res.Allowed {
		return nil
	}
	dTokens, dCost := used.Tokens-req.Tokens, used.Cost-req.Cost
	if dTokens == 0 && (dCost == 0 || !res.Budgeted) {
		return nil
	}
	nowMs := l.now().UnixMilli()
	t := l.tenant(req.Tenant)
	t.mu.Lock()
	defer t.mu.Unlock()
	if dTokens != 0 {
		for _, b := range req.Buckets {
			if !b.Kind.Tokens() {
				continue
			}
			w := b.Kind.Window().Milliseconds()
			c := b.Capacity(l.share)
			k := bucketKey{b.Scope, b.Kind}
			bk := t.buckets[k]
			if bk == nil {
				nb := newBucket(nowMs, w, c)
				bk = &nb
				k.scope = strings.Clone(k.scope)
				t.buckets[k] = bk
			} else {
				bk.advance(nowMs, w, c)
			}
			bk.adjust(dTokens, w)
		}
	}
	if res.Budgeted && dCost != 0 {
		if sp := t.months[res.Month]; sp != nil {
			sp.spent += dCost
		}
	}
	return nil
}

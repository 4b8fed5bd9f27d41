// Package ratelimittest holds the conformance suite that every
// ratelimit.Limiter passes (Run), a controllable clock and an in-memory
// ratelimit.SpendSource for tests.
package ratelimittest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/tenancy"
	"github.com/mtai-dev/mtai/tenancy/ratelimit"
)

// Clock is a manual clock for tests, safe for concurrent use. The zero
// value is not usable: build it with NewClock.
type Clock struct{ ns atomic.Int64 }

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock {
	c := &Clock{}
	c.ns.Store(t.UnixNano())
	return c
}

// Now returns the clock's time; pass it as a limiter's Now.
func (c *Clock) Now() time.Time { return time.Unix(0, c.ns.Load()).UTC() }

// Advance moves the clock by d (which may be negative).
func (c *Clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) { c.ns.Store(t.UnixNano()) }

// Spend is an in-memory ratelimit.SpendSource: the spend of each tenant and
// month, as usage records would say. Safe for concurrent use; the zero
// value knows no spend.
type Spend struct {
	mu    sync.Mutex
	spent map[spendKey]tenancy.MicroUSD
	fail  error
	calls int
}

type spendKey struct {
	tenant int64
	month  time.Time
}

var _ ratelimit.SpendSource = (*Spend)(nil)

// Set records that tenantID spent v in the month starting at month.
func (s *Spend) Set(tenantID int64, month time.Time, v tenancy.MicroUSD) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.spent == nil {
		s.spent = make(map[spendKey]tenancy.MicroUSD)
	}
	s.spent[spendKey{tenantID, month.UTC()}] = v
}

// Fail makes MonthSpend return err (nil: succeed again).
func (s *Spend) Fail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

// Calls returns how many times MonthSpend was called.
func (s *Spend) Calls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// MonthSpend implements ratelimit.SpendSource.
func (s *Spend) MonthSpend(_ context.Context, tenantID int64, month time.Time) (tenancy.MicroUSD, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls++
	if s.fail != nil {
		return 0, s.fail
	}
	return s.spent[spendKey{tenantID, month.UTC()}], nil
}

// Options are what the suite asks of a limiter under test.
type Options struct {
	// Now is the clock the limiter must use.
	Now func() time.Time
	// Spend is the limiter's SpendSource.
	Spend ratelimit.SpendSource
}

// NewLimiter builds a fresh limiter for one subtest: its state must not be
// shared with other subtests (e.g. a unique Redis key prefix). Clean-up goes
// through t.Cleanup.
type NewLimiter func(t *testing.T, o Options) ratelimit.Limiter

// Flusher is implemented by limiters whose Settle applies asynchronously;
// the suite calls Flush after Settle before it looks at the effect.
type Flusher interface {
	Flush(ctx context.Context) error
}

// Start is the suite's clock start: mid-month, so that only the rollover
// test crosses a month.
var Start = time.Date(2026, time.July, 15, 12, 0, 0, 0, time.UTC)

type env struct {
	t     *testing.T
	lim   ratelimit.Limiter
	clock *Clock
	spend *Spend
	ctx   context.Context
}

// Run runs the conformance suite against limiters built by newLimiter.
func Run(t *testing.T, newLimiter NewLimiter) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := NewClock(Start)
			spend := &Spend{}
			e := &env{t: t, clock: clock, spend: spend, ctx: context.Background()}
			e.lim = newLimiter(t, Options{Now: clock.Now, Spend: spend})
			tc.run(e)
		})
	}
}

func (e *env) reserve(req *ratelimit.Request) ratelimit.Result {
	e.t.Helper()
	var res ratelimit.Result
	if err := e.lim.Reserve(e.ctx, req, &res); err != nil {
		e.t.Fatalf("Reserve(%+v): %v", req, err)
	}
	return res
}

func (e *env) settle(req *ratelimit.Request, res *ratelimit.Result, used ratelimit.Used) {
	e.t.Helper()
	if err := e.lim.Settle(e.ctx, req, res, used); err != nil {
		e.t.Fatalf("Settle: %v", err)
	}
	if f, ok := e.lim.(Flusher); ok {
		if err := f.Flush(e.ctx); err != nil {
			e.t.Fatalf("Flush: %v", err)
		}
	}
}

// want checks a decision: allowed or the denied index, and the states.
func (e *env) want(step string, res ratelimit.Result, allowed bool, denied int, states ...ratelimit.State) {
	e.t.Helper()
	if res.Allowed != allowed || res.Denied != denied {
		e.t.Errorf("%s: Allowed, Denied = %v, %d; want %v, %d (result %+v)", step, res.Allowed, res.Denied, allowed, denied, res)
	}
	for i, s := range states {
		if res.States[i] != s {
			e.t.Errorf("%s: States[%d] = %+v, want %+v", step, i, res.States[i], s)
		}
	}
}

// hammer has 64 goroutines reserve 8 times each at once: goroutine g
// reserves its own copy of req(g) and hands each decision to seen(g, res),
// which must be safe for concurrent use.
func (e *env) hammer(req func(g int) ratelimit.Request, seen func(g int, res *ratelimit.Result)) {
	var wg sync.WaitGroup
	for g := range 64 {
		wg.Go(func() {
			r := req(g)
			for range 8 {
				var res ratelimit.Result
				if err := e.lim.Reserve(e.ctx, &r, &res); err != nil {
					e.t.Error(err)
					return
				}
				seen(g, &res)
			}
		})
	}
	wg.Wait()
}

func st(limit, remaining int64, reset time.Duration) ratelimit.State {
	return ratelimit.State{Limit: limit, Remaining: remaining, Reset: reset}
}

var tenantSeq atomic.Int64

// tenant returns a tenant name no other test uses.
func tenant() string {
	return fmt.Sprintf("suite%d-%d", time.Now().UnixNano(), tenantSeq.Add(1))
}

func rpm(n int64) ratelimit.Bucket {
	return ratelimit.Bucket{Kind: ratelimit.RequestsPerMinute, Limit: n}
}
func rph(n int64) ratelimit.Bucket {
	return ratelimit.Bucket{Kind: ratelimit.RequestsPerHour, Limit: n}
}
func tpm(n int64) ratelimit.Bucket {
	return ratelimit.Bucket{Kind: ratelimit.TokensPerMinute, Limit: n}
}

// keyBucket is b in an API key's scope.
func keyBucket(scope string, b ratelimit.Bucket) ratelimit.Bucket {
	b.Scope = scope
	return b
}

var cases = []struct {
	name string
	run  func(e *env)
}{
	{"RequestsPerMinute", func(e *env) {
		req := &ratelimit.Request{Tenant: tenant(), Buckets: []ratelimit.Bucket{rpm(5)}}
		for i := int64(1); i <= 5; i++ {
			res := e.reserve(req)
			e.want(fmt.Sprintf("request %d", i), res, true, -1, st(5, 5-i, time.Duration(i)*12*time.Second))
			if res.RetryAfter != 0 || res.OverBudget || res.TooLarge || res.Budgeted {
				e.t.Errorf("request %d: unexpected %+v", i, res)
			}
		}
		res := e.reserve(req)
		e.want("request 6", res, false, 0, st(5, 0, time.Minute))
		if res.RetryAfter != 12*time.Second || res.TooLarge || res.OverBudget {
			e.t.Errorf("request 6: RetryAfter %v TooLarge %v OverBudget %v; want 12s false false", res.RetryAfter, res.TooLarge, res.OverBudget)
		}
	}},
	{"ContinuousRefill", func(e *env) {
		req := &ratelimit.Request{Tenant: tenant(), Buckets: []ratelimit.Bucket{rpm(5)}}
		for range 5 {
			e.reserve(req)
		}
		e.clock.Advance(12*time.Second - time.Millisecond)
		res := e.reserve(req)
		e.want("1ms early", res, false, 0, st(5, 0, 48*time.Second+time.Millisecond))
		if res.RetryAfter != time.Millisecond {
			e.t.Errorf("1ms early: RetryAfter = %v, want 1ms", res.RetryAfter)
		}
		e.clock.Advance(time.Millisecond)
		e.want("refilled one", e.reserve(req), true, -1, st(5, 0, time.Minute))
		e.want("then empty", e.reserve(req), false, 0)
		e.clock.Advance(time.Hour)
		e.want("full after a long pause", e.reserve(req), true, -1, st(5, 4, 12*time.Second))
	}},
	{"ClockGoingBackRefillsNothing", func(e *env) {
		req := &ratelimit.Request{Tenant: tenant(), Buckets: []ratelimit.Bucket{rpm(2)}}
		e.reserve(req)
		e.clock.Advance(-time.Hour)
		e.want("second", e.reserve(req), true, -1, st(2, 0, time.Minute))
		e.want("third", e.reserve(req), false, 0)
	}},
	{"RequestsPerHourWithPerMinute", func(e *env) {
		req := &ratelimit.Request{Tenant: tenant(), Buckets: []ratelimit.Bucket{rpm(10), rph(3)}}
		for i := int64(1); i <= 3; i++ {
			e.want(fmt.Sprint("request ", i), e.reserve(req), true, -1,
				st(10, 10-i, time.Duration(i)*6*time.Second), st(3, 3-i, time.Duration(i)*20*time.Minute))
		}
		res := e.reserve(req)
		e.want("request 4", res, false, 1, st(10, 7, 18*time.Second), st(3, 0, time.Hour))
		if res.RetryAfter != 20*time.Minute {
			e.t.Errorf("RetryAfter = %v, want 20m", res.RetryAfter)
		}
	}},
	{"TokensPerMinute", func(e *env) {
		req := &ratelimit.Request{Tenant: tenant(), Buckets: []ratelimit.Bucket{tpm(1000)}, Tokens: 300}
		for i := int64(1); i <= 3; i++ {
			e.want(fmt.Sprint("request ", i), e.reserve(req), true, -1, st(1000, 1000-300*i, time.Duration(i)*18*time.Second))
		}
		res := e.reserve(req)
		e.want("request 4", res, false, 0, st(1000, 100, 54*time.Second))
		if res.RetryAfter != 12*time.Second {
			e.t.Errorf("RetryAfter = %v, want 12s", res.RetryAfter)
		}
	}},
	{"AllOrNothing", func(e *env) {
		ten := tenant()
		req := func(tokens int64) *ratelimit.Request {
			return &ratelimit.Request{Tenant: ten, Buckets: []ratelimit.Bucket{rpm(10), tpm(100)}, Tokens: tokens}
		}
		e.want("60 tokens", e.reserve(req(60)), true, -1, st(10, 9, 6*time.Second), st(100, 40, 36*time.Second))
		e.want("60 more", e.reserve(req(60)), false, 1, st(10, 9, 6*time.Second), st(100, 40, 36*time.Second))
		e.want("40", e.reserve(req(40)), true, -1, st(10, 8, 12*time.Second), st(100, 0, time.Minute))
	}},
	{"TooLarge", func(e *env) {
		req := &ratelimit.Request{Tenant: tenant(), Buckets: []ratelimit.Bucket{rpm(10), tpm(100)}, Tokens: 101}
		res := e.reserve(req)
		e.want("101 of 100", res, false, 1, st(10, 10, 0), st(100, 100, 0))
		if !res.TooLarge || res.RetryAfter != 0 {
			e.t.Errorf("TooLarge, RetryAfter = %v, %v; want true, 0", res.TooLarge, res.RetryAfter)
		}
	}},
	{"SettleRefundAndExtra", func(e *env) {
		ten := tenant()
		req := &ratelimit.Request{Tenant: ten, Buckets: []ratelimit.Bucket{rpm(100), tpm(1000)}, Tokens: 600}
		res := e.reserve(req)
		e.want("reserve 600", res, true, -1, st(100, 99, 600*time.Millisecond), st(1000, 400, 36*time.Second))
		e.settle(req, &res, ratelimit.Used{Tokens: 100})
		small := &ratelimit.Request{Tenant: ten, Buckets: []ratelimit.Bucket{rpm(100), tpm(1000)}, Tokens: 100}
		res2 := e.reserve(small)
		e.want("after refund of 500", res2, true, -1, st(100, 98, 1200*time.Millisecond), st(1000, 800, 12*time.Second))
		e.settle(small, &res2, ratelimit.Used{Tokens: 400}) // 300 more than reserved
		e.want("after extra 300", e.reserve(small), true, -1, st(100, 97, 1800*time.Millisecond), st(1000, 400, 36*time.Second))
		// A refused request settles nothing.
		var refused ratelimit.Result
		refused.Denied = 1
		e.settle(small, &refused, ratelimit.Used{Tokens: 0})
		e.want("refused settle is a no-op", e.reserve(&ratelimit.Request{Tenant: ten, Buckets: []ratelimit.Bucket{tpm(1000)}}), true, -1,
			st(1000, 400, 36*time.Second))
	}},
	{"DebtFromSettle", func(e *env) {
		req := &ratelimit.Request{Tenant: tenant(), Buckets: []ratelimit.Bucket{tpm(1000)}, Tokens: 1000}
		res := e.reserve(req)
		e.settle(req, &res, ratelimit.Used{Tokens: 2500}) // 1500 over: −1500, floored at −1000
		one := &ratelimit.Request{Tenant: req.Tenant, Buckets: req.Buckets, Tokens: 1}
		r := e.reserve(one)
		e.want("in debt", r, false, 0, st(1000, 0, 2*time.Minute))
		if r.RetryAfter != 60060*time.Millisecond {
			e.t.Errorf("RetryAfter = %v, want 1m0.06s", r.RetryAfter)
		}
		e.clock.Advance(r.RetryAfter)
		e.want("after the wait", e.reserve(one), true, -1, st(1000, 0, time.Minute))
	}},
	{"LimitChanges", func(e *env) {
		ten := tenant()
		req := func(limit int64) *ratelimit.Request {
			return &ratelimit.Request{Tenant: ten, Buckets: []ratelimit.Bucket{rpm(limit)}}
		}
		for range 4 {
			e.reserve(req(10))
		}
		e.want("raised to 20: used 4 stays used", e.reserve(req(20)), true, -1, st(20, 15, 15*time.Second))
		res := e.reserve(req(3))
		e.want("lowered to 3: 5 used, refused", res, false, 0, st(3, 0, 100*time.Second))
		if res.RetryAfter != time.Minute {
			e.t.Errorf("RetryAfter = %v, want 1m", res.RetryAfter)
		}
		e.want("back to 20", e.reserve(req(20)), true, -1, st(20, 14, 18*time.Second))
	}},
	{"Scopes", func(e *env) {
		ten := tenant()
		key := func(scope string) *ratelimit.Request {
			return &ratelimit.Request{Tenant: ten, Buckets: []ratelimit.Bucket{rpm(10), {Scope: scope, Kind: ratelimit.RequestsPerMinute, Limit: 2}}}
		}
		e.want("k1 #1", e.reserve(key("k1")), true, -1, st(10, 9, 6*time.Second), st(2, 1, 30*time.Second))
		e.want("k1 #2", e.reserve(key("k1")), true, -1, st(10, 8, 12*time.Second), st(2, 0, time.Minute))
		e.want("k1 #3", e.reserve(key("k1")), false, 1, st(10, 8, 12*time.Second), st(2, 0, time.Minute))
		e.want("k2 #1", e.reserve(key("k2")), true, -1, st(10, 7, 18*time.Second), st(2, 1, 30*time.Second))
		other := &ratelimit.Request{Tenant: tenant(), Buckets: []ratelimit.Bucket{rpm(10)}}
		e.want("another tenant", e.reserve(other), true, -1, st(10, 9, 6*time.Second))
	}},
	{"KeyBuckets", func(e *env) {
		// An API key with limits of its own takes from its buckets and from
		// the tenant's, all or nothing; another key, or a key without
		// limits, takes from the tenant's only.
		ten := tenant()
		withKey := func(scope string, tokens int64) *ratelimit.Request {
			return &ratelimit.Request{Tenant: ten, Tokens: tokens, Buckets: []ratelimit.Bucket{rpm(10), tpm(1000),
				keyBucket(scope, rpm(2)), keyBucket(scope, tpm(300))}}
		}
		tenantOnly := &ratelimit.Request{Tenant: ten, Tokens: 100, Buckets: []ratelimit.Bucket{rpm(10), tpm(1000)}}
		e.want("k1 #1", e.reserve(withKey("k1", 100)), true, -1,
			st(10, 9, 6*time.Second), st(1000, 900, 6*time.Second), st(2, 1, 30*time.Second), st(300, 200, 20*time.Second))
		e.want("k1 #2", e.reserve(withKey("k1", 100)), true, -1,
			st(10, 8, 12*time.Second), st(1000, 800, 12*time.Second), st(2, 0, time.Minute), st(300, 100, 40*time.Second))
		res := e.reserve(withKey("k1", 100))
		e.want("k1 #3: the key's RPM refuses", res, false, 2,
			st(10, 8, 12*time.Second), st(1000, 800, 12*time.Second), st(2, 0, time.Minute), st(300, 100, 40*time.Second))
		if res.RetryAfter != 30*time.Second || res.TooLarge {
			e.t.Errorf("k1 #3: RetryAfter %v TooLarge %v; want 30s false", res.RetryAfter, res.TooLarge)
		}
		e.want("a key without limits: k1's refusal took nothing from the tenant", e.reserve(tenantOnly), true, -1,
			st(10, 7, 18*time.Second), st(1000, 700, 18*time.Second))
		e.want("k2 has buckets of its own", e.reserve(withKey("k2", 100)), true, -1,
			st(10, 6, 24*time.Second), st(1000, 600, 24*time.Second), st(2, 1, 30*time.Second), st(300, 200, 20*time.Second))

		e.clock.Advance(30 * time.Second)
		res = e.reserve(withKey("k1", 300))
		e.want("k1, 30s later, 300 tokens: the key's TPM refuses", res, false, 3,
			st(10, 10, 0), st(1000, 1000, 0), st(2, 1, 30*time.Second), st(300, 250, 10*time.Second))
		if res.RetryAfter != 10*time.Second {
			e.t.Errorf("RetryAfter = %v, want 10s", res.RetryAfter)
		}
		res = e.reserve(withKey("k1", 301))
		if res.Allowed || res.Denied != 3 || !res.TooLarge {
			e.t.Errorf("301 tokens with a key TPM of 300: %+v; want too large for bucket 3", res)
		}
	}},
	{"KeyBucketsTenantRefuses", func(e *env) {
		// The tenant's bucket refuses a key that still has room: the key's
		// buckets are left as they were.
		ten := tenant()
		req := &ratelimit.Request{Tenant: ten, Buckets: []ratelimit.Bucket{rpm(2), keyBucket("k7", rpm(5))}}
		e.reserve(req)
		e.reserve(req)
		res := e.reserve(req)
		e.want("third of the tenant's 2", res, false, 0, st(2, 0, time.Minute), st(5, 3, 24*time.Second))
		e.clock.Advance(30 * time.Second)
		e.want("30s later", e.reserve(req), true, -1, st(2, 0, time.Minute), st(5, 4, 12*time.Second))
	}},
	{"KeySettle", func(e *env) {
		// Settlement moves the key's token bucket with the tenant's; request
		// buckets are not refunded.
		ten := tenant()
		req := func(tokens int64) *ratelimit.Request {
			return &ratelimit.Request{Tenant: ten, Tokens: tokens, Buckets: []ratelimit.Bucket{tpm(1000),
				keyBucket("k3", rpm(5)), keyBucket("k3", tpm(500))}}
		}
		big := req(400)
		res := e.reserve(big)
		e.want("reserve 400", res, true, -1, st(1000, 600, 24*time.Second), st(5, 4, 12*time.Second), st(500, 100, 48*time.Second))
		e.settle(big, &res, ratelimit.Used{Tokens: 100})
		e.want("after a refund of 300", e.reserve(req(100)), true, -1,
			st(1000, 800, 12*time.Second), st(5, 3, 24*time.Second), st(500, 300, 24*time.Second))
		small := req(100)
		res = e.reserve(small)
		e.settle(small, &res, ratelimit.Used{Tokens: 350}) // 250 more than reserved: the key is 50 in debt
		res = e.reserve(req(0))
		e.want("after an extra 250", res, false, 2,
			st(1000, 450, 33*time.Second), st(5, 2, 36*time.Second), st(500, 0, time.Minute+6*time.Second))
		if res.RetryAfter != 6*time.Second {
			e.t.Errorf("in debt: RetryAfter = %v, want 6s", res.RetryAfter)
		}
	}},
	{"KeysConcurrent", func(e *env) {
		// Two keys of 30 requests per minute each under a tenant's 50: the
		// tenant admits exactly 50, neither key more than 30.
		ten := tenant()
		var admitted [2]atomic.Int64
		e.hammer(func(g int) ratelimit.Request {
			return ratelimit.Request{Tenant: ten, Buckets: []ratelimit.Bucket{rpm(50), keyBucket(fmt.Sprint("k", g%2), rpm(30))}}
		}, func(g int, res *ratelimit.Result) {
			if res.Allowed {
				admitted[g%2].Add(1)
			}
		})
		a, b := admitted[0].Load(), admitted[1].Load()
		if a+b != 50 || a > 30 || b > 30 {
			e.t.Errorf("admitted %d + %d of 512; want 50 in all, at most 30 per key", a, b)
		}
	}},
	{"Budget", func(e *env) {
		ten := tenant()
		req := func(cost tenancy.MicroUSD) *ratelimit.Request {
			return &ratelimit.Request{Tenant: ten, Budget: 100, Cost: cost}
		}
		var first ratelimit.Result
		for i, want := range []tenancy.MicroUSD{30, 60, 90} {
			res := e.reserve(req(30))
			if !res.Allowed || !res.Budgeted || res.Spent != want || res.Month != 202607 {
				e.t.Errorf("request %d: %+v; want allowed, budgeted, spent %d, month 202607", i+1, res, want)
			}
			if i == 0 {
				first = res
			}
		}
		res := e.reserve(req(30))
		if res.Allowed || !res.OverBudget || res.Denied != -1 || res.Spent != 90 || res.RetryAfter != 0 {
			e.t.Errorf("over budget: %+v; want refused, OverBudget, spent 90", res)
		}
		if res := e.reserve(req(10)); !res.Allowed || res.Spent != 100 {
			e.t.Errorf("exactly to the budget: %+v", res)
		}
		if res := e.reserve(req(0)); res.Allowed || !res.OverBudget {
			e.t.Errorf("free request at a spent budget: %+v; want OverBudget", res)
		}
		e.settle(req(30), &first, ratelimit.Used{Cost: 0}) // the first one cost nothing after all
		if res := e.reserve(req(30)); !res.Allowed || res.Spent != 100 {
			e.t.Errorf("after a refund of 30: %+v; want allowed at 100", res)
		}
		e.settle(req(30), &first, ratelimit.Used{Cost: 45}) // and another settles above its estimate
		if res := e.reserve(req(0)); res.Allowed || res.Spent != 115 {
			e.t.Errorf("after an extra 15: %+v; want OverBudget at 115", res)
		}
		if res := e.reserve(&ratelimit.Request{Tenant: ten, Cost: 50}); !res.Allowed || res.Budgeted {
			e.t.Errorf("no budget: %+v; want allowed, not budgeted", res)
		}
	}},
	{"BudgetWithBuckets", func(e *env) {
		ten := tenant()
		req := &ratelimit.Request{Tenant: ten, Buckets: []ratelimit.Bucket{rpm(10)}, Budget: 100, Cost: 60}
		e.want("first", e.reserve(req), true, -1, st(10, 9, 6*time.Second))
		res := e.reserve(req)
		e.want("over budget takes nothing from buckets", res, false, -1, st(10, 9, 6*time.Second))
		if !res.OverBudget {
			e.t.Errorf("OverBudget = false")
		}
		bucketsOnly := &ratelimit.Request{Tenant: ten, Buckets: []ratelimit.Bucket{rpm(10)}}
		e.want("buckets untouched", e.reserve(bucketsOnly), true, -1, st(10, 8, 12*time.Second))
	}},
	{"BudgetRebuiltFromSpendSource", func(e *env) {
		july := time.Date(2026, time.July, 1, 0, 0, 0, 0, time.UTC)
		e.spend.Set(7, july, 95)
		ten := tenant()
		res := e.reserve(&ratelimit.Request{Tenant: ten, TenantID: 7, Budget: 100, Cost: 10})
		if res.Allowed || !res.OverBudget || res.Spent != 95 {
			e.t.Errorf("95 spent + 10: %+v; want OverBudget at 95", res)
		}
		res = e.reserve(&ratelimit.Request{Tenant: ten, TenantID: 7, Budget: 100, Cost: 5})
		if !res.Allowed || res.Spent != 100 {
			e.t.Errorf("95 spent + 5: %+v; want allowed at 100", res)
		}
		if n := e.spend.Calls(); n != 1 {
			e.t.Errorf("SpendSource called %d times, want once", n)
		}
		// A tenant without id starts from 0 and never asks.
		res = e.reserve(&ratelimit.Request{Tenant: tenant(), Budget: 100, Cost: 100})
		if !res.Allowed || res.Spent != 100 || e.spend.Calls() != 1 {
			e.t.Errorf("tenant without id: %+v, %d calls", res, e.spend.Calls())
		}
	}},
	{"SpendSourceFailure", func(e *env) {
		july := time.Date(2026, time.July, 1, 0, 0, 0, 0, time.UTC)
		e.spend.Set(8, july, 50)
		e.spend.Fail(errors.New("database down"))
		ten := tenant()
		req := &ratelimit.Request{Tenant: ten, TenantID: 8, Budget: 100, Cost: 30}
		if res := e.reserve(req); !res.Allowed || res.Budgeted {
			e.t.Errorf("spend source down: %+v; want admitted without budget reservation", res)
		}
		e.spend.Fail(nil)
		if res := e.reserve(req); !res.Allowed || !res.Budgeted || res.Spent != 80 {
			e.t.Errorf("spend source back: %+v; want budgeted at 80", res)
		}
	}},
	{"MonthRollover", func(e *env) {
		ten := tenant()
		req := &ratelimit.Request{Tenant: ten, TenantID: 9, Budget: 100, Cost: 100}
		if res := e.reserve(req); !res.Allowed {
			e.t.Fatalf("july: %+v", res)
		}
		if res := e.reserve(req); res.Allowed {
			e.t.Fatalf("july again: %+v", res)
		}
		e.clock.Set(time.Date(2026, time.July, 31, 23, 59, 59, 999e6, time.UTC))
		if res := e.reserve(req); res.Allowed || res.Month != 202607 {
			e.t.Errorf("last millisecond of july: %+v", res)
		}
		e.clock.Set(time.Date(2026, time.August, 1, 0, 0, 0, 0, time.UTC))
		res := e.reserve(req)
		if !res.Allowed || res.Month != 202608 || res.Spent != 100 {
			e.t.Errorf("august: %+v; want allowed, month 202608, spent 100", res)
		}
	}},
	{"Concurrent", func(e *env) {
		req := ratelimit.Request{Tenant: tenant(), Buckets: []ratelimit.Bucket{rpm(100), tpm(1_000_000)}, Tokens: 10, Budget: 500, Cost: 3}
		var allowed, overBudget atomic.Int64
		e.hammer(func(int) ratelimit.Request { return req }, func(_ int, res *ratelimit.Result) {
			if res.Allowed {
				allowed.Add(1)
			} else if res.OverBudget {
				overBudget.Add(1)
			}
		})
		if allowed.Load() != 100 {
			e.t.Errorf("%d of 512 admitted with 100 requests per minute; want exactly 100", allowed.Load())
		}
		if overBudget.Load() != 0 {
			e.t.Errorf("%d refused over budget; want 0 (100×3 < 500)", overBudget.Load())
		}
		// Now the budget binds: 166·3 = 498 ≤ 500 < 501.
		req2 := ratelimit.Request{Tenant: tenant(), Budget: 500, Cost: 3}
		allowed.Store(0)
		e.hammer(func(int) ratelimit.Request { return req2 }, func(_ int, res *ratelimit.Result) {
			if res.Allowed {
				allowed.Add(1)
			}
		})
		if allowed.Load() != 166 {
			e.t.Errorf("%d admitted with a budget of 166 requests; want exactly 166", allowed.Load())
		}
	}},
	{"Invalid", func(e *env) {
		var res ratelimit.Result
		for _, req := range []*ratelimit.Request{
			{},
			{Tenant: "x", Buckets: make([]ratelimit.Bucket, ratelimit.MaxBuckets+1)},
			{Tenant: "x", Buckets: []ratelimit.Bucket{{Kind: ratelimit.RequestsPerMinute}}},
			{Tenant: "x", Tokens: -1},
		} {
			if err := e.lim.Reserve(e.ctx, req, &res); !errors.Is(err, ratelimit.ErrInvalid) {
				e.t.Errorf("Reserve(%+v) = %v, want ErrInvalid", req, err)
			}
		}
	}},
}

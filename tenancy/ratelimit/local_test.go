package ratelimit_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/tenancy/ratelimit"
	"github.com/mtai-dev/mtai/tenancy/ratelimit/ratelimittest"
)

func TestLocal(t *testing.T) {
	ratelimittest.Run(t, func(t *testing.T, o ratelimittest.Options) ratelimit.Limiter {
		return ratelimit.NewLocal(ratelimit.LocalOptions{Now: o.Now, Spend: o.Spend})
	})
}

// TestLocalShare: a fallback limiter takes its fair share of every limit
// and of what remains of a budget.
func TestLocalShare(t *testing.T) {
	ctx := context.Background()
	july := time.Date(2026, time.July, 1, 0, 0, 0, 0, time.UTC)
	spend := &ratelimittest.Spend{}
	spend.Set(1, july, 40)
	l := ratelimit.NewLocal(ratelimit.LocalOptions{Now: ratelimittest.NewClock(ratelimittest.Start).Now, Spend: spend, Share: 4})
	count := func(req *ratelimit.Request) (n int, res ratelimit.Result) {
		for range 50 {
			if err := l.Reserve(ctx, req, &res); err != nil {
				t.Fatal(err)
			}
			if res.Allowed {
				n++
			}
		}
		return n, res
	}
	for _, tc := range []struct {
		limit, want int64
	}{{10, 2}, {40, 10}, {3, 1}} {
		req := &ratelimit.Request{Tenant: fmt.Sprint("share", tc.limit), Buckets: []ratelimit.Bucket{{Kind: ratelimit.RequestsPerMinute, Limit: tc.limit}}}
		if n, res := count(req); int64(n) != tc.want || res.States[0].Limit != tc.want {
			t.Errorf("limit %d shared by 4: admitted %d, limit shown %d; want %d", tc.limit, n, res.States[0].Limit, tc.want)
		}
	}
	// Budget 100 with 40 spent: this replica may spend a quarter of the 60 left.
	req := &ratelimit.Request{Tenant: "budget", TenantID: 1, Budget: 100, Cost: 5}
	if n, res := count(req); n != 3 || res.Spent != 55 {
		t.Errorf("budget shared by 4: admitted %d, spent %d; want 3, 55", n, res.Spent)
	}
}

func TestMonthOf(t *testing.T) {
	start, m := ratelimit.MonthOf(time.Date(2026, time.December, 31, 23, 59, 59, 0, time.FixedZone("x", -3600)))
	if m != 202701 || !start.Equal(time.Date(2027, time.January, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("MonthOf = %v, %d; want January 2027 (UTC)", start, m)
	}
	if got := ratelimit.MonthStart(202607); !got.Equal(time.Date(2026, time.July, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("MonthStart(202607) = %v", got)
	}
	if c := ratelimit.MaxCapacity(ratelimit.TokensPerMinute); c*60_000*2 >= 1<<53 {
		t.Errorf("MaxCapacity(tpm) = %d overflows float64 exactness", c)
	}
	b := ratelimit.Bucket{Kind: ratelimit.TokensPerMinute, Limit: 1 << 62}
	if b.Capacity(1) != ratelimit.MaxCapacity(ratelimit.TokensPerMinute) {
		t.Errorf("Capacity of a huge limit = %d", b.Capacity(1))
	}
}

// BenchmarkLocal is one reservation and one settlement: the tenant's three
// buckets and a budget, and with an API key's two buckets on top.
// go test ./tenancy/ratelimit -run '^$' -bench Local -benchmem
func BenchmarkLocal(b *testing.B) {
	tenant := []ratelimit.Bucket{
		{Kind: ratelimit.RequestsPerMinute, Limit: 1 << 40}, {Kind: ratelimit.RequestsPerHour, Limit: 1 << 40},
		{Kind: ratelimit.TokensPerMinute, Limit: 1 << 40}}
	withKey := append(tenant[:len(tenant):len(tenant)],
		ratelimit.Bucket{Scope: "k42", Kind: ratelimit.RequestsPerMinute, Limit: 1 << 40},
		ratelimit.Bucket{Scope: "k42", Kind: ratelimit.TokensPerMinute, Limit: 1 << 40})
	for _, bc := range []struct {
		name    string
		buckets []ratelimit.Bucket
	}{{"tenant", tenant}, {"tenant+key", withKey}} {
		b.Run(bc.name, func(b *testing.B) {
			l := ratelimit.NewLocal(ratelimit.LocalOptions{})
			req := ratelimit.Request{Tenant: "bench", TenantID: 1, Buckets: bc.buckets, Tokens: 1200, Budget: 1 << 50, Cost: 700}
			var res ratelimit.Result
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Reserve(ctx, &req, &res); err != nil || !res.Allowed {
					b.Fatal(err)
				}
				_ = l.Settle(ctx, &req, &res, ratelimit.Used{Tokens: 900, Cost: 500})
			}
		})
	}
}

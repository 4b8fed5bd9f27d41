package storetest

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/admin"
	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
)

// statsTests are the admin statistics cases of the suite (see Run); they
// need Stores.Stats.
var statsTests = []struct {
	name string
	fn   func(t *testing.T, s Stores)
}{
	{"UsageSeries", testUsageSeries},
	{"UsageParties", testUsageParties},
	{"UsagePartiesRetention", testUsagePartiesRetention},
	{"UsagePartiesBackfill", testUsagePartiesBackfill},
}

// partyFixture is three days of random traffic of two tenants' keys and
// users, and of a tenant from static configuration (no key, no user).
type partyFixture struct {
	events []billing.Event
	names  map[admin.Dimension]map[int64][2]string // id → name, prefix
	acme   int64
}

// newPartyFixture writes the fixture's events, in batches, one of them
// twice (a replay: the stores must not count it twice).
func newPartyFixture(t *testing.T, s Stores, start time.Time) *partyFixture {
	acme, globex := mustTenant(t, s, uniq("acme")), mustTenant(t, s, uniq("globex"))
	ua, ub, ug := mustUser(t, s, acme.ID, "ann", tenancy.RoleMember), mustUser(t, s, acme.ID, "bob", tenancy.RoleMember),
		mustUser(t, s, globex.ID, "gus", tenancy.RoleTenantAdmin)
	k1, k2, k3 := mustKey(t, s, acme.ID, ua.ID, "ann-prod"), mustKey(t, s, acme.ID, ua.ID, "ann-dev"),
		mustKey(t, s, globex.ID, ug.ID, "gus-ci")
	f := &partyFixture{acme: acme.ID, names: map[admin.Dimension]map[int64][2]string{
		admin.ByKey:  {k1.ID: {k1.Name, k1.Prefix}, k2.ID: {k2.Name, k2.Prefix}, k3.ID: {k3.Name, k3.Prefix}},
		admin.ByUser: {ua.ID: {"ann", ""}, ub.ID: {"bob", ""}, ug.ID: {"gus", ""}},
	}}
	type party struct {
		t             *tenancy.Tenant
		user, key     int64
		weight, model int
	}
	static := &tenancy.Tenant{Name: "static"} // id 0
	parties := []party{
		{acme, ua.ID, k1.ID, 5, 0}, {acme, ua.ID, k2.ID, 2, 1}, {acme, ub.ID, 0, 3, 0}, // bob signs in: no key
		{globex, ug.ID, k3.ID, 4, 1}, {static, 0, 0, 1, 0},
	}
	var pick []party
	for _, p := range parties {
		for range p.weight {
			pick = append(pick, p)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	models := []string{"gpt-4o", "claude"}
	for range 600 {
		p := pick[rng.IntN(len(pick))]
		e := newEvent(p.t.ID, p.t.Name, start.Add(time.Duration(rng.Int64N(int64(76*time.Hour)))))
		e.UserID, e.KeyID = p.user, p.key
		e.Model = models[(p.model+rng.IntN(4)/3)%2] // mostly the party's model
		e.Usage = providers.Usage{PromptTokens: rng.Int64N(5000), CompletionTokens: rng.Int64N(900), CachedTokens: rng.Int64N(100)}
		e.Cost = tenancy.MicroUSD(rng.Int64N(20_000))
		e.Latency = time.Duration(rng.Int64N(int64(150 * time.Second))).Truncate(time.Microsecond)
		e.Stream = rng.IntN(2) == 0
		e.TTFT = 0
		if e.Stream {
			e.TTFT = e.Latency / 3
		}
		e.Priced, e.Estimated = rng.IntN(10) > 0, rng.IntN(10) == 0
		if rng.IntN(12) == 0 {
			e.Status, e.ErrorCode = 502, "upstream_error"
		}
		f.events = append(f.events, e)
	}
	for i := 0; i < len(f.events); i += 100 {
		writeUsage(t, s, f.events[i:i+100]...)
	}
	writeUsage(t, s, f.events[150:250]...) // a replay, overlapping two batches
	return f
}

// expect computes, from the events, what UsageParties returns.
func (f *partyFixture) expect(q admin.Filter, by admin.Dimension, bucket admin.Bucket, limit int) []admin.Party {
	type key struct {
		at, tenant string
		pid, tid   int64
	}
	sums := map[key]*billing.Rollup{}
	totals := map[key]*billing.Rollup{} // over the period, for the top parties
	for i := range f.events {
		e := f.events[i]
		if !selects(q, &e) {
			continue
		}
		pid := e.KeyID
		if by == admin.ByUser {
			pid = e.UserID
		}
		var at time.Time
		switch bucket {
		case admin.BucketHour:
			at = e.Time.UTC().Truncate(time.Hour)
		case admin.BucketDay:
			at = e.Time.UTC().Truncate(24 * time.Hour)
		}
		one := eventRollup(e)
		for _, m := range []struct {
			sums map[key]*billing.Rollup
			at   string
		}{{sums, at.Format(time.RFC3339)}, {totals, ""}} {
			k := key{m.at, e.Tenant, pid, e.TenantID}
			if m.sums[k] == nil {
				m.sums[k] = &billing.Rollup{Hour: at, TenantID: e.TenantID, Tenant: e.Tenant}
			}
			addRollup(m.sums[k], one)
		}
	}
	busiest := func(a, b *billing.Rollup, ap, bp int64) int {
		return cmp.Or(cmp.Compare(b.Requests, a.Requests), cmp.Compare(b.Cost, a.Cost), cmp.Compare(ap, bp),
			cmp.Compare(a.TenantID, b.TenantID))
	}
	tops := slices.SortedFunc(maps.Keys(totals), func(a, b key) int { return busiest(totals[a], totals[b], a.pid, b.pid) })
	if limit > 0 && len(tops) > limit {
		tops = tops[:limit]
	}
	var out []admin.Party
	for k, r := range sums {
		if !slices.ContainsFunc(tops, func(t key) bool { return t.pid == k.pid && t.tid == k.tid && t.tenant == k.tenant }) {
			continue
		}
		nm := f.names[by][k.pid]
		r.Hour = r.Hour.UTC()
		if bucket == admin.BucketNone {
			r.Hour = time.Time{}
		}
		out = append(out, admin.Party{ID: k.pid, Name: nm[0], Prefix: nm[1], Rollup: *r})
	}
	slices.SortFunc(out, func(a, b admin.Party) int {
		return cmp.Or(a.Hour.Compare(b.Hour), busiest(&a.Rollup, &b.Rollup, a.ID, b.ID))
	})
	return out
}

// selects reports whether q selects e.
func selects(q admin.Filter, e *billing.Event) bool {
	return (q.AllTenants || e.TenantID == q.TenantID) && (q.Model == "" || e.Model == q.Model) &&
		(q.From.IsZero() || !e.Time.Before(q.From)) && (q.To.IsZero() || e.Time.Before(q.To))
}

// eventRollup is e's counters as a rollup.
func eventRollup(e billing.Event) *billing.Rollup {
	for _, r := range billing.Rollups([]billing.Event{e}) {
		return r
	}
	panic("no rollup")
}

// addRollup adds src's counters to dst.
func addRollup(dst, src *billing.Rollup) {
	dst.Requests += src.Requests
	dst.Errors += src.Errors
	dst.Streams += src.Streams
	dst.Estimated += src.Estimated
	dst.Unpriced += src.Unpriced
	dst.Usage.PromptTokens += src.Usage.PromptTokens
	dst.Usage.CompletionTokens += src.Usage.CompletionTokens
	dst.Usage.TotalTokens += src.Usage.TotalTokens
	dst.Usage.CachedTokens += src.Usage.CachedTokens
	dst.Usage.ReasoningTokens += src.Usage.ReasoningTokens
	dst.Cost += src.Cost
	dst.LatencySum += src.LatencySum
	dst.TTFTSum += src.TTFTSum
	for i := range dst.LatencyLE {
		dst.LatencyLE[i] += src.LatencyLE[i]
	}
}

// expectSeries computes, from the events, what UsageSeries returns.
func (f *partyFixture) expectSeries(q admin.Filter, g admin.Grouping) []billing.Rollup {
	type key struct {
		at            time.Time
		tid           int64
		tenant, model string
	}
	sums := map[key]*billing.Rollup{}
	for i := range f.events {
		e := f.events[i]
		if !selects(q, &e) {
			continue
		}
		var k key
		switch g.Bucket {
		case admin.BucketHour:
			k.at = e.Time.UTC().Truncate(time.Hour)
		case admin.BucketDay:
			k.at = e.Time.UTC().Truncate(24 * time.Hour)
		}
		if g.Tenant {
			k.tid, k.tenant = e.TenantID, e.Tenant
		}
		if g.Model {
			k.model = e.Model
		}
		if sums[k] == nil {
			sums[k] = &billing.Rollup{Hour: k.at, TenantID: k.tid, Tenant: k.tenant, Model: k.model}
		}
		addRollup(sums[k], eventRollup(e))
	}
	out := make([]billing.Rollup, 0, len(sums))
	for _, r := range sums {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b billing.Rollup) int {
		return cmp.Or(a.Hour.Compare(b.Hour), cmp.Compare(a.TenantID, b.TenantID), strings.Compare(a.Tenant, b.Tenant),
			strings.Compare(a.Model, b.Model))
	})
	if len(out) == 0 && g == (admin.Grouping{Bucket: g.Bucket}) && g.Bucket == admin.BucketNone {
		out = append(out, billing.Rollup{}) // one row, zero
	}
	return out
}

// fixturePeriods are periods over newPartyFixture's traffic, which starts
// on the 10th at 05:00 and lasts 76 hours.
func fixturePeriods() []struct{ from, to time.Time } {
	day := func(d, h int) time.Time { return time.Date(2026, 3, d, h, 0, 0, 0, time.UTC) }
	return []struct{ from, to time.Time }{
		{day(10, 5), day(13, 9)},   // all of it: partial day, two whole days, partial day
		{day(11, 0), day(13, 0)},   // whole days only
		{day(10, 7), day(10, 19)},  // inside one day
		{day(10, 23), day(11, 2)},  // across midnight, no whole day
		{day(11, 0), day(12, 6)},   // a whole day and some hours
		{day(10, 20), day(12, 0)},  // some hours and a whole day
		{time.Time{}, day(12, 13)}, // unbounded before
		{day(11, 13), time.Time{}}, // unbounded after
		{time.Time{}, time.Time{}},
	}
}

// testUsageSeries compares UsageSeries, over periods that start and end
// inside days and on day boundaries, with what the events add up to: the
// stores answer from daily and hourly rollups.
func testUsageSeries(t *testing.T, s Stores) {
	if s.Stats == nil {
		t.Skip("the adapter has no admin statistics")
	}
	f := newPartyFixture(t, s, time.Date(2026, 3, 10, 5, 0, 0, 0, time.UTC))
	var cases int
	for _, p := range fixturePeriods() {
		for _, bucket := range []admin.Bucket{admin.BucketNone, admin.BucketDay, admin.BucketHour} {
			for _, g := range []admin.Grouping{{Bucket: bucket}, {Bucket: bucket, Tenant: true}, {Bucket: bucket, Tenant: true, Model: true}, {Bucket: bucket, Model: true}} {
				for _, q := range []admin.Filter{
					{AllTenants: true, From: p.from, To: p.to},
					{TenantID: f.acme, From: p.from, To: p.to},
					{AllTenants: true, Model: "claude", From: p.from, To: p.to},
				} {
					name := fmt.Sprintf("%s..%s per %s, tenant %v model %v, all %v, model %q",
						p.from.Format("02T15"), p.to.Format("02T15"), bucket, g.Tenant, g.Model, q.AllTenants, q.Model)
					got, err := s.Stats.UsageSeries(ctx(t), q, g)
					if err != nil {
						t.Fatalf("%s: %v", name, err)
					}
					sameJSON(t, name, got, f.expectSeries(q, g))
					cases++
				}
			}
		}
	}
	t.Logf("%d queries, each as the events add up", cases)
}

// testUsageParties compares UsageParties, over periods that start and end
// inside days and on day boundaries, with what the events add up to: the
// stores answer from daily and hourly party rollups, the test from the
// events themselves.
func testUsageParties(t *testing.T, s Stores) {
	if s.Stats == nil {
		t.Skip("the adapter has no admin statistics")
	}
	f := newPartyFixture(t, s, time.Date(2026, 3, 10, 5, 0, 0, 0, time.UTC))
	var cases int
	for _, p := range fixturePeriods() {
		for _, by := range []admin.Dimension{admin.ByKey, admin.ByUser} {
			for _, bucket := range []admin.Bucket{admin.BucketNone, admin.BucketDay, admin.BucketHour} {
				for _, q := range []admin.Filter{
					{AllTenants: true, From: p.from, To: p.to},
					{TenantID: f.acme, From: p.from, To: p.to},
					{AllTenants: true, Model: "claude", From: p.from, To: p.to},
				} {
					for _, limit := range []int{0, 2} {
						name := fmt.Sprintf("%s..%s by %s per %s, all %v, model %q, limit %d",
							p.from.Format("02T15"), p.to.Format("02T15"), by, bucket, q.AllTenants, q.Model, limit)
						got, err := s.Stats.UsageParties(ctx(t), q, by, bucket, limit)
						if err != nil {
							t.Fatalf("%s: %v", name, err)
						}
						want := f.expect(q, by, bucket, limit)
						if len(want) == 0 {
							t.Fatalf("%s: the fixture has no usage there", name)
						}
						sameJSON(t, name, got, want)
						cases++
					}
				}
			}
		}
	}
	t.Logf("%d queries, each as the events add up", cases)
	if _, err := s.Stats.UsageParties(ctx(t), admin.Filter{AllTenants: true}, admin.ByModel, admin.BucketNone, 0); err == nil {
		t.Errorf("UsageParties(by model) = nil error, want one")
	}
}

// testUsagePartiesRetention: the party rollups go with the hourly rollups,
// by whole days.
func testUsagePartiesRetention(t *testing.T, s Stores) {
	if s.Stats == nil {
		t.Skip("the adapter has no admin statistics")
	}
	n := now()
	old, recent := newEvent(1, "acme", n.AddDate(0, -3, 0)), newEvent(1, "acme", n)
	writeUsage(t, s, old, recent)
	all := admin.Filter{AllTenants: true}
	got, err := s.Stats.UsageParties(ctx(t), all, admin.ByKey, admin.BucketNone, 0)
	if err != nil || len(got) != 1 || got[0].Requests != 2 {
		t.Fatalf("UsageParties = %+v, %v; want one key with 2 requests", got, err)
	}
	if err := s.Usage.MaintainUsage(ctx(t), n, billing.Retention{Events: 30 * 24 * time.Hour, Rollups: 60 * 24 * time.Hour}); err != nil {
		t.Fatalf("MaintainUsage = %v", err)
	}
	got, err = s.Stats.UsageParties(ctx(t), all, admin.ByKey, admin.BucketDay, 0)
	if err != nil || len(got) != 1 || got[0].Requests != 1 || !got[0].Hour.Equal(n.Truncate(24*time.Hour)) {
		var s []string
		for _, p := range got {
			s = append(s, fmt.Sprintf("%v: %d", p.Hour, p.Requests))
		}
		t.Errorf("after retention: [%s], %v; want today's one request", strings.Join(s, ", "), err)
	}
}

// testUsagePartiesBackfill: the migration that adds the party rollups
// fills them from the events already stored.
func testUsagePartiesBackfill(t *testing.T, s Stores) {
	if s.Stats == nil {
		t.Skip("the adapter has no admin statistics")
	}
	m, ok := s.Stats.(interface {
		Migrate(ctx context.Context) error
		MigrateDown(ctx context.Context, version int64) error
	})
	if !ok {
		t.Fatalf("%T has no Migrate and MigrateDown", s.Stats)
	}
	start := time.Date(2026, 3, 10, 5, 0, 0, 0, time.UTC)
	f := newPartyFixture(t, s, start)
	if err := m.MigrateDown(ctx(t), 4); err != nil { // drops the party rollups
		t.Fatalf("MigrateDown(4) = %v", err)
	}
	if err := m.Migrate(ctx(t)); err != nil {
		t.Fatalf("Migrate = %v", err)
	}
	for _, bucket := range []admin.Bucket{admin.BucketNone, admin.BucketHour} {
		for _, by := range []admin.Dimension{admin.ByKey, admin.ByUser} {
			q := admin.Filter{AllTenants: true, From: start.Add(3 * time.Hour), To: start.Add(60 * time.Hour)}
			got, err := s.Stats.UsageParties(ctx(t), q, by, bucket, 0)
			if err != nil {
				t.Fatal(err)
			}
			sameJSON(t, fmt.Sprintf("backfilled, by %s per %s", by, bucket), got, f.expect(q, by, bucket, 0))
		}
	}
	// usage_daily, from usage_hourly
	q, g := admin.Filter{AllTenants: true, From: start.Add(19 * time.Hour), To: start.Add(67 * time.Hour)}, admin.Grouping{Bucket: admin.BucketDay, Model: true}
	got, err := s.Stats.UsageSeries(ctx(t), q, g)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "backfilled daily rollups", got, f.expectSeries(q, g))
}

package storetest

import (
	"crypto/rand"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
)

// UsageStore is what the usage cases need from an adapter: the metering
// interfaces billing declares.
type UsageStore interface {
	billing.UsageWriter
	billing.UsageMaintainer
	billing.UsageReader
}

// usageTests are the usage cases of the suite (see Run).
var usageTests = []struct {
	name string
	fn   func(t *testing.T, s Stores)
}{
	{"UsageWriteRead", testUsageWriteRead},
	{"UsageIdempotent", testUsageIdempotent},
	{"UsageRollups", testUsageRollups},
	{"UsageMonthSpend", testUsageMonthSpend},
	{"UsageOldMonth", testUsageOldMonth},
	{"UsageQuery", testUsageQuery},
	{"UsageRetention", testUsageRetention},
	{"UsageRejected", testUsageRejected},
}

// newEvent returns a valid event of tenant at time at.
func newEvent(tenantID int64, tenant string, at time.Time) billing.Event {
	var id billing.EventID
	rand.Read(id[:])
	return billing.Event{
		ID: id, Time: at.UTC().Truncate(time.Microsecond), RequestID: uniq("req"),
		TenantID: tenantID, Tenant: tenant, UserID: 7, KeyID: 9, Endpoint: "chat_completions",
		Model: "gpt-4o", UpstreamModel: "gpt-4o-2024-08-06", Deployment: "openai-1", Provider: "openai",
		Usage: providers.Usage{PromptTokens: 1000, CompletionTokens: 200, CachedTokens: 400, ReasoningTokens: 50},
		Cost:  4_000, Priced: true, Latency: 1234567 * time.Microsecond, Status: 200,
	}
}

func writeUsage(t *testing.T, s Stores, events ...billing.Event) {
	t.Helper()
	if err := s.Usage.WriteUsage(ctx(t), events); err != nil {
		t.Fatalf("WriteUsage(%d events) = %v", len(events), err)
	}
}

func allEvents(t *testing.T, s Stores) []billing.Event {
	t.Helper()
	got, err := s.Usage.UsageEvents(ctx(t), billing.UsageQuery{AllTenants: true})
	if err != nil {
		t.Fatalf("UsageEvents = %v", err)
	}
	return got
}

func testUsageWriteRead(t *testing.T, s Stores) {
	at := now()
	stream := newEvent(1, "acme", at)
	stream.Stream, stream.TTFT = true, 150*time.Millisecond
	failed := newEvent(1, "acme", at.Add(time.Millisecond))
	failed.Usage, failed.Cost, failed.Status, failed.ErrorCode = providers.Usage{}, 0, 502, "upstream_error"
	failed.UserID, failed.KeyID = 0, 0 // none: stored as NULL, read as 0
	estimated := newEvent(2, "globex", at.Add(2*time.Millisecond))
	estimated.Estimated, estimated.Priced, estimated.Cost, estimated.Model = true, false, 0, "my-local-model"
	estimated.Status, estimated.ErrorCode = 499, "client_closed_request"
	want := []billing.Event{stream, failed, estimated}
	writeUsage(t, s, want...)

	got := allEvents(t, s)
	for i := range want {
		want[i].Usage.TotalTokens = want[i].Usage.PromptTokens + want[i].Usage.CompletionTokens
	}
	sameJSON(t, "UsageEvents", got, want)
}

func testUsageIdempotent(t *testing.T, s Stores) {
	at := now()
	batch := []billing.Event{newEvent(1, "acme", at), newEvent(1, "acme", at.Add(time.Second)), newEvent(1, "acme", at.Add(2*time.Second))}
	writeUsage(t, s, batch...)
	writeUsage(t, s, batch...)                                             // a replay of the whole batch
	writeUsage(t, s, batch[2], newEvent(1, "acme", at.Add(3*time.Second))) // overlapping
	if got := allEvents(t, s); len(got) != 4 {
		t.Fatalf("after replays: %d events stored, want 4", len(got))
	}
	rs, err := s.Usage.UsageRollups(ctx(t), billing.UsageQuery{AllTenants: true})
	if err != nil {
		t.Fatal(err)
	}
	var requests, prompt int64
	var cost tenancy.MicroUSD
	for _, r := range rs {
		requests += r.Requests
		prompt += r.Usage.PromptTokens
		cost += r.Cost
	}
	if requests != 4 || prompt != 4000 || cost != 16_000 {
		t.Errorf("rollups after replays: %d requests, %d prompt tokens, cost %d; want 4, 4000, 16000", requests, prompt, cost)
	}
}

func testUsageRollups(t *testing.T, s Stores) {
	hour := now().Truncate(time.Hour)
	var events []billing.Event
	add := func(tenantID int64, tenant, model string, at time.Time, status int, stream bool, latency, ttft time.Duration, cost tenancy.MicroUSD) {
		e := newEvent(tenantID, tenant, at)
		e.Model, e.Status, e.Stream, e.Latency, e.TTFT, e.Cost = model, status, stream, latency, ttft, cost
		if !stream {
			e.TTFT = 0
		}
		events = append(events, e)
	}
	add(1, "acme", "gpt-4o", hour.Add(time.Minute), 200, true, 90*time.Millisecond, 20*time.Millisecond, 100)
	add(1, "acme", "gpt-4o", hour.Add(2*time.Minute), 200, false, 700*time.Millisecond, 0, 200)
	add(1, "acme", "gpt-4o", hour.Add(3*time.Minute), 429, false, time.Millisecond, 0, 0)
	add(1, "acme", "gpt-4o", hour.Add(4*time.Minute), 200, true, 3*time.Minute, 500*time.Millisecond, 300)
	add(1, "acme", "gpt-4o-mini", hour.Add(5*time.Minute), 200, false, time.Second, 0, 7)
	add(1, "acme", "gpt-4o", hour.Add(61*time.Minute), 200, false, time.Second, 0, 11)
	add(2, "globex", "gpt-4o", hour.Add(6*time.Minute), 200, false, time.Second, 0, 13)
	// two batches, so that the second adds to existing rollups
	writeUsage(t, s, events[:3]...)
	writeUsage(t, s, events[3:]...)

	got, err := s.Usage.UsageRollups(ctx(t), billing.UsageQuery{AllTenants: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 {
		t.Fatalf("UsageRollups = %d rows, want 4: %+v", len(got), got)
	}
	r := got[0] // hour, acme, gpt-4o (ordered by hour, tenant id, tenant, model)
	if !r.Hour.Equal(hour) || r.TenantID != 1 || r.Model != "gpt-4o" {
		t.Fatalf("first rollup is %v %d %s, want %v 1 gpt-4o", r.Hour, r.TenantID, r.Model, hour)
	}
	// Computed by hand from the four events above.
	want := billing.Rollup{Hour: hour, TenantID: 1, Tenant: "acme", Model: "gpt-4o",
		Requests: 4, Errors: 1, Streams: 2, Estimated: 0, Unpriced: 0,
		Usage: providers.Usage{PromptTokens: 4000, CompletionTokens: 800, TotalTokens: 4800, CachedTokens: 1600, ReasoningTokens: 200},
		Cost:  600, LatencySum: 90*time.Millisecond + 700*time.Millisecond + time.Millisecond + 3*time.Minute,
		TTFTSum:   520 * time.Millisecond,
		LatencyLE: [billing.LatencyBuckets]int64{2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3}}
	sameJSON(t, "rollup", r, want)
	if p := r.LatencyPercentile(0.5); p != 100*time.Millisecond {
		t.Errorf("LatencyPercentile(0.5) = %v, want 100ms", p)
	}
	if p := r.LatencyPercentile(1); p >= 0 {
		t.Errorf("LatencyPercentile(1) = %v, want beyond the last bound (negative)", p)
	}
	// and the same as billing.Rollups computes in Go
	for _, r := range got {
		k := billing.RollupKey{Hour: r.Hour, TenantID: r.TenantID, Tenant: r.Tenant, Model: r.Model}
		w := billing.Rollups(events)[k]
		if w == nil {
			t.Errorf("unexpected rollup %+v", k)
			continue
		}
		sameJSON(t, fmt.Sprintf("rollup %v", k), r, *w)
	}
}

func testUsageMonthSpend(t *testing.T, s Stores) {
	start, _ := billing.MonthBounds(now())
	prev := start.AddDate(0, -1, 0)
	e := func(tenantID int64, at time.Time, cost tenancy.MicroUSD) billing.Event {
		ev := newEvent(tenantID, fmt.Sprint("t", tenantID), at)
		ev.Cost = cost
		return ev
	}
	writeUsage(t, s,
		e(1, start, 1_000_001),                                 // first microsecond of the month
		e(1, start.Add(10*24*time.Hour), 2),                    // later this month
		e(1, start.Add(-time.Microsecond), 40),                 // last microsecond of the previous month
		e(1, prev.Add(24*time.Hour), 500),                      // previous month
		e(2, start.Add(time.Hour), 777),                        // another tenant
		e(1, start.AddDate(0, 1, 0).Add(-time.Microsecond), 3)) // last microsecond of the month
	cases := []struct {
		tenant int64
		month  time.Time
		want   tenancy.MicroUSD
	}{
		{1, start, 1_000_006},
		{1, start.Add(15 * 24 * time.Hour), 1_000_006}, // any time in the month
		{1, prev, 540},
		{2, start, 777},
		{3, start, 0},
	}
	for _, tc := range cases {
		got, err := s.Usage.MonthSpend(ctx(t), tc.tenant, tc.month)
		if err != nil {
			t.Fatalf("MonthSpend = %v", err)
		}
		if got != tc.want {
			t.Errorf("MonthSpend(%d, %v) = %d, want %d", tc.tenant, tc.month, got, tc.want)
		}
	}
}

// testUsageOldMonth: an event of a month the store never prepared (a
// replay of an old journal) is stored all the same.
func testUsageOldMonth(t *testing.T, s Stores) {
	old := time.Date(2019, 3, 14, 15, 9, 26, 535000, time.UTC)
	writeUsage(t, s, newEvent(1, "acme", old), newEvent(1, "acme", now()))
	if got := allEvents(t, s); len(got) != 2 || !got[0].Time.Equal(old) {
		t.Fatalf("events = %+v, want the 2019 one first", got)
	}
}

func testUsageQuery(t *testing.T, s Stores) {
	at := now().Truncate(time.Hour)
	var all []billing.Event
	for i := range 6 {
		all = append(all, newEvent(int64(1+i%2), "t", at.Add(time.Duration(i)*time.Hour)))
	}
	writeUsage(t, s, all...)
	q := func(q billing.UsageQuery) []billing.Event {
		got, err := s.Usage.UsageEvents(ctx(t), q)
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := q(billing.UsageQuery{TenantID: 1}); len(got) != 3 || got[0].ID != all[0].ID || got[2].ID != all[4].ID {
		t.Errorf("tenant 1: %d events, want 3 in time order", len(got))
	}
	if got := q(billing.UsageQuery{AllTenants: true, From: at.Add(time.Hour), To: at.Add(3 * time.Hour)}); len(got) != 2 || got[0].ID != all[1].ID {
		t.Errorf("from 1h to 3h: %d events, want 2 (from inclusive, to exclusive)", len(got))
	}
	if got := q(billing.UsageQuery{AllTenants: true, Limit: 4}); len(got) != 4 {
		t.Errorf("limit 4: %d events", len(got))
	}
	rs, err := s.Usage.UsageRollups(ctx(t), billing.UsageQuery{TenantID: 2, From: at.Add(2 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 2 || !rs[0].Hour.Equal(at.Add(3*time.Hour)) {
		t.Errorf("rollups of tenant 2 from 2h: %+v, want the hours 3 and 5", rs)
	}
}

func testUsageRetention(t *testing.T, s Stores) {
	n := now()
	old := newEvent(1, "acme", n.AddDate(0, -3, 0))
	recent := newEvent(1, "acme", n)
	writeUsage(t, s, old, recent)
	if err := s.Usage.MaintainUsage(ctx(t), n, billing.Retention{}); err != nil {
		t.Fatalf("MaintainUsage(keep all) = %v", err)
	}
	if got := allEvents(t, s); len(got) != 2 {
		t.Fatalf("retention 0 kept %d events, want 2", len(got))
	}
	if err := s.Usage.MaintainUsage(ctx(t), n, billing.Retention{Events: 30 * 24 * time.Hour, Rollups: 60 * 24 * time.Hour}); err != nil {
		t.Fatalf("MaintainUsage = %v", err)
	}
	got := allEvents(t, s)
	if len(got) != 1 || got[0].ID != recent.ID {
		t.Errorf("after retention of 30 days: %d events, want only the recent one", len(got))
	}
	rs, err := s.Usage.UsageRollups(ctx(t), billing.UsageQuery{AllTenants: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || !rs[0].Hour.Equal(n.Truncate(time.Hour)) {
		t.Errorf("after rollup retention of 60 days: %+v, want the current hour only", rs)
	}
	// Still writable: the current month's storage exists.
	writeUsage(t, s, newEvent(1, "acme", n.Add(time.Second)))
}

// testUsageRejected: data the store cannot take is reported as
// billing.ErrRejected (so that the meter sets it aside), not as an outage.
func testUsageRejected(t *testing.T, s Stores) {
	bad := newEvent(1, "acme", now())
	bad.RequestID = "nul\x00byte" // PostgreSQL refuses NUL in text; SQLite stores it
	err := s.Usage.WriteUsage(ctx(t), []billing.Event{bad})
	if err != nil && !errors.Is(err, billing.ErrRejected) {
		t.Errorf("WriteUsage(a NUL in text) = %v, want nil or billing.ErrRejected", err)
	}
}

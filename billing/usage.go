package billing

import (
	"cmp"
	"context"
	"slices"
	"strings"
	"time"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
)

// LatencyBuckets is the number of buckets of the rollups' latency histogram.
const LatencyBuckets = 11

// LatencyBounds returns the upper bounds of the rollups' latency histogram
// buckets (Rollup.LatencyLE), in order. The stores name their columns after
// them (latency_le_100ms, ..., latency_le_120s).
func LatencyBounds() [LatencyBuckets]time.Duration {
	return [...]time.Duration{
		100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
		time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
		20 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute,
	}
}

// Rollup is the usage of one tenant and model in one hour (UTC): what the
// dashboard charts and budgets sum. The stores keep it up to date in the
// same transaction as the events it counts.
type Rollup struct {
	// Hour is the start of the hour, in UTC.
	Hour     time.Time
	TenantID int64
	Tenant   string
	// Model is the model asked for.
	Model string
	// Requests, of which Errors failed (a status of 400 or more, or an
	// error code: a stream the upstream cut answered 200), Streams
	// were streamed, Estimated were counted by the meter, Unpriced had no
	// price.
	Requests, Errors, Streams, Estimated, Unpriced int64
	// Usage sums the events' tokens (TotalTokens = prompt + completion).
	Usage providers.Usage
	// Cost sums the events' costs.
	Cost tenancy.MicroUSD
	// LatencySum sums the requests' latencies; TTFTSum the streams' times
	// to first token.
	LatencySum, TTFTSum time.Duration
	// LatencyLE[i] counts the requests whose latency was at most
	// LatencyBounds()[i] (a cumulative histogram).
	LatencyLE [LatencyBuckets]int64
}

// LatencyPercentile returns an upper bound of the q-quantile (0 < q ≤ 1)
// of the rollup's latencies: the bound of the first bucket that holds that
// many requests; 0 when there were no requests, and a negative duration
// when the quantile is beyond the last bound.
func (r *Rollup) LatencyPercentile(q float64) time.Duration {
	if r.Requests == 0 {
		return 0
	}
	need := int64(q*float64(r.Requests) + 0.999999)
	bounds := LatencyBounds()
	for i, n := range r.LatencyLE {
		if n >= need {
			return bounds[i]
		}
	}
	return -1
}

// add counts e into r (the SQLite store computes rollups in Go; PostgreSQL
// computes the same in SQL).
func (r *Rollup) add(e *Event) {
	r.Requests++
	if e.Status >= 400 || e.ErrorCode != "" {
		r.Errors++
	}
	if e.Stream {
		r.Streams++
		r.TTFTSum += e.TTFT.Truncate(time.Microsecond)
	}
	if e.Estimated {
		r.Estimated++
	}
	if !e.Priced {
		r.Unpriced++
	}
	r.Usage.PromptTokens += e.Usage.PromptTokens
	r.Usage.CompletionTokens += e.Usage.CompletionTokens
	r.Usage.CachedTokens += e.Usage.CachedTokens
	r.Usage.ReasoningTokens += e.Usage.ReasoningTokens
	r.Usage.TotalTokens += e.Usage.PromptTokens + e.Usage.CompletionTokens
	r.Cost += e.Cost
	lat := e.Latency.Truncate(time.Microsecond)
	r.LatencySum += lat
	for i, b := range LatencyBounds() {
		if lat <= b {
			r.LatencyLE[i]++
		}
	}
}

// RollupKey identifies a rollup row.
type RollupKey struct {
	// Hour is the start of the hour, or of the day for a daily rollup.
	Hour     time.Time
	TenantID int64
	Tenant   string
	Model    string
}

// Rollups sums events into hourly rollups, keyed as the stores key them.
func Rollups(events []Event) map[RollupKey]*Rollup { return rollups(events, time.Hour) }

// DailyRollups sums events into daily (UTC) rollups: the stores keep them
// too, so that a long period is read from a row a day.
func DailyRollups(events []Event) map[RollupKey]*Rollup { return rollups(events, 24*time.Hour) }

func rollups(events []Event, width time.Duration) map[RollupKey]*Rollup {
	out := make(map[RollupKey]*Rollup)
	for i := range events {
		e := &events[i]
		k := RollupKey{Hour: e.Time.UTC().Truncate(width), TenantID: e.TenantID, Tenant: e.Tenant, Model: e.Model}
		r := out[k]
		if r == nil {
			r = &Rollup{Hour: k.Hour, TenantID: k.TenantID, Tenant: k.Tenant, Model: k.Model}
			out[k] = r
		}
		r.add(e)
	}
	return out
}

// PartyKey identifies a row of the party rollups: one tenant's API key and
// user, and model, in one hour or day (UTC). The admin API's "by key" and
// "by user" queries read these rows instead of the events.
type PartyKey struct {
	// Start is the start of the hour or day.
	Start    time.Time
	TenantID int64
	Tenant   string
	// KeyID and UserID are 0 for none (a request signed with a JWT has no
	// key; a key from static configuration has neither).
	KeyID, UserID int64
	// Model is the model asked for.
	Model string
}

// Compare orders party keys by tenant, start, key, user and model: the
// order in which every writer upserts the rows, so that replicas writing
// concurrently do not deadlock.
func (k PartyKey) Compare(o PartyKey) int {
	return cmp.Or(cmp.Compare(k.TenantID, o.TenantID), strings.Compare(k.Tenant, o.Tenant),
		k.Start.Compare(o.Start), cmp.Compare(k.KeyID, o.KeyID), cmp.Compare(k.UserID, o.UserID),
		strings.Compare(k.Model, o.Model))
}

// PartyRollups sums events into hourly rollups by tenant, API key and
// user and model, keyed as the stores key them, and returns the keys in
// PartyKey.Compare's order. The Rollups' Hour is the key's Start.
func PartyRollups(events []Event) ([]PartyKey, map[PartyKey]*Rollup) {
	return partyRollups(events, time.Hour)
}

// DailyPartyRollups is PartyRollups by UTC day.
func DailyPartyRollups(events []Event) ([]PartyKey, map[PartyKey]*Rollup) {
	return partyRollups(events, 24*time.Hour)
}

func partyRollups(events []Event, width time.Duration) ([]PartyKey, map[PartyKey]*Rollup) {
	out := make(map[PartyKey]*Rollup)
	var keys []PartyKey
	for i := range events {
		e := &events[i]
		k := PartyKey{Start: e.Time.UTC().Truncate(width), TenantID: e.TenantID, Tenant: e.Tenant,
			KeyID: e.KeyID, UserID: e.UserID, Model: e.Model}
		r := out[k]
		if r == nil {
			r = &Rollup{Hour: k.Start, TenantID: k.TenantID, Tenant: k.Tenant, Model: k.Model}
			out[k] = r
			keys = append(keys, k)
		}
		r.add(e)
	}
	slices.SortFunc(keys, PartyKey.Compare)
	return keys, out
}

// UsageQuery selects usage events or rollups.
type UsageQuery struct {
	// TenantID selects one tenant's usage, unless AllTenants.
	TenantID   int64
	AllTenants bool
	// From (inclusive) and To (exclusive) bound the events' times or the
	// rollups' hours; zero values do not bound.
	From, To time.Time
	// Limit caps the rows returned; 0: no cap.
	Limit int
}

// UsageReader reads the usage the meter wrote: for the dashboard, budgets
// and tests. *postgres.DB and *sqlite.DB implement it.
type UsageReader interface {
	// UsageEvents returns events ordered by time, then id.
	UsageEvents(ctx context.Context, q UsageQuery) ([]Event, error)
	// UsageRollups returns rollups ordered by hour, tenant, model.
	UsageRollups(ctx context.Context, q UsageQuery) ([]Rollup, error)
	// MonthSpend returns what the tenant spent in the calendar month (UTC)
	// that contains month, from the rollups; it implements
	// ratelimit.SpendSource.
	MonthSpend(ctx context.Context, tenantID int64, month time.Time) (tenancy.MicroUSD, error)
}

// MonthBounds returns the start of the calendar month (UTC) that contains
// t, and the start of the next.
func MonthBounds(t time.Time) (start, end time.Time) {
	t = t.UTC()
	start = time.Date(t.Year(), t.Month(), 1, 0, 0, 0, 0, time.UTC)
	return start, start.AddDate(0, 1, 0)
}

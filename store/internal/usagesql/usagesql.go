// Package usagesql builds the SQL of the usage queries that the PostgreSQL
// and SQLite stores share, each store giving its Dialect: the rollup
// tables' counter columns, and the admin queries over the rollups
// (usage_hourly and usage_daily by tenant and model; usage_party_hourly and
// usage_party_daily by tenant, key and user: migrations 00002 and 00005),
// which both stores run as is.
package usagesql

import (
	"fmt"
	"strings"
	"time"

	"github.com/mtai-dev/mtai/admin"
	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/tenancy"
)

// Counters are the counter columns of the rollup tables, after their keys,
// in the order of billing.Rollup's fields.
var Counters = []string{
	"requests", "errors", "streams", "estimated", "unpriced",
	"prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens", "cost_micro_usd",
	"latency_us_sum", "ttft_us_sum",
	"latency_le_100ms", "latency_le_250ms", "latency_le_500ms", "latency_le_1s", "latency_le_2s",
	"latency_le_5s", "latency_le_10s", "latency_le_20s", "latency_le_30s", "latency_le_60s", "latency_le_120s",
}

// firstLE is the index in Counters of the latency histogram's first column.
const firstLE = 12

// Values returns r's counters, in Counters' order.
func Values(r *billing.Rollup) [firstLE + billing.LatencyBuckets]int64 {
	v := [firstLE + billing.LatencyBuckets]int64{r.Requests, r.Errors, r.Streams, r.Estimated, r.Unpriced,
		r.Usage.PromptTokens, r.Usage.CompletionTokens, r.Usage.CachedTokens, r.Usage.ReasoningTokens, int64(r.Cost),
		r.LatencySum.Microseconds(), r.TTFTSum.Microseconds()}
	copy(v[firstLE:], r.LatencyLE[:])
	return v
}

// Dialect is what differs between the stores' SQL.
type Dialect struct {
	// Placeholder is the text of the nth (from 1) query argument.
	Placeholder func(n int) string
	// Time is a time as a query argument.
	Time func(t time.Time) any
	// Day is the expression of the start of the UTC day that contains the
	// time in column col.
	Day func(col string) string
	// Sum is the expression of the sum of the integer expression x, as an
	// integer.
	Sum func(x string) string
}

// query accumulates a statement's arguments.
type query struct {
	d    Dialect
	args []any
}

func (q *query) arg(v any) string {
	q.args = append(q.args, v)
	return q.d.Placeholder(len(q.args))
}

// Parties returns the statement (and its arguments) of
// admin.Store.UsageParties: the usage f selects by API key or user,
// grouped by bucket (BucketNone: the whole period), for the limit (0: all)
// busiest parties of the period, busiest first within a bucket.
//
// Its rows are: the bucket's start (unless BucketNone), the party's id,
// tenant id and tenant, the Counters, the party's name and key prefix;
// PartyRow reads them.
//
// It reads the party rollups: the whole UTC days of the period from
// usage_party_daily and its partial days from usage_party_hourly (so a
// period of a month is about 30 rows per key and model), or the hourly
// rows alone for BucketHour.
func Parties(d Dialect, f admin.Filter, by admin.Dimension, bucket admin.Bucket, limit int) (string, []any, error) {
	var col, join, name, prefix string
	switch by {
	case admin.ByKey:
		col, join, name, prefix = "key_id", "api_keys p ON p.id = a.pid", "p.name", "p.prefix"
	case admin.ByUser:
		col, join, name, prefix = "user_id", "users p ON p.id = a.pid", "p.username", "''"
	default:
		return "", nil, fmt.Errorf("%w: by %q", admin.ErrInvalid, by)
	}
	q := &query{d: d}
	src := q.rollupSource(f, "usage_party_hourly", "usage_party_daily", col+" AS pid, tenant_id, tenant", bucket)
	sums := make([]string, len(Counters))
	for i, c := range Counters {
		sums[i] = d.Sum(c) + " AS " + c
	}
	const busiest = "a.requests DESC, a.cost_micro_usd DESC, a.pid, a.tenant_id"
	var sb strings.Builder
	// NOT MATERIALIZED: with a bucket, src is read twice, and materializing
	// it (every column) cost more than reading the rows again
	sb.WriteString("WITH src AS NOT MATERIALIZED (" + src + ")")
	if bucket == admin.BucketNone {
		sb.WriteString(",\na AS (SELECT pid, tenant_id, tenant, " + strings.Join(sums, ", ") + " FROM src GROUP BY pid, tenant_id, tenant)")
		sb.WriteString("\nSELECT a.*, COALESCE(" + name + ", ''), COALESCE(" + prefix + ", '') FROM a LEFT JOIN " + join)
		sb.WriteString("\nORDER BY " + busiest)
		if limit > 0 {
			sb.WriteString(" LIMIT " + q.arg(limit))
		}
		return sb.String(), q.args, nil
	}
	if limit > 0 {
		sb.WriteString(",\ntop AS (SELECT pid, tenant_id, tenant FROM src GROUP BY pid, tenant_id, tenant ORDER BY " +
			d.Sum("requests") + " DESC, " + d.Sum("cost_micro_usd") + " DESC, pid, tenant_id LIMIT " + q.arg(limit) + ")")
		sb.WriteString(",\nsel AS (SELECT src.* FROM src JOIN top ON top.pid = src.pid AND top.tenant_id = src.tenant_id AND top.tenant = src.tenant)")
	} else {
		sb.WriteString(",\nsel AS (SELECT * FROM src)")
	}
	sb.WriteString(",\na AS (SELECT bt, pid, tenant_id, tenant, " + strings.Join(sums, ", ") + " FROM sel GROUP BY bt, pid, tenant_id, tenant)")
	sb.WriteString("\nSELECT a.*, COALESCE(" + name + ", ''), COALESCE(" + prefix + ", '') FROM a LEFT JOIN " + join)
	sb.WriteString("\nORDER BY a.bt, " + busiest)
	return sb.String(), q.args, nil
}

// rollupSource selects the rows of a pair of rollup tables, hourly and
// daily (time columns hour and day), that make up f's period: bt (the
// bucket's start, unless BucketNone), the columns cols, and the Counters;
// those of f's tenant and model (when f has one).
func (q *query) rollupSource(f admin.Filter, hourly, daily, cols string, bucket admin.Bucket) string {
	var parts []string
	for _, sp := range spans(f.From, f.To, bucket == admin.BucketHour) {
		table, col := hourly, "hour"
		if sp.days {
			table, col = daily, "day"
		}
		s := "SELECT "
		switch {
		case bucket == admin.BucketHour, bucket == admin.BucketDay && sp.days:
			s += col + " AS bt, "
		case bucket == admin.BucketDay:
			s += q.d.Day(col) + " AS bt, "
		}
		s += cols + ", " + strings.Join(Counters, ", ") + " FROM " + table + " WHERE 1 = 1"
		// an argument per use: SQLite's are positional
		if !f.AllTenants {
			s += " AND tenant_id = " + q.arg(f.TenantID)
		}
		if f.Model != "" {
			s += " AND model = " + q.arg(f.Model)
		}
		parts = append(parts, s+q.during(col, sp.from, sp.to))
	}
	return strings.Join(parts, "\nUNION ALL\n")
}

// during is the condition (" AND ...") that col is in [from, to); zero
// times do not bound.
func (q *query) during(col string, from, to time.Time) string {
	var s string
	if !from.IsZero() {
		s += " AND " + col + " >= " + q.arg(q.d.Time(from))
	}
	if !to.IsZero() {
		s += " AND " + col + " < " + q.arg(q.d.Time(to))
	}
	return s
}

// span is a part of a period that is read from rows of one width: whole
// UTC days, or hours.
type span struct {
	days     bool
	from, to time.Time // zero: unbounded
}

// spans splits the period [from, to) into the whole UTC days it holds and
// the hours before and after them; hours returns it as one span of hours.
func spans(from, to time.Time, hours bool) []span {
	days, daysEnd := ceilDay(from), to.Truncate(day) // zero stays zero
	if hours || (!days.IsZero() && !daysEnd.IsZero() && !days.Before(daysEnd)) {
		return []span{{false, from, to}} // no whole day
	}
	out := []span{{true, days, daysEnd}}
	if !from.IsZero() && from.Before(days) {
		out = append(out, span{false, from, days})
	}
	if !to.IsZero() && daysEnd.Before(to) {
		out = append(out, span{false, daysEnd, to})
	}
	return out
}

// day is the width of a daily rollup.
const day = 24 * time.Hour

// ceilDay rounds t up to a whole UTC day (zero stays zero).
func ceilDay(t time.Time) time.Time {
	d := t.Truncate(day)
	if d.Before(t) {
		d = d.Add(day)
	}
	return d
}

// raw receives the counters that Rollup keeps in other types.
type raw struct{ cost, latency, ttft int64 }

// dest returns the scan destinations of the Counters into r.
func (c *raw) dest(r *billing.Rollup) []any {
	dest := []any{&r.Requests, &r.Errors, &r.Streams, &r.Estimated, &r.Unpriced,
		&r.Usage.PromptTokens, &r.Usage.CompletionTokens, &r.Usage.CachedTokens, &r.Usage.ReasoningTokens, &c.cost,
		&c.latency, &c.ttft}
	for i := range r.LatencyLE {
		dest = append(dest, &r.LatencyLE[i])
	}
	return dest
}

// finish sets r's derived and typed fields after the scan.
func (c *raw) finish(r *billing.Rollup) {
	r.Usage.TotalTokens = r.Usage.PromptTokens + r.Usage.CompletionTokens
	r.Cost = tenancy.MicroUSD(c.cost)
	r.LatencySum, r.TTFTSum = time.Duration(c.latency)*time.Microsecond, time.Duration(c.ttft)*time.Microsecond
}

// PartyRow receives a row of Parties' statement.
type PartyRow struct {
	party admin.Party
	raw   raw
}

// Dest returns the scan destinations of the row's columns; bt receives the
// bucket's start when the statement has one (bucket other than
// BucketNone), and the caller then sets the Party's Hour from it.
func (r *PartyRow) Dest(bucket admin.Bucket, bt any) []any {
	p := &r.party
	var dest []any
	if bucket != admin.BucketNone {
		dest = append(dest, bt)
	}
	dest = append(dest, &p.ID, &p.TenantID, &p.Tenant)
	dest = append(dest, r.raw.dest(&p.Rollup)...)
	return append(dest, &p.Name, &p.Prefix)
}

// Finish returns the row, once scanned.
func (r *PartyRow) Finish() admin.Party {
	r.raw.finish(&r.party.Rollup)
	return r.party
}

// Series returns the statement (and its arguments) of
// admin.Store.UsageSeries: the rollups f selects, summed as g groups them,
// ordered by time, tenant, model; one row without grouping.
//
// Its rows are: the bucket's start (for BucketHour and BucketDay), the
// tenant's id and name (g.Tenant), the model (g.Model), the Counters;
// SeriesRow reads them. BucketHour reads usage_hourly; the others read
// usage_daily for the whole UTC days of the period and usage_hourly for
// the hours around them.
func Series(d Dialect, f admin.Filter, g admin.Grouping) (string, []any) {
	q := &query{d: d}
	timed := g.Bucket == admin.BucketHour || g.Bucket == admin.BucketDay
	src := q.rollupSource(f, "usage_hourly", "usage_daily", "tenant_id, tenant, model", g.Bucket)
	var sel, group []string
	if timed {
		sel, group = append(sel, "bt"), append(group, "bt")
	}
	if g.Tenant {
		sel, group = append(sel, "tenant_id", "tenant"), append(group, "tenant_id", "tenant")
	}
	if g.Model {
		sel, group = append(sel, "model"), append(group, "model")
	}
	for _, c := range Counters {
		sel = append(sel, d.Sum(c))
	}
	stmt := "SELECT " + strings.Join(sel, ", ") + " FROM (" + src + ") src"
	if len(group) > 0 {
		stmt += " GROUP BY " + strings.Join(group, ", ") + " ORDER BY " + strings.Join(group, ", ")
	}
	return stmt, q.args
}

// SeriesRow receives a row of Series' statement.
type SeriesRow struct {
	rollup billing.Rollup
	raw    raw
}

// Dest returns the scan destinations of the row's columns; bt receives the
// bucket's start when g has a time axis, and the caller then sets the
// Rollup's Hour from it.
func (r *SeriesRow) Dest(g admin.Grouping, bt any) []any {
	var dest []any
	if g.Bucket == admin.BucketHour || g.Bucket == admin.BucketDay {
		dest = append(dest, bt)
	}
	if g.Tenant {
		dest = append(dest, &r.rollup.TenantID, &r.rollup.Tenant)
	}
	if g.Model {
		dest = append(dest, &r.rollup.Model)
	}
	return append(dest, r.raw.dest(&r.rollup)...)
}

// Finish returns the row, once scanned.
func (r *SeriesRow) Finish() billing.Rollup {
	r.raw.finish(&r.rollup)
	return r.rollup
}

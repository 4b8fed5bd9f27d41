// Package admin answers the questions of the people who run mtai: platform
// statistics and usage analytics (requests, tokens, cost, errors and
// latency by tenant, model, key or user, over time), read from the usage
// rollups that the stores keep (billing.Rollup: hourly by tenant and model;
// billing.PartyRollups: hourly and daily by tenant, key and user), so that a
// month of traffic answers in milliseconds. It also holds the admin dashboard's web
// assets (web/, embedded; see Assets), which call the /api/v1 platform API.
//
// The HTTP side (routes, authentication, who may see which tenant) is in
// gateway/admin.go; the SQL is in store/postgres/stats.go and
// store/sqlite/stats.go.
package admin

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/mtai-dev/mtai/billing"
)

// Bucket is the width of the time buckets of a usage series.
type Bucket string

// The buckets: an hour, a day (UTC), or the whole period (no time axis).
const (
	BucketHour Bucket = "hour"
	BucketDay  Bucket = "day"
	BucketNone Bucket = "none"
)

// Dimension is what usage rows are grouped by, besides time.
type Dimension string

// The dimensions. Tenant and Model come from the rollups by tenant and
// model; Key and User from those by tenant, key, user and model.
const (
	ByTenant Dimension = "tenant"
	ByModel  Dimension = "model"
	ByKey    Dimension = "key"
	ByUser   Dimension = "user"
)

// Filter selects usage.
type Filter struct {
	// TenantID selects one tenant's usage, unless AllTenants.
	TenantID   int64
	AllTenants bool
	// Model, when set, selects one model (as the clients asked for it).
	Model string
	// From (inclusive) and To (exclusive) bound the period; both are whole
	// hours (UTC) for the rollups. Zero values do not bound.
	From, To time.Time
}

// Grouping says how rows of usage are grouped: by time bucket and by
// tenant and/or model. The zero value sums everything into one row.
type Grouping struct {
	// Bucket is the time axis; "" is BucketNone.
	Bucket Bucket
	// Tenant and Model group by those columns too.
	Tenant, Model bool
}

// Party is the usage of one API key or one user (Rollup's Model is empty;
// its Hour is the start of the time bucket, zero without one; its Tenant is
// the key's or user's tenant).
type Party struct {
	// ID is the key's or user's id; 0 collects the requests made with no
	// key or user (keys from static configuration).
	ID int64
	// Name is the key's name or the user's username; empty when unknown.
	Name string
	// Prefix is the key's prefix ("sk-mtai-Ab3x"); empty for users.
	Prefix string
	billing.Rollup
}

// Counts are the numbers of things that exist now (not in a period).
type Counts struct {
	// Tenants, Users and Keys count the enabled tenants, enabled users and
	// usable keys (neither revoked nor expired).
	Tenants, Users, Keys int64
}

// Store is what the Service reads. *postgres.DB and *sqlite.DB implement
// it (stats.go in each); both are safe for concurrent use.
type Store interface {
	// UsageSeries sums the hourly rollups f selects, grouped as g says,
	// ordered by time, tenant, model. Grouped columns a row does not have
	// are zero; with no grouping it returns exactly one row (zero when
	// nothing matched).
	UsageSeries(ctx context.Context, f Filter, g Grouping) ([]billing.Rollup, error)
	// UsageParties sums the usage f selects by API key (ByKey) or user
	// (ByUser) and time bucket, for the limit (0: no cap) busiest parties
	// of the period; ordered by time, then the busiest first.
	UsageParties(ctx context.Context, f Filter, by Dimension, bucket Bucket, limit int) ([]Party, error)
	// UsageCounts counts the tenants, users and keys (of f's tenant, unless
	// f.AllTenants).
	UsageCounts(ctx context.Context, f Filter, now time.Time) (Counts, error)
}

// ErrInvalid is wrapped by errors about a query the Service refuses.
var ErrInvalid = errors.New("admin: invalid query")

// Service answers statistics and usage queries. It is safe for concurrent
// use.
type Service struct {
	store Store
	now   func() time.Time
}

// New returns a Service reading store. now is the clock; nil means
// time.Now.
func New(store Store, now func() time.Time) *Service {
	if now == nil {
		now = time.Now
	}
	return &Service{store: store, now: now}
}

// Now returns the Service's clock's time.
func (s *Service) Now() time.Time { return s.now() }

// Stats are the platform's numbers for a period.
type Stats struct {
	Object string    `json:"object"` // "admin.stats"
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	// Tenant and TenantID name the tenant when the statistics are one
	// tenant's; null for all tenants.
	Tenant   *string `json:"tenant"`
	TenantID *int64  `json:"tenant_id"`
	Tenants  int64   `json:"tenants"`
	Users    int64   `json:"users"`
	Keys     int64   `json:"keys"`
	Totals
}

// Stats returns the statistics of the usage f selects; tenant is the
// tenant's name, "" for all tenants.
func (s *Service) Stats(ctx context.Context, f Filter, tenant string) (*Stats, error) {
	if err := check(f); err != nil {
		return nil, err
	}
	rows, err := s.store.UsageSeries(ctx, f, Grouping{})
	if err != nil {
		return nil, err
	}
	counts, err := s.store.UsageCounts(ctx, f, s.now())
	if err != nil {
		return nil, err
	}
	st := &Stats{Object: "admin.stats", From: f.From, To: f.To,
		Tenants: counts.Tenants, Users: counts.Users, Keys: counts.Keys}
	if !f.AllTenants {
		id := f.TenantID
		st.Tenant, st.TenantID = &tenant, &id
	}
	var r billing.Rollup
	if len(rows) > 0 {
		r = rows[0]
	}
	st.Totals = totals(&r)
	return st, nil
}

// Totals are the sums of some usage and what follows from them.
type Totals struct {
	Requests         int64 `json:"requests"`
	Errors           int64 `json:"errors"`
	PromptTokens     int64 `json:"prompt_tokens"`
	CompletionTokens int64 `json:"completion_tokens"`
	TotalTokens      int64 `json:"total_tokens"`
	// CostUSD is in dollars (a JSON number with up to six decimals).
	CostUSD      moneyJSON `json:"cost_usd"`
	CostMicroUSD int64     `json:"cost_micro_usd"`
	// ErrorRate is Errors / Requests (0 without requests).
	ErrorRate float64 `json:"error_rate"`
	// LatencyAvgMS is the mean latency; LatencyP50MS, P95 and P99 are upper
	// bounds of the percentiles from the rollups' histogram (the bucket
	// bound: 100, 250, 500, 1000, ... 120000 ms), null when beyond its last
	// bound or without requests.
	LatencyAvgMS float64  `json:"latency_avg_ms"`
	LatencyP50MS *float64 `json:"latency_p50_ms"`
	LatencyP95MS *float64 `json:"latency_p95_ms"`
	LatencyP99MS *float64 `json:"latency_p99_ms"`
}

// moneyJSON is micro-dollars written as dollars.
type moneyJSON int64

// MarshalJSON writes m as a decimal number of dollars.
func (m moneyJSON) MarshalJSON() ([]byte, error) { return []byte(microToDollars(int64(m))), nil }

// microToDollars formats micro-dollars as a decimal number of dollars
// without trailing zeros ("1.5", "0.000001", "-2").
func microToDollars(v int64) string {
	sign := ""
	u := uint64(v)
	if v < 0 {
		sign, u = "-", uint64(-v)
	}
	s := fmt.Sprintf("%s%d.%06d", sign, u/1e6, u%1e6)
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}

func totals(r *billing.Rollup) Totals {
	t := Totals{
		Requests: r.Requests, Errors: r.Errors,
		PromptTokens: r.Usage.PromptTokens, CompletionTokens: r.Usage.CompletionTokens, TotalTokens: r.Usage.TotalTokens,
		CostUSD: moneyJSON(r.Cost), CostMicroUSD: int64(r.Cost),
	}
	if r.Requests > 0 {
		t.ErrorRate = float64(r.Errors) / float64(r.Requests)
		t.LatencyAvgMS = float64(r.LatencySum.Microseconds()) / float64(r.Requests) / 1000
		t.LatencyP50MS = percentile(r, 0.50)
		t.LatencyP95MS = percentile(r, 0.95)
		t.LatencyP99MS = percentile(r, 0.99)
	}
	return t
}

func percentile(r *billing.Rollup, q float64) *float64 {
	d := r.LatencyPercentile(q)
	if d <= 0 {
		return nil
	}
	ms := float64(d.Milliseconds())
	return &ms
}

// Query asks for rows of usage.
type Query struct {
	Filter
	// Bucket is the time axis.
	Bucket Bucket
	// By are the dimensions, besides time: Tenant and Model, in any
	// combination, or one of Key and User alone.
	By []Dimension
	// Limit caps the keys or users of a Key or User query (0: 100): the
	// busiest of the period, with every bucket of theirs.
	Limit int
}

// Row is one row of usage: a time bucket and/or tenant, model, key or
// user, and its totals. Columns not grouped by are omitted.
type Row struct {
	Time     *time.Time `json:"time,omitempty"`
	TenantID *int64     `json:"tenant_id,omitempty"`
	Tenant   *string    `json:"tenant,omitempty"`
	Model    *string    `json:"model,omitempty"`
	KeyID    *int64     `json:"key_id,omitempty"`
	KeyName  *string    `json:"key_name,omitempty"`
	Prefix   *string    `json:"key_prefix,omitempty"`
	UserID   *int64     `json:"user_id,omitempty"`
	Username *string    `json:"username,omitempty"`
	Totals
}

// Usage returns the rows q asks for.
func (s *Service) Usage(ctx context.Context, q Query) ([]Row, error) {
	if err := check(q.Filter); err != nil {
		return nil, err
	}
	var g Grouping
	party := Dimension("")
	for _, d := range q.By {
		switch d {
		case ByTenant:
			g.Tenant = true
		case ByModel:
			g.Model = true
		case ByKey, ByUser:
			if party != "" || len(q.By) > 1 {
				return nil, fmt.Errorf("%w: group_by %s cannot be combined with other dimensions", ErrInvalid, d)
			}
			party = d
		default:
			return nil, fmt.Errorf("%w: unknown group_by %q (tenant, model, key, user)", ErrInvalid, d)
		}
	}
	switch q.Bucket {
	case "", BucketNone:
		g.Bucket = BucketNone
	case BucketHour, BucketDay:
		g.Bucket = q.Bucket
	default:
		return nil, fmt.Errorf("%w: unknown bucket %q (hour, day, none)", ErrInvalid, q.Bucket)
	}
	if party != "" {
		limit := q.Limit
		if limit <= 0 {
			limit = 100
		}
		parties, err := s.store.UsageParties(ctx, q.Filter, party, g.Bucket, limit)
		if err != nil {
			return nil, err
		}
		rows := make([]Row, 0, len(parties))
		for i := range parties {
			p := &parties[i]
			row := Row{TenantID: &p.TenantID, Tenant: &p.Tenant, Totals: totals(&p.Rollup)}
			if g.Bucket != BucketNone {
				row.Time = &p.Hour
			}
			if party == ByKey {
				row.KeyID, row.KeyName, row.Prefix = &p.ID, &p.Name, &p.Prefix
			} else {
				row.UserID, row.Username = &p.ID, &p.Name
			}
			rows = append(rows, row)
		}
		return rows, nil
	}
	series, err := s.store.UsageSeries(ctx, q.Filter, g)
	if err != nil {
		return nil, err
	}
	rows := make([]Row, 0, len(series))
	for i := range series {
		r := &series[i]
		row := Row{Totals: totals(r)}
		if g.Bucket != BucketNone {
			row.Time = &r.Hour
		}
		if g.Tenant {
			row.TenantID, row.Tenant = &r.TenantID, &r.Tenant
		}
		if g.Model {
			row.Model = &r.Model
		}
		rows = append(rows, row)
	}
	return rows, nil
}

func check(f Filter) error {
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		return fmt.Errorf("%w: 'from' must be before 'to'", ErrInvalid)
	}
	return nil
}

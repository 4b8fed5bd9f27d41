package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mtai-dev/mtai/admin"
	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/tenancy"
)

var _ admin.Store = (*DB)(nil)

// statsWhere builds the WHERE clause of f over the time column col and the
// columns tenant_id and model (prefixed with alias, e.g. "e.").
func statsWhere(f admin.Filter, alias, col string) (string, []any) {
	var conds []string
	var args []any
	add := func(cond string, v any) {
		args = append(args, v)
		conds = append(conds, fmt.Sprintf(cond, len(args)))
	}
	if !f.AllTenants {
		add(alias+"tenant_id = $%d", f.TenantID)
	}
	if f.Model != "" {
		add(alias+"model = $%d", f.Model)
	}
	if !f.From.IsZero() {
		add(alias+col+" >= $%d", f.From)
	}
	if !f.To.IsZero() {
		add(alias+col+" < $%d", f.To)
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// rollupSums are the sums of usage_hourly's counters, in rollupColumns'
// order.
var rollupSums = func() string {
	parts := make([]string, len(rollupColumns))
	for i, c := range rollupColumns {
		parts[i] = fmt.Sprintf("COALESCE(sum(%s), 0)::BIGINT", c)
	}
	return strings.Join(parts, ", ")
}()

// UsageSeries implements admin.Store: one aggregate over the hourly
// rollups (usage_hourly_hour serves the period).
func (db *DB) UsageSeries(ctx context.Context, f admin.Filter, g admin.Grouping) ([]billing.Rollup, error) {
	var sel, group []string
	timed := g.Bucket == admin.BucketHour || g.Bucket == admin.BucketDay
	switch g.Bucket {
	case admin.BucketHour:
		sel = append(sel, "hour")
	case admin.BucketDay:
		sel = append(sel, "date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'")
	}
	if timed {
		group = append(group, "1")
	}
	if g.Tenant {
		sel = append(sel, "tenant_id", "tenant")
		group = append(group, "tenant_id", "tenant")
	}
	if g.Model {
		sel = append(sel, "model")
		group = append(group, "model")
	}
	sel = append(sel, rollupSums)
	where, args := statsWhere(f, "", "hour")
	q := "SELECT " + strings.Join(sel, ", ") + " FROM usage_hourly" + where
	if len(group) > 0 {
		q += " GROUP BY " + strings.Join(group, ", ") + " ORDER BY " + strings.Join(group, ", ")
	}
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: usage series: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (billing.Rollup, error) {
		var r billing.Rollup
		var cost, lat, ttft int64
		var dest []any
		if timed {
			dest = append(dest, &r.Hour)
		}
		if g.Tenant {
			dest = append(dest, &r.TenantID, &r.Tenant)
		}
		if g.Model {
			dest = append(dest, &r.Model)
		}
		dest = append(dest, &r.Requests, &r.Errors, &r.Streams, &r.Estimated, &r.Unpriced,
			&r.Usage.PromptTokens, &r.Usage.CompletionTokens, &r.Usage.CachedTokens, &r.Usage.ReasoningTokens, &cost,
			&lat, &ttft)
		for i := range r.LatencyLE {
			dest = append(dest, &r.LatencyLE[i])
		}
		err := row.Scan(dest...)
		if timed {
			r.Hour = r.Hour.UTC()
		}
		r.Usage.TotalTokens = r.Usage.PromptTokens + r.Usage.CompletionTokens
		r.Cost = tenancy.MicroUSD(cost)
		r.LatencySum, r.TTFTSum = time.Duration(lat)*time.Microsecond, time.Duration(ttft)*time.Microsecond
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: usage series: %w", err)
	}
	return out, nil
}

// eventSums sums usage_events' columns as the rollups do, then the latency
// histogram.
var eventSums = func() string {
	var sb strings.Builder
	sb.WriteString(`count(*), count(*) FILTER (WHERE e.status >= 400 OR e.error_code <> ''), count(*) FILTER (WHERE e.stream),
	count(*) FILTER (WHERE e.estimated), count(*) FILTER (WHERE NOT e.priced),
	sum(e.prompt_tokens)::BIGINT, sum(e.completion_tokens)::BIGINT, sum(e.cached_tokens)::BIGINT,
	sum(e.reasoning_tokens)::BIGINT, sum(e.cost_micro_usd)::BIGINT,
	sum(e.latency_us)::BIGINT, COALESCE(sum(e.ttft_us) FILTER (WHERE e.stream), 0)::BIGINT`)
	for _, b := range billing.LatencyBounds() {
		fmt.Fprintf(&sb, ", count(*) FILTER (WHERE e.latency_us <= %d)", b.Microseconds())
	}
	return sb.String()
}()

// UsageParties implements admin.Store: an aggregate over the period's
// events (the partitions of its months; usage_events_tenant_time serves one
// tenant's).
func (db *DB) UsageParties(ctx context.Context, f admin.Filter, by admin.Dimension, limit int) ([]admin.Party, error) {
	var col, join, name, prefix string
	switch by {
	case admin.ByKey:
		col, join, name, prefix = "key_id", "LEFT JOIN api_keys p ON p.id = a.pid", "p.name", "p.prefix"
	case admin.ByUser:
		col, join, name, prefix = "user_id", "LEFT JOIN users p ON p.id = a.pid", "p.username", "''"
	default:
		return nil, fmt.Errorf("postgres: usage parties: %w: by %q", admin.ErrInvalid, by)
	}
	where, args := statsWhere(f, "e.", "created_at")
	args = append(args, sqlLimit(limit))
	q := `WITH a AS (SELECT COALESCE(e.` + col + `, 0) AS pid, e.tenant_id, e.tenant, ` + eventSums + `
		FROM usage_events e` + where + ` GROUP BY 1, 2, 3)
		SELECT a.*, COALESCE(` + name + `, ''), COALESCE(` + prefix + `, '') FROM a ` + join + `
		ORDER BY 4 DESC, 13 DESC, a.pid, a.tenant_id LIMIT $` + fmt.Sprint(len(args))
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: usage parties: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (admin.Party, error) {
		var p admin.Party
		r := &p.Rollup
		var cost, lat, ttft int64
		dest := []any{&p.ID, &r.TenantID, &r.Tenant, &r.Requests, &r.Errors, &r.Streams, &r.Estimated, &r.Unpriced,
			&r.Usage.PromptTokens, &r.Usage.CompletionTokens, &r.Usage.CachedTokens, &r.Usage.ReasoningTokens, &cost,
			&lat, &ttft}
		for i := range r.LatencyLE {
			dest = append(dest, &r.LatencyLE[i])
		}
		dest = append(dest, &p.Name, &p.Prefix)
		err := row.Scan(dest...)
		r.Usage.TotalTokens = r.Usage.PromptTokens + r.Usage.CompletionTokens
		r.Cost = tenancy.MicroUSD(cost)
		r.LatencySum, r.TTFTSum = time.Duration(lat)*time.Microsecond, time.Duration(ttft)*time.Microsecond
		return p, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: usage parties: %w", err)
	}
	return out, nil
}

// UsageCounts implements admin.Store.
func (db *DB) UsageCounts(ctx context.Context, f admin.Filter, now time.Time) (admin.Counts, error) {
	var c admin.Counts
	var onlyT, onlyU, onlyK string
	args := []any{now}
	if !f.AllTenants {
		onlyT, onlyU, onlyK = " AND t.id = $2", " AND u.tenant_id = $2", " AND k.tenant_id = $2"
		args = append(args, f.TenantID)
	}
	err := db.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM tenants t WHERE NOT t.disabled`+onlyT+`),
		(SELECT count(*) FROM users u JOIN tenants t ON t.id = u.tenant_id
			WHERE NOT u.disabled AND NOT t.disabled`+onlyU+`),
		(SELECT count(*) FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
			WHERE k.revoked_at IS NULL AND NOT t.disabled AND (k.expires_at IS NULL OR k.expires_at > $1)`+onlyK+`)`,
		args...).Scan(&c.Tenants, &c.Users, &c.Keys)
	if err != nil {
		return c, fmt.Errorf("postgres: usage counts: %w", err)
	}
	return c, nil
}

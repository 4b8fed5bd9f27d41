package sqlite

import (
	"context"
	"fmt"
	"strings"
	"time"

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
	if !f.AllTenants {
		conds = append(conds, alias+"tenant_id = ?")
		args = append(args, f.TenantID)
	}
	if f.Model != "" {
		conds = append(conds, alias+"model = ?")
		args = append(args, f.Model)
	}
	if !f.From.IsZero() {
		conds = append(conds, alias+col+" >= ?")
		args = append(args, formatTime(f.From))
	}
	if !f.To.IsZero() {
		conds = append(conds, alias+col+" < ?")
		args = append(args, formatTime(f.To))
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// rollupSums are the sums of usage_hourly's counters, in rollupCounters'
// order.
var rollupSums = func() string {
	parts := make([]string, len(rollupCounters))
	for i, c := range rollupCounters {
		parts[i] = fmt.Sprintf("COALESCE(sum(%s), 0)", c)
	}
	return strings.Join(parts, ", ")
}()

// UsageSeries implements admin.Store.
func (db *DB) UsageSeries(ctx context.Context, f admin.Filter, g admin.Grouping) ([]billing.Rollup, error) {
	var sel, group []string
	switch g.Bucket {
	case admin.BucketHour:
		sel = append(sel, "hour")
		group = append(group, "hour")
	case admin.BucketDay:
		sel = append(sel, "substr(hour, 1, 10) || 'T00:00:00.000000Z'")
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
	rows, err := db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: usage series: %w", err)
	}
	defer rows.Close()
	var out []billing.Rollup
	for rows.Next() {
		var r billing.Rollup
		var hour string
		var cost, lat, ttft int64
		var dest []any
		if g.Bucket == admin.BucketHour || g.Bucket == admin.BucketDay {
			dest = append(dest, &hour)
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
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("sqlite: usage series: %w", err)
		}
		if hour != "" {
			if r.Hour, err = parseTime(hour); err != nil {
				return nil, err
			}
		}
		r.Usage.TotalTokens = r.Usage.PromptTokens + r.Usage.CompletionTokens
		r.Cost = tenancy.MicroUSD(cost)
		r.LatencySum, r.TTFTSum = time.Duration(lat)*time.Microsecond, time.Duration(ttft)*time.Microsecond
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: usage series: %w", err)
	}
	return out, nil
}

// eventSums sums usage_events' columns as rollupCounters would (streams,
// estimated and unpriced included), then the latency histogram.
var eventSums = func() string {
	var sb strings.Builder
	sb.WriteString(`count(*), count(*) FILTER (WHERE e.status >= 400 OR e.error_code <> ''), count(*) FILTER (WHERE e.stream),
	count(*) FILTER (WHERE e.estimated), count(*) FILTER (WHERE NOT e.priced),
	sum(e.prompt_tokens), sum(e.completion_tokens), sum(e.cached_tokens), sum(e.reasoning_tokens), sum(e.cost_micro_usd),
	sum(e.latency_us), COALESCE(sum(e.ttft_us) FILTER (WHERE e.stream), 0)`)
	for _, b := range billing.LatencyBounds() {
		fmt.Fprintf(&sb, ", count(*) FILTER (WHERE e.latency_us <= %d)", b.Microseconds())
	}
	return sb.String()
}()

// UsageParties implements admin.Store.
func (db *DB) UsageParties(ctx context.Context, f admin.Filter, by admin.Dimension, limit int) ([]admin.Party, error) {
	var col, join, name, prefix string
	switch by {
	case admin.ByKey:
		col, join, name, prefix = "key_id", "LEFT JOIN api_keys p ON p.id = a.pid", "p.name", "p.prefix"
	case admin.ByUser:
		col, join, name, prefix = "user_id", "LEFT JOIN users p ON p.id = a.pid", "p.username", "''"
	default:
		return nil, fmt.Errorf("sqlite: usage parties: %w: by %q", admin.ErrInvalid, by)
	}
	where, args := statsWhere(f, "e.", "created_at")
	args = append(args, sqlLimit(limit))
	q := `WITH a AS (SELECT COALESCE(e.` + col + `, 0) AS pid, e.tenant_id, e.tenant, ` + eventSums + `
		FROM usage_events e` + where + ` GROUP BY 1, 2, 3)
		SELECT a.*, COALESCE(` + name + `, ''), COALESCE(` + prefix + `, '') FROM a ` + join + `
		ORDER BY 4 DESC, 13 DESC, a.pid, a.tenant_id LIMIT ?`
	rows, err := db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: usage parties: %w", err)
	}
	defer rows.Close()
	var out []admin.Party
	for rows.Next() {
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
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("sqlite: usage parties: %w", err)
		}
		r.Usage.TotalTokens = r.Usage.PromptTokens + r.Usage.CompletionTokens
		r.Cost = tenancy.MicroUSD(cost)
		r.LatencySum, r.TTFTSum = time.Duration(lat)*time.Microsecond, time.Duration(ttft)*time.Microsecond
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: usage parties: %w", err)
	}
	return out, nil
}

// UsageCounts implements admin.Store.
func (db *DB) UsageCounts(ctx context.Context, f admin.Filter, now time.Time) (admin.Counts, error) {
	var c admin.Counts
	var onlyT, onlyU, onlyK string
	var args []any
	if !f.AllTenants {
		onlyT, onlyU, onlyK = " AND t.id = ?", " AND u.tenant_id = ?", " AND k.tenant_id = ?"
		args = append(args, f.TenantID, f.TenantID)
	}
	args = append(args, formatTime(now))
	if !f.AllTenants {
		args = append(args, f.TenantID)
	}
	err := db.read.QueryRowContext(ctx, `SELECT
		(SELECT count(*) FROM tenants t WHERE t.disabled = 0`+onlyT+`),
		(SELECT count(*) FROM users u JOIN tenants t ON t.id = u.tenant_id
			WHERE u.disabled = 0 AND t.disabled = 0`+onlyU+`),
		(SELECT count(*) FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
			WHERE k.revoked_at IS NULL AND t.disabled = 0 AND (k.expires_at IS NULL OR k.expires_at > ?)`+onlyK+`)`,
		args...).Scan(&c.Tenants, &c.Users, &c.Keys)
	if err != nil {
		return c, fmt.Errorf("sqlite: usage counts: %w", err)
	}
	return c, nil
}

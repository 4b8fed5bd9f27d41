package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/mtai-dev/mtai/admin"
	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/store/internal/usagesql"
)

var _ admin.Store = (*DB)(nil)

// UsageSeries implements admin.Store, from the hourly and daily rollups
// (see usagesql.Series).
func (db *DB) UsageSeries(ctx context.Context, f admin.Filter, g admin.Grouping) ([]billing.Rollup, error) {
	q, args := usagesql.Series(dialect, f, g)
	rows, err := db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: usage series: %w", err)
	}
	defer rows.Close()
	var out []billing.Rollup
	for rows.Next() {
		var r usagesql.SeriesRow
		var bt string
		if err := rows.Scan(r.Dest(g, &bt)...); err != nil {
			return nil, fmt.Errorf("sqlite: usage series: %w", err)
		}
		ro := r.Finish()
		if bt != "" {
			if ro.Hour, err = parseTime(bt); err != nil {
				return nil, err
			}
		}
		out = append(out, ro)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: usage series: %w", err)
	}
	return out, nil
}

// dialect is SQLite's, for the queries usagesql builds: times are
// fixed-width text (timeLayout), so that their prefixes are their hours and
// days.
var dialect = usagesql.Dialect{
	Placeholder: func(int) string { return "?" },
	Time:        func(t time.Time) any { return formatTime(t) },
	Day:         func(col string) string { return "substr(" + col + ", 1, 10) || 'T00:00:00.000000Z'" },
	Sum:         func(x string) string { return "COALESCE(sum(" + x + "), 0)" },
}

// UsageParties implements admin.Store, from the party rollups (see
// usagesql.Parties).
func (db *DB) UsageParties(ctx context.Context, f admin.Filter, by admin.Dimension, bucket admin.Bucket, limit int) ([]admin.Party, error) {
	q, args, err := usagesql.Parties(dialect, f, by, bucket, limit)
	if err != nil {
		return nil, fmt.Errorf("sqlite: usage parties: %w", err)
	}
	rows, err := db.read.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: usage parties: %w", err)
	}
	defer rows.Close()
	var out []admin.Party
	for rows.Next() {
		var r usagesql.PartyRow
		var bt string
		if err := rows.Scan(r.Dest(bucket, &bt)...); err != nil {
			return nil, fmt.Errorf("sqlite: usage parties: %w", err)
		}
		p := r.Finish()
		if bt != "" {
			if p.Hour, err = parseTime(bt); err != nil {
				return nil, err
			}
		}
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

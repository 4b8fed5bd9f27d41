package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mtai-dev/mtai/admin"
	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/store/internal/usagesql"
)

var _ admin.Store = (*DB)(nil)

// UsageSeries implements admin.Store, from the hourly and daily rollups
// (see usagesql.Series).
func (db *DB) UsageSeries(ctx context.Context, f admin.Filter, g admin.Grouping) ([]billing.Rollup, error) {
	q, args := usagesql.Series(dialect, f, g)
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: usage series: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (billing.Rollup, error) {
		var r usagesql.SeriesRow
		var bt time.Time
		err := row.Scan(r.Dest(g, &bt)...)
		ro := r.Finish()
		ro.Hour = bt.UTC()
		return ro, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: usage series: %w", err)
	}
	return out, nil
}

// dialect is PostgreSQL's, for the queries usagesql builds.
var dialect = usagesql.Dialect{
	Placeholder: func(n int) string { return fmt.Sprintf("$%d", n) },
	Time:        func(t time.Time) any { return t },
	Day:         func(col string) string { return "date_trunc('day', " + col + " AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'" },
	Sum:         func(x string) string { return "COALESCE(sum(" + x + "), 0)::BIGINT" },
}

// UsageParties implements admin.Store, from the party rollups (see
// usagesql.Parties).
func (db *DB) UsageParties(ctx context.Context, f admin.Filter, by admin.Dimension, bucket admin.Bucket, limit int) ([]admin.Party, error) {
	q, args, err := usagesql.Parties(dialect, f, by, bucket, limit)
	if err != nil {
		return nil, fmt.Errorf("postgres: usage parties: %w", err)
	}
	rows, err := db.pool.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: usage parties: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (admin.Party, error) {
		var r usagesql.PartyRow
		var bt time.Time
		err := row.Scan(r.Dest(bucket, &bt)...)
		p := r.Finish()
		if bucket != admin.BucketNone {
			p.Hour = bt.UTC()
		}
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

package sqlite

import (
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/store/internal/usagesql"
	"github.com/mtai-dev/mtai/tenancy"
)

var (
	_ billing.UsageWriter     = (*DB)(nil)
	_ billing.UsageMaintainer = (*DB)(nil)
	_ billing.UsageReader     = (*DB)(nil)
)

// usageColumns are usage_events' columns, in table order.
const usageColumns = `id, created_at, request_id, tenant_id, tenant, user_id, key_id, endpoint,
	model, upstream_model, deployment, provider, stream,
	prompt_tokens, completion_tokens, cached_tokens, reasoning_tokens,
	cost_micro_usd, priced, estimated, latency_us, ttft_us, status, error_code`

// rollupCounters are the rollup tables' counters, after their keys.
var rollupCounters = usagesql.Counters

const insertEvent = `INSERT INTO usage_events (` + usageColumns + `)
	VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (id) DO NOTHING`

var (
	upsertHourly      = buildUpsert("usage_hourly", "hour", "tenant_id", "tenant", "model")
	upsertDaily       = buildUpsert("usage_daily", "day", "tenant_id", "tenant", "model")
	upsertPartyHourly = buildUpsert("usage_party_hourly", "hour", "tenant_id", "tenant", "key_id", "user_id", "model")
	upsertPartyDaily  = buildUpsert("usage_party_daily", "day", "tenant_id", "tenant", "key_id", "user_id", "model")
)

// buildUpsert is the statement that adds one row of counters to the rollup
// table whose primary key's columns are key.
func buildUpsert(table string, key ...string) string {
	var sb strings.Builder
	sb.WriteString("INSERT INTO " + table + " (" + strings.Join(key, ", ") + ", ")
	sb.WriteString(strings.Join(rollupCounters, ", "))
	sb.WriteString(") VALUES (?" + strings.Repeat(", ?", len(key)+len(rollupCounters)-1))
	sb.WriteString(") ON CONFLICT (" + strings.Join(key, ", ") + ") DO UPDATE SET ")
	for i, c := range rollupCounters {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%s = %s + excluded.%s", c, c, c)
	}
	return sb.String()
}

// modelRollupArgs returns the arguments of upsertHourly or upsertDaily, a
// row each.
func modelRollupArgs(rs map[billing.RollupKey]*billing.Rollup) [][]any {
	out := make([][]any, 0, len(rs))
	for k, r := range rs {
		out = append(out, appendCounters([]any{formatTime(k.Hour), k.TenantID, k.Tenant, k.Model}, r))
	}
	return out
}

// partyRollupArgs returns the arguments of upsertPartyHourly or
// upsertPartyDaily, a row each.
func partyRollupArgs(keys []billing.PartyKey, rs map[billing.PartyKey]*billing.Rollup) [][]any {
	out := make([][]any, 0, len(keys))
	for _, k := range keys {
		out = append(out, appendCounters([]any{formatTime(k.Start), k.TenantID, k.Tenant, k.KeyID, k.UserID, k.Model}, rs[k]))
	}
	return out
}

// appendCounters appends r's counters, in rollupCounters' order.
func appendCounters(args []any, r *billing.Rollup) []any {
	for _, x := range usagesql.Values(r) {
		args = append(args, x)
	}
	return args
}

// eventID formats an event id as its UUID text.
func eventID(id billing.EventID) string { return id.String() }

func parseEventID(s string) (billing.EventID, error) {
	var id billing.EventID
	h := strings.ReplaceAll(s, "-", "")
	if len(h) != 32 {
		return id, fmt.Errorf("sqlite: stored event id %q", s)
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return id, fmt.Errorf("sqlite: stored event id %q: %w", s, err)
	}
	return id, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// WriteUsage implements billing.UsageWriter: one transaction per batch;
// events already stored are skipped, and only the new ones are added to
// the hourly rollups.
func (db *DB) WriteUsage(ctx context.Context, events []billing.Event) error {
	if len(events) == 0 {
		return nil
	}
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, insertEvent)
		if err != nil {
			return err
		}
		defer stmt.Close()
		fresh := make([]billing.Event, 0, len(events))
		for i := range events {
			e := &events[i]
			res, err := stmt.ExecContext(ctx, eventID(e.ID), formatTime(e.Time), e.RequestID, e.TenantID, e.Tenant,
				nullID(e.UserID), nullID(e.KeyID), e.Endpoint, e.Model, e.UpstreamModel, e.Deployment, e.Provider,
				boolInt(e.Stream), e.Usage.PromptTokens, e.Usage.CompletionTokens, e.Usage.CachedTokens,
				e.Usage.ReasoningTokens, int64(e.Cost), boolInt(e.Priced), boolInt(e.Estimated),
				e.Latency.Microseconds(), e.TTFT.Microseconds(), e.Status, e.ErrorCode)
			if err != nil {
				return err
			}
			if n, _ := res.RowsAffected(); n == 1 {
				fresh = append(fresh, *e)
			}
		}
		if len(fresh) == 0 {
			return nil
		}
		for _, u := range []struct {
			sql  string
			rows [][]any
		}{
			{upsertHourly, modelRollupArgs(billing.Rollups(fresh))},
			{upsertDaily, modelRollupArgs(billing.DailyRollups(fresh))},
			{upsertPartyHourly, partyRollupArgs(billing.PartyRollups(fresh))},
			{upsertPartyDaily, partyRollupArgs(billing.DailyPartyRollups(fresh))},
		} {
			stmt, err := tx.PrepareContext(ctx, u.sql)
			if err != nil {
				return err
			}
			defer stmt.Close()
			for _, args := range u.rows {
				if _, err := stmt.ExecContext(ctx, args...); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err == nil {
		return nil
	}
	var se *msqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff { // the primary result code
		case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH:
			return fmt.Errorf("sqlite: write usage: %w: %w", billing.ErrRejected, err)
		}
	}
	return fmt.Errorf("sqlite: write usage: %w", err)
}

// MaintainUsage implements billing.UsageMaintainer: it deletes the events
// older than keep.Events and the rollups older than keep.Rollups (SQLite
// has no partitions to prepare).
func (db *DB) MaintainUsage(ctx context.Context, now time.Time, keep billing.Retention) error {
	if keep.Events > 0 {
		if _, err := db.write.ExecContext(ctx, `DELETE FROM usage_events WHERE created_at < ?`, formatTime(now.Add(-keep.Events))); err != nil {
			return fmt.Errorf("sqlite: usage retention: %w", err)
		}
	}
	if keep.Rollups > 0 {
		cutoff := now.Add(-keep.Rollups).UTC().Truncate(time.Hour)
		if _, err := db.write.ExecContext(ctx, `DELETE FROM usage_hourly WHERE hour < ?`, formatTime(cutoff)); err != nil {
			return fmt.Errorf("sqlite: usage rollup retention: %w", err)
		}
		// whole days only: a day's rows go with the day's last hour
		day := formatTime(cutoff.Truncate(24 * time.Hour))
		for _, q := range []string{`DELETE FROM usage_daily WHERE day < ?`,
			`DELETE FROM usage_party_hourly WHERE hour < ?`, `DELETE FROM usage_party_daily WHERE day < ?`} {
			if _, err := db.write.ExecContext(ctx, q, day); err != nil {
				return fmt.Errorf("sqlite: usage rollup retention: %w", err)
			}
		}
	}
	return nil
}

// MonthSpend implements billing.UsageReader (and ratelimit.SpendSource):
// the tenant's cost in the calendar month (UTC) containing month, summed
// from the hourly rollups.
func (db *DB) MonthSpend(ctx context.Context, tenantID int64, month time.Time) (tenancy.MicroUSD, error) {
	start, end := billing.MonthBounds(month)
	var spent int64
	err := db.read.QueryRowContext(ctx, `SELECT COALESCE(sum(cost_micro_usd), 0) FROM usage_hourly
		WHERE tenant_id = ? AND hour >= ? AND hour < ?`, tenantID, formatTime(start), formatTime(end)).Scan(&spent)
	if err != nil {
		return 0, fmt.Errorf("sqlite: month spend: %w", err)
	}
	return tenancy.MicroUSD(spent), nil
}

// usageWhere builds the WHERE clause of q over the time column col.
func usageWhere(q billing.UsageQuery, col string) (string, []any) {
	var conds []string
	var args []any
	if !q.AllTenants {
		conds = append(conds, "tenant_id = ?")
		args = append(args, q.TenantID)
	}
	if !q.From.IsZero() {
		conds = append(conds, col+" >= ?")
		args = append(args, formatTime(q.From))
	}
	if !q.To.IsZero() {
		conds = append(conds, col+" < ?")
		args = append(args, formatTime(q.To))
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// UsageEvents implements billing.UsageReader.
func (db *DB) UsageEvents(ctx context.Context, q billing.UsageQuery) ([]billing.Event, error) {
	where, args := usageWhere(q, "created_at")
	args = append(args, sqlLimit(q.Limit))
	rows, err := db.read.QueryContext(ctx, `SELECT `+usageColumns+` FROM usage_events`+where+` ORDER BY created_at, id LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: usage events: %w", err)
	}
	defer rows.Close()
	var out []billing.Event
	for rows.Next() {
		var e billing.Event
		var id, at string
		var userID, keyID sql.NullInt64
		var cost, latency, ttft int64
		if err := rows.Scan(&id, &at, &e.RequestID, &e.TenantID, &e.Tenant, &userID, &keyID, &e.Endpoint,
			&e.Model, &e.UpstreamModel, &e.Deployment, &e.Provider, &e.Stream,
			&e.Usage.PromptTokens, &e.Usage.CompletionTokens, &e.Usage.CachedTokens, &e.Usage.ReasoningTokens,
			&cost, &e.Priced, &e.Estimated, &latency, &ttft, &e.Status, &e.ErrorCode); err != nil {
			return nil, fmt.Errorf("sqlite: usage events: %w", err)
		}
		if e.ID, err = parseEventID(id); err != nil {
			return nil, err
		}
		if e.Time, err = parseTime(at); err != nil {
			return nil, err
		}
		e.UserID, e.KeyID = userID.Int64, keyID.Int64
		e.Usage.TotalTokens = e.Usage.PromptTokens + e.Usage.CompletionTokens
		e.Cost = tenancy.MicroUSD(cost)
		e.Latency, e.TTFT = time.Duration(latency)*time.Microsecond, time.Duration(ttft)*time.Microsecond
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: usage events: %w", err)
	}
	return out, nil
}

// UsageRollups implements billing.UsageReader.
func (db *DB) UsageRollups(ctx context.Context, q billing.UsageQuery) ([]billing.Rollup, error) {
	where, args := usageWhere(q, "hour")
	args = append(args, sqlLimit(q.Limit))
	rows, err := db.read.QueryContext(ctx, `SELECT hour, tenant_id, tenant, model, `+strings.Join(rollupCounters, ", ")+
		` FROM usage_hourly`+where+` ORDER BY hour, tenant_id, tenant, model LIMIT ?`, args...)
	if err != nil {
		return nil, fmt.Errorf("sqlite: usage rollups: %w", err)
	}
	defer rows.Close()
	var out []billing.Rollup
	for rows.Next() {
		var r billing.Rollup
		var hour string
		var cost, lat, ttft int64
		dest := []any{&hour, &r.TenantID, &r.Tenant, &r.Model,
			&r.Requests, &r.Errors, &r.Streams, &r.Estimated, &r.Unpriced,
			&r.Usage.PromptTokens, &r.Usage.CompletionTokens, &r.Usage.CachedTokens, &r.Usage.ReasoningTokens, &cost,
			&lat, &ttft}
		for i := range r.LatencyLE {
			dest = append(dest, &r.LatencyLE[i])
		}
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("sqlite: usage rollups: %w", err)
		}
		if r.Hour, err = parseTime(hour); err != nil {
			return nil, err
		}
		r.Usage.TotalTokens = r.Usage.PromptTokens + r.Usage.CompletionTokens
		r.Cost = tenancy.MicroUSD(cost)
		r.LatencySum, r.TTFTSum = time.Duration(lat)*time.Microsecond, time.Duration(ttft)*time.Microsecond
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("sqlite: usage rollups: %w", err)
	}
	return out, nil
}

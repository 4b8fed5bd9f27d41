package postgres

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

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
var usageColumns = []string{
	"id", "created_at", "request_id", "tenant_id", "tenant", "user_id", "key_id", "endpoint",
	"model", "upstream_model", "deployment", "provider", "stream",
	"prompt_tokens", "completion_tokens", "cached_tokens", "reasoning_tokens",
	"cost_micro_usd", "priced", "estimated", "latency_us", "ttft_us", "status", "error_code",
}

// rollupColumns are the rollup tables' counters, after their keys.
var rollupColumns = usagesql.Counters

// A batch is written in one transaction, in one of two ways:
//
//   - the fast path: COPY straight into usage_events, then the batch's
//     rollups (summed in Go: billing.Rollups, DailyRollups, PartyRollups)
//     upserted into usage_hourly, usage_daily, usage_party_hourly and
//     usage_party_daily, one INSERT
//     ... SELECT FROM unnest(arrays) ... ON CONFLICT DO UPDATE per table. A
//     batch holding an event the table already has (a replay after a crash
//     or an outage) fails on the primary key, and is written again the
//     idempotent way:
//   - the staged path: COPY into a session-local staging table; insert the
//     events the table does not have yet (ON CONFLICT DO NOTHING),
//     keeping exactly those (RETURNING) in a second one, usage_fresh; then
//     sum those into the four rollup tables, one statement each.
//
// The fast path is about twice as fast (the speculative insertion of ON
// CONFLICT and the second copy cost as much as the COPY itself); replays
// are rare, and one failed attempt is cheap. Both paths upsert the tables
// in one order (as listed above), and the rows of each in one order
// (byte order of the keys, COLLATE "C" in SQL), so that replicas do not
// deadlock on them.
var (
	createStage = []string{
		`CREATE TEMP TABLE IF NOT EXISTS usage_stage (LIKE usage_events) ON COMMIT DELETE ROWS`,
		`CREATE TEMP TABLE IF NOT EXISTS usage_fresh (LIKE usage_events) ON COMMIT DELETE ROWS`,
	}
	insertFromStage = `WITH ins AS (
	INSERT INTO usage_events SELECT * FROM usage_stage ORDER BY created_at, id
	ON CONFLICT DO NOTHING
	RETURNING *
) INSERT INTO usage_fresh SELECT * FROM ins`
	rollupFresh = buildRollupFresh()

	upsertHourly      = buildUpsertRollups("usage_hourly", modelKey("hour"), modelKeyTypes)
	upsertDaily       = buildUpsertRollups("usage_daily", modelKey("day"), modelKeyTypes)
	upsertPartyHourly = buildUpsertRollups("usage_party_hourly", partyKey("hour"), partyKeyTypes)
	upsertPartyDaily  = buildUpsertRollups("usage_party_daily", partyKey("day"), partyKeyTypes)
)

const stageTable = "usage_stage"

// The rollup tables' keys (their primary keys' columns, in the order the
// upserts list them) and the keys' types.
var (
	modelKeyTypes = []string{"timestamptz", "bigint", "text", "text"}
	partyKeyTypes = []string{"timestamptz", "bigint", "text", "bigint", "bigint", "text"}
)

func modelKey(at string) []string { return []string{at, "tenant_id", "tenant", "model"} }
func partyKey(at string) []string {
	return []string{at, "tenant_id", "tenant", "key_id", "user_id", "model"}
}

// rollupSelect is the select list that sums events as one rollup row,
// after the key columns keyExprs.
func rollupSelect(keyExprs ...string) string {
	var sb strings.Builder
	sb.WriteString(strings.Join(keyExprs, ", "))
	sb.WriteString(`,
	count(*), count(*) FILTER (WHERE status >= 400 OR error_code <> ''), count(*) FILTER (WHERE stream),
	count(*) FILTER (WHERE estimated), count(*) FILTER (WHERE NOT priced),
	sum(prompt_tokens), sum(completion_tokens), sum(cached_tokens), sum(reasoning_tokens), sum(cost_micro_usd),
	sum(latency_us), COALESCE(sum(ttft_us) FILTER (WHERE stream), 0)`)
	for _, b := range billing.LatencyBounds() {
		fmt.Fprintf(&sb, ",\n\tcount(*) FILTER (WHERE latency_us <= %d)", b.Microseconds())
	}
	return sb.String()
}

// buildRollupFresh returns the statements that add the events of
// usage_fresh to the rollup tables, in the writers' order, each table's
// rows in the order of the fast path's (modelRollupArgs, partyRollupArgs).
func buildRollupFresh() []string {
	const hour = `date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'`
	const day = `date_trunc('day', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC'`
	upsert := func(table string, key []string, sel, groupOrder string) string {
		return "INSERT INTO " + table + " (" + strings.Join(append(slices.Clone(key), rollupColumns...), ", ") + ")\n" +
			"SELECT " + sel + "\nFROM usage_fresh " + groupOrder + "\n" + onConflictAdd(table, key)
	}
	perModel := func(table, at, expr string) string {
		return upsert(table, modelKey(at), rollupSelect(expr, "tenant_id", "tenant", "model"),
			`GROUP BY 1, 2, 3, 4 ORDER BY tenant_id, tenant COLLATE "C", model COLLATE "C", 1`)
	}
	perParty := func(table, at, expr string) string {
		return upsert(table, partyKey(at), rollupSelect(expr, "tenant_id", "tenant", "COALESCE(key_id, 0)", "COALESCE(user_id, 0)", "model"),
			`GROUP BY 1, 2, 3, 4, 5, 6 ORDER BY tenant_id, tenant COLLATE "C", 1, 4, 5, model COLLATE "C"`)
	}
	return []string{
		perModel("usage_hourly", "hour", hour),
		perModel("usage_daily", "day", day),
		perParty("usage_party_hourly", "hour", hour),
		perParty("usage_party_daily", "day", day),
	}
}

// onConflictAdd is the ON CONFLICT clause that adds the new row's counters
// to the existing row of table.
func onConflictAdd(table string, key []string) string {
	var sb strings.Builder
	sb.WriteString("ON CONFLICT (" + strings.Join(key, ", ") + ") DO UPDATE SET ")
	for i, c := range rollupColumns {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "%s = %s.%s + EXCLUDED.%s", c, table, c, c)
	}
	return sb.String()
}

// buildUpsertRollups is the statement that upserts rows of table given as
// arrays, one per column: the key's (of types keyTypes) then the counters'.
func buildUpsertRollups(table string, key, keyTypes []string) string {
	var sb strings.Builder
	sb.WriteString("INSERT INTO " + table + " (")
	sb.WriteString(strings.Join(append(slices.Clone(key), rollupColumns...), ", "))
	sb.WriteString(")\nSELECT * FROM unnest(")
	n := 0
	for _, t := range keyTypes {
		n++
		fmt.Fprintf(&sb, "$%d::%s[], ", n, t)
	}
	for i := range rollupColumns {
		n++
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "$%d::bigint[]", n)
	}
	sb.WriteString(")\n")
	sb.WriteString(onConflictAdd(table, key))
	return sb.String()
}

// WriteUsage implements billing.UsageWriter (see above for how). A month
// without a partition gets one, and the batch is tried again.
func (db *DB) WriteUsage(ctx context.Context, events []billing.Event) error {
	if len(events) == 0 {
		return nil
	}
	staged := false
	var err error
	for range 3 {
		if staged {
			err = db.writeStaged(ctx, events)
		} else {
			err = db.writeFast(ctx, events)
		}
		switch {
		case isNoPartition(err):
			if perr := db.ensurePartitions(ctx, eventMonths(events)); perr != nil {
				return fmt.Errorf("postgres: usage partitions: %w", perr)
			}
			continue
		case !staged && isUniqueViolation(err):
			staged = true // a replay: the idempotent way
			continue
		}
		break
	}
	return usageErr(err)
}

// rollupArrays holds rollup rows column by column, as the upserts take
// them: the counters in rollupColumns' order.
type rollupArrays [][]int64

func newRollupArrays(n int) rollupArrays {
	a := make(rollupArrays, len(rollupColumns))
	for i := range a {
		a[i] = make([]int64, 0, n)
	}
	return a
}

func (a rollupArrays) add(r *billing.Rollup) {
	for i, x := range usagesql.Values(r) {
		a[i] = append(a[i], x)
	}
}

// args returns the key arrays then the counter arrays, as query arguments.
func (a rollupArrays) args(key ...any) []any {
	out := make([]any, 0, len(key)+len(a))
	out = append(out, key...)
	for _, c := range a {
		out = append(out, c)
	}
	return out
}

// writeFast COPYs events into usage_events and upserts their rollups.
func (db *DB) writeFast(ctx context.Context, events []billing.Event) error {
	upserts := []struct {
		sql  string
		args []any
	}{
		{upsertHourly, modelRollupArgs(billing.Rollups(events))},
		{upsertDaily, modelRollupArgs(billing.DailyRollups(events))},
		{upsertPartyHourly, partyRollupArgs(billing.PartyRollups(events))},
		{upsertPartyDaily, partyRollupArgs(billing.DailyPartyRollups(events))},
	}
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if err := copyEvents(ctx, tx, "usage_events", events); err != nil {
			return err
		}
		var batch pgx.Batch
		for _, u := range upserts {
			batch.Queue(u.sql, u.args...)
		}
		return tx.SendBatch(ctx, &batch).Close()
	})
}

// modelRollupArgs returns the arguments of upsertHourly or upsertDaily for
// rs, in the writers' order.
func modelRollupArgs(rs map[billing.RollupKey]*billing.Rollup) []any {
	keys := slices.SortedFunc(maps.Keys(rs), func(a, b billing.RollupKey) int {
		return cmp.Or(cmp.Compare(a.TenantID, b.TenantID), strings.Compare(a.Tenant, b.Tenant),
			strings.Compare(a.Model, b.Model), a.Hour.Compare(b.Hour))
	})
	var (
		at            = make([]time.Time, 0, len(keys))
		tenantID      = make([]int64, 0, len(keys))
		tenant, model = make([]string, 0, len(keys)), make([]string, 0, len(keys))
		counters      = newRollupArrays(len(keys))
	)
	for _, k := range keys {
		at, tenantID = append(at, k.Hour), append(tenantID, k.TenantID)
		tenant, model = append(tenant, k.Tenant), append(model, k.Model)
		counters.add(rs[k])
	}
	return counters.args(at, tenantID, tenant, model)
}

// partyRollupArgs returns the arguments of upsertPartyHourly or
// upsertPartyDaily for the party rollups, in keys' order.
func partyRollupArgs(keys []billing.PartyKey, rs map[billing.PartyKey]*billing.Rollup) []any {
	var (
		at                  = make([]time.Time, 0, len(keys))
		tenant, model       = make([]string, 0, len(keys)), make([]string, 0, len(keys))
		tenantID, key, user = make([]int64, 0, len(keys)), make([]int64, 0, len(keys)), make([]int64, 0, len(keys))
		counters            = newRollupArrays(len(keys))
	)
	for _, k := range keys {
		at, tenantID, tenant = append(at, k.Start), append(tenantID, k.TenantID), append(tenant, k.Tenant)
		key, user, model = append(key, k.KeyID), append(user, k.UserID), append(model, k.Model)
		counters.add(rs[k])
	}
	return counters.args(at, tenantID, tenant, key, user, model)
}

// writeStaged writes events through the staging table, skipping those
// already stored.
func (db *DB) writeStaged(ctx context.Context, events []billing.Event) error {
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		for _, q := range createStage {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		if err := copyEvents(ctx, tx, stageTable, events); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, insertFromStage); err != nil {
			return err
		}
		for _, q := range rollupFresh {
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}

// copyEvents COPYs events into table in PostgreSQL's binary format,
// encoded here field by field: the columns' types are fixed, and pgx's
// generic CopyFrom (a []any per row, a type lookup per value) cost more
// CPU than the database's side of the COPY.
func copyEvents(ctx context.Context, tx pgx.Tx, table string, events []billing.Event) error {
	buf := appendCopy(make([]byte, 0, 64+len(events)*256), events)
	sql := "COPY " + table + " (" + strings.Join(usageColumns, ", ") + ") FROM STDIN (FORMAT binary)"
	_, err := tx.Conn().PgConn().CopyFrom(ctx, bytes.NewReader(buf), sql)
	return err
}

// pgEpoch is PostgreSQL's time zero (2000-01-01 UTC) in Unix microseconds.
const pgEpoch = 946_684_800_000_000

// appendCopy appends the binary COPY stream of events (header, one tuple
// per event in usageColumns' order, trailer).
func appendCopy(b []byte, events []billing.Event) []byte {
	b = append(b, "PGCOPY\n\xff\r\n\x00"...)
	b = binary.BigEndian.AppendUint32(b, 0) // flags
	b = binary.BigEndian.AppendUint32(b, 0) // header extension
	for i := range events {
		e := &events[i]
		b = binary.BigEndian.AppendUint16(b, uint16(len(usageColumns)))
		b = binary.BigEndian.AppendUint32(b, 16)
		b = append(b, e.ID[:]...)
		b = copyInt64(b, e.Time.UnixMicro()-pgEpoch)
		b = copyText(b, e.RequestID)
		b = copyInt64(b, e.TenantID)
		b = copyText(b, e.Tenant)
		b = copyID(b, e.UserID)
		b = copyID(b, e.KeyID)
		b = copyText(b, e.Endpoint)
		b = copyText(b, e.Model)
		b = copyText(b, e.UpstreamModel)
		b = copyText(b, e.Deployment)
		b = copyText(b, e.Provider)
		b = copyBool(b, e.Stream)
		b = copyInt64(b, e.Usage.PromptTokens)
		b = copyInt64(b, e.Usage.CompletionTokens)
		b = copyInt64(b, e.Usage.CachedTokens)
		b = copyInt64(b, e.Usage.ReasoningTokens)
		b = copyInt64(b, int64(e.Cost))
		b = copyBool(b, e.Priced)
		b = copyBool(b, e.Estimated)
		b = copyInt64(b, e.Latency.Microseconds())
		b = copyInt64(b, e.TTFT.Microseconds())
		b = binary.BigEndian.AppendUint32(b, 4)
		b = binary.BigEndian.AppendUint32(b, uint32(int32(e.Status)))
		b = copyText(b, e.ErrorCode)
	}
	return binary.BigEndian.AppendUint16(b, 0xffff) // trailer: -1
}

func copyInt64(b []byte, v int64) []byte {
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(v))
}

func copyText(b []byte, s string) []byte {
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func copyBool(b []byte, v bool) []byte {
	b = binary.BigEndian.AppendUint32(b, 1)
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}

// copyID writes id, or NULL for 0 (none).
func copyID(b []byte, id int64) []byte {
	if id == 0 {
		return binary.BigEndian.AppendUint32(b, 0xffffffff) // -1: NULL
	}
	return copyInt64(b, id)
}

// isUniqueViolation reports whether err is a unique_violation (23505).
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

// isNoPartition reports whether err is "no partition of relation found for
// row" (SQLSTATE 23514, check_violation, on usage_events).
func isNoPartition(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23514" && strings.Contains(pe.Message, "partition")
}

// usageErr wraps err; errors caused by the data are billing.ErrRejected.
func usageErr(err error) error {
	if err == nil {
		return nil
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) && (strings.HasPrefix(pe.Code, "22") || strings.HasPrefix(pe.Code, "23")) {
		return fmt.Errorf("postgres: write usage: %w: %w", billing.ErrRejected, err)
	}
	return fmt.Errorf("postgres: write usage: %w", err)
}

// eventMonths returns the distinct months (UTC) of events.
func eventMonths(events []billing.Event) []time.Time {
	var months []time.Time
	seen := map[time.Time]bool{}
	for i := range events {
		m, _ := billing.MonthBounds(events[i].Time)
		if !seen[m] {
			seen[m] = true
			months = append(months, m)
		}
	}
	return months
}

// partitionName is the partition of usage_events for the month starting at m.
func partitionName(m time.Time) string {
	return fmt.Sprintf("usage_events_p%04d%02d", m.Year(), int(m.Month()))
}

// partitionLock is the advisory lock that serializes partition DDL
// between replicas.
const partitionLock = 0x6d746169_75736167 // "mtaiusag"

// ensurePartitions creates the partitions of months that do not exist yet.
func (db *DB) ensurePartitions(ctx context.Context, months []time.Time) error {
	return pgx.BeginFunc(ctx, db.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(partitionLock)); err != nil {
			return err
		}
		for _, m := range months {
			start, end := billing.MonthBounds(m)
			// Skip existing partitions: the DDL would lock usage_events.
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT to_regclass($1) IS NOT NULL`, "usage_partitions."+partitionName(start)).Scan(&exists); err != nil {
				return err
			}
			if exists {
				continue
			}
			q := fmt.Sprintf(`CREATE TABLE IF NOT EXISTS usage_partitions.%s PARTITION OF usage_events FOR VALUES FROM ('%s') TO ('%s')`,
				partitionName(start), start.Format("2006-01-02 15:04:05Z07:00"), end.Format("2006-01-02 15:04:05Z07:00"))
			if _, err := tx.Exec(ctx, q); err != nil {
				return err
			}
		}
		return nil
	})
}

// partitionsAhead is how many months after the current one MaintainUsage
// prepares.
const partitionsAhead = 2

// MaintainUsage implements billing.UsageMaintainer: it creates the
// partitions of the current month and the next two, drops the partitions
// wholly older than keep.Events, and deletes rollups older than
// keep.Rollups.
func (db *DB) MaintainUsage(ctx context.Context, now time.Time, keep billing.Retention) error {
	cur, _ := billing.MonthBounds(now)
	months := make([]time.Time, 0, partitionsAhead+1)
	for i := range partitionsAhead + 1 {
		months = append(months, cur.AddDate(0, i, 0))
	}
	if err := db.ensurePartitions(ctx, months); err != nil {
		return fmt.Errorf("postgres: usage partitions: %w", err)
	}
	if keep.Events > 0 {
		if err := db.dropPartitionsBefore(ctx, now.Add(-keep.Events)); err != nil {
			return fmt.Errorf("postgres: usage retention: %w", err)
		}
	}
	if keep.Rollups > 0 {
		cutoff := now.Add(-keep.Rollups).UTC().Truncate(time.Hour)
		if _, err := db.pool.Exec(ctx, `DELETE FROM usage_hourly WHERE hour < $1`, cutoff); err != nil {
			return fmt.Errorf("postgres: usage rollup retention: %w", err)
		}
		// whole days only: a day's rows go with the day's last hour
		day := cutoff.Truncate(24 * time.Hour)
		for _, q := range []string{`DELETE FROM usage_daily WHERE day < $1`,
			`DELETE FROM usage_party_hourly WHERE hour < $1`, `DELETE FROM usage_party_daily WHERE day < $1`} {
			if _, err := db.pool.Exec(ctx, q, day); err != nil {
				return fmt.Errorf("postgres: usage rollup retention: %w", err)
			}
		}
	}
	return nil
}

// dropPartitionsBefore drops the partitions whose month ended at or
// before cutoff.
func (db *DB) dropPartitionsBefore(ctx context.Context, cutoff time.Time) error {
	names, err := db.usagePartitions(ctx)
	if err != nil {
		return err
	}
	for _, name := range names {
		var y, mo int
		if _, err := fmt.Sscanf(name, "usage_events_p%04d%02d", &y, &mo); err != nil {
			continue // not one of ours
		}
		end := time.Date(y, time.Month(mo), 1, 0, 0, 0, 0, time.UTC).AddDate(0, 1, 0)
		if end.After(cutoff) {
			continue
		}
		if _, err := db.pool.Exec(ctx, `DROP TABLE IF EXISTS usage_partitions.`+pgx.Identifier{name}.Sanitize()); err != nil {
			return err
		}
	}
	return nil
}

// usagePartitions returns the names of usage_events' partitions, oldest first.
func (db *DB) usagePartitions(ctx context.Context) ([]string, error) {
	rows, err := db.pool.Query(ctx, `
		SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
		WHERE i.inhparent = 'usage_events'::regclass ORDER BY c.relname`)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, pgx.RowTo[string])
}

// UsagePartitions returns the names of usage_events' monthly partitions
// (usage_events_pYYYYMM), oldest first: for operators and tests.
func (db *DB) UsagePartitions(ctx context.Context) ([]string, error) {
	names, err := db.usagePartitions(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: usage partitions: %w", err)
	}
	return names, nil
}

// MonthSpend implements billing.UsageReader (and ratelimit.SpendSource):
// the tenant's cost in the calendar month (UTC) containing month, summed
// from the hourly rollups.
func (db *DB) MonthSpend(ctx context.Context, tenantID int64, month time.Time) (tenancy.MicroUSD, error) {
	start, end := billing.MonthBounds(month)
	var spent int64
	err := db.pool.QueryRow(ctx, `
		SELECT COALESCE(sum(cost_micro_usd), 0)::BIGINT FROM usage_hourly
		WHERE tenant_id = $1 AND hour >= $2 AND hour < $3`, tenantID, start, end).Scan(&spent)
	if err != nil {
		return 0, fmt.Errorf("postgres: month spend: %w", err)
	}
	return tenancy.MicroUSD(spent), nil
}

// usageWhere builds the WHERE clause of q over the time column col.
func usageWhere(q billing.UsageQuery, col string) (string, []any) {
	var conds []string
	var args []any
	if !q.AllTenants {
		args = append(args, q.TenantID)
		conds = append(conds, fmt.Sprintf("tenant_id = $%d", len(args)))
	}
	if !q.From.IsZero() {
		args = append(args, q.From)
		conds = append(conds, fmt.Sprintf("%s >= $%d", col, len(args)))
	}
	if !q.To.IsZero() {
		args = append(args, q.To)
		conds = append(conds, fmt.Sprintf("%s < $%d", col, len(args)))
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	return where, args
}

// UsageEvents implements billing.UsageReader.
func (db *DB) UsageEvents(ctx context.Context, q billing.UsageQuery) ([]billing.Event, error) {
	where, args := usageWhere(q, "created_at")
	args = append(args, sqlLimit(q.Limit))
	rows, err := db.pool.Query(ctx, `SELECT `+strings.Join(usageColumns, ", ")+` FROM usage_events`+where+
		fmt.Sprintf(` ORDER BY created_at, id LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: usage events: %w", err)
	}
	events, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.Event, error) {
		var e billing.Event
		var id [16]byte
		var userID, keyID *int64
		var cost, latency, ttft int64
		var status int32
		err := r.Scan(&id, &e.Time, &e.RequestID, &e.TenantID, &e.Tenant, &userID, &keyID, &e.Endpoint,
			&e.Model, &e.UpstreamModel, &e.Deployment, &e.Provider, &e.Stream,
			&e.Usage.PromptTokens, &e.Usage.CompletionTokens, &e.Usage.CachedTokens, &e.Usage.ReasoningTokens,
			&cost, &e.Priced, &e.Estimated, &latency, &ttft, &status, &e.ErrorCode)
		e.ID = billing.EventID(id)
		e.Time = e.Time.UTC()
		if userID != nil {
			e.UserID = *userID
		}
		if keyID != nil {
			e.KeyID = *keyID
		}
		e.Usage.TotalTokens = e.Usage.PromptTokens + e.Usage.CompletionTokens
		e.Cost = tenancy.MicroUSD(cost)
		e.Latency, e.TTFT = time.Duration(latency)*time.Microsecond, time.Duration(ttft)*time.Microsecond
		e.Status = int(status)
		return e, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: usage events: %w", err)
	}
	return events, nil
}

// UsageRollups implements billing.UsageReader.
func (db *DB) UsageRollups(ctx context.Context, q billing.UsageQuery) ([]billing.Rollup, error) {
	where, args := usageWhere(q, "hour")
	args = append(args, sqlLimit(q.Limit))
	rows, err := db.pool.Query(ctx, `SELECT hour, tenant_id, tenant, model, `+strings.Join(rollupColumns, ", ")+
		` FROM usage_hourly`+where+fmt.Sprintf(` ORDER BY hour, tenant_id, tenant, model LIMIT $%d`, len(args)), args...)
	if err != nil {
		return nil, fmt.Errorf("postgres: usage rollups: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (billing.Rollup, error) {
		var ro billing.Rollup
		var cost, lat, ttft int64
		dest := []any{&ro.Hour, &ro.TenantID, &ro.Tenant, &ro.Model,
			&ro.Requests, &ro.Errors, &ro.Streams, &ro.Estimated, &ro.Unpriced,
			&ro.Usage.PromptTokens, &ro.Usage.CompletionTokens, &ro.Usage.CachedTokens, &ro.Usage.ReasoningTokens, &cost,
			&lat, &ttft}
		for i := range ro.LatencyLE {
			dest = append(dest, &ro.LatencyLE[i])
		}
		err := r.Scan(dest...)
		ro.Hour = ro.Hour.UTC()
		ro.Usage.TotalTokens = ro.Usage.PromptTokens + ro.Usage.CompletionTokens
		ro.Cost = tenancy.MicroUSD(cost)
		ro.LatencySum, ro.TTFTSum = time.Duration(lat)*time.Microsecond, time.Duration(ttft)*time.Microsecond
		return ro, err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: usage rollups: %w", err)
	}
	return out, nil
}

package admin

import (
	"encoding/csv"
	"io"
	"strconv"
	"time"
)

// WriteCSV writes rows as CSV with a header line: the grouped columns the
// first row has (time, tenant_id, tenant, model, key_id, key_name,
// key_prefix, user_id, username), then the totals. Times are RFC 3339 UTC,
// costs in dollars, latencies in milliseconds (empty when unknown).
func WriteCSV(w io.Writer, rows []Row) error {
	cw := csv.NewWriter(w)
	var proto Row
	if len(rows) > 0 {
		proto = rows[0]
	}
	type col struct {
		name string
		on   bool
		val  func(r *Row) string
	}
	i64 := func(p *int64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatInt(*p, 10)
	}
	str := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	ms := func(p *float64) string {
		if p == nil {
			return ""
		}
		return strconv.FormatFloat(*p, 'f', -1, 64)
	}
	cols := []col{
		{"time", proto.Time != nil, func(r *Row) string {
			if r.Time == nil {
				return ""
			}
			return r.Time.UTC().Format(time.RFC3339)
		}},
		{"tenant_id", proto.TenantID != nil, func(r *Row) string { return i64(r.TenantID) }},
		{"tenant", proto.Tenant != nil, func(r *Row) string { return str(r.Tenant) }},
		{"model", proto.Model != nil, func(r *Row) string { return str(r.Model) }},
		{"key_id", proto.KeyID != nil, func(r *Row) string { return i64(r.KeyID) }},
		{"key_name", proto.KeyName != nil, func(r *Row) string { return str(r.KeyName) }},
		{"key_prefix", proto.Prefix != nil, func(r *Row) string { return str(r.Prefix) }},
		{"user_id", proto.UserID != nil, func(r *Row) string { return i64(r.UserID) }},
		{"username", proto.Username != nil, func(r *Row) string { return str(r.Username) }},
		{"requests", true, func(r *Row) string { return strconv.FormatInt(r.Requests, 10) }},
		{"errors", true, func(r *Row) string { return strconv.FormatInt(r.Errors, 10) }},
		{"error_rate", true, func(r *Row) string { return strconv.FormatFloat(r.ErrorRate, 'f', -1, 64) }},
		{"prompt_tokens", true, func(r *Row) string { return strconv.FormatInt(r.PromptTokens, 10) }},
		{"completion_tokens", true, func(r *Row) string { return strconv.FormatInt(r.CompletionTokens, 10) }},
		{"total_tokens", true, func(r *Row) string { return strconv.FormatInt(r.TotalTokens, 10) }},
		{"cost_usd", true, func(r *Row) string { return microToDollars(r.CostMicroUSD) }},
		{"latency_avg_ms", true, func(r *Row) string { return strconv.FormatFloat(r.LatencyAvgMS, 'f', 3, 64) }},
		{"latency_p50_ms", true, func(r *Row) string { return ms(r.LatencyP50MS) }},
		{"latency_p95_ms", true, func(r *Row) string { return ms(r.LatencyP95MS) }},
		{"latency_p99_ms", true, func(r *Row) string { return ms(r.LatencyP99MS) }},
	}
	var on []col
	for _, c := range cols {
		if c.on {
			on = append(on, c)
		}
	}
	rec := make([]string, len(on))
	for i, c := range on {
		rec[i] = c.name
	}
	if err := cw.Write(rec); err != nil {
		return err
	}
	for i := range rows {
		for j, c := range on {
			rec[j] = c.val(&rows[i])
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

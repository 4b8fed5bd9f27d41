// Package ratelimit is the domain of tenant rate limits and budgets: token
// buckets (requests per minute, requests per hour, tokens per minute) and a
// monthly spending counter, reserved together, all or nothing, before a
// request goes upstream and settled against its real usage afterwards.
//
// Limiter is the interface; Local is the in-process implementation (one
// replica, or the fallback while the shared store is unreachable) and
// tenancy/redislimit the shared one (a Lua script in Redis, exact across
// replicas). Both pass the suite in ratelimittest.
//
// # Buckets
//
// A bucket of capacity C over a window W holds at most C units (requests or
// tokens) and refills continuously at C per W. Its level is kept as an
// integer in units of 1/W_ms of a token, so refill is exact integer
// arithmetic: each elapsed millisecond adds C. A request takes its units from
// every bucket that applies, or from none. A bucket may go below zero (debt)
// when a settlement charges more tokens than were reserved, down to −C.
//
// The capacity is stored with the bucket: when a tenant's limit changes,
// what was used stays used (level += (new − old capacity)), so a raised
// limit admits more at once and a lowered one refuses until enough refilled.
//
// # Budgets
//
// A tenant's spend for a calendar month (UTC) is a counter of micro-dollars
// that includes open reservations. A request is refused when the counter is
// at or above the budget, or when its estimated cost would take it above.
// When the counter is missing (new month, or the shared store lost it), it
// is rebuilt from a SpendSource, i.e. from the usage records.
package ratelimit

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/mtai-dev/mtai/tenancy"
)

// Kind is what a bucket counts and over which window.
type Kind uint8

// The kinds of bucket.
const (
	// RequestsPerMinute counts requests over one minute.
	RequestsPerMinute Kind = iota + 1
	// RequestsPerHour counts requests over one hour.
	RequestsPerHour
	// TokensPerMinute counts tokens (prompt + completion) over one minute.
	TokensPerMinute
)

// Window returns the time over which the bucket refills completely.
func (k Kind) Window() time.Duration {
	switch k {
	case RequestsPerMinute, TokensPerMinute:
		return time.Minute
	case RequestsPerHour:
		return time.Hour
	}
	return 0
}

// Tokens reports whether the bucket counts tokens (else requests).
func (k Kind) Tokens() bool { return k == TokensPerMinute }

// String returns the short name used in storage keys: "rpm", "rph", "tpm".
func (k Kind) String() string {
	switch k {
	case RequestsPerMinute:
		return "rpm"
	case RequestsPerHour:
		return "rph"
	case TokensPerMinute:
		return "tpm"
	}
	return "invalid"
}

// Describe returns the human name used in refusals: "requests per minute (RPM)".
func (k Kind) Describe() string {
	switch k {
	case RequestsPerMinute:
		return "requests per minute (RPM)"
	case RequestsPerHour:
		return "requests per hour (RPH)"
	case TokensPerMinute:
		return "tokens per minute (TPM)"
	}
	return "invalid limit"
}

// MaxBuckets is the most buckets one Request may name (three per scope: the
// tenant's and one API key's, and room to spare).
const MaxBuckets = 8

// MaxCapacity caps a bucket's limit so that its level, in units of 1/W_ms,
// stays exact in a float64 (Redis' Lua numbers) with room for a debt of
// one window: 2·Limit·W_ms < 2^53. It allows 75 billion tokens per minute
// and 1.25 billion requests per hour; larger limits are taken as this.
func MaxCapacity(k Kind) int64 {
	return (1<<52 - 1) / k.Window().Milliseconds()
}

// Bucket names one bucket a request must take from.
type Bucket struct {
	// Scope tells buckets of the same kind apart within a tenant: "" is the
	// tenant as a whole, "k42" the API key with id 42. Any string without
	// '{', '}' or ':' is valid.
	Scope string
	// Kind is what the bucket counts.
	Kind Kind
	// Limit is the capacity: units per window (> 0).
	Limit int64
}

// Request is what one API request reserves. The caller owns it; limiters
// do not keep it after Reserve or Settle return.
type Request struct {
	// Tenant identifies the tenant in storage keys: every bucket and the
	// spend counter of one tenant live together (one Redis hash slot). Any
	// string without '{' or '}'; required.
	Tenant string
	// TenantID is the store's id of the tenant, passed to SpendSource; 0
	// when the tenant has no id (a key from static config): its spend
	// counter then starts from 0.
	TenantID int64
	// Buckets to take from, at most MaxBuckets. A request bucket takes 1,
	// a token bucket takes Tokens.
	Buckets []Bucket
	// Tokens is the estimate of the request's tokens (prompt + completion).
	Tokens int64
	// Budget is the tenant's monthly budget; 0 means none (Cost is ignored).
	Budget tenancy.MicroUSD
	// Cost is the estimate of the request's cost.
	Cost tenancy.MicroUSD
}

// State is one bucket's state after a decision.
type State struct {
	// Limit is the bucket's capacity, as applied (see Local's Share).
	Limit int64
	// Remaining is what is left now, after this request's reservation if it
	// was admitted; never negative.
	Remaining int64
	// Reset is how long until the bucket is full again.
	Reset time.Duration
}

// Result is a limiter's decision. The caller owns it and passes it back to
// Settle; Reserve overwrites every field.
type Result struct {
	// Allowed reports whether the request was admitted and its units reserved.
	Allowed bool
	// Denied is the index in Request.Buckets of the bucket that refused (the
	// one that takes longest to allow it when several did); -1 when none did.
	Denied int
	// OverBudget reports a refusal by the monthly budget (Denied is then -1).
	OverBudget bool
	// TooLarge reports that the request needs more than the denied bucket's
	// capacity: no wait will admit it.
	TooLarge bool
	// RetryAfter is how long until the refused request would be admitted,
	// if nothing else happens; 0 when admitted, over budget or too large.
	RetryAfter time.Duration
	// States holds the state of Request.Buckets[i] in States[i].
	States [MaxBuckets]State
	// Budgeted reports that the request's cost was reserved in the month's
	// spend counter (a budget applies and the counter could be read).
	Budgeted bool
	// Spent is the month's spend counter after the decision (reservations
	// included), when Budgeted or OverBudget.
	Spent tenancy.MicroUSD
	// Month is the month of the spend counter, as yyyy·100+mm (202607).
	Month int32
	// Fallback marks a decision made by a fallback limiter while the shared
	// one was unreachable; Settle must go to the same place.
	Fallback bool
}

// Used is what a request really used, for Settle.
type Used struct {
	// Tokens is the request's prompt + completion tokens.
	Tokens int64
	// Cost is what those tokens cost.
	Cost tenancy.MicroUSD
}

// Limiter reserves and settles requests. Implementations are safe for
// concurrent use.
type Limiter interface {
	// Reserve decides whether req may go ahead and, if so, reserves it in
	// every bucket and in the spend counter, all or nothing. A refusal is
	// not an error: it is res.Allowed == false. The error is non-nil only
	// when no decision could be made; it wraps ErrUnavailable when the
	// backing store is unreachable and the limiter is configured to fail
	// closed.
	Reserve(ctx context.Context, req *Request, res *Result) error
	// Settle replaces an admitted request's estimate (req.Tokens, req.Cost)
	// by what it used: unused tokens go back to the token buckets (and any
	// excess is taken from them), and the spend counter moves by the cost's
	// difference. Request buckets are not refunded. It may apply the change
	// asynchronously; it never blocks on an unreachable store.
	Settle(ctx context.Context, req *Request, res *Result, used Used) error
}

// SpendSource rebuilds a spend counter: it returns what a tenant spent in a
// month according to the usage records. The metering capability implements
// it; limiters call it only when the month's counter is missing.
type SpendSource interface {
	// MonthSpend returns the tenant's spend in the calendar month (UTC)
	// that starts at month.
	MonthSpend(ctx context.Context, tenantID int64, month time.Time) (tenancy.MicroUSD, error)
}

// Errors returned by limiters; compare with errors.Is.
var (
	// ErrUnavailable means the limiter could not decide: its store is
	// unreachable and it is configured to fail closed.
	ErrUnavailable = errors.New("rate limiter unavailable")
	// ErrInvalid means the Request is malformed (no tenant, too many
	// buckets, a bucket without kind or limit).
	ErrInvalid = errors.New("invalid rate limit request")
)

// Validate checks r; errors wrap ErrInvalid.
func (r *Request) Validate() error {
	switch {
	case r.Tenant == "":
		return errInvalid("no tenant")
	case containsAnyByte(r.Tenant, "{}"):
		return errInvalid("tenant with '{' or '}'")
	case len(r.Buckets) > MaxBuckets:
		return errInvalid("too many buckets")
	case r.Tokens < 0 || r.Cost < 0 || r.Budget < 0:
		return errInvalid("negative tokens, cost or budget")
	}
	for _, b := range r.Buckets {
		if b.Kind.Window() == 0 || b.Limit <= 0 {
			return errInvalid("bucket without kind or positive limit")
		}
		if containsAnyByte(b.Scope, "{}:") {
			return errInvalid("scope with '{', '}' or ':'")
		}
	}
	return nil
}

// containsAnyByte is strings.ContainsAny for ASCII chars, without the set
// that ContainsAny builds on every call: Validate runs on every
// reservation, once per bucket.
func containsAnyByte(s, chars string) bool {
	for i := 0; i < len(chars); i++ {
		if strings.IndexByte(s, chars[i]) >= 0 {
			return true
		}
	}
	return false
}

type invalidError string

func (e invalidError) Error() string { return ErrInvalid.Error() + ": " + string(e) }
func (e invalidError) Unwrap() error { return ErrInvalid }

func errInvalid(msg string) error { return invalidError(msg) }

// Amount returns what b takes from its bucket for req: 1 request, or
// req.Tokens tokens.
func (b Bucket) Amount(req *Request) int64 {
	if b.Kind.Tokens() {
		return req.Tokens
	}
	return 1
}

// Capacity returns b's limit capped at MaxCapacity and divided by share
// (share ≤ 1: undivided), never below 1.
func (b Bucket) Capacity(share int64) int64 {
	c := min(b.Limit, MaxCapacity(b.Kind))
	if share > 1 {
		c /= share
	}
	return max(c, 1)
}

// MonthOf returns the first instant (UTC) of t's month and its number
// yyyy·100+mm.
func MonthOf(t time.Time) (time.Time, int32) {
	t = t.UTC()
	y, m, _ := t.Date()
	return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC), int32(y*100 + int(m))
}

// MonthStart returns the first instant of month yyyy·100+mm.
func MonthStart(month int32) time.Time {
	return time.Date(int(month/100), time.Month(month%100), 1, 0, 0, 0, 0, time.UTC)
}

package gateway

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy/ratelimit"
)

// LimiterOptions configure NewLimiter.
type LimiterOptions struct {
	// Backend decides: ratelimit.NewLocal (one replica, REDIS_URL unset) or
	// a *redislimit.Limiter (shared by replicas). Required.
	Backend ratelimit.Limiter
	// Prices give requests their cost, for budgets; nil means
	// billing.DefaultPrices(). A model without a price costs 0 (its
	// requests are still refused once the budget is spent).
	Prices *billing.Prices
	// DefaultMaxTokens is the completion tokens reserved for a request that
	// sets no max_tokens (MTAI_LIMIT_DEFAULT_MAX_TOKENS); default 1024.
	// Settlement corrects it with the real usage.
	DefaultMaxTokens int64
}

// Limiter applies tenants' rate limits and budgets, and API keys' own
// rate limits, to chat and embeddings requests: it estimates each
// request's tokens and cost, reserves them with its backend before the
// request goes upstream, answers the x-ratelimit-* headers, and settles
// with the real usage. Build it with NewLimiter and pass it as
// Options.Limiter; a nil *Limiter limits nothing. Safe for concurrent use.
type Limiter struct {
	backend    ratelimit.Limiter
	prices     *billing.Prices
	defaultMax int64
}

// NewLimiter returns a Limiter.
func NewLimiter(o LimiterOptions) (*Limiter, error) {
	if o.Backend == nil {
		return nil, errors.New("gateway: LimiterOptions.Backend is required")
	}
	if o.Prices == nil {
		o.Prices = billing.DefaultPrices()
	}
	if o.DefaultMaxTokens < 0 {
		return nil, errors.New("MTAI_LIMIT_DEFAULT_MAX_TOKENS must not be negative")
	}
	if o.DefaultMaxTokens == 0 {
		o.DefaultMaxTokens = 1024
	}
	return &Limiter{backend: o.Backend, prices: o.Prices, defaultMax: o.DefaultMaxTokens}, nil
}

// limitState is what the limiter reserved for one request, kept until the
// request is settled.
type limitState struct {
	active  bool // a reservation awaits settlement
	req     ratelimit.Request
	res     ratelimit.Result
	buckets [ratelimit.MaxBuckets]ratelimit.Bucket
	price   billing.Price
}

// Estimating prompt tokens from the messages' JSON size: tokens ≈
// bytes·promptTokensPerKB/1000, rounded up, plus the 3 tokens that prime
// the answer: 4 bytes per token. Measured against tiktoken (o200k_base and
// cl100k_base, with OpenAI's counting of chat messages) on 400 English
// prompts of 50 B to 32 KB cut from man pages, plus the contract samples,
// the JSON carries 4.1 (p10) / 4.5 (p50) / 5.0 (p90) bytes per token: the
// estimate is 1.14× the truth at the median, 1.04× at p10, 1.30× at p90,
// and 5% of prompts are underestimated, by 16% at worst. A slight
// over-reservation is the aim: settlement refunds it. Text that tokenizes
// worse (code, non-Latin scripts) is underestimated; settlement charges the
// difference. TestPromptEstimate prints the distribution.
const (
	promptTokensPerKB = 250
	promptOverhead    = 3
	// systemMessageBytes is the JSON around a tenant's system prompt.
	systemMessageBytes = len(`{"role":"system","content":""},`)
)

// estimatePromptTokens estimates the prompt tokens of a messages array of
// n bytes.
func estimatePromptTokens(n int) int64 {
	if n <= 0 {
		return promptOverhead
	}
	return (int64(n)*promptTokensPerKB+999)/1000 + promptOverhead
}

// reserve applies the tenant's rate limits and budget, and the API key's
// own rate limits, before the request goes upstream, in one reservation:
// the request must pass every bucket. It sets the x-ratelimit-* headers
// and returns a rate-limit error when a bucket ran out.
func (s *Server) reserve(rc *fasthttp.RequestCtx, st *reqState) error {
	l := s.limiter
	p := st.principal
	if l == nil || p == nil {
		return nil
	}
	pol, key := p.Policy, p.KeyLimits
	if key == nil && (pol == nil ||
		pol.RequestsPerMinute <= 0 && pol.RequestsPerHour <= 0 && pol.TokensPerMinute <= 0 && pol.MonthlyBudget <= 0) {
		return nil
	}
	ls := &st.lim
	req := &ls.req
	*req = ratelimit.Request{TenantID: p.TenantID, Buckets: ls.buckets[:0]}
	if p.TenantID != 0 {
		req.Tenant = strconv.FormatInt(p.TenantID, 10)
	} else { // a key from static config: the tenant's name, without the braces of Redis hash tags
		req.Tenant = "name:" + noBraces.Replace(p.Tenant)
	}
	// A token count generates nothing: it takes requests, no tokens and
	// nothing from the budget.
	counting := st.route == routeCountTokens
	if pol != nil { // the tenant's buckets
		req.Buckets = appendBuckets(req.Buckets, "", pol.RequestsPerMinute, pol.RequestsPerHour, unless(counting, pol.TokensPerMinute))
	}
	if key != nil { // the key's own, in its scope ("k<id>", built with the principal)
		req.Buckets = appendBuckets(req.Buckets, key.Scope, key.RequestsPerMinute, key.RequestsPerHour, unless(counting, key.TokensPerMinute))
	}
	promptBytes := st.chat.promptBytes
	completion := st.chat.maxTokens
	if st.route == routeEmbeddings {
		completion = 0 // an embedding generates no tokens
	} else {
		if pol != nil && pol.SystemPrompt != "" {
			promptBytes += len(pol.SystemPrompt) + systemMessageBytes
		}
		if completion <= 0 {
			completion = l.defaultMax
		}
	}
	prompt := estimatePromptTokens(promptBytes)
	req.Tokens = prompt + completion
	if pol != nil && pol.MonthlyBudget > 0 && !counting {
		req.Budget = pol.MonthlyBudget
		ls.price = s.priceOf(st.model)
		req.Cost = ls.price.Cost(providers.Usage{PromptTokens: prompt, CompletionTokens: completion})
	}
	if len(req.Buckets) == 0 && req.Budget == 0 {
		return nil // only limits that do not apply to this request
	}

	err := l.backend.Reserve(s.ctx, req, &ls.res)
	if err != nil {
		if errors.Is(err, ratelimit.ErrUnavailable) {
			return &limitError{kind: limitUnavailable}
		}
		return err
	}
	res := &ls.res
	writeLimitHeaders(rc, req, res)
	if res.Allowed {
		ls.active = true
		return nil
	}
	return refusal(rc, req, res)
}

// unless is 0 when off, else n: a limit that does not apply.
func unless(off bool, n int64) int64 {
	if off {
		return 0
	}
	return n
}

// appendBuckets appends to bs a bucket in scope for each limit that is set
// (> 0): requests per minute, requests per hour, tokens per minute. It
// allocates nothing while bs has room (limitState's array holds
// ratelimit.MaxBuckets: the tenant's three and a key's three fit).
func appendBuckets(bs []ratelimit.Bucket, scope string, rpm, rph, tpm int64) []ratelimit.Bucket {
	for _, b := range [...]ratelimit.Bucket{
		{Scope: scope, Kind: ratelimit.RequestsPerMinute, Limit: rpm},
		{Scope: scope, Kind: ratelimit.RequestsPerHour, Limit: rph},
		{Scope: scope, Kind: ratelimit.TokensPerMinute, Limit: tpm},
	} {
		if b.Limit > 0 {
			bs = append(bs, b)
		}
	}
	return bs
}

// noBraces keeps tenant names out of Redis hash-tag syntax. Immutable.
var noBraces = strings.NewReplacer("{", "(", "}", ")")

// priceOf returns the price of model: its own, else its first deployment's
// upstream model's, else 0.
func (s *Server) priceOf(model string) billing.Price {
	if pr, ok := s.limiter.prices.Lookup(model); ok {
		return pr
	}
	if rt, ok := s.router.Route(model); ok && len(rt.Deployments) > 0 {
		if pr, ok := s.limiter.prices.Lookup(rt.Deployments[0].Model); ok {
			return pr
		}
	}
	return billing.Price{}
}

// settle reconciles the reservation with the request's real usage. It is
// called exactly once per request, from finish. Without usage (an upstream
// that failed or a stream cut before its usage chunk) the estimate stands.
func (s *Server) settle(st *reqState) {
	ls := &st.lim
	if !ls.active || s.limiter == nil {
		return
	}
	ls.active = false
	if !st.hasUsage {
		return
	}
	used := ratelimit.Used{Tokens: st.usage.PromptTokens + st.usage.CompletionTokens}
	if ls.req.Budget > 0 {
		used.Cost = ls.price.Cost(st.usage)
	}
	if err := s.limiter.backend.Settle(s.ctx, &ls.req, &ls.res, used); err != nil {
		s.log.Warn("rate limit settlement failed", zap.String("request_id", st.requestID), zap.Error(err))
	}
}

// Response headers, as OpenAI names them.
const (
	hLimitRequests     = "x-ratelimit-limit-requests"
	hRemainingRequests = "x-ratelimit-remaining-requests"
	hResetRequests     = "x-ratelimit-reset-requests"
	hLimitTokens       = "x-ratelimit-limit-tokens"
	hRemainingTokens   = "x-ratelimit-remaining-tokens"
	hResetTokens       = "x-ratelimit-reset-tokens"
	hRetryAfterMs      = "retry-after-ms"
)

// writeLimitHeaders answers x-ratelimit-* for the request buckets and the
// token buckets that exist. When several buckets count the same thing
// (per minute and per hour), the one with the least remaining is shown.
func writeLimitHeaders(rc *fasthttp.RequestCtx, req *ratelimit.Request, res *ratelimit.Result) {
	reqIdx, tokIdx := -1, -1
	for i, b := range req.Buckets {
		p := &reqIdx
		if b.Kind.Tokens() {
			p = &tokIdx
		}
		if *p < 0 || tighter(res.States[i], res.States[*p]) {
			*p = i
		}
	}
	var buf [32]byte
	h := &rc.Response.Header
	if reqIdx >= 0 {
		s := res.States[reqIdx]
		h.SetBytesV(hLimitRequests, strconv.AppendInt(buf[:0], s.Limit, 10))
		h.SetBytesV(hRemainingRequests, strconv.AppendInt(buf[:0], s.Remaining, 10))
		h.SetBytesV(hResetRequests, appendDuration(buf[:0], s.Reset))
	}
	if tokIdx >= 0 {
		s := res.States[tokIdx]
		h.SetBytesV(hLimitTokens, strconv.AppendInt(buf[:0], s.Limit, 10))
		h.SetBytesV(hRemainingTokens, strconv.AppendInt(buf[:0], s.Remaining, 10))
		h.SetBytesV(hResetTokens, appendDuration(buf[:0], s.Reset))
	}
}

func tighter(a, b ratelimit.State) bool {
	if a.Remaining != b.Remaining {
		return a.Remaining < b.Remaining
	}
	return a.Reset > b.Reset
}

// appendDuration appends d, rounded up to the millisecond, in Go's
// time.Duration format as OpenAI writes it: "0s", "12ms", "1s", "1.5s",
// "6m0s", "1h2m3s".
func appendDuration(b []byte, d time.Duration) []byte {
	ms := int64((d + time.Millisecond - 1) / time.Millisecond)
	switch {
	case ms <= 0:
		return append(b, "0s"...)
	case ms < 1000:
		return append(strconv.AppendInt(b, ms, 10), "ms"...)
	}
	if h := ms / 3_600_000; h > 0 {
		b = append(strconv.AppendInt(b, h, 10), 'h')
	}
	if ms >= 60_000 {
		b = append(strconv.AppendInt(b, ms/60_000%60, 10), 'm')
	}
	b = strconv.AppendInt(b, ms/1000%60, 10)
	if frac := ms % 1000; frac > 0 {
		b = append(b, '.', byte('0'+frac/100))
		if frac%100 > 0 {
			b = append(b, byte('0'+frac/10%10))
			if frac%10 > 0 {
				b = append(b, byte('0'+frac%10))
			}
		}
	}
	return append(b, 's')
}

// limitKind is why the limiter refused.
type limitKind uint8

const (
	limitRequests limitKind = iota + 1
	limitTokens
	limitTooLarge
	limitBudget
	limitUnavailable
)

// limitError is a refusal by the rate limiter, or its absence (fail
// closed); toAPIError maps it with apiError.
type limitError struct {
	kind  limitKind
	retry time.Duration // requests, tokens: how long until the request fits
	msg   string
}

func (e *limitError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	if e.kind == limitUnavailable {
		return "The rate limiter is unavailable; retry shortly."
	}
	return "rate limit reached"
}

// apiError is the response to e: 429 with OpenAI's codes and types, or 503.
func (e *limitError) apiError() apiError {
	switch e.kind {
	case limitBudget:
		return apiError{status: 429, typ: "insufficient_quota", code: "insufficient_quota", message: e.Error(), noRetry: true}
	case limitUnavailable:
		return apiError{status: 503, typ: "server_error", code: "rate_limiter_unavailable", message: e.Error(), retryAfter: 1}
	case limitTooLarge:
		return apiError{status: 429, typ: "tokens", code: "rate_limit_exceeded", message: e.Error(), retryAfter: 60, noRetry: true}
	}
	typ := "requests"
	if e.kind == limitTokens {
		typ = "tokens"
	}
	return apiError{status: 429, typ: typ, code: "rate_limit_exceeded", message: e.Error(), retryAfter: retrySeconds(e.retry)}
}

// retrySeconds is Retry-After for d: whole seconds rounded up, at least 1.
func retrySeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

// refusal builds the error for a refused reservation and sets
// retry-after-ms (Retry-After itself is written by writeError).
func refusal(rc *fasthttp.RequestCtx, req *ratelimit.Request, res *ratelimit.Result) error {
	if res.OverBudget {
		return &limitError{kind: limitBudget, msg: "You exceeded your tenant's monthly budget of $" + req.Budget.String() +
			" (spent $" + res.Spent.String() + " this month, UTC). Ask an administrator to raise it."}
	}
	if res.Denied < 0 || res.Denied >= len(req.Buckets) {
		return errors.New("rate limiter refused without naming a bucket")
	}
	b := req.Buckets[res.Denied]
	s := res.States[res.Denied]
	amount := b.Amount(req)
	msg := make([]byte, 0, 200)
	if res.TooLarge {
		msg = append(msg, "Request too large for "...)
		msg = appendBucketName(msg, b)
		msg = append(msg, ": Limit "...)
		msg = strconv.AppendInt(msg, s.Limit, 10)
		msg = append(msg, ", Requested "...)
		msg = strconv.AppendInt(msg, amount, 10)
		msg = append(msg, ". Send fewer tokens or a smaller max_tokens."...)
		return &limitError{kind: limitTooLarge, msg: string(msg)}
	}
	kind := limitRequests
	if b.Kind.Tokens() {
		kind = limitTokens
	}
	retry := max(res.RetryAfter, time.Millisecond)
	var buf [20]byte
	rc.Response.Header.SetBytesV(hRetryAfterMs, strconv.AppendInt(buf[:0], int64((retry+time.Millisecond-1)/time.Millisecond), 10))
	msg = append(msg, "Rate limit reached for "...)
	msg = appendBucketName(msg, b)
	msg = append(msg, ": Limit "...)
	msg = strconv.AppendInt(msg, s.Limit, 10)
	msg = append(msg, ", Remaining "...)
	msg = strconv.AppendInt(msg, s.Remaining, 10)
	msg = append(msg, ", Requested "...)
	msg = strconv.AppendInt(msg, amount, 10)
	msg = append(msg, ". Please try again in "...)
	msg = appendDuration(msg, retry)
	msg = append(msg, '.')
	return &limitError{kind: kind, retry: retry, msg: string(msg)}
}

// appendBucketName appends what b limits, as refusals name it: "requests
// per minute (RPM)" for the tenant's bucket, "this API key's requests per
// minute (RPM)" for the key's own.
func appendBucketName(msg []byte, b ratelimit.Bucket) []byte {
	if b.Scope != "" {
		msg = append(msg, "this API key's "...)
	}
	return append(msg, b.Kind.Describe()...)
}

// Package redislimit is the shared ratelimit.Limiter: every replica of the
// gateway reserves in the same Redis, so limits and budgets are exact across
// replicas.
//
// A reservation is ONE round trip: a Lua script (loaded once, called with
// EVALSHA, sent again with EVAL when Redis answers NOSCRIPT) that refills,
// checks and takes from every bucket and checks and moves the month's spend
// counter, all or nothing. Time comes from Redis (TIME), so replicas with
// skewed clocks still agree. All keys of a tenant share one hash tag
// ({tenant}), so the script works on Redis Cluster too.
//
// Settlements are applied asynchronously, off the request path: Settle
// queues them, and one goroutine sends what was queued during SettleDelay
// (2ms) as one pipeline, so that under load many settlements share one
// round trip.
//
// When Redis is unreachable no request waits on it: every call has a tight
// deadline; the first failure marks Redis down, and until a background
// probe (with backoff) succeeds again, requests are decided by an
// in-process limiter that enforces each replica's fair share (limit ÷
// replicas), or refused with ratelimit.ErrUnavailable when configured to
// fail closed. Both transitions are logged once and exported as metrics.
package redislimit

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/mtai-dev/mtai/tenancy"
	"github.com/mtai-dev/mtai/tenancy/ratelimit"
)

// Config is the Redis limiter's configuration (the `limits:` section, and
// REDIS_URL / MTAI_LIMIT_* variables). Zero values take the defaults set by
// SetDefaults.
type Config struct {
	// URL of the Redis server (REDIS_URL), e.g. redis://:pass@host:6379/0 or
	// rediss:// for TLS. Required.
	URL string `yaml:"url"`
	// KeyPrefix starts every key; default "mtai:rl:". Tests use a unique one.
	KeyPrefix string `yaml:"key_prefix"`
	// DialTimeout, ReadTimeout and WriteTimeout bound each network step;
	// default 100ms each.
	DialTimeout  time.Duration `yaml:"dial_timeout"`
	ReadTimeout  time.Duration `yaml:"read_timeout"`
	WriteTimeout time.Duration `yaml:"write_timeout"`
	// Timeout bounds one reservation as a whole (waiting for a pooled
	// connection included); default 150ms. A request never waits longer
	// on Redis, even while it hangs.
	Timeout time.Duration `yaml:"timeout"`
	// PoolSize is the number of connections per replica; default go-redis'
	// 10 per CPU.
	PoolSize int `yaml:"pool_size"`
	// FailClosed refuses requests (503, ErrUnavailable) while Redis is
	// unreachable (MTAI_LIMIT_FAIL_OPEN=false). The default, fail open,
	// decides them in process with each bucket's limit divided by Replicas.
	FailClosed bool `yaml:"fail_closed"`
	// Replicas is the number of gateway replicas sharing the limits
	// (MTAI_REPLICAS), for the fair share when failing open; default 1.
	Replicas int `yaml:"replicas"`
	// ProbeInterval is the first wait before probing Redis again after a
	// failure; it doubles up to MaxProbeInterval. Defaults 100ms and 2s.
	ProbeInterval    time.Duration `yaml:"probe_interval"`
	MaxProbeInterval time.Duration `yaml:"max_probe_interval"`
	// SpendTimeout bounds rebuilding a month's spend counter from the
	// SpendSource; default 1s.
	SpendTimeout time.Duration `yaml:"spend_timeout"`
	// SettleDelay is how long the settler gathers settlements before it
	// sends them in one pipeline; default 2ms.
	SettleDelay time.Duration `yaml:"settle_delay"`
	// MaxPendingSettles bounds the settlements queued for Redis; beyond it
	// (Redis far slower than the request rate) they are dropped and
	// counted. Default 10000.
	MaxPendingSettles int `yaml:"max_pending_settles"`
}

// SetDefaults fills zero values with the documented defaults.
func (c *Config) SetDefaults() {
	if c.KeyPrefix == "" {
		c.KeyPrefix = "mtai:rl:"
	}
	for _, d := range []*time.Duration{&c.DialTimeout, &c.ReadTimeout, &c.WriteTimeout} {
		if *d == 0 {
			*d = 100 * time.Millisecond
		}
	}
	if c.Timeout == 0 {
		c.Timeout = 150 * time.Millisecond
	}
	if c.Replicas == 0 {
		c.Replicas = 1
	}
	if c.ProbeInterval == 0 {
		c.ProbeInterval = 100 * time.Millisecond
	}
	if c.MaxProbeInterval == 0 {
		c.MaxProbeInterval = 2 * time.Second
	}
	if c.SpendTimeout == 0 {
		c.SpendTimeout = time.Second
	}
	if c.SettleDelay == 0 {
		c.SettleDelay = 2 * time.Millisecond
	}
	if c.MaxPendingSettles == 0 {
		c.MaxPendingSettles = 10000
	}
}

// Validate reports the first bad value, naming its variable.
func (c *Config) Validate() error {
	switch {
	case c.URL == "":
		return errors.New("REDIS_URL (limits.url) is required for the Redis limiter")
	case c.Replicas < 1:
		return errors.New("MTAI_REPLICAS (limits.replicas) must be at least 1")
	case c.Timeout <= 0 || c.DialTimeout <= 0 || c.ReadTimeout <= 0 || c.WriteTimeout <= 0:
		return errors.New("limits: timeouts must be positive")
	case c.ProbeInterval <= 0 || c.MaxProbeInterval < c.ProbeInterval:
		return errors.New("limits: probe_interval must be positive and at most max_probe_interval")
	case strings.ContainsAny(c.KeyPrefix, "{}"):
		return errors.New("limits.key_prefix must not contain '{' or '}'")
	}
	if _, err := redis.ParseURL(c.URL); err != nil {
		return fmt.Errorf("REDIS_URL (limits.url): %w", err)
	}
	return nil
}

// Options are the Limiter's dependencies; all optional.
type Options struct {
	// Logger receives one line when Redis becomes unreachable and one when it
	// is back; nil: no logs.
	Logger *zap.Logger
	// Registerer receives the limiter's metrics; nil: none are registered
	// (the Limiter is a prometheus.Collector: it can be registered later).
	Registerer prometheus.Registerer
	// Spend rebuilds a missing month's spend counter; nil: counters start
	// from 0.
	Spend ratelimit.SpendSource
	// Now replaces Redis' clock (TIME) and the month's clock (time.Now);
	// for tests.
	Now func() time.Time
}

// Limiter is the Redis ratelimit.Limiter. It owns its Redis client (a pool
// of its own, with the tight timeouts of Config) and two goroutines (the
// settler and the prober), stopped by Close. Safe for concurrent use.
type Limiter struct {
	cfg      Config
	rdb      *redis.Client
	reserve  *redis.Script
	settle   *redis.Script
	fallback *ratelimit.Local
	spend    ratelimit.SpendSource
	now      func() time.Time // nil: Redis' clock
	log      *zap.Logger
	m        metrics

	down      atomic.Bool
	downSince atomic.Int64 // unix ns
	probeWake chan struct{}

	mu         sync.Mutex
	pending    []settleOp
	enqueued   atomic.Uint64 // settlements queued, ever
	done       atomic.Uint64 // settlements sent or dropped, ever
	settleWake chan struct{}
	flushNow   chan struct{}

	stop      chan struct{}
	wg        sync.WaitGroup
	closeOnce sync.Once
}

type settleOp struct {
	keys []string
	args []any
}

var (
	_ ratelimit.Limiter    = (*Limiter)(nil)
	_ prometheus.Collector = (*Limiter)(nil)
)

// errDown is returned while Redis is unreachable and the limiter fails closed.
var errDown = fmt.Errorf("%w: redis unreachable", ratelimit.ErrUnavailable)

// New builds a Limiter and starts its goroutines. It fails only on a bad
// configuration: an unreachable Redis at start is handled like any outage
// (fail open or closed, probe until it answers).
func New(cfg Config, o Options) (*Limiter, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	opt, _ := redis.ParseURL(cfg.URL)
	opt.DialTimeout = cfg.DialTimeout
	opt.ReadTimeout = cfg.ReadTimeout
	opt.WriteTimeout = cfg.WriteTimeout
	opt.PoolTimeout = cfg.Timeout
	opt.ContextTimeoutEnabled = true
	opt.MaxRetries = -1   // a retry would double the wait; the caller falls back instead
	opt.DialerRetries = 1 // one attempt per dial, bounded by DialTimeout
	opt.DisableIdentity = true
	// RESP2: with RESP3, go-redis checks for push notifications before each
	// command, one more read syscall per reservation; the limiter needs none.
	opt.Protocol = 2
	if cfg.PoolSize > 0 {
		opt.PoolSize = cfg.PoolSize
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	l := &Limiter{
		cfg:     cfg,
		rdb:     redis.NewClient(opt),
		reserve: redis.NewScript(reserveSrc),
		settle:  redis.NewScript(settleSrc),
		fallback: ratelimit.NewLocal(ratelimit.LocalOptions{Now: o.Now, Spend: o.Spend,
			SpendTimeout: cfg.SpendTimeout, Share: int64(cfg.Replicas)}),
		spend:      o.Spend,
		now:        o.Now,
		log:        o.Logger.With(zap.String("component", "ratelimit")),
		m:          newMetrics(),
		probeWake:  make(chan struct{}, 1), // a pending wake-up is enough
		settleWake: make(chan struct{}, 1), // idem
		flushNow:   make(chan struct{}, 1), // idem
		stop:       make(chan struct{}),
	}
	l.m.up.Set(1)
	if o.Registerer != nil {
		if err := o.Registerer.Register(l); err != nil {
			return nil, fmt.Errorf("redislimit metrics: %w", err)
		}
	}
	l.wg.Add(2)
	go l.prober()
	go l.settler()
	ctx, cancel := context.WithTimeout(context.Background(), cfg.Timeout)
	defer cancel()
	if err := l.rdb.Ping(ctx).Err(); err != nil {
		l.markDown(err)
	}
	return l, nil
}

// Close stops the goroutines (sending what settlements are queued, within
// Timeout) and closes the Redis client. Safe to call more than once.
func (l *Limiter) Close() error {
	var err error
	l.closeOnce.Do(func() {
		close(l.stop)
		l.wg.Wait()
		err = l.rdb.Close()
	})
	return err
}

// Up reports whether Redis is considered reachable.
func (l *Limiter) Up() bool { return !l.down.Load() }

// Reserve implements ratelimit.Limiter.
func (l *Limiter) Reserve(ctx context.Context, req *ratelimit.Request, res *ratelimit.Result) error {
	if err := req.Validate(); err != nil {
		return err
	}
	if l.down.Load() {
		return l.degraded(ctx, req, res)
	}
	var now time.Time
	nowMs := int64(-1)
	if l.now != nil {
		now = l.now()
		nowMs = now.UnixMilli()
	} else {
		now = time.Now()
	}
	monthStart, month := ratelimit.MonthOf(now)
	seed := int64(-1)
	if l.spend == nil || req.TenantID == 0 {
		seed = 0
	}
	keys, args := l.reserveCall(req, nowMs, month, monthStart, now, seed)
	for attempt := 0; ; attempt++ {
		reply, err := l.run(ctx, keys, args)
		if err != nil {
			if ctx.Err() == nil && unreachable(err) {
				l.markDown(err)
				return l.degraded(ctx, req, res)
			}
			return fmt.Errorf("redislimit: reserve: %w", err)
		}
		if len(reply) != 5+2*len(req.Buckets) || reply[0] < 0 || reply[0] > 4 || (reply[0] == 3 && attempt > 0) ||
			(reply[0] != 1 && reply[0] != 2 && reply[0] != 3 && (reply[1] < 1 || int(reply[1]) > len(req.Buckets))) {
			return fmt.Errorf("redislimit: reserve: unexpected reply %v for %d buckets", reply, len(req.Buckets))
		}
		if reply[0] == 3 && attempt == 0 { // the month's counter is missing: rebuild it
			v, err := l.monthSpend(ctx, req.TenantID, monthStart)
			if err != nil {
				args[2] = int64(0) // go without a budget reservation this time
			} else {
				args[4] = int64(v)
			}
			continue
		}
		decode(reply, req, res, month)
		return nil
	}
}

func (l *Limiter) monthSpend(ctx context.Context, tenantID int64, month time.Time) (tenancy.MicroUSD, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.SpendTimeout)
	defer cancel()
	return l.spend.MonthSpend(ctx, tenantID, month)
}

// reserveCall builds the script's keys and arguments.
func (l *Limiter) reserveCall(req *ratelimit.Request, nowMs int64, month int32, monthStart, now time.Time, seed int64) ([]string, []any) {
	n := len(req.Buckets)
	keys := make([]string, 0, n+1)
	args := make([]any, 0, 6+3*n)
	base := l.tenantBase(req.Tenant)
	for _, b := range req.Buckets {
		keys = append(keys, bucketKey(base, b))
	}
	args = append(args, nowMs, int64(n), int64(req.Budget), int64(req.Cost), seed, int64(0))
	if req.Budget > 0 {
		keys = append(keys, base+"spend:"+strconv.Itoa(int(month)))
		// Keep the counter until 35 days after the month ends.
		args[5] = int64(monthStart.AddDate(0, 1, 35).Sub(now)/time.Second) + 1
	}
	for _, b := range req.Buckets {
		args = append(args, b.Kind.Window().Milliseconds(), b.Capacity(1), b.Amount(req))
	}
	return keys, args
}

// tenantBase returns "prefix{tenant}:", the start of a tenant's keys.
func (l *Limiter) tenantBase(tenant string) string {
	return l.cfg.KeyPrefix + "{" + tenant + "}:"
}

func bucketKey(base string, b ratelimit.Bucket) string {
	if b.Scope == "" {
		return base + b.Kind.String()
	}
	return base + b.Scope + ":" + b.Kind.String()
}

// decode fills res from the reserve script's reply.
func decode(reply []int64, req *ratelimit.Request, res *ratelimit.Result, month int32) {
	*res = ratelimit.Result{Denied: -1, Month: month}
	for i, b := range req.Buckets {
		res.States[i] = ratelimit.State{Limit: b.Capacity(1), Remaining: reply[5+2*i],
			Reset: time.Duration(reply[6+2*i]) * time.Millisecond}
	}
	if reply[3] >= 0 {
		res.Spent = tenancy.MicroUSD(reply[3])
	}
	switch reply[0] {
	case 1:
		res.Allowed = true
		res.Budgeted = reply[4] == 1
	case 0:
		res.Denied = int(reply[1]) - 1
		res.RetryAfter = time.Duration(reply[2]) * time.Millisecond
	case 2:
		res.OverBudget = true
	case 4:
		res.Denied = int(reply[1]) - 1
		res.TooLarge = true
	}
}

// run sends a reservation with one timeout over the whole call: EVALSHA,
// then EVAL if Redis answers NOSCRIPT.
func (l *Limiter) run(ctx context.Context, keys []string, args []any) ([]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
	defer cancel()
	return l.reserve.Run(ctx, l.rdb, keys, args...).Int64Slice()
}

// exec sends settlements as one pipeline of EVALSHA; those that met
// NOSCRIPT are sent again with EVAL. Failed ones are counted as dropped;
// a failure that means Redis is unreachable marks it down.
func (l *Limiter) exec(ctx context.Context, ops []settleOp) {
	cmds := make([]*redis.Cmd, len(ops))
	for attempt := 0; attempt < 2; attempt++ {
		pipe := l.rdb.Pipeline()
		for i, op := range ops {
			switch {
			case attempt == 0:
				cmds[i] = l.settle.EvalSha(ctx, pipe, op.keys, op.args...)
			case isNoScript(cmds[i].Err()):
				cmds[i] = l.settle.Eval(ctx, pipe, op.keys, op.args...)
			}
		}
		if _, err := pipe.Exec(ctx); err == nil || !hasNoScript(cmds) {
			break
		}
	}
	dropped := 0
	for _, c := range cmds {
		if err := c.Err(); err != nil {
			dropped++
			if unreachable(err) {
				l.markDown(err)
			}
		}
	}
	if dropped > 0 {
		l.m.settlesDropped.Add(float64(dropped))
	}
}

// degraded decides without Redis.
func (l *Limiter) degraded(ctx context.Context, req *ratelimit.Request, res *ratelimit.Result) error {
	if l.cfg.FailClosed {
		l.m.degradedClosed.Inc()
		*res = ratelimit.Result{Denied: -1}
		return errDown
	}
	l.m.degradedOpen.Inc()
	err := l.fallback.Reserve(ctx, req, res)
	res.Fallback = true
	return err
}

// unreachable reports whether err means Redis could not be reached or
// cannot serve now (dial, read or write failures, timeouts, a closed pool,
// a loading or read-only server), as opposed to an error answer.
func unreachable(err error) bool {
	var rerr redis.Error
	if errors.As(err, &rerr) {
		msg := rerr.Error()
		for _, p := range []string{"LOADING", "READONLY", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "BUSY "} {
			if strings.HasPrefix(msg, p) {
				return true
			}
		}
		return false
	}
	return err != nil
}

// markDown switches to the fallback (or to refusing) until the prober sees
// Redis again.
func (l *Limiter) markDown(err error) {
	if !l.down.CompareAndSwap(false, true) {
		return
	}
	l.downSince.Store(time.Now().UnixNano())
	l.m.up.Set(0)
	l.m.outages.Inc()
	if l.cfg.FailClosed {
		l.log.Error("redis unreachable: refusing requests (fail closed) until it answers again", zap.Error(err))
	} else {
		l.log.Warn("redis unreachable: limiting in process with a fair share (fail open) until it answers again",
			zap.Error(err), zap.Int("replicas", l.cfg.Replicas))
	}
	select {
	case l.probeWake <- struct{}{}:
	default:
	}
}

// prober waits for an outage, then pings Redis with backoff until it
// answers.
func (l *Limiter) prober() {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			return
		case <-l.probeWake:
		}
		wait := l.cfg.ProbeInterval
		for l.down.Load() {
			t := time.NewTimer(wait)
			select {
			case <-l.stop:
				t.Stop()
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout)
			err := l.rdb.Ping(ctx).Err()
			cancel()
			if err == nil {
				l.down.Store(false)
				l.m.up.Set(1)
				l.log.Info("redis reachable again: limits are shared again",
					zap.Duration("outage", time.Duration(time.Now().UnixNano()-l.downSince.Load())))
				break
			}
			wait = min(2*wait, l.cfg.MaxProbeInterval)
		}
	}
}

// Settle implements ratelimit.Limiter. A settlement of a Redis reservation
// is queued and sent by the settler within SettleDelay and a round trip;
// Flush waits for it. While Redis is down such settlements are dropped (and counted):
// the buckets refill by themselves, and the usage records, which rebuild
// spend counters, do not depend on them.
func (l *Limiter) Settle(ctx context.Context, req *ratelimit.Request, res *ratelimit.Result, used ratelimit.Used) error {
	if !res.Allowed {
		return nil
	}
	if res.Fallback {
		return l.fallback.Settle(ctx, req, res, used)
	}
	dTokens := used.Tokens - req.Tokens
	dCost := used.Cost - req.Cost
	if !res.Budgeted {
		dCost = 0
	}
	n := 0
	if dTokens != 0 {
		for _, b := range req.Buckets {
			if b.Kind.Tokens() {
				n++
			}
		}
	}
	if n == 0 && dCost == 0 {
		return nil
	}
	if l.down.Load() {
		l.m.settlesDropped.Inc()
		return nil
	}
	var nowMs int64 = -1
	if l.now != nil {
		nowMs = l.now().UnixMilli()
	}
	base := l.tenantBase(req.Tenant)
	op := settleOp{keys: make([]string, 0, n+1), args: make([]any, 0, 4+2*n)}
	op.args = append(op.args, nowMs, int64(n), dTokens, int64(dCost))
	if n > 0 {
		for _, b := range req.Buckets {
			if b.Kind.Tokens() {
				op.keys = append(op.keys, bucketKey(base, b))
				op.args = append(op.args, b.Kind.Window().Milliseconds(), b.Capacity(1))
			}
		}
	}
	op.keys = append(op.keys, base+"spend:"+strconv.Itoa(int(res.Month)))

	l.mu.Lock()
	if len(l.pending) >= l.cfg.MaxPendingSettles {
		l.mu.Unlock()
		l.m.settlesDropped.Inc()
		return nil
	}
	l.pending = append(l.pending, op)
	l.enqueued.Add(1)
	l.mu.Unlock()
	select {
	case l.settleWake <- struct{}{}:
	default:
	}
	return nil
}

// takePending removes up to limit queued settlements.
func (l *Limiter) takePending(limit int) []settleOp {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := min(len(l.pending), limit)
	if n == 0 {
		return nil
	}
	ops := make([]settleOp, n)
	copy(ops, l.pending)
	l.pending = append(l.pending[:0], l.pending[n:]...)
	return ops
}

// settleBatch caps one pipeline of settlements.
const settleBatch = 256

// settler sends queued settlements: it waits SettleDelay after the first
// one is queued, so that those queued meanwhile share its round trip, then
// sends them all in pipelines.
func (l *Limiter) settler() {
	defer l.wg.Done()
	for {
		select {
		case <-l.stop:
			l.sendPending()
			return
		case <-l.settleWake:
		}
		t := time.NewTimer(l.cfg.SettleDelay)
		select {
		case <-l.stop:
			t.Stop()
			l.sendPending()
			return
		case <-t.C:
		case <-l.flushNow:
			t.Stop()
		}
		l.sendPending()
	}
}

func (l *Limiter) sendPending() {
	for {
		ops := l.takePending(settleBatch)
		if len(ops) == 0 {
			return
		}
		if l.down.Load() {
			l.m.settlesDropped.Add(float64(len(ops)))
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), l.cfg.Timeout+time.Duration(len(ops))*100*time.Microsecond)
			l.exec(ctx, ops)
			cancel()
		}
		l.done.Add(uint64(len(ops)))
	}
}

func hasNoScript(cmds []*redis.Cmd) bool {
	for _, c := range cmds {
		if c != nil && isNoScript(c.Err()) {
			return true
		}
	}
	return false
}

func isNoScript(err error) bool {
	return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT")
}

// Flush waits until every settlement queued before the call has been
// sent (or dropped), or ctx ends. For tests and shutdown.
func (l *Limiter) Flush(ctx context.Context) error {
	target := l.enqueued.Load()
	for l.done.Load() < target {
		select {
		case l.settleWake <- struct{}{}:
		default:
		}
		select {
		case l.flushNow <- struct{}{}:
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Microsecond):
		}
	}
	return nil
}

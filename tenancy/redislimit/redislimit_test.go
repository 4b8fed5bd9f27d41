package redislimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/mtai-dev/mtai/tenancy/ratelimit"
	"github.com/mtai-dev/mtai/tenancy/ratelimit/ratelimittest"
	"github.com/mtai-dev/mtai/tenancy/redislimit/redislimittest"
)

// newTest builds a limiter on addr with a unique prefix, closed at the end.
func newTest(t testing.TB, addr string, cfg Config, o Options) *Limiter {
	t.Helper()
	cfg.URL = "redis://" + addr
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = redislimittest.Prefix(t)
	}
	l, err := New(cfg, o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

func TestSuite(t *testing.T) {
	addr := redislimittest.Addr(t)
	ratelimittest.Run(t, func(t *testing.T, o ratelimittest.Options) ratelimit.Limiter {
		return newTest(t, addr, Config{}, Options{Now: o.Now, Spend: o.Spend})
	})
}

// TestServerClock uses Redis' TIME, as production does.
func TestServerClock(t *testing.T) {
	addr := redislimittest.Addr(t)
	l := newTest(t, addr, Config{}, Options{})
	req := &ratelimit.Request{Tenant: "t1", Buckets: []ratelimit.Bucket{
		{Kind: ratelimit.RequestsPerMinute, Limit: 3}, {Scope: "k9", Kind: ratelimit.TokensPerMinute, Limit: 1000}}, Tokens: 10}
	ctx := context.Background()
	var res ratelimit.Result
	for i := range 3 {
		if err := l.Reserve(ctx, req, &res); err != nil || !res.Allowed || res.States[0].Remaining != int64(2-i) {
			t.Fatalf("request %d: %+v, %v", i+1, res, err)
		}
	}
	if err := l.Reserve(ctx, req, &res); err != nil || res.Allowed || res.Denied != 0 {
		t.Fatalf("request 4: %+v, %v", res, err)
	}
	// 20s per request, minus what refilled since the first one.
	if res.RetryAfter <= 19*time.Second || res.RetryAfter > 20*time.Second {
		t.Errorf("RetryAfter = %v, want just under 20s", res.RetryAfter)
	}
	// Keys share the tenant's hash tag and expire by themselves.
	for _, key := range []string{l.cfg.KeyPrefix + "{t1}:rpm", l.cfg.KeyPrefix + "{t1}:k9:tpm"} {
		ttl, err := l.rdb.PTTL(ctx, key).Result()
		if err != nil || ttl <= 0 || ttl > 61*time.Second {
			t.Errorf("PTTL %s = %v, %v; want (0, 61s]", key, ttl, err)
		}
	}
}

// TestNoScript checks the EVALSHA → EVAL fallback, for the reservation and
// for pipelined settlements, with scripts Redis has never seen.
func TestNoScript(t *testing.T) {
	addr := redislimittest.Addr(t)
	l := newTest(t, addr, Config{}, Options{})
	salt := fmt.Sprintf("\n-- %d", time.Now().UnixNano())
	l.reserve, l.settle = redis.NewScript(reserveSrc+salt), redis.NewScript(settleSrc+salt)
	ctx := context.Background()
	if ok, _ := l.rdb.ScriptExists(ctx, l.reserve.Hash(), l.settle.Hash()).Result(); ok[0] || ok[1] {
		t.Fatalf("scripts already loaded: %v", ok)
	}
	req := &ratelimit.Request{Tenant: "t", Buckets: []ratelimit.Bucket{{Kind: ratelimit.TokensPerMinute, Limit: 100}}, Tokens: 50}
	var res ratelimit.Result
	if err := l.Reserve(ctx, req, &res); err != nil || !res.Allowed || res.States[0].Remaining != 50 {
		t.Fatalf("Reserve: %+v, %v", res, err)
	}
	if err := l.Settle(ctx, req, &res, ratelimit.Used{Tokens: 10}); err != nil {
		t.Fatal(err)
	}
	if err := l.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := l.Reserve(ctx, req, &res); err != nil || !res.Allowed || res.States[0].Remaining != 40 {
		t.Fatalf("after settling 10 of 50: %+v, %v; want 40 left", res, err)
	}
	if ok, _ := l.rdb.ScriptExists(ctx, l.reserve.Hash(), l.settle.Hash()).Result(); !ok[0] || !ok[1] {
		t.Errorf("scripts not cached by Redis after EVAL: %v", ok)
	}
	if got := value(l.m.settlesDropped); got != 0 {
		t.Errorf("%v settlements dropped", got)
	}
}

// TestReplicasExact: three limiters, each with its own pool, 200
// goroutines, one tenant: exactly the limit is admitted, on Redis' clock
// (100 requests per hour refill one every 36s: none during the test).
func TestReplicasExact(t *testing.T) {
	addr := redislimittest.Addr(t)
	prefix := redislimittest.Prefix(t)
	var lims [3]*Limiter
	for i := range lims {
		// Generous timeouts and fail closed: this test is about exactness,
		// and a spurious timeout on a loaded test machine must show as an
		// error, never as an admission by the fallback.
		lims[i] = newTest(t, addr, Config{KeyPrefix: prefix, Timeout: 5 * time.Second, DialTimeout: 2 * time.Second,
			ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, FailClosed: true}, Options{})
	}
	const limit = 100
	var allowed, refused atomic.Int64
	var wg sync.WaitGroup
	for g := range 200 {
		wg.Go(func() {
			req := &ratelimit.Request{Tenant: "hammered", Buckets: []ratelimit.Bucket{{Kind: ratelimit.RequestsPerHour, Limit: limit}}}
			var res ratelimit.Result
			for range 3 {
				if err := lims[g%3].Reserve(context.Background(), req, &res); err != nil {
					t.Error(err)
					return
				}
				if res.Allowed {
					allowed.Add(1)
				} else {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if allowed.Load() != limit || refused.Load() != 600-limit {
		t.Errorf("admitted %d, refused %d; want %d, %d", allowed.Load(), refused.Load(), limit, 600-limit)
	}
}

// faultCase runs a load through a proxy, cuts Redis off, restores it.
type faultCase struct {
	name       string
	mode       redislimittest.Mode
	failClosed bool
}

func TestRedisOutage(t *testing.T) {
	addr := redislimittest.Addr(t)
	for _, fc := range []faultCase{
		{"fail open, connection refused", redislimittest.Refuse, false},
		{"fail open, blackhole", redislimittest.Blackhole, false},
		{"fail closed, connection refused", redislimittest.Refuse, true},
		{"fail closed, blackhole", redislimittest.Blackhole, true},
	} {
		t.Run(fc.name, func(t *testing.T) { testOutage(t, addr, fc) })
	}
}

func testOutage(t *testing.T, addr string, fc faultCase) {
	proxy := redislimittest.NewProxy(t, addr)
	core, logs := observer.New(zap.InfoLevel)
	reg := prometheus.NewRegistry()
	const timeout = 150 * time.Millisecond
	l := newTest(t, proxy.Addr(), Config{Timeout: timeout, FailClosed: fc.failClosed, Replicas: 4, ProbeInterval: 20 * time.Millisecond, MaxProbeInterval: 100 * time.Millisecond},
		Options{Logger: zap.New(core), Registerer: reg})

	type outcome struct{ redis, fallback, unavailable, other atomic.Int64 }
	var phase [3]outcome // before, during, after the outage
	var cur atomic.Int32
	var slowest atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			req := &ratelimit.Request{Tenant: fmt.Sprint("load", g), Buckets: []ratelimit.Bucket{{Kind: ratelimit.RequestsPerMinute, Limit: 1_000_000}}}
			var res ratelimit.Result
			for {
				select {
				case <-stop:
					return
				default:
				}
				p := &phase[cur.Load()]
				start := time.Now()
				err := l.Reserve(context.Background(), req, &res)
				if d := int64(time.Since(start)); d > slowest.Load() {
					slowest.Store(d) // racy max, good enough: only grows
				}
				switch {
				case err == nil && res.Allowed && !res.Fallback:
					p.redis.Add(1)
				case err == nil && res.Allowed && res.Fallback:
					p.fallback.Add(1)
				case errors.Is(err, ratelimit.ErrUnavailable):
					p.unavailable.Add(1)
				default:
					p.other.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)
	cur.Store(1)
	proxy.SetMode(fc.mode)
	time.Sleep(500 * time.Millisecond)
	if l.Up() {
		t.Error("limiter still up during the outage")
	}
	if v := value(l.m.up); v != 0 {
		t.Errorf("mtai_ratelimit_redis_up = %v during the outage", v)
	}
	// The fallback enforces the fair share: 8 of a limit of 32 with 4 replicas.
	if !fc.failClosed {
		req := &ratelimit.Request{Tenant: "fresh", Buckets: []ratelimit.Bucket{{Kind: ratelimit.RequestsPerMinute, Limit: 32}}}
		n := 0
		var res ratelimit.Result
		for range 20 {
			if err := l.Reserve(context.Background(), req, &res); err == nil && res.Allowed {
				n++
			}
		}
		if n != 8 || res.States[0].Limit != 8 {
			t.Errorf("fallback admitted %d of 20 (limit shown %d); want the fair share 8", n, res.States[0].Limit)
		}
	}
	proxy.SetMode(redislimittest.Forward)
	restored := time.Now()
	for !l.Up() && time.Since(restored) < 8*time.Second {
		time.Sleep(10 * time.Millisecond)
	}
	if !l.Up() {
		t.Fatal("limiter did not recover within 8s of Redis coming back")
	}
	t.Logf("recovered %v after Redis came back", time.Since(restored).Round(time.Millisecond))
	cur.Store(2)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()

	before, during, after := &phase[0], &phase[1], &phase[2]
	t.Logf("before: %d redis; during: %d redis, %d fallback, %d unavailable; after: %d redis, %d fallback; slowest call %v",
		before.redis.Load(), during.redis.Load(), during.fallback.Load(), during.unavailable.Load(),
		after.redis.Load(), after.fallback.Load(), time.Duration(slowest.Load()))
	// Calls in flight when the cut came may be counted before it (one per goroutine).
	if before.redis.Load() == 0 || before.other.Load() != 0 || before.fallback.Load()+before.unavailable.Load() > 8 {
		t.Errorf("before the outage: want Redis decisions only")
	}
	if fc.failClosed {
		if during.unavailable.Load() == 0 || during.fallback.Load() != 0 {
			t.Errorf("fail closed: %d unavailable, %d fallback during the outage", during.unavailable.Load(), during.fallback.Load())
		}
	} else if during.fallback.Load() == 0 || during.unavailable.Load() != 0 {
		t.Errorf("fail open: %d fallback, %d unavailable during the outage", during.fallback.Load(), during.unavailable.Load())
	}
	if n := during.other.Load() + after.other.Load(); n != 0 {
		t.Errorf("%d calls failed otherwise", n)
	}
	if after.redis.Load() == 0 {
		t.Error("no Redis decision after recovery")
	}
	// No call waits much beyond its timeout (scheduling slack under -race).
	if d := time.Duration(slowest.Load()); d > timeout+150*time.Millisecond {
		t.Errorf("slowest Reserve took %v, want about %v at most", d, timeout)
	}
	if logs.FilterMessageSnippet("redis unreachable").Len() != 1 || logs.FilterMessageSnippet("reachable again").Len() != 1 {
		t.Errorf("want one log line for the outage and one for the recovery, got %v", logs.All())
	}
	if v := value(l.m.outages); v != 1 {
		t.Errorf("outages = %v, want 1", v)
	}
	mode := "fail_open"
	if fc.failClosed {
		mode = "fail_closed"
	}
	if v := value(l.m.degraded.WithLabelValues(mode).(prometheus.Metric)); v == 0 {
		t.Errorf("mtai_ratelimit_degraded_total{mode=%q} = 0", mode)
	}
	if mfs, err := reg.Gather(); err != nil || len(mfs) != 4 {
		t.Errorf("registry: %d metric families, %v; want 4", len(mfs), err)
	}
}

// TestStartWithoutRedis: an unreachable Redis at start is an outage, not a
// failure to start.
func TestStartWithoutRedis(t *testing.T) {
	proxy := redislimittest.NewProxy(t, "127.0.0.1:1")
	proxy.SetMode(redislimittest.Refuse)
	start := time.Now()
	l := newTest(t, proxy.Addr(), Config{}, Options{})
	if l.Up() {
		t.Fatal("Up with no Redis")
	}
	var res ratelimit.Result
	req := &ratelimit.Request{Tenant: "t", Buckets: []ratelimit.Bucket{{Kind: ratelimit.RequestsPerMinute, Limit: 1}}}
	if err := l.Reserve(context.Background(), req, &res); err != nil || !res.Allowed || !res.Fallback {
		t.Fatalf("Reserve: %+v, %v; want a fallback admission", res, err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("New + Reserve took %v", d)
	}
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "REDIS_URL"},
		{Config{URL: "http://x"}, "REDIS_URL"},
		{Config{URL: "redis://x", Replicas: -1}, "MTAI_REPLICAS"},
		{Config{URL: "redis://x", KeyPrefix: "a{b"}, "key_prefix"},
	} {
		cfg := tc.cfg
		cfg.SetDefaults()
		err := cfg.Validate()
		if err == nil || !contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
	cfg := Config{URL: "redis://127.0.0.1:6379/0"}
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil || cfg.Timeout != 150*time.Millisecond || cfg.Replicas != 1 {
		t.Errorf("defaults: %+v, %v", cfg, err)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && (s[:len(sub)] == sub || contains(s[1:], sub)))
}

// cpuTime is the process' user + system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkReserve measures one reservation (and settlement) on Redis:
// ns/op is the latency, cpu-ns/op the gateway process' CPU per request
// (Redis' own CPU not included).
func BenchmarkReserve(b *testing.B) {
	addr := redislimittest.Addr(b)
	for _, bc := range []struct {
		name     string
		parallel bool
		settle   bool // usage differs from the estimate: a settlement per request
	}{
		{"serial", false, false},
		{"serial+settle", false, true},
		{"parallel", true, false},
		{"parallel+settle", true, true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			l := newTest(b, addr, Config{}, Options{})
			req := ratelimit.Request{Tenant: "bench", TenantID: 1, Buckets: []ratelimit.Bucket{
				{Kind: ratelimit.RequestsPerMinute, Limit: 1 << 40}, {Kind: ratelimit.RequestsPerHour, Limit: 1 << 40},
				{Kind: ratelimit.TokensPerMinute, Limit: 1 << 40}}, Tokens: 1200, Budget: 1 << 50, Cost: 700}
			used := ratelimit.Used{Tokens: 1200, Cost: 700}
			if bc.settle {
				used = ratelimit.Used{Tokens: 900, Cost: 500}
			}
			b.ReportAllocs()
			cpu := cpuTime()
			one := func(r *ratelimit.Request, res *ratelimit.Result) {
				if err := l.Reserve(context.Background(), r, res); err != nil || !res.Allowed {
					b.Fatalf("%+v %v", res, err)
				}
				_ = l.Settle(context.Background(), r, res, used)
			}
			if bc.parallel {
				b.SetParallelism(8)
				b.RunParallel(func(pb *testing.PB) {
					r := req
					var res ratelimit.Result
					for pb.Next() {
						one(&r, &res)
					}
				})
			} else {
				var res ratelimit.Result
				for b.Loop() {
					one(&req, &res)
				}
			}
			_ = l.Flush(context.Background())
			b.ReportMetric(float64(cpuTime()-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// value reads a counter's or gauge's value.
func value(c prometheus.Metric) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	if m.Gauge != nil {
		return m.Gauge.GetValue()
	}
	return m.Counter.GetValue()
}

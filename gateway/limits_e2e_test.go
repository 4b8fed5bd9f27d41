package gateway

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
	"github.com/mtai-dev/mtai/tenancy/ratelimit/ratelimittest"
	"github.com/mtai-dev/mtai/tenancy/redislimit"
	"github.com/mtai-dev/mtai/tenancy/redislimit/redislimittest"
)

// End-to-end tests of limits across replicas: several gateway.Server
// instances in this process, each on its own loopback port and with its
// own Redis limiter (its own connection pool), sharing the local Redis
// under a key prefix of their own. Clients are real HTTP clients.

// keyring resolves several API keys to principals.
type keyring map[string]*tenancy.Principal

func (k keyring) ResolveKey(_ context.Context, key []byte) (*tenancy.Principal, error) {
	if p, ok := k[string(key)]; ok {
		return p, nil
	}
	return nil, tenancy.ErrUnauthenticated
}

type replicas struct {
	urls   []string
	lims   []*redislimit.Limiter
	prefix string
	rdb    *redis.Client
}

// exactCfg is the limiter configuration of the exactness tests: generous
// timeouts and fail closed, so that a loaded test machine can never turn a
// slow answer into a fallback admission (it would show as a 503 instead).
// The outage tests check the tight timeouts.
var exactCfg = redislimit.Config{Timeout: 5 * time.Second, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second,
	WriteTimeout: 2 * time.Second, FailClosed: true}

// startReplicas serves n gateways whose models route to up, limited in the
// Redis at addr (directly, or through cfg.URL when set).
func startReplicas(t *testing.T, n int, up providers.Provider, keys tenancy.KeyResolver, cfg redislimit.Config, o redislimit.Options) *replicas {
	t.Helper()
	addr := redislimittest.Addr(t)
	rs := &replicas{prefix: redislimittest.Prefix(t), rdb: redis.NewClient(&redis.Options{Addr: addr})}
	t.Cleanup(func() { _ = rs.rdb.Close() })
	if cfg.URL == "" {
		cfg.URL = "redis://" + addr
	}
	cfg.KeyPrefix = rs.prefix
	for range n {
		lim, err := redislimit.New(cfg, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = lim.Close() })
		s := limitServer(t, up, keys, lim)
		rs.urls = append(rs.urls, start(t, s))
		rs.lims = append(rs.lims, lim)
	}
	return rs
}

// flush waits for every replica's queued settlements.
func (rs *replicas) flush(t *testing.T) {
	t.Helper()
	for _, l := range rs.lims {
		if err := l.Flush(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
}

// spend reads a tenant's spend counter for July 2026 (the frozen clock's month).
func (rs *replicas) spend(t *testing.T, tenantID int64) int64 {
	t.Helper()
	v, err := rs.rdb.Get(context.Background(), rs.prefix+"{"+strconv.FormatInt(tenantID, 10)+"}:spend:202607").Int64()
	if err != nil {
		t.Fatalf("spend counter: %v", err)
	}
	return v
}

// answer is what one request got.
type answer struct {
	status  int
	latency time.Duration
	header  map[string]string
	body    []byte
}

var keptHeaders = []string{hLimitRequests, hRemainingRequests, hResetRequests, hLimitTokens, hRemainingTokens, hResetTokens,
	hRetryAfterMs, "Retry-After", "X-Should-Retry"}

func newClient(conns int) *fasthttp.Client {
	return &fasthttp.Client{MaxConnsPerHost: conns, ReadTimeout: 10 * time.Second, WriteTimeout: 10 * time.Second,
		MaxIdemponentCallAttempts: 1}
}

func post(c *fasthttp.Client, url, key, body string) answer {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	req.Header.SetMethod("POST")
	req.SetRequestURI(url + "/v1/chat/completions")
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.SetContentType("application/json")
	req.SetBodyString(body)
	start := time.Now()
	err := c.Do(req, resp)
	a := answer{latency: time.Since(start), header: map[string]string{}}
	if err != nil {
		a.status = -1
		a.body = []byte(err.Error())
		return a
	}
	a.status = resp.StatusCode()
	for _, h := range keptHeaders {
		if v := resp.Header.Peek(h); v != nil {
			a.header[h] = string(v)
		}
	}
	a.body = append([]byte(nil), resp.Body()...)
	return a
}

// hammer sends clients×each requests, client g to urls[g%len(urls)], all at once.
func hammer(urls []string, clients, each int, key, body string) []answer {
	c := newClient(clients)
	out := make([]answer, clients*each)
	var wg sync.WaitGroup
	startGate := make(chan struct{})
	for g := range clients {
		wg.Go(func() {
			<-startGate
			for i := range each {
				out[g*each+i] = post(c, urls[g%len(urls)], key, body)
			}
		})
	}
	close(startGate)
	wg.Wait()
	return out
}

// tally counts statuses and checks every refusal's shape.
func tally(t *testing.T, answers []answer, typ, code string, check func(a answer)) map[int]int {
	t.Helper()
	counts := map[int]int{}
	bad := 0
	for _, a := range answers {
		counts[a.status]++
		if a.status != 429 {
			continue
		}
		gotTyp, gotCode, _ := errorOf(t, a.body)
		if gotTyp != typ || gotCode != code {
			if bad++; bad <= 3 {
				t.Errorf("429 with type %q code %q, want %q %q: %s", gotTyp, gotCode, typ, code, a.body)
			}
		}
		if check != nil {
			check(a)
		}
	}
	return counts
}

func wantInt(t *testing.T, a answer, h string, want int64) {
	t.Helper()
	if got := a.header[h]; got != strconv.FormatInt(want, 10) {
		t.Errorf("%s = %q, want %d", h, got, want)
	}
}

func checkRetry(t *testing.T, a answer, wantMs int64) {
	t.Helper()
	ra, err1 := strconv.Atoi(a.header["Retry-After"])
	ms, err2 := strconv.ParseInt(a.header[hRetryAfterMs], 10, 64)
	if err1 != nil || err2 != nil || ra < 1 || ms < 1 || int64(ra) != max(1, (ms+999)/1000) {
		t.Errorf("Retry-After %q, retry-after-ms %q: want integers, Retry-After = ⌈ms/1000⌉ ≥ 1", a.header["Retry-After"], a.header[hRetryAfterMs])
	}
	if wantMs > 0 && ms != wantMs {
		t.Errorf("retry-after-ms = %d, want %d", ms, wantMs)
	}
}

// TestE2ERequestsExact: 200 concurrent clients, three replicas, one
// tenant: exactly N requests per minute are admitted.
func TestE2ERequestsExact(t *testing.T) {
	const limit = 137
	up := &usageUpstream{answer: answerJSON, usage: providers.Usage{PromptTokens: 5, CompletionTokens: 1, TotalTokens: 6}}
	body, _, _ := chatBody("free", "exactly once", 10, false)

	t.Run("requests per minute, frozen clock", func(t *testing.T) {
		// The clock does not move: nothing refills, so N is exact.
		clock := ratelimittest.NewClock(limitStart)
		keys := keyring{testKey: {Tenant: "t1", TenantID: 101, Policy: &tenancy.Policy{RequestsPerMinute: limit}}}
		rs := startReplicas(t, 3, up, keys, exactCfg, redislimit.Options{Now: clock.Now})
		answers := hammer(rs.urls, 200, 3, testKey, body)
		counts := tally(t, answers, "requests", "rate_limit_exceeded", func(a answer) {
			wantInt(t, a, hLimitRequests, limit)
			wantInt(t, a, hRemainingRequests, 0)
			checkRetry(t, a, (60_000+limit-1)/limit) // one request refills in 60s/137
			if a.header[hResetRequests] != "1m0s" {
				t.Errorf("reset-requests %q, want 1m0s", a.header[hResetRequests])
			}
		})
		if counts[200] != limit || counts[429] != 600-limit {
			t.Errorf("statuses %v; want exactly %d × 200 and %d × 429", counts, limit, 600-limit)
		}
		// The admitted ones saw every remaining value from 136 down to 0 once.
		seen := map[string]int{}
		for _, a := range answers {
			if a.status == 200 {
				seen[a.header[hRemainingRequests]]++
			}
		}
		for i := range limit {
			if seen[strconv.Itoa(i)] != 1 {
				t.Errorf("remaining-requests %d seen %d times, want once", i, seen[strconv.Itoa(i)])
			}
		}
	})

	t.Run("requests per hour, Redis clock", func(t *testing.T) {
		// Redis' own clock, as in production: 100 per hour refill one every
		// 36s, far longer than the test.
		keys := keyring{testKey: {Tenant: "t1", TenantID: 102, Policy: &tenancy.Policy{RequestsPerHour: 100}}}
		rs := startReplicas(t, 3, up, keys, exactCfg, redislimit.Options{})
		counts := tally(t, hammer(rs.urls, 200, 3, testKey, body), "requests", "rate_limit_exceeded", func(a answer) {
			wantInt(t, a, hLimitRequests, 100)
			wantInt(t, a, hRemainingRequests, 0)
			checkRetry(t, a, 0)
		})
		if counts[200] != 100 || counts[429] != 500 {
			t.Errorf("statuses %v; want exactly 100 × 200 and 500 × 429", counts)
		}
	})
}

// TestE2ETokensExact: tokens per minute, three replicas, 200 clients. The
// upstream reports exactly the estimate, so settlements change nothing and
// the count is exact.
func TestE2ETokensExact(t *testing.T) {
	body, prompt, est := chatBody("free", "count my tokens please", 200, false)
	up := &usageUpstream{answer: answerJSON, usage: providers.Usage{PromptTokens: prompt, CompletionTokens: 200, TotalTokens: est}}
	const k = 40
	limit := k*est + est/2
	clock := ratelimittest.NewClock(limitStart)
	keys := keyring{testKey: {Tenant: "t1", TenantID: 103, Policy: &tenancy.Policy{TokensPerMinute: limit}}}
	rs := startReplicas(t, 3, up, keys, exactCfg, redislimit.Options{Now: clock.Now})
	answers := hammer(rs.urls, 200, 2, testKey, body)
	missing := est - est/2
	counts := tally(t, answers, "tokens", "rate_limit_exceeded", func(a answer) {
		wantInt(t, a, hLimitTokens, limit)
		wantInt(t, a, hRemainingTokens, est/2)
		checkRetry(t, a, (missing*60_000+limit-1)/limit)
		if _, ok := a.header[hLimitRequests]; ok {
			t.Errorf("request headers without a request bucket")
		}
	})
	if counts[200] != k || counts[429] != 400-k {
		t.Errorf("statuses %v; want exactly %d × 200 and %d × 429", counts, k, 400-k)
	}
}

// TestE2EBudget: a monthly budget across three replicas.
func TestE2EBudget(t *testing.T) {
	body, prompt, _ := chatBody("priced", "what does this cost?", 300, false)
	price := testPrices(t)
	estCost, _ := price.Cost("priced", providers.Usage{PromptTokens: prompt, CompletionTokens: 300})
	const k = 25
	budget := tenancy.MicroUSD(k)*estCost + estCost/2

	t.Run("usage as estimated: exact", func(t *testing.T) {
		up := &usageUpstream{answer: answerJSON, usage: providers.Usage{PromptTokens: prompt, CompletionTokens: 300, TotalTokens: prompt + 300}}
		clock := ratelimittest.NewClock(limitStart)
		keys := keyring{testKey: {Tenant: "t1", TenantID: 104, Policy: &tenancy.Policy{MonthlyBudget: budget}}}
		rs := startReplicas(t, 3, up, keys, exactCfg, redislimit.Options{Now: clock.Now, Spend: &ratelimittest.Spend{}})
		counts := tally(t, hammer(rs.urls, 200, 2, testKey, body), "insufficient_quota", "insufficient_quota", func(a answer) {
			if a.header["X-Should-Retry"] != "false" {
				t.Errorf("x-should-retry = %q, want false", a.header["X-Should-Retry"])
			}
		})
		if counts[200] != k || counts[429] != 400-k {
			t.Errorf("statuses %v; want exactly %d × 200 and %d × 429", counts, k, 400-k)
		}
		rs.flush(t)
		if got := rs.spend(t, 104); got != int64(k)*int64(estCost) {
			t.Errorf("spend counter %d, want %d", got, int64(k)*int64(estCost))
		}
	})

	t.Run("usage below the estimate: refunds, never above the budget", func(t *testing.T) {
		actual := providers.Usage{PromptTokens: prompt / 2, CompletionTokens: 40, TotalTokens: prompt/2 + 40}
		actualCost, _ := price.Cost("priced", actual)
		up := &usageUpstream{answer: answerJSON, usage: actual}
		clock := ratelimittest.NewClock(limitStart)
		keys := keyring{testKey: {Tenant: "t1", TenantID: 105, Policy: &tenancy.Policy{MonthlyBudget: budget}}}
		rs := startReplicas(t, 3, up, keys, exactCfg, redislimit.Options{Now: clock.Now})
		// Two bursts: the second one finds the first one's refunds.
		counts := tally(t, hammer(rs.urls, 200, 1, testKey, body), "insufficient_quota", "insufficient_quota", nil)
		rs.flush(t)
		for st, n := range tally(t, hammer(rs.urls, 200, 1, testKey, body), "insufficient_quota", "insufficient_quota", nil) {
			counts[st] += n
		}
		rs.flush(t)
		spent := rs.spend(t, 105)
		t.Logf("admitted %d (%d at the estimate), spent %d of %d", counts[200], k, spent, budget)
		if spent > int64(budget) || spent != int64(counts[200])*int64(actualCost) {
			t.Errorf("spent %d for %d requests of %d; want exactly their cost, at most the budget %d", spent, counts[200], actualCost, budget)
		}
		if counts[200] <= k {
			t.Errorf("refunds admitted no more requests: %d", counts[200])
		}
	})

	t.Run("usage above the estimate: over by one settlement at most", func(t *testing.T) {
		actual := providers.Usage{PromptTokens: 3 * prompt, CompletionTokens: 300, TotalTokens: 3*prompt + 300}
		actualCost, _ := price.Cost("priced", actual)
		up := &usageUpstream{answer: answerJSON, usage: actual}
		clock := ratelimittest.NewClock(limitStart)
		keys := keyring{testKey: {Tenant: "t1", TenantID: 106, Policy: &tenancy.Policy{MonthlyBudget: budget}}}
		rs := startReplicas(t, 3, up, keys, exactCfg, redislimit.Options{Now: clock.Now})
		c := newClient(1)
		admitted := 0
		for i := range 100 {
			a := post(c, rs.urls[i%3], testKey, body)
			rs.flush(t) // a sequential client: the previous settlement is in
			if a.status == 429 {
				break
			}
			admitted++
		}
		spent := rs.spend(t, 106)
		t.Logf("admitted %d, spent %d of %d (one request: estimated %d, cost %d)", admitted, spent, budget, estCost, actualCost)
		if over := spent - int64(budget); over > int64(actualCost-estCost) || admitted == 0 {
			t.Errorf("spent %d of %d after %d requests: over by %d, more than one settlement's difference %d",
				spent, budget, admitted, over, actualCost-estCost)
		}
	})
}

// TestE2ESequentialRemaining: the remaining values a sequential client sees
// decrease exactly, settlements included, whichever replica answers.
func TestE2ESequentialRemaining(t *testing.T) {
	body, _, est := chatBody("free", "one at a time", 64, false)
	up := &usageUpstream{answer: answerJSON, usage: providers.Usage{PromptTokens: 9, CompletionTokens: 21, TotalTokens: 30}}
	clock := ratelimittest.NewClock(limitStart)
	keys := keyring{testKey: {Tenant: "t1", TenantID: 107, Policy: &tenancy.Policy{RequestsPerMinute: 50, TokensPerMinute: 100_000}}}
	rs := startReplicas(t, 3, up, keys, exactCfg, redislimit.Options{Now: clock.Now})
	c := newClient(1)
	for i := int64(1); i <= 20; i++ {
		a := post(c, rs.urls[i%3], testKey, body)
		if a.status != 200 {
			t.Fatalf("request %d: %d %s", i, a.status, a.body)
		}
		wantInt(t, a, hRemainingRequests, 50-i)
		wantInt(t, a, hRemainingTokens, 100_000-30*(i-1)-est)
		rs.flush(t)
	}
}

// TestE2ERedisOutage cuts Redis off (through a TCP proxy) under load from
// 50 clients on two replicas, then restores it.
func TestE2ERedisOutage(t *testing.T) {
	for _, tc := range []struct {
		name       string
		mode       redislimittest.Mode
		failClosed bool
	}{
		{"fail open, blackhole", redislimittest.Blackhole, false},
		{"fail closed, blackhole", redislimittest.Blackhole, true},
		{"fail open, refused", redislimittest.Refuse, false},
		{"fail closed, refused", redislimittest.Refuse, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			proxy := redislimittest.NewProxy(t, redislimittest.Addr(t))
			up := &usageUpstream{answer: answerJSON, usage: providers.Usage{PromptTokens: 5, CompletionTokens: 1, TotalTokens: 6}}
			const fairKey = "sk-fair-share-key"
			keys := keyring{
				testKey: {Tenant: "load", TenantID: 108, Policy: &tenancy.Policy{RequestsPerMinute: 1 << 40, TokensPerMinute: 1 << 40}},
				fairKey: {Tenant: "fair", TenantID: 109, Policy: &tenancy.Policy{RequestsPerMinute: 40}},
			}
			const timeout = 100 * time.Millisecond
			rs := startReplicas(t, 2, up, keys, redislimit.Config{URL: "redis://" + proxy.Addr(), Timeout: timeout,
				FailClosed: tc.failClosed, Replicas: 2, ProbeInterval: 25 * time.Millisecond, MaxProbeInterval: 100 * time.Millisecond},
				redislimit.Options{})
			body, _, _ := chatBody("free", "keep going", 10, false)

			type phaseCount struct{ ok, unavailable, other atomic.Int64 }
			var phases [3]phaseCount
			var phase atomic.Int32
			var slowest atomic.Int64
			stop := make(chan struct{})
			c := newClient(64)
			var wg sync.WaitGroup
			for g := range 50 {
				wg.Go(func() {
					for {
						select {
						case <-stop:
							return
						default:
						}
						p := &phases[phase.Load()]
						a := post(c, rs.urls[g%2], testKey, body)
						for {
							s := slowest.Load()
							if int64(a.latency) <= s || slowest.CompareAndSwap(s, int64(a.latency)) {
								break
							}
						}
						switch {
						case a.status == 200:
							p.ok.Add(1)
						case a.status == 503 && string(a.body) != "" && a.header["Retry-After"] == "1":
							p.unavailable.Add(1)
						default:
							p.other.Add(1)
						}
						time.Sleep(2 * time.Millisecond)
					}
				})
			}
			time.Sleep(300 * time.Millisecond)
			phase.Store(1)
			proxy.SetMode(tc.mode)
			time.Sleep(600 * time.Millisecond)
			for i, l := range rs.lims {
				if l.Up() {
					t.Errorf("replica %d: limiter still up during the outage", i)
				}
			}
			if !tc.failClosed {
				// Each replica enforces its fair share: 40 per minute ÷ 2 replicas.
				fc := newClient(1)
				n := 0
				for range 30 {
					if a := post(fc, rs.urls[0], fairKey, body); a.status == 200 {
						n++
						if a.header[hLimitRequests] != "20" {
							t.Errorf("fallback limit-requests %q, want 20", a.header[hLimitRequests])
						}
					}
				}
				if n != 20 {
					t.Errorf("fallback admitted %d of 30, want the fair share 20", n)
				}
			}
			proxy.SetMode(redislimittest.Forward)
			// Recovery takes a probe interval, or up to about a second after
			// refused connections: go-redis then stops dialing and tries again
			// once a second. A loaded (-race) machine may take longer.
			restored := time.Now()
			for (!rs.lims[0].Up() || !rs.lims[1].Up()) && time.Since(restored) < 8*time.Second {
				time.Sleep(10 * time.Millisecond)
			}
			if !rs.lims[0].Up() || !rs.lims[1].Up() {
				t.Fatal("limiters did not recover within 8s of Redis coming back")
			}
			t.Logf("recovered %v after Redis came back", time.Since(restored).Round(time.Millisecond))
			phase.Store(2)
			time.Sleep(300 * time.Millisecond)
			close(stop)
			wg.Wait()

			b, d, a := &phases[0], &phases[1], &phases[2]
			t.Logf("before: %d ok; during: %d ok, %d unavailable, %d other; after: %d ok, %d other; slowest %v",
				b.ok.Load(), d.ok.Load(), d.unavailable.Load(), d.other.Load(), a.ok.Load(), a.other.Load(), time.Duration(slowest.Load()))
			if b.ok.Load() == 0 || a.ok.Load() == 0 || b.other.Load()+d.other.Load()+a.other.Load() != 0 {
				t.Errorf("want only 200s before and after (and 200 or 503 during)")
			}
			if tc.failClosed && d.unavailable.Load() == 0 {
				t.Error("fail closed: no 503 during the outage")
			}
			if !tc.failClosed && d.unavailable.Load() != 0 {
				t.Errorf("fail open: %d × 503 during the outage", d.unavailable.Load())
			}
			// Requests in flight when Redis went silent waited for the timeout, no longer.
			if s := time.Duration(slowest.Load()); s > timeout+400*time.Millisecond {
				t.Errorf("slowest request took %v; the limiter's timeout is %v", s, timeout)
			}
		})
	}
}

package billing_test

import (
	"context"
	"fmt"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/store/postgres"
	"github.com/mtai-dev/mtai/store/storetest"
	"github.com/mtai-dev/mtai/tenancy/redislimit/redislimittest"
)

// The meter against the local PostgreSQL (a database per test), through a
// TCP proxy that the tests cut to simulate an outage of the database.

// pgEnv is a migrated test database reached directly (for checks) and
// through a proxy (for the meter).
type pgEnv struct {
	direct  *postgres.DB
	proxy   *redislimittest.Proxy // a plain TCP proxy; its modes cut the connection
	viaDSN  string
	journal string
}

func newPGEnv(t *testing.T) *pgEnv {
	t.Helper()
	dsn := storetest.NewPostgresDatabase(t)
	direct, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	if err := direct.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	p := redislimittest.NewProxy(t, u.Host)
	u.Host = p.Addr()
	q := u.Query()
	q.Set("connect_timeout", "2")
	u.RawQuery = q.Encode()
	return &pgEnv{direct: direct, proxy: p, viaDSN: u.String(), journal: t.TempDir()}
}

// store opens a connection pool through the proxy.
func (e *pgEnv) store(t *testing.T) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(t.Context(), e.viaDSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func (e *pgEnv) meter(t *testing.T, store billing.UsageWriter) *billing.Meter {
	t.Helper()
	m, err := billing.NewMeter(store, billing.MeterConfig{Dir: e.journal, WriteTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// rows returns the number of usage rows, of distinct ids, and the sum of
// the rollups' requests.
func (e *pgEnv) rows(t *testing.T) (rows, distinct, rolled int64) {
	t.Helper()
	err := e.direct.Pool().QueryRow(t.Context(), `SELECT count(*), count(DISTINCT id),
		(SELECT COALESCE(sum(requests), 0)::BIGINT FROM usage_hourly) FROM usage_events`).Scan(&rows, &distinct, &rolled)
	if err != nil {
		t.Fatal(err)
	}
	return rows, distinct, rolled
}

// steadyLoad records about rate events per second from 4 goroutines until
// stop is closed; it returns how many Record calls it made.
func steadyLoad(m *billing.Meter, rate int, stop <-chan struct{}) func() int64 {
	var n atomic.Int64
	var wg sync.WaitGroup
	const workers = 4
	for w := range workers {
		wg.Go(func() {
			tick := time.NewTicker(10 * time.Millisecond)
			defer tick.Stop()
			per := max(rate/workers/100, 1)
			for i := 0; ; {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				for range per {
					e := m.NewEvent()
					e.RequestID = fmt.Sprintf("w%d-%d", w, i)
					e.TenantID, e.Tenant, e.Endpoint, e.Model, e.UpstreamModel = int64(1+i%3), "t", "chat_completions", "gpt-4o", "gpt-4o"
					e.Usage, e.Status, e.Latency = providers.Usage{PromptTokens: 100, CompletionTokens: 20, CachedTokens: 50}, 200, time.Duration(i%2000)*time.Millisecond
					m.Record(e)
					n.Add(1)
					i++
				}
			}
		})
	}
	return func() int64 { wg.Wait(); return n.Load() }
}

func flushWithin(t *testing.T, m *billing.Meter, d time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush = %v", err)
	}
}

// TestMeterPostgresOutage: under steady load, the database connection is
// cut for 30 seconds (3 with -short), then restored; every event recorded
// is in usage_events once, and in the rollups once.
func TestMeterPostgresOutage(t *testing.T) {
	outage := 30 * time.Second
	if testing.Short() {
		outage = 3 * time.Second
	}
	env := newPGEnv(t)
	m := env.meter(t, env.store(t))
	stop := make(chan struct{})
	wait := steadyLoad(m, 2000, stop)

	time.Sleep(2 * time.Second)
	env.proxy.SetMode(redislimittest.Refuse)
	time.Sleep(200 * time.Millisecond) // a commit in flight at the cut may land
	before, _, _ := env.rows(t)
	t.Logf("database cut at %d rows; for %v", before, outage)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	heapAtCut := ms.HeapAlloc
	time.Sleep(outage - 200*time.Millisecond)
	during, _, _ := env.rows(t)
	runtime.ReadMemStats(&ms)
	recordedAtRestore := m.Stats().Recorded
	env.proxy.SetMode(redislimittest.Forward)
	t.Logf("restored: %d rows (%d during the outage, which the meter could not reach); %d events recorded; heap %d → %d KiB",
		during, during-before, recordedAtRestore, heapAtCut>>10, ms.HeapAlloc>>10)
	time.Sleep(2 * time.Second)
	close(stop)
	calls := wait()
	flushWithin(t, m, time.Minute)
	closeCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Close(closeCtx); err != nil {
		t.Fatalf("Close = %v", err)
	}

	st := m.Stats()
	rows, distinct, rolled := env.rows(t)
	t.Logf("%d Record calls, %d recorded, %d lost; %d rows (%d distinct), rollups count %d; %d failed writes retried",
		calls, st.Recorded, st.Lost, rows, distinct, rolled, st.WriteErrors)
	if during != before {
		t.Errorf("rows changed during the outage (%d → %d): the cut did not cut", before, during)
	}
	if st.Recorded != calls || st.Lost != 0 {
		t.Errorf("recorded %d of %d calls (%d lost)", st.Recorded, calls, st.Lost)
	}
	if rows != calls || distinct != rows || rolled != rows {
		t.Errorf("%d rows (%d distinct, rollups %d) for %d events recorded", rows, distinct, rolled, calls)
	}
	if st.WriteErrors == 0 {
		t.Error("no write failed during the outage")
	}
}

// TestMeterPostgresCloseUnderLoad: Close while requests keep coming writes
// every event recorded before it; those recorded after are refused,
// counted and logged (Lost), never silently dropped.
func TestMeterPostgresCloseUnderLoad(t *testing.T) {
	env := newPGEnv(t)
	m := env.meter(t, env.store(t))
	stop := make(chan struct{})
	wait := steadyLoad(m, 5000, stop)
	time.Sleep(time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatalf("Close under load = %v", err)
	}
	time.Sleep(50 * time.Millisecond)
	close(stop)
	calls := wait()
	st := m.Stats()
	rows, distinct, rolled := env.rows(t)
	t.Logf("%d Record calls: %d recorded before Close, %d after (lost, logged); %d rows", calls, st.Recorded, st.Lost, rows)
	if rows != st.Recorded || distinct != rows || rolled != rows {
		t.Errorf("%d rows (%d distinct, rollups %d), want the %d recorded", rows, distinct, rolled, st.Recorded)
	}
	if st.Recorded+st.Lost != calls {
		t.Errorf("recorded %d + lost %d != %d calls", st.Recorded, st.Lost, calls)
	}
}

// TestMeterPostgresCrash: a meter abandoned under load without Close (its
// writer killed mid-batch); a new meter on the same journal directory
// writes the rest, and nothing twice.
func TestMeterPostgresCrash(t *testing.T) {
	env := newPGEnv(t)
	store := env.store(t)
	m := env.meter(t, store)
	stop := make(chan struct{})
	wait := steadyLoad(m, 5000, stop)
	time.Sleep(1500 * time.Millisecond)
	m.Crash()
	close(stop)
	wait()
	st := m.Stats()
	atCrash, _, _ := env.rows(t)

	m2 := env.meter(t, store)
	flushWithin(t, m2, 30*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m2.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rows, distinct, rolled := env.rows(t)
	t.Logf("recorded %d before the crash (%d refused after it); %d rows at the crash, %d after the replay", st.Recorded, st.Lost, atCrash, rows)
	if rows != st.Recorded || distinct != rows || rolled != rows {
		t.Errorf("%d rows (%d distinct, rollups %d), want the %d recorded", rows, distinct, rolled, st.Recorded)
	}
}

// TestMeterPostgresThroughput records events as fast as it can and reports
// how many per second the meter writes into PostgreSQL (COPY batches and
// rollups); it asserts that every event arrived, not a speed (the machine
// is shared; the target is 50,000 events per second: read the log, -v).
func TestMeterPostgresThroughput(t *testing.T) {
	n := 500_000
	if testing.Short() {
		n = 100_000
	}
	env := newPGEnv(t)
	store := &timedStore{w: env.direct}
	m, err := billing.NewMeter(store, billing.MeterConfig{Dir: env.journal})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	// warm up: partitions, the staging table, the tokenizer-free path
	for i := range 1000 {
		record(m, i)
	}
	flushWithin(t, m, 30*time.Second)

	start := time.Now()
	var wg sync.WaitGroup
	workers := runtime.GOMAXPROCS(0)
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				record(m, i)
			}
		})
	}
	wg.Wait()
	recorded := time.Since(start)
	flushWithin(t, m, 2*time.Minute)
	elapsed := time.Since(start)
	rate := float64(n) / elapsed.Seconds()
	rows, _, _ := env.rows(t)
	t.Logf("%d events: recorded in %v (%.0f/s on the request side), all in PostgreSQL after %v: %.0f events/s",
		n, recorded.Round(time.Millisecond), float64(n)/recorded.Seconds(), elapsed.Round(time.Millisecond), rate)
	t.Logf("the store's WriteUsage took %v in %d batches (%.0f events/s while writing)",
		store.spent.Round(time.Millisecond), store.batches, float64(n)/store.spent.Seconds())
	if rows != int64(n+1000) {
		t.Errorf("%d rows, want %d", rows, n+1000)
	}
}

// timedStore measures the time spent in the store's writes.
type timedStore struct {
	w       billing.UsageWriter
	spent   time.Duration // only the writer goroutine writes these
	batches int
}

func (s *timedStore) WriteUsage(ctx context.Context, events []billing.Event) error {
	t0 := time.Now()
	err := s.w.WriteUsage(ctx, events)
	s.spent += time.Since(t0)
	s.batches++
	return err
}

func record(m *billing.Meter, i int) {
	e := m.NewEvent()
	e.RequestID = "req_bench"
	e.TenantID, e.Tenant, e.UserID, e.KeyID = int64(1+i%50), "tenant", 3, 4
	e.Endpoint, e.Model, e.UpstreamModel, e.Deployment, e.Provider = "chat_completions", "gpt-4o-mini", "gpt-4o-mini-2024-07-18", "oai", "openai"
	e.Usage = providers.Usage{PromptTokens: 812, CompletionTokens: 120, CachedTokens: 512}
	e.Status, e.Latency, e.Stream, e.TTFT = 200, time.Duration(i%3000)*time.Millisecond, i%2 == 0, 150*time.Millisecond
	m.Record(e)
}

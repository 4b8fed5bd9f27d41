package billing

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
)

// memStore is an in-memory UsageWriter, idempotent by event id like the
// real stores, that a test can make fail.
type memStore struct {
	mu      sync.Mutex
	events  map[EventID]Event
	writes  int
	dupes   int // events written again (replays), skipped
	fail    error
	reject  func(*Event) bool
	written chan int // optional: receives each successful batch's size
}

func newMemStore() *memStore { return &memStore{events: make(map[EventID]Event)} }

func (s *memStore) WriteUsage(ctx context.Context, events []Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	for i := range events {
		if s.reject != nil && s.reject(&events[i]) {
			return fmt.Errorf("bad value: %w", ErrRejected)
		}
	}
	s.writes++
	for _, e := range events {
		if _, ok := s.events[e.ID]; ok {
			s.dupes++
			continue
		}
		s.events[e.ID] = e
	}
	if s.written != nil {
		select {
		case s.written <- len(events):
		default:
		}
	}
	return nil
}

func (s *memStore) setFail(err error) {
	s.mu.Lock()
	s.fail = err
	s.mu.Unlock()
}

func (s *memStore) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.events)
}

func (s *memStore) byRequest(id string) (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range s.events {
		if e.RequestID == id {
			return e, true
		}
	}
	return Event{}, false
}

func newTestMeter(t *testing.T, store UsageWriter, dir string, tweak ...func(*MeterConfig)) *Meter {
	t.Helper()
	cfg := MeterConfig{Dir: dir, FlushInterval: 5 * time.Millisecond, SyncInterval: 5 * time.Millisecond}
	for _, f := range tweak {
		f(&cfg)
	}
	m, err := NewMeter(store, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func flush(t *testing.T, m *Meter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatalf("Flush = %v", err)
	}
}

func closeMeter(t *testing.T, m *Meter) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatalf("Close = %v", err)
	}
}

// recordOne records one event of request id.
func recordOne(m *Meter, id string, u providers.Usage) {
	e := m.NewEvent()
	e.RequestID, e.TenantID, e.Tenant, e.Endpoint = id, 1, "acme", "chat_completions"
	e.Model, e.UpstreamModel, e.Status = "gpt-4o", "gpt-4o-2024-08-06", 200
	e.Usage = u
	m.Record(e)
}

// load records events from n goroutines until stop is closed, and returns
// how many it recorded.
func load(m *Meter, n int, stop <-chan struct{}) func() int64 {
	var total atomic.Int64
	var wg sync.WaitGroup
	for g := range n {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				recordOne(m, fmt.Sprintf("g%d-%d", g, i), providers.Usage{PromptTokens: 10, CompletionTokens: 5})
				total.Add(1)
				if i%64 == 0 {
					time.Sleep(time.Millisecond)
				}
			}
		})
	}
	return func() int64 { wg.Wait(); return total.Load() }
}

func TestMeterRecordsEverything(t *testing.T) {
	store := newMemStore()
	m := newTestMeter(t, store, t.TempDir())
	const n = 5000
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range n / 8 {
				recordOne(m, fmt.Sprintf("r%d-%d", g, i), providers.Usage{PromptTokens: 1, CompletionTokens: 1})
			}
		})
	}
	wg.Wait()
	flush(t, m)
	if got := store.count(); got != n {
		t.Fatalf("store has %d events after Flush, want %d", got, n)
	}
	closeMeter(t, m)
	st := m.Stats()
	if st.Recorded != n || st.Written != n || st.Lost != 0 {
		t.Errorf("Stats = %+v, want %d recorded and written, none lost", st, n)
	}
	if err := m.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

// TestMeterCost checks the costs the meter records against values computed
// by hand from the built-in price table (dollars per million tokens).
func TestMeterCost(t *testing.T) {
	store := newMemStore()
	m := newTestMeter(t, store, t.TempDir())
	cases := []struct {
		id             string
		model, up      string
		usage          providers.Usage
		cost           tenancy.MicroUSD
		priced         bool
		wantPriceModel string
	}{
		// gpt-4o: $2.50 in, $1.25 cached in, $10 out. 600·2.5 + 400·1.25 + 500·10 = 1500 + 500 + 5000 µ$
		{"cached", "gpt-4o", "gpt-4o-2024-08-06", providers.Usage{PromptTokens: 1000, CachedTokens: 400, CompletionTokens: 500}, 7000, true, ""},
		// gpt-4o-mini: $0.15, $0.075, $0.60. 1,234,567 in of which 1,000,000 cached, 3 out:
		// 234,567·0.15 = 35,185.05; 1,000,000·0.075 = 75,000; 3·0.6 = 1.8 → 110,186.85 → rounded up 110,187
		{"rounding up", "fast", "gpt-4o-mini", providers.Usage{PromptTokens: 1_234_567, CachedTokens: 1_000_000, CompletionTokens: 3}, 110_187, true, ""},
		// o1: $15, $7.50, $60; reasoning tokens are part of completion: 100·15 + 2000·60 = 121,500
		{"reasoning", "o1", "o1", providers.Usage{PromptTokens: 100, CompletionTokens: 2000, ReasoningTokens: 1500}, 121_500, true, ""},
		// claude-sonnet-4-5: $3, $0.30 cache read, $15: 2000·3 + 8000·0.3 + 100·15 = 6000 + 2400 + 1500
		{"anthropic cache", "claude", "claude-sonnet-4-5-20250929", providers.Usage{PromptTokens: 10_000, CachedTokens: 8000, CompletionTokens: 100}, 9900, true, ""},
		// The deployment's name is unknown (Azure), the asked model is known.
		{"alias priced by asked model", "gpt-4o", "my-azure-deployment", providers.Usage{PromptTokens: 1}, 3, true, ""},
		{"unknown model", "llama-local", "llama-3-70b", providers.Usage{PromptTokens: 5000, CompletionTokens: 5000}, 0, false, ""},
		{"mock is free", "mock-gpt", "mock-gpt", providers.Usage{PromptTokens: 5000}, 0, true, ""},
	}
	for _, tc := range cases {
		e := m.NewEvent()
		e.RequestID, e.Model, e.UpstreamModel, e.Usage, e.Status = tc.id, tc.model, tc.up, tc.usage, 200
		m.Record(e)
	}
	flush(t, m)
	for _, tc := range cases {
		e, ok := store.byRequest(tc.id)
		if !ok {
			t.Errorf("%s: not stored", tc.id)
			continue
		}
		if e.Cost != tc.cost || e.Priced != tc.priced {
			t.Errorf("%s: cost %d (priced %v), want %d (priced %v)", tc.id, e.Cost, e.Priced, tc.cost, tc.priced)
		}
		if c, p := m.Cost(tc.up, tc.model, tc.usage); c != tc.cost || p != tc.priced {
			t.Errorf("%s: Cost = %d, %v; want %d, %v", tc.id, c, p, tc.cost, tc.priced)
		}
	}
	closeMeter(t, m)
}

// TestMeterOutage: while the store fails, events wait in the journal (not
// in memory); when it is back, every one is written, once.
func TestMeterOutage(t *testing.T) {
	store := newMemStore()
	m := newTestMeter(t, store, t.TempDir(), func(c *MeterConfig) { c.BatchSize = 100 })
	stop := make(chan struct{})
	wait := load(m, 4, stop)
	time.Sleep(50 * time.Millisecond)
	store.setFail(errors.New("connection refused"))
	time.Sleep(300 * time.Millisecond)
	during := store.count()
	time.Sleep(200 * time.Millisecond)
	if got := store.count(); got != during {
		t.Fatalf("store grew during the outage: %d → %d", during, got)
	}
	store.setFail(nil)
	time.Sleep(100 * time.Millisecond)
	close(stop)
	total := wait()
	flush(t, m)
	closeMeter(t, m)
	if got := store.count(); int64(got) != total {
		t.Fatalf("store has %d events, recorded %d", got, total)
	}
	if st := m.Stats(); st.WriteErrors == 0 || st.Lost != 0 {
		t.Errorf("Stats = %+v, want write errors and nothing lost", st)
	}
	t.Logf("%d events, %d during the outage; %d write errors retried", total, total-int64(during), m.Stats().WriteErrors)
}

// TestMeterCloseWithStoreDown: Close gives up at its deadline, says so,
// and the next meter on the directory writes what was left.
func TestMeterCloseWithStoreDown(t *testing.T) {
	dir := t.TempDir()
	store := newMemStore()
	store.setFail(errors.New("down"))
	m := newTestMeter(t, store, dir)
	for i := range 100 {
		recordOne(m, fmt.Sprint("r", i), providers.Usage{PromptTokens: 1})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	err := m.Close(ctx)
	cancel()
	if err == nil || !strings.Contains(err.Error(), "journal") {
		t.Fatalf("Close with the store down = %v, want an error that names the journal", err)
	}
	store.setFail(nil)
	m2 := newTestMeter(t, store, dir)
	flush(t, m2)
	closeMeter(t, m2)
	if got := store.count(); got != 100 {
		t.Fatalf("after restart: %d events stored, want 100", got)
	}
	// The journal is cleaned up once written.
	segs, _ := listSegments(dir)
	if len(segs) != 1 {
		t.Errorf("%d segments left, want 1 (the last, empty)", len(segs))
	}
}

// TestMeterCrashReplay: a meter killed under load (no Close) leaves its
// events in the journal; the next meter on the directory writes them, and
// replaying those the store already had writes nothing twice.
func TestMeterCrashReplay(t *testing.T) {
	dir := t.TempDir()
	store := newMemStore()
	m := newTestMeter(t, store, dir, func(c *MeterConfig) { c.BatchSize = 50 })
	stop := make(chan struct{})
	wait := load(m, 4, stop)
	time.Sleep(200 * time.Millisecond)
	m.Crash()
	close(stop)
	wait()
	st := m.Stats()
	if store.count() == 0 || int64(store.count()) >= st.Recorded {
		t.Logf("store had %d of %d events at the crash", store.count(), st.Recorded)
	}
	m2 := newTestMeter(t, store, dir)
	flush(t, m2)
	closeMeter(t, m2)
	if got := int64(store.count()); got != st.Recorded {
		t.Fatalf("after replay: %d events, want the %d recorded (%d lost at the crash)", got, st.Recorded, st.Lost)
	}
	t.Logf("recorded %d before the crash (%d refused after it); replay skipped %d already stored", st.Recorded, st.Lost, store.dupes)
}

// TestMeterRejected: an event the store refuses is set aside (logged and
// kept in rejected.log), and does not block the others.
func TestMeterRejected(t *testing.T) {
	dir := t.TempDir()
	store := newMemStore()
	store.reject = func(e *Event) bool { return e.RequestID == "poison" }
	m := newTestMeter(t, store, dir)
	for i := range 20 {
		id := fmt.Sprint("r", i)
		if i == 7 {
			id = "poison"
		}
		recordOne(m, id, providers.Usage{PromptTokens: 1})
	}
	flush(t, m)
	closeMeter(t, m)
	if got := store.count(); got != 19 {
		t.Errorf("%d events stored, want 19", got)
	}
	if st := m.Stats(); st.Rejected != 1 {
		t.Errorf("Rejected = %d, want 1", st.Rejected)
	}
	b, err := os.ReadFile(filepath.Join(dir, "rejected.log"))
	if err != nil || !strings.Contains(string(b), "poison") {
		t.Errorf("rejected.log = %q, %v; want the poison event", b, err)
	}
}

// TestMeterEstimates: events without upstream usage are counted with
// tiktoken on the meter's goroutine, flagged, and priced.
func TestMeterEstimates(t *testing.T) {
	store := newMemStore()
	m := newTestMeter(t, store, t.TempDir())
	e := m.NewEvent()
	e.RequestID, e.Model, e.UpstreamModel, e.Status, e.Stream = "cancelled", "gpt-4o", "gpt-4o", 499, true
	e.Estimated = true
	e.CountPrompt([]byte(`{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"Hello world"}]}`))
	e.CollectChunk([]byte(`{"choices":[{"index":0,"delta":{"content":"Hello"}}]}`))
	e.CollectChunk([]byte(`{"choices":[{"index":0,"delta":{"content":" world"}}]}`))
	m.Record(e)
	flush(t, m)
	closeMeter(t, m)
	got, ok := store.byRequest("cancelled")
	if !ok {
		t.Fatal("not stored")
	}
	want := providers.Usage{PromptTokens: 9, CompletionTokens: 2, TotalTokens: 11}
	if got.Usage != want || !got.Estimated || !got.Priced {
		t.Errorf("stored usage %+v (estimated %v, priced %v), want %+v estimated and priced", got.Usage, got.Estimated, got.Priced, want)
	}
	// 9·2.5 + 2·10 = 42.5 µ$ → 43
	if got.Cost != 43 {
		t.Errorf("cost %d, want 43", got.Cost)
	}
}

// TestMeterEstimateQueueFull: with no room to queue text for tiktoken,
// an event is counted at once at 4 bytes a token, never dropped.
func TestMeterEstimateQueueFull(t *testing.T) {
	store := newMemStore()
	m := newTestMeter(t, store, t.TempDir(), func(c *MeterConfig) { c.EstimateQueueBytes = 1 })
	e := m.NewEvent()
	e.RequestID, e.Model, e.Estimated = "big", "gpt-4o", true
	e.CountPrompt([]byte(strings.Repeat("x", 400)))
	m.Record(e)
	flush(t, m)
	closeMeter(t, m)
	got, ok := store.byRequest("big")
	if !ok || got.Usage.PromptTokens != 100 || !got.Estimated {
		t.Errorf("stored %+v (found %v), want 100 prompt tokens, estimated", got.Usage, ok)
	}
}

// TestMeterOnePerDir: a second meter on a journal in use fails at once.
func TestMeterOnePerDir(t *testing.T) {
	dir := t.TempDir()
	m := newTestMeter(t, newMemStore(), dir)
	if m2, err := NewMeter(newMemStore(), MeterConfig{Dir: dir}); err == nil {
		m2.Close(context.Background())
		t.Fatal("a second meter opened the same journal")
	} else if !strings.Contains(err.Error(), "MTAI_DATA_DIR") {
		t.Errorf("error %q does not say what to do", err)
	}
	closeMeter(t, m)
	m3 := newTestMeter(t, newMemStore(), dir) // free again after Close
	closeMeter(t, m3)
}

func TestMeterRecordAfterClose(t *testing.T) {
	store := newMemStore()
	m := newTestMeter(t, store, t.TempDir())
	closeMeter(t, m)
	recordOne(m, "late", providers.Usage{})
	if st := m.Stats(); st.Lost != 1 {
		t.Errorf("Lost = %d after a Record after Close, want 1", st.Lost)
	}
}

func TestMeterConfigValidate(t *testing.T) {
	for _, tc := range []struct {
		cfg  MeterConfig
		want string
	}{
		{MeterConfig{}, "MTAI_DATA_DIR"},
		{MeterConfig{Dir: "x", SyncInterval: -1}, "MTAI_USAGE_SYNC_INTERVAL"},
		{MeterConfig{Dir: "x", Retention: Retention{Events: -1}}, "MTAI_USAGE_RETENTION"},
		{MeterConfig{Dir: "x", Retention: Retention{Events: 2, Rollups: 1}}, "MTAI_USAGE_ROLLUP_RETENTION"},
		{MeterConfig{Dir: "x", Retention: Retention{Rollups: 1}}, "MTAI_USAGE_ROLLUP_RETENTION"}, // events forever
	} {
		if err := tc.cfg.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate(%+v) = %v, want an error naming %s", tc.cfg, err, tc.want)
		}
	}
}

// TestRecordAllocs: recording is on the request path: no allocation once
// the pools are warm (the event comes from the meter's pool).
func TestRecordAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	m := newTestMeter(t, newMemStore(), t.TempDir())
	defer closeMeter(t, m)
	run := func() { recordOne(m, "req", providers.Usage{PromptTokens: 10, CompletionTokens: 5}) }
	run()
	if a := testing.AllocsPerRun(1000, run); a > 0 {
		t.Errorf("NewEvent+Record allocate %.1f times, want 0", a)
	}
}

// BenchmarkRecord is the request path's cost of metering: NewEvent, fill,
// Record (price, encode, one write(2) into the journal).
func BenchmarkRecord(b *testing.B) {
	m, err := NewMeter(newMemStore(), MeterConfig{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close(context.Background())
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			recordOne(m, "req_0123456789abcdef0123456789abcdef", providers.Usage{PromptTokens: 10, CompletionTokens: 5})
		}
	})
}

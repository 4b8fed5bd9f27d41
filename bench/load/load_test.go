package load

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeCaller records when each call started and can take time or fail.
type fakeCaller struct {
	mu     sync.Mutex
	starts []time.Time
	n      atomic.Int64
	sleep  time.Duration
	failN  int64 // every failN-th call fails (0: none)
}

func (f *fakeCaller) Call(_ time.Time, o *Outcome) error {
	now := time.Now()
	f.mu.Lock()
	f.starts = append(f.starts, now)
	f.mu.Unlock()
	k := f.n.Add(1)
	if f.sleep > 0 {
		time.Sleep(f.sleep)
	}
	if f.failN > 0 && k%f.failN == 0 {
		o.Status = 500
		return errors.New("boom")
	}
	o.Status = 200
	return nil
}

func TestOpenLoopSendsEverySlotNeverEarly(t *testing.T) {
	tests := []struct {
		name     string
		rate     float64
		duration time.Duration
		want     int64
	}{
		{"2000/s for 250ms", 2000, 250 * time.Millisecond, 500},
		{"300/s for 500ms", 300, 500 * time.Millisecond, 150},
		{"7/s for 1s", 7, time.Second, 7},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := &fakeCaller{}
			t0 := time.Now() // not after the runner's own start
			r, err := RunOpen(context.Background(), f, Open{Rate: tc.rate, Duration: tc.duration})
			if err != nil {
				t.Fatal(err)
			}
			if r.Scheduled != tc.want || r.Sent != tc.want || r.OK != tc.want || r.Dropped != 0 {
				t.Fatalf("scheduled %d sent %d ok %d dropped %d, want %d sent, 0 dropped", r.Scheduled, r.Sent, r.OK, r.Dropped, tc.want)
			}
			if got := r.Latency.TotalCount(); got != tc.want {
				t.Errorf("latency histogram has %d values, want %d", got, tc.want)
			}
			// The k-th call (in time order) cannot start before slot k:
			// at most k slots are due before k/rate. This bounds the rate
			// from above using counts only.
			sort.Slice(f.starts, func(i, j int) bool { return f.starts[i].Before(f.starts[j]) })
			for k, s := range f.starts {
				slot := Open{Rate: tc.rate}.slotTime(int64(k))
				if s.Sub(t0) < slot {
					t.Fatalf("call %d started %v after start, before its slot at %v", k, s.Sub(t0), slot)
				}
			}
			// And from below: every slot was sent within a generous margin of the schedule.
			if last := f.starts[len(f.starts)-1].Sub(t0); last > tc.duration+time.Second {
				t.Errorf("last call started %v after start; schedule is %v", last, tc.duration)
			}
		})
	}
}

func TestOpenLoopMeasuresFromScheduleNotSend(t *testing.T) {
	// One worker, 5ms per call, 1000 slots/s: call k cannot start before
	// 5ms*k, so slot 99 (due at 99ms) starts at >= 495ms and ends at >=
	// 500ms: its latency from the schedule is >= 401ms although each call
	// takes only ~5ms. A coordinated-omission loop would report ~5ms.
	f := &fakeCaller{sleep: 5 * time.Millisecond}
	r, err := RunOpen(context.Background(), f, Open{Rate: 1000, Duration: 100 * time.Millisecond, Workers: 1, Grace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 100 || r.Dropped != 0 {
		t.Fatalf("sent %d dropped %d, want 100 and 0", r.Sent, r.Dropped)
	}
	// Call k starts at >= 5ms*k while due at 1ms*k: all from k=1 on are late.
	if r.Late < 99 {
		t.Errorf("late = %d, want >= 99", r.Late)
	}
	if got := r.Latency.Max(); got < 401_000 {
		t.Errorf("max latency from schedule = %dµs, want >= 401000µs", got)
	}
	if got := r.Service.ValueAtQuantile(50); got < 5000 {
		t.Errorf("median service time = %dµs, want >= 5000µs", got)
	}
	if r.Latency.ValueAtQuantile(99) <= r.Service.ValueAtQuantile(99) {
		t.Errorf("latency p99 %dµs not above service p99 %dµs", r.Latency.ValueAtQuantile(99), r.Service.ValueAtQuantile(99))
	}
}

func TestOpenLoopDropsWhatItCannotSendInTime(t *testing.T) {
	// 50 slots in 50ms, grace 50ms, one worker, 20ms per call: the k-th call
	// starts at >= 20ms*k, and none starts after 100ms, so at most 6 are sent.
	f := &fakeCaller{sleep: 20 * time.Millisecond}
	r, err := RunOpen(context.Background(), f, Open{Rate: 1000, Duration: 50 * time.Millisecond, Workers: 1, Grace: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent < 1 || r.Sent > 6 || r.Sent+r.Dropped != 50 {
		t.Errorf("sent %d dropped %d; want 1..6 sent and 50 in all", r.Sent, r.Dropped)
	}
}

func TestOpenLoopStopsOnCancel(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	f := &fakeCaller{}
	begin := time.Now()
	r, err := RunOpen(ctx, f, Open{Rate: 100, Duration: time.Minute})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(begin); d > 10*time.Second {
		t.Errorf("RunOpen returned after %v, want soon after cancel", d)
	}
	if r.Sent+r.Dropped != r.Scheduled || r.Sent > 20 {
		t.Errorf("sent %d dropped %d of %d", r.Sent, r.Dropped, r.Scheduled)
	}
}

func TestOpenLoopCountsFailures(t *testing.T) {
	f := &fakeCaller{failN: 3}
	r, err := RunOpen(context.Background(), f, Open{Rate: 1000, Duration: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.Sent != 300 || r.Failed != 100 || r.OK != 200 {
		t.Errorf("sent %d failed %d ok %d, want 300, 100, 200", r.Sent, r.Failed, r.OK)
	}
	if r.Statuses[500] != 100 || r.Statuses[200] != 200 || r.FirstError != "boom" {
		t.Errorf("statuses %v first error %q", r.Statuses, r.FirstError)
	}
	if r.Latency.TotalCount() != 200 {
		t.Errorf("latency holds %d values, want only the 200 successes", r.Latency.TotalCount())
	}
}

func TestOpenLoopRejectsBadConfig(t *testing.T) {
	for _, o := range []Open{{Rate: 0, Duration: time.Second}, {Rate: 10}, {Rate: -1, Duration: time.Second}} {
		if _, err := RunOpen(context.Background(), &fakeCaller{}, o); err == nil {
			t.Errorf("RunOpen(%+v) = nil error", o)
		}
	}
}

func TestClosedLoop(t *testing.T) {
	f := &fakeCaller{sleep: 2 * time.Millisecond}
	d := 200 * time.Millisecond
	r, err := RunClosed(context.Background(), f, Closed{Concurrency: 4, Duration: d})
	if err != nil {
		t.Fatal(err)
	}
	// Each worker finishes at most d/2ms+1 calls.
	if max := int64(4 * (d/(2*time.Millisecond) + 1)); r.OK == 0 || r.OK > max {
		t.Errorf("ok = %d, want 1..%d", r.OK, max)
	}
	// A worker stops only when it sees the duration passed, right after a call ended.
	if r.Elapsed < d-5*time.Millisecond {
		t.Errorf("elapsed %v, want about %v", r.Elapsed, d)
	}
	if tp := r.Throughput(); tp > 2000*1.05 {
		t.Errorf("throughput %.0f/s above the 2000/s that 4 workers at 2ms allow", tp)
	}
	if r.Latency.ValueAtQuantile(50) < 2000 {
		t.Errorf("median latency %dµs, want >= 2000µs", r.Latency.ValueAtQuantile(50))
	}
}

func TestSummarizeKnownValues(t *testing.T) {
	h := NewHistogram()
	for v := int64(1); v <= 10000; v++ {
		if err := h.RecordValue(v); err != nil {
			t.Fatal(err)
		}
	}
	s := Summarize(h)
	near := func(name string, got, want int64) {
		t.Helper()
		if d := got - want; d < 0 || float64(d) > 0.002*float64(want) {
			t.Errorf("%s = %d, want %d (+0.2%%)", name, got, want)
		}
	}
	if s.Count != 10000 {
		t.Errorf("count = %d", s.Count)
	}
	near("p50", s.P50, 5000)
	near("p90", s.P90, 9000)
	near("p99", s.P99, 9900)
	near("p99.9", s.P999, 9990)
	near("max", s.Max, 10000)
	if s.Mean < 4995 || s.Mean > 5010 {
		t.Errorf("mean = %v, want about 5000.5", s.Mean)
	}
	if (Summarize(nil) != Summary{}) || (Summarize(NewHistogram()) != Summary{}) {
		t.Error("empty histograms must summarize to zero")
	}
}

func TestMergeAndDiff(t *testing.T) {
	a, b := newResult(), newResult()
	for i := 0; i < 100; i++ {
		_ = a.Latency.RecordValue(100)
		_ = b.Latency.RecordValue(300)
	}
	a.OK, b.OK, a.Elapsed, b.Elapsed = 100, 100, time.Second, time.Second
	a.Statuses[200], b.Statuses[200], b.Statuses[429] = 100, 100, 3

	d := Sub(Summarize(b.Latency), Summarize(a.Latency))
	if d.P50 != 200 || d.P99 != 200 {
		t.Errorf("Sub = %+v, want 200µs at every percentile", d)
	}

	var m Result
	m.Merge(a)
	m.Merge(b)
	if m.OK != 200 || m.Latency.TotalCount() != 200 || m.Statuses[200] != 200 || m.Statuses[429] != 3 {
		t.Errorf("merged ok %d count %d statuses %v", m.OK, m.Latency.TotalCount(), m.Statuses)
	}
	if m.Throughput() != 100 {
		t.Errorf("merged throughput = %v, want 100/s", m.Throughput())
	}
	if p := m.Latency.ValueAtQuantile(75); p < 300 || p > 301 {
		t.Errorf("merged p75 = %d, want 300", p)
	}
}

func TestMedian(t *testing.T) {
	tests := []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}}
	for _, tc := range tests {
		if got := Median(tc.in); got != tc.want {
			t.Errorf("Median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestWaitUntil(t *testing.T) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for _, d := range []time.Duration{0, 500 * time.Microsecond, 2 * time.Millisecond, 8 * time.Millisecond} {
		at := time.Now().Add(d)
		if !waitUntil(context.Background(), timer, at) {
			t.Fatalf("waitUntil(+%v) = false without a cancel", d)
		}
		if now := time.Now(); now.Before(at) {
			t.Errorf("waitUntil(+%v) returned %v early", d, at.Sub(now))
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if waitUntil(ctx, timer, time.Now().Add(time.Hour)) {
		t.Error("waitUntil(+1h) with a cancelled context = true, want false")
	}
}

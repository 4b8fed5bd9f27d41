// Package load owns the benchmark's load generation: an open-loop
// constant-rate runner (RunOpen) whose latencies are measured from each
// request's scheduled send time, so that a slow server cannot hide its
// queueing (no coordinated omission), a closed-loop saturation runner
// (RunClosed) that reports throughput, the HDR histograms they fill, and an
// HTTP caller (HTTPCaller) for plain and SSE-streamed chat completions.
//
// Every run is bounded: by its schedule and a grace period (open loop) or its
// duration (closed loop), and by a per-request timeout.
package load

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	hdrhistogram "github.com/HdrHistogram/hdrhistogram-go"
)

// Caller makes one request. It is called from many goroutines at once and
// must be safe for concurrent use. It fills o and returns an error when the
// request failed (transport error, timeout, unexpected status or body); o is
// reset by the runner before each call.
type Caller interface {
	Call(deadline time.Time, o *Outcome) error
}

// Outcome is what one call observed.
type Outcome struct {
	// Status is the HTTP status; 0 when no response arrived.
	Status int
	// FirstToken is when the first event with content arrived (streams);
	// zero when none did.
	FirstToken time.Time
	// Events is the number of SSE data events received, [DONE] excluded.
	Events int
}

// LateAfter is how far behind its slot a send counts as Late.
const LateAfter = time.Millisecond

// Histogram bounds: values are recorded in microseconds from 1 µs to 10
// minutes with 3 significant digits (0.1% precision).
const (
	histMin     = 1
	histMax     = int64(10 * time.Minute / time.Microsecond)
	histSigFigs = 3
)

// NewHistogram returns an empty latency histogram in microseconds.
func NewHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMin, histMax, histSigFigs)
}

// Result is the outcome of one run. Histograms hold only successful
// requests, in microseconds.
type Result struct {
	// Scheduled is the number of send slots in an open-loop schedule
	// (0 for a closed loop).
	Scheduled int64 `json:"scheduled"`
	// Sent requests, of which OK succeeded and Failed did not.
	Sent   int64 `json:"sent"`
	OK     int64 `json:"ok"`
	Failed int64 `json:"failed"`
	// Dropped open-loop slots that could not be sent before the run's hard
	// deadline (schedule end + grace): the target was far too slow.
	Dropped int64 `json:"dropped"`
	// Late open-loop sends that left more than LateAfter after their slot:
	// every worker was busy, or the generator's own CPU was short. Their
	// wait is in their latency; many of them mean the generator, not only
	// the target, limited the run.
	Late int64 `json:"late"`
	// Statuses counts responses by HTTP status (0: transport error or timeout).
	Statuses map[int]int64 `json:"statuses,omitempty"`
	// FirstError is the first error seen, for the report.
	FirstError string `json:"first_error,omitempty"`
	// Elapsed is the wall time of the run: from its start to the end of the
	// schedule or duration, or to the last completion when that was later.
	Elapsed time.Duration `json:"elapsed_ns"`
	// Events is the total number of SSE data events received.
	Events int64 `json:"events"`

	// Latency: open loop, from the scheduled send time to the last byte;
	// closed loop, from the actual send to the last byte.
	Latency *hdrhistogram.Histogram `json:"-"`
	// Service is from the actual send to the last byte (both loops).
	Service *hdrhistogram.Histogram `json:"-"`
	// TTFT is time to first token (first event with content), measured from
	// the same origin as Latency. Streams only.
	TTFT *hdrhistogram.Histogram `json:"-"`
}

func newResult() *Result {
	return &Result{
		Statuses: map[int]int64{},
		Latency:  NewHistogram(),
		Service:  NewHistogram(),
		TTFT:     NewHistogram(),
	}
}

// Throughput is successful requests per second of Elapsed.
func (r *Result) Throughput() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.OK) / r.Elapsed.Seconds()
}

// Merge adds o's counts and histograms to r; Elapsed adds up, so that
// Throughput of merged runs is their combined rate.
func (r *Result) Merge(o *Result) {
	r.Scheduled += o.Scheduled
	r.Sent += o.Sent
	r.OK += o.OK
	r.Failed += o.Failed
	r.Dropped += o.Dropped
	r.Late += o.Late
	r.Events += o.Events
	r.Elapsed += o.Elapsed
	if r.Statuses == nil {
		r.Statuses = map[int]int64{}
	}
	for k, v := range o.Statuses {
		r.Statuses[k] += v
	}
	if r.FirstError == "" {
		r.FirstError = o.FirstError
	}
	for _, p := range []struct{ dst, src **hdrhistogram.Histogram }{
		{&r.Latency, &o.Latency}, {&r.Service, &o.Service}, {&r.TTFT, &o.TTFT},
	} {
		if *p.src == nil {
			continue
		}
		if *p.dst == nil {
			*p.dst = NewHistogram()
		}
		(*p.dst).Merge(*p.src)
	}
}

// Summary is a histogram's digest, in microseconds.
type Summary struct {
	Count int64   `json:"count"`
	Mean  float64 `json:"mean_us"`
	P50   int64   `json:"p50_us"`
	P90   int64   `json:"p90_us"`
	P99   int64   `json:"p99_us"`
	P999  int64   `json:"p999_us"`
	Max   int64   `json:"max_us"`
}

// Summarize digests h (nil gives a zero Summary).
func Summarize(h *hdrhistogram.Histogram) Summary {
	if h == nil || h.TotalCount() == 0 {
		return Summary{}
	}
	return Summary{
		Count: h.TotalCount(),
		Mean:  math.Round(h.Mean()*10) / 10,
		P50:   h.ValueAtQuantile(50),
		P90:   h.ValueAtQuantile(90),
		P99:   h.ValueAtQuantile(99),
		P999:  h.ValueAtQuantile(99.9),
		Max:   h.Max(),
	}
}

// recorder collects outcomes from concurrent workers.
type recorder struct {
	mu  sync.Mutex
	res *Result
}

func (rc *recorder) record(origin, sent, end time.Time, o *Outcome, err error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	r := rc.res
	r.Sent++
	r.Statuses[o.Status]++
	r.Events += int64(o.Events)
	if err != nil {
		r.Failed++
		if r.FirstError == "" {
			r.FirstError = err.Error()
		}
		return
	}
	r.OK++
	_ = r.Latency.RecordValue(micros(end.Sub(origin)))
	_ = r.Service.RecordValue(micros(end.Sub(sent)))
	if !o.FirstToken.IsZero() {
		_ = r.TTFT.RecordValue(micros(o.FirstToken.Sub(origin)))
	}
}

// micros converts d to whole microseconds, clamped to the histogram's range.
func micros(d time.Duration) int64 {
	us := d.Microseconds()
	if us < histMin {
		return histMin
	}
	return min(us, histMax)
}

// Open configures an open-loop run: requests are sent at Start + i/Rate for
// i in [0, Rate*Duration), whatever the target's speed.
type Open struct {
	// Rate in requests per second; must be positive.
	Rate float64
	// Duration of the schedule; must be positive.
	Duration time.Duration
	// Workers bounds the requests in flight (and so the connections);
	// default: enough for 250 ms of requests at Rate, at least 32. When all
	// are busy, later slots wait and their wait counts in their latency;
	// size it above Rate times the expected request time.
	Workers int
	// Grace is how long after the schedule's end late slots may still be
	// sent; slots not sent by then are Dropped. Default 2s.
	Grace time.Duration
	// Timeout of one request; default 10s.
	Timeout time.Duration
}

// slots is the number of send slots in the schedule.
func (o Open) slots() int64 {
	return int64(math.Floor(o.Rate*o.Duration.Seconds() + 1e-9))
}

// slotTime is the scheduled send time of slot i, as an offset from the start.
func (o Open) slotTime(i int64) time.Duration {
	return time.Duration(float64(i) * float64(time.Second) / o.Rate)
}

// RunOpen runs c on an open-loop schedule. It returns when every slot was
// sent (or dropped) and every request finished, or after ctx is done.
func RunOpen(ctx context.Context, c Caller, o Open) (*Result, error) {
	if !(o.Rate > 0) || o.Duration <= 0 {
		return nil, fmt.Errorf("load: open loop needs a positive rate and duration, got %v/s for %v", o.Rate, o.Duration)
	}
	if o.Workers <= 0 {
		o.Workers = max(32, int(math.Ceil(o.Rate/4)))
	}
	if o.Grace <= 0 {
		o.Grace = 2 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	n := o.slots()
	rc := &recorder{res: newResult()}
	rc.res.Scheduled = n

	start := time.Now()
	hardDeadline := start.Add(o.Duration + o.Grace)
	var next, late atomic.Int64
	var last atomic.Int64 // latest completion, ns since start
	var wg sync.WaitGroup
	for range min(int64(o.Workers), max(n, 1)) {
		wg.Go(func() {
			timer := time.NewTimer(time.Hour)
			defer timer.Stop()
			var out Outcome
			for {
				i := next.Add(1) - 1
				if i >= n {
					return
				}
				at := start.Add(o.slotTime(i))
				if !waitUntil(ctx, timer, at) {
					return
				}
				now := time.Now()
				if now.After(hardDeadline) || ctx.Err() != nil {
					continue // dropped: counted below as a slot never sent
				}
				if now.Sub(at) > LateAfter {
					late.Add(1)
				}
				out = Outcome{}
				err := c.Call(now.Add(o.Timeout), &out)
				end := time.Now()
				rc.record(at, now, end, &out, err)
				storeMax(&last, int64(end.Sub(start)))
			}
		})
	}
	wg.Wait()
	r := rc.res
	r.Dropped = n - r.Sent
	r.Late = late.Load()
	r.Elapsed = max(o.Duration, time.Duration(last.Load()))
	return r, ctx.Err()
}

// precise is how long before its time a wait switches from a Go timer to
// sleepPrecise: more than the timer's lateness, and short, since each
// sleepPrecise holds an OS thread.
const precise = 3 * time.Millisecond

// waitUntil returns at t (within tens of microseconds on Linux), or false
// as soon as ctx is done while it waits on the timer.
func waitUntil(ctx context.Context, timer *time.Timer, t time.Time) bool {
	if far := time.Until(t) - precise; far > 0 {
		timer.Reset(far)
		select {
		case <-timer.C:
		case <-ctx.Done():
			return false
		}
	}
	if d := time.Until(t); d > 0 {
		sleepPrecise(d)
	}
	return true
}

func storeMax(a *atomic.Int64, v int64) {
	for {
		cur := a.Load()
		if v <= cur || a.CompareAndSwap(cur, v) {
			return
		}
	}
}

// Closed configures a closed-loop (saturation) run: Concurrency workers each
// send a request as soon as their previous one finished, for Duration.
type Closed struct {
	// Concurrency is the number of workers (requests in flight); default 32.
	Concurrency int
	// Duration after which no new request starts; must be positive.
	Duration time.Duration
	// Timeout of one request; default 10s.
	Timeout time.Duration
}

// RunClosed runs c in a closed loop. Elapsed runs from the start to the end
// of the last request, so Throughput counts only finished work.
func RunClosed(ctx context.Context, c Caller, cl Closed) (*Result, error) {
	if cl.Duration <= 0 {
		return nil, errors.New("load: closed loop needs a positive duration")
	}
	if cl.Concurrency <= 0 {
		cl.Concurrency = 32
	}
	if cl.Timeout <= 0 {
		cl.Timeout = 10 * time.Second
	}
	rc := &recorder{res: newResult()}
	start := time.Now()
	stop := start.Add(cl.Duration)
	var last atomic.Int64
	var wg sync.WaitGroup
	for range cl.Concurrency {
		wg.Go(func() {
			var out Outcome
			for ctx.Err() == nil {
				now := time.Now()
				if !now.Before(stop) {
					return
				}
				out = Outcome{}
				err := c.Call(now.Add(cl.Timeout), &out)
				end := time.Now()
				rc.record(now, now, end, &out, err)
				storeMax(&last, int64(end.Sub(start)))
			}
		})
	}
	wg.Wait()
	r := rc.res
	r.Elapsed = time.Duration(last.Load())
	return r, ctx.Err()
}

// Diff is b's percentile minus a's, in microseconds, for the percentiles of
// Summary; use it for "added latency" (a = direct, b = through the gateway).
type Diff struct {
	P50  int64 `json:"p50_us"`
	P90  int64 `json:"p90_us"`
	P99  int64 `json:"p99_us"`
	P999 int64 `json:"p999_us"`
}

// Sub returns b - a percentile by percentile.
func Sub(b, a Summary) Diff {
	return Diff{P50: b.P50 - a.P50, P90: b.P90 - a.P90, P99: b.P99 - a.P99, P999: b.P999 - a.P999}
}

// Median returns the median of xs (0 for none); xs is not modified.
func Median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

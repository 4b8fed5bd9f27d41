package main

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/mtai-dev/mtai/bench/load"
)

// scenarios runs the direct-versus-gateway measurements.
type scenarios struct {
	b          *bench
	direct, gw *path // gw is nil with -no-gateway
}

// job is one slice kind of a scenario: which path, and what to run on it.
type job struct {
	p   *path
	run func(ctx context.Context) (*load.Result, error)
}

// agg accumulates one job's slices over the rounds.
type agg struct {
	res    load.Result
	rounds []*load.Result
	cpu    cpuSample     // gateway CPU used during this job's slices
	wall   time.Duration // their total wall time
}

// interleave runs rounds of slices: each round runs every job once, in
// order on even rounds and in reverse on odd ones (ABBA), so that a drift
// of the machine's speed during the run weighs on all jobs alike. The
// gateway's CPU time is read before and after every slice.
func (s *scenarios) interleave(ctx context.Context, label string, jobs []job) ([]*agg, error) {
	aggs := make([]*agg, len(jobs))
	for i := range aggs {
		aggs[i] = &agg{}
	}
	order := make([]int, 0, len(jobs))
	for i, j := range jobs {
		if j.p != nil {
			order = append(order, i)
		}
	}
	for r := range s.b.o.rounds {
		idx := slices.Clone(order)
		if r%2 == 1 {
			slices.Reverse(idx)
		}
		for _, i := range idx {
			before, err := s.gatewayCPU()
			if err != nil {
				return nil, err
			}
			t0 := time.Now()
			res, err := jobs[i].run(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s via %s: %w%s", label, jobs[i].p.name, err, s.b.deaths())
			}
			wall := time.Since(t0)
			after, err := s.gatewayCPU()
			if err != nil {
				return nil, err
			}
			a := aggs[i]
			a.res.Merge(res)
			a.rounds = append(a.rounds, res)
			a.cpu.ticks += after.ticks - before.ticks
			a.cpu.sys += after.sys - before.sys
			a.cpu.nanos += after.nanos - before.nanos
			a.wall += wall
			s.b.log("%-22s round %d/%d %-7s ok %6d failed %4d late %5d  p50 %6dµs  p99 %7dµs%s",
				label, r+1, s.b.o.rounds, jobs[i].p.name, res.OK, res.Failed, res.Late,
				res.Latency.ValueAtQuantile(50), res.Latency.ValueAtQuantile(99), firstError(res))
		}
	}
	return aggs, nil
}

func firstError(r *load.Result) string {
	if r.FirstError == "" {
		return ""
	}
	return "  first error: " + r.FirstError
}

// gatewayCPU reads the gateway's CPU time (zero without a gateway) and
// fails if the gateway or the upstream has died.
func (s *scenarios) gatewayCPU() (cpuSample, error) {
	if d := s.b.deaths(); d != "" {
		return cpuSample{}, fmt.Errorf("a benchmark process died:%s", d)
	}
	gw := s.b.gw
	if gw == nil {
		return cpuSample{}, nil
	}
	if gw.exited() {
		return cpuSample{}, fmt.Errorf("the gateway exited: %v\n%s", gw.err, gw.tail())
	}
	return readCPU(gw.pid())
}

// cpuStats turns a job's gateway CPU into per-request figures.
func (s *scenarios) cpuStats(a *agg) GatewayCPU {
	c := GatewayCPU{
		Ticks:    a.cpu.ticks,
		SchedNs:  a.cpu.nanos,
		Requests: a.res.OK,
		Events:   a.res.Events,
		WallSec:  a.wall.Seconds(),
	}
	us := float64(a.cpu.ticks) * 1e6 / float64(s.b.clk)
	if a.res.OK > 0 {
		c.USPerReq = round2(us / float64(a.res.OK))
		c.USPerReqSched = round2(float64(a.cpu.nanos) / 1e3 / float64(a.res.OK))
	}
	if a.wall > 0 {
		c.Cores = round2(us / 1e6 / a.wall.Seconds())
	}
	if a.cpu.ticks > 0 {
		c.SysPct = round2(100 * float64(a.cpu.sys) / float64(a.cpu.ticks))
	}
	return c
}

// openJob runs c at rate for one slice. expect is how long one request
// should take; the worker pool allows four times that plus 250ms of
// requests in flight, so that only a much slower target makes sends late.
func (s *scenarios) openJob(p *path, c *load.HTTPCaller, rate float64, expect, timeout time.Duration) job {
	workers := max(32, int(math.Ceil(rate*(4*expect+250*time.Millisecond).Seconds())))
	return job{p: p, run: func(ctx context.Context) (*load.Result, error) {
		return load.RunOpen(ctx, c, load.Open{Rate: rate, Duration: s.b.o.slice, Workers: workers, Timeout: timeout, Grace: 2 * time.Second})
	}}
}

func callerOf(p *path, f func(*path) *load.HTTPCaller) *load.HTTPCaller {
	if p == nil {
		return nil
	}
	return f(p)
}

// plainAtRate measures non-streamed requests at a constant rate.
func (s *scenarios) plainAtRate(ctx context.Context, rate float64) error {
	plain := func(p *path) *load.HTTPCaller { return p.plain }
	aggs, err := s.interleave(ctx, fmt.Sprintf("plain %.0f req/s", rate), []job{
		s.openJob(s.direct, plain(s.direct), rate, 0, 10*time.Second),
		s.openJob(s.gw, callerOf(s.gw, plain), rate, 0, 10*time.Second),
	})
	if err != nil {
		return err
	}
	d, g := aggs[0], aggs[1]
	pr := PlainRate{Rate: rate, Direct: pathStats(&d.res), DirectGatewayIdleCores: s.cpuStats(d).Cores}
	if s.gw != nil {
		pr.Gateway = pathStats(&g.res)
		pr.Added = load.Sub(pr.Gateway.Latency, pr.Direct.Latency)
		pr.AddedP99PerRound, pr.AddedP99Median = perRound(d.rounds, g.rounds, func(r *load.Result) int64 { return r.Latency.ValueAtQuantile(99) })
		pr.CPU = s.cpuStats(g)
	}
	for _, r := range d.rounds {
		pr.DirectP99PerRound = append(pr.DirectP99PerRound, r.Latency.ValueAtQuantile(99))
	}
	s.b.rep.Plain = append(s.b.rep.Plain, pr)
	return nil
}

// saturation measures the throughput of each path in a closed loop.
func (s *scenarios) saturation(ctx context.Context) error {
	closed := func(p *path) job {
		if p == nil {
			return job{}
		}
		return job{p: p, run: func(ctx context.Context) (*load.Result, error) {
			return load.RunClosed(ctx, p.plain, load.Closed{Concurrency: s.b.o.satConc, Duration: s.b.o.slice})
		}}
	}
	aggs, err := s.interleave(ctx, fmt.Sprintf("saturation C=%d", s.b.o.satConc), []job{closed(s.direct), closed(s.gw)})
	if err != nil {
		return err
	}
	sat := &Saturation{Concurrency: s.b.o.satConc, Direct: pathStats(&aggs[0].res)}
	if s.gw != nil {
		sat.Gateway = pathStats(&aggs[1].res)
		if sat.Direct.Throughput > 0 {
			sat.Ratio = round2(sat.Gateway.Throughput / sat.Direct.Throughput)
		}
		sat.CPU = s.cpuStats(aggs[1])
		if sat.CPU.USPerReq > 0 {
			sat.GatewayCapacityPerCore = float64(int(1e6 / sat.CPU.USPerReq))
		}
	}
	s.b.rep.Saturation = sat
	return nil
}

// streaming measures short streams (time to first token) and long streams
// (the cost of each relayed event), all four jobs interleaved.
func (s *scenarios) streaming(ctx context.Context) error {
	rate := s.b.o.streamRate
	short := func(p *path) *load.HTTPCaller { return p.short }
	long := func(p *path) *load.HTTPCaller { return p.long }
	expShort := time.Duration(s.b.o.chunks) * s.b.o.chunkDelay
	expLong := time.Duration(s.b.o.longChunks) * s.b.o.chunkDelay
	aggs, err := s.interleave(ctx, fmt.Sprintf("streams %.0f/s", rate), []job{
		s.openJob(s.direct, short(s.direct), rate, expShort, 30*time.Second),
		s.openJob(s.gw, callerOf(s.gw, short), rate, expShort, 30*time.Second),
		s.openJob(s.gw, callerOf(s.gw, long), rate, expLong, 30*time.Second),
		s.openJob(s.direct, long(s.direct), rate, expLong, 30*time.Second),
	})
	if err != nil {
		return err
	}
	mk := func(chunks int, d, g *agg) StreamCase {
		c := StreamCase{Chunks: chunks, Direct: pathStats(&d.res)}
		if s.gw != nil {
			c.Gateway = pathStats(&g.res)
			if c.Gateway.TTFT != nil && c.Direct.TTFT != nil {
				c.AddedTTFT = load.Sub(*c.Gateway.TTFT, *c.Direct.TTFT)
			}
			c.AddedTTFTP99PerRound, c.AddedTTFTP99Median = perRound(d.rounds, g.rounds, func(r *load.Result) int64 { return r.TTFT.ValueAtQuantile(99) })
			c.AddedTotal = load.Sub(c.Gateway.Latency, c.Direct.Latency)
			c.CPU = s.cpuStats(g)
		}
		return c
	}
	st := &Streaming{Rate: rate, Short: mk(s.b.o.chunks, aggs[0], aggs[1]), Long: mk(s.b.o.longChunks, aggs[3], aggs[2])}
	if s.gw != nil {
		sh, lo := st.Short, st.Long
		dEvents := lo.Gateway.EventsPerReq - sh.Gateway.EventsPerReq
		if dEvents > 0 && sh.CPU.Requests > 0 && lo.CPU.Requests > 0 {
			st.CPUPerEventUS = round2((lo.CPU.USPerReq - sh.CPU.USPerReq) / dEvents)
			st.CPUPerEventUSSched = round2((lo.CPU.USPerReqSched - sh.CPU.USPerReqSched) / dEvents)
		}
		if lo.Gateway.EventsPerReq > 0 {
			st.CPUPerEventUpperUS = round2(lo.CPU.USPerReq / lo.Gateway.EventsPerReq)
		}
	}
	s.b.rep.Streaming = st
	return nil
}

// perRound returns, for each round, the gateway slice's value minus the
// direct slice's of the same round, and the median of those differences:
// a paired estimate that one noisy slice cannot swing the way it swings a
// percentile of all rounds merged.
func perRound(direct, gw []*load.Result, value func(*load.Result) int64) ([]int64, int64) {
	var diffs []int64
	var fs []float64
	for i := range min(len(direct), len(gw)) {
		d := value(gw[i]) - value(direct[i])
		diffs = append(diffs, d)
		fs = append(fs, float64(d))
	}
	return diffs, int64(math.Round(load.Median(fs)))
}

func pathStats(r *load.Result) PathStats {
	p := PathStats{
		Sent:       r.Sent,
		OK:         r.OK,
		Failed:     r.Failed,
		Dropped:    r.Dropped,
		Late:       r.Late,
		Statuses:   r.Statuses,
		FirstError: r.FirstError,
		Throughput: round2(r.Throughput()),
		Latency:    load.Summarize(r.Latency),
		Service:    load.Summarize(r.Service),
	}
	if r.TTFT != nil && r.TTFT.TotalCount() > 0 {
		t := load.Summarize(r.TTFT)
		p.TTFT = &t
	}
	if r.Events > 0 && r.Sent > 0 {
		p.EventsPerReq = round2(float64(r.Events) / float64(r.Sent))
	}
	return p
}

func round2(f float64) float64 { return math.Round(f*100) / 100 }

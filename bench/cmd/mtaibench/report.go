package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/mtai-dev/mtai/bench/load"
)

// Report is everything one run measured; it is written as latest.json and
// rendered as latest.md.
type Report struct {
	Date       string      `json:"date"`
	Command    string      `json:"command"`
	Env        Env         `json:"env"`
	Settings   Settings    `json:"settings"`
	Plain      []PlainRate `json:"plain"`
	Saturation *Saturation `json:"saturation,omitempty"`
	Streaming  *Streaming  `json:"streaming,omitempty"`
	Memory     *Memory     `json:"memory,omitempty"`
	Targets    []Target    `json:"targets"`
	Notes      []string    `json:"notes,omitempty"`
}

// Env describes the machine and the build measured.
type Env struct {
	GoVersion  string `json:"go_version"`
	CPUModel   string `json:"cpu_model"`
	CPUs       int    `json:"cpus"`
	Kernel     string `json:"kernel"`
	Commit     string `json:"commit"`
	ClockTicks int64  `json:"clock_ticks"`
	FileLimit  uint64 `json:"file_limit"`
	PinGateway string `json:"pin_gateway,omitempty"`
	PinOthers  string `json:"pin_others,omitempty"`
}

// Settings are the run's parameters.
type Settings struct {
	Quick          bool      `json:"quick"`
	Slice          string    `json:"slice"`
	Rounds         int       `json:"rounds"`
	Rates          []float64 `json:"rates"`
	SatConcurrency int       `json:"sat_concurrency"`
	StreamRate     float64   `json:"stream_rate"`
	Chunks         int       `json:"chunks"`
	LongChunks     int       `json:"long_chunks"`
	ChunkDelay     string    `json:"chunk_delay"`
	ContentBytes   int       `json:"content_bytes"`
	PromptBytes    int       `json:"prompt_bytes"`
	Streams        int       `json:"streams"`
	Gateway        bool      `json:"gateway"`
}

// PathStats are one path's merged results over the rounds of a scenario.
type PathStats struct {
	Sent         int64         `json:"sent"`
	OK           int64         `json:"ok"`
	Failed       int64         `json:"failed"`
	Dropped      int64         `json:"dropped"`
	Late         int64         `json:"late"`
	Statuses     map[int]int64 `json:"statuses,omitempty"`
	FirstError   string        `json:"first_error,omitempty"`
	Throughput   float64       `json:"throughput_rps"`
	Latency      load.Summary  `json:"latency"`
	Service      load.Summary  `json:"service"`
	TTFT         *load.Summary `json:"ttft,omitempty"`
	EventsPerReq float64       `json:"events_per_request,omitempty"`
}

// GatewayCPU is the gateway process's CPU time during a job's slices.
type GatewayCPU struct {
	Ticks         int64   `json:"ticks"`
	SchedNs       int64   `json:"schedstat_ns"`
	Requests      int64   `json:"requests"`
	Events        int64   `json:"events"`
	WallSec       float64 `json:"wall_s"`
	USPerReq      float64 `json:"us_per_request"`
	USPerReqSched float64 `json:"us_per_request_schedstat"`
	Cores         float64 `json:"cores"`
	// SysPct is the share of the CPU time spent in the kernel (stime).
	SysPct float64 `json:"sys_pct"`
}

// PlainRate is the non-streamed scenario at one rate.
type PlainRate struct {
	Rate    float64   `json:"rate"`
	Direct  PathStats `json:"direct"`
	Gateway PathStats `json:"gateway"`
	Added   load.Diff `json:"added"`
	// AddedP99PerRound is each round's gateway p99 minus its direct p99;
	// AddedP99Median their median, the figure compared with the target.
	AddedP99PerRound []int64 `json:"added_p99_per_round_us,omitempty"`
	AddedP99Median   int64   `json:"added_p99_median_of_rounds_us"`
	// DirectP99PerRound is the direct path's p99 in each round: its spread
	// shows how noisy the machine was.
	DirectP99PerRound      []int64    `json:"direct_p99_per_round_us,omitempty"`
	CPU                    GatewayCPU `json:"gateway_cpu"`
	DirectGatewayIdleCores float64    `json:"gateway_idle_cores_during_direct"`
}

// Saturation is the closed-loop scenario.
type Saturation struct {
	Concurrency            int        `json:"concurrency"`
	Direct                 PathStats  `json:"direct"`
	Gateway                PathStats  `json:"gateway"`
	Ratio                  float64    `json:"ratio"`
	CPU                    GatewayCPU `json:"gateway_cpu"`
	GatewayCapacityPerCore float64    `json:"gateway_capacity_per_core_rps"`
}

// StreamCase is one stream length.
type StreamCase struct {
	Chunks     int       `json:"chunks"`
	Direct     PathStats `json:"direct"`
	Gateway    PathStats `json:"gateway"`
	AddedTTFT  load.Diff `json:"added_ttft"`
	AddedTotal load.Diff `json:"added_total"`
	// AddedTTFTP99PerRound and its median: see PlainRate.AddedP99Median.
	AddedTTFTP99PerRound []int64    `json:"added_ttft_p99_per_round_us,omitempty"`
	AddedTTFTP99Median   int64      `json:"added_ttft_p99_median_of_rounds_us"`
	CPU                  GatewayCPU `json:"gateway_cpu"`
}

// Streaming is the streaming scenario.
type Streaming struct {
	Rate  float64    `json:"rate"`
	Short StreamCase `json:"short"`
	Long  StreamCase `json:"long"`
	// CPUPerEventUS is (CPU per long stream - CPU per short stream) /
	// (events per long stream - events per short stream).
	CPUPerEventUS      float64 `json:"cpu_us_per_event"`
	CPUPerEventUSSched float64 `json:"cpu_us_per_event_schedstat"`
	// CPUPerEventUpperUS is CPU per long stream / its events: an upper
	// bound that includes each stream's fixed cost.
	CPUPerEventUpperUS float64 `json:"cpu_us_per_event_upper_bound"`
}

// Memory is the open-streams memory test.
type Memory struct {
	Streams                int     `json:"streams"`
	Opened                 int     `json:"opened"`
	Failed                 int     `json:"failed"`
	FirstError             string  `json:"first_error,omitempty"`
	OpenSeconds            float64 `json:"open_s"`
	IdleKiB                int64   `json:"idle_rss_kib"`
	OpenKiB                int64   `json:"open_rss_kib"`
	ClosedKiB              int64   `json:"closed_rss_kib"` // right after the streams ended, before any traffic
	AfterKiB               int64   `json:"after_rss_kib"`
	AfterSeriesKiB         []int64 `json:"after_rss_series_kib"`
	SettleSeconds          int     `json:"settle_s"`
	KiBPerStream           float64 `json:"kib_per_stream"`
	ReturnedPct            float64 `json:"returned_pct"`
	GatewayFDs             int     `json:"gateway_fds"`
	UpstreamHeld           int64   `json:"upstream_held"`
	CancelledBeforeRelease int64   `json:"upstream_cancelled_before_release"`
	// Runtime is the gateway's own view at each step, when it serves /metrics.
	Runtime []RuntimeStats `json:"runtime,omitempty"`
}

// RuntimeStats are Go runtime figures from the gateway's /metrics.
type RuntimeStats struct {
	Step          string `json:"step"`
	Goroutines    int64  `json:"goroutines"`
	HeapInuseKiB  int64  `json:"heap_inuse_kib"`
	StackInuseKiB int64  `json:"stack_inuse_kib"`
	GCs           int64  `json:"gcs"`
	OpenStreams   int64  `json:"open_streams"`
}

// Target is one reference line of the design, compared with the measure.
type Target struct {
	Metric   string  `json:"metric"`
	Measured float64 `json:"measured"`
	Unit     string  `json:"unit"`
	Limit    float64 `json:"limit"`
	Met      bool    `json:"met"`
	Basis    string  `json:"basis"`
}

func newReport(o options, clk int64) *Report {
	r := &Report{
		Date:    time.Now().UTC().Format(time.RFC3339),
		Command: "go run ./bench/cmd/mtaibench " + strings.Join(o.args, " "),
		Env: Env{
			GoVersion:  runtime.Version(),
			CPUModel:   cpuModel(),
			CPUs:       runtime.NumCPU(),
			Kernel:     readTrim("/proc/sys/kernel/osrelease"),
			Commit:     gitCommit(),
			ClockTicks: clk,
		},
		Settings: Settings{
			Quick: o.quick, Slice: o.slice.String(), Rounds: o.rounds, Rates: o.rates,
			SatConcurrency: o.satConc, StreamRate: o.streamRate, Chunks: o.chunks, LongChunks: o.longChunks,
			ChunkDelay: o.chunkDelay.String(), ContentBytes: o.contentBytes, PromptBytes: o.promptBytes,
			Streams: o.streams, Gateway: !o.noGateway,
		},
	}
	return r
}

func (r *Report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

func cpuModel() string {
	b, _ := os.ReadFile("/proc/cpuinfo")
	for line := range strings.Lines(string(b)) {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

func readTrim(path string) string {
	b, _ := os.ReadFile(path)
	return strings.TrimSpace(string(b))
}

func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return "none"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += "-dirty"
	}
	return c
}

// targets compares the run with the design's reference lines.
func (r *Report) targets() []Target {
	var ts []Target
	add := func(metric, unit, basis string, measured, limit float64) {
		ts = append(ts, Target{Metric: metric, Measured: measured, Unit: unit, Limit: limit, Met: measured <= limit, Basis: basis})
	}
	if !r.Settings.Gateway {
		return nil
	}
	// Added p99 at 1000 req/s, or at the nearest measured rate.
	if pr := r.nearestRate(1000); pr != nil {
		add("added p99 latency, non-streamed", "µs", fmt.Sprintf("at %.0f req/s; median of %d per-round differences (all rounds merged: %s)",
			pr.Rate, len(pr.AddedP99PerRound), signed(pr.Added.P99)), float64(pr.AddedP99Median), 1000)
	}
	var reqs int64
	var us float64
	for _, pr := range r.Plain {
		reqs += pr.CPU.Requests
		us += pr.CPU.USPerReq * float64(pr.CPU.Requests)
	}
	if reqs > 0 {
		add("gateway CPU per non-streamed request", "µs", "all open-loop rates", round2(us/float64(reqs)), 40)
	}
	if s := r.Streaming; s != nil {
		add("gateway CPU per relayed stream event", "µs", fmt.Sprintf("%d- vs %d-chunk streams", s.Long.Chunks, s.Short.Chunks), s.CPUPerEventUS, 5)
		add("added TTFT p99", "µs", fmt.Sprintf("%.0f streams/s; median of %d per-round differences (all rounds merged: %s)",
			s.Rate, len(s.Short.AddedTTFTP99PerRound), signed(s.Short.AddedTTFT.P99)), float64(s.Short.AddedTTFTP99Median), 1000)
	}
	if m := r.Memory; m != nil && m.Opened > 0 {
		add("gateway memory per open stream", "KiB", fmt.Sprintf("%d streams", m.Opened), m.KiBPerStream, 20)
	}
	return ts
}

func (r *Report) nearestRate(rate float64) *PlainRate {
	var best *PlainRate
	for i := range r.Plain {
		pr := &r.Plain[i]
		if best == nil || abs(pr.Rate-rate) < abs(best.Rate-rate) {
			best = pr
		}
	}
	return best
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}

// write renders the report into dir/latest.md and dir/latest.json and
// returns the markdown.
func (r *Report) write(dir string) (string, error) {
	r.Targets = r.targets()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	js, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return "", err
	}
	md := r.markdown()
	if err := os.WriteFile(filepath.Join(dir, "latest.json"), append(js, '\n'), 0o644); err != nil {
		return "", err
	}
	return md, os.WriteFile(filepath.Join(dir, "latest.md"), []byte(md), 0o644)
}

func us(v int64) string {
	if v >= 10000 || v <= -10000 {
		return fmt.Sprintf("%.1f ms", float64(v)/1000)
	}
	return fmt.Sprintf("%d µs", v)
}

func signed(v int64) string {
	if v > 0 {
		return "+" + us(v)
	}
	return us(v)
}

func errs(p PathStats) string {
	if p.Failed == 0 && p.Dropped == 0 {
		return "0"
	}
	s := fmt.Sprintf("%d", p.Failed+p.Dropped)
	if p.FirstError != "" {
		e := p.FirstError
		if len(e) > 60 {
			e = e[:60] + "…"
		}
		s += " (" + strings.ReplaceAll(e, "|", "/") + ")"
	}
	return s
}

func (r *Report) markdown() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	gw := r.Settings.Gateway
	w("# mtai benchmark, %s\n\n", r.Date)
	w("`%s`\n\n", r.Command)
	w("%s, %d CPUs (%s), Linux %s, %s, commit %s. ", r.Env.CPUModel, r.Env.CPUs, pinText(r.Env), r.Env.Kernel, r.Env.GoVersion, r.Env.Commit)
	w("Slices of %s, %d rounds, direct and gateway slices alternated (ABBA). Latencies are from the scheduled send time (open loop). ", r.Settings.Slice, r.Settings.Rounds)
	w("Gateway CPU is utime+stime of its process (/proc, %d ticks/s) over the gateway slices ÷ requests served.\n\n", r.Env.ClockTicks)

	if len(r.Targets) > 0 {
		w("## Against the targets\n\n| metric | measured | target | met | basis |\n|---|---:|---:|---|---|\n")
		for _, t := range r.Targets {
			w("| %s | %s %s | ≤ %s %s | %s | %s |\n", t.Metric, trimFloat(t.Measured), t.Unit, trimFloat(t.Limit), t.Unit, yesNo(t.Met), t.Basis)
		}
		w("\n")
	}

	w("## Non-streamed chat completions, open loop (%d-byte prompt, %d-byte answer)\n\n", r.Settings.PromptBytes, r.Settings.ContentBytes)
	w("| rate | path | ok | errors | late sends | p50 | p90 | p99 | p99.9 | added p50 | added p99 | added p99, median of rounds | gateway CPU/req |\n|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, pr := range r.Plain {
		w("| %.0f/s | direct | %d | %s | %d | %s | %s | %s | %s | | | | |\n", pr.Rate, pr.Direct.OK, errs(pr.Direct), pr.Direct.Late,
			us(pr.Direct.Latency.P50), us(pr.Direct.Latency.P90), us(pr.Direct.Latency.P99), us(pr.Direct.Latency.P999))
		if gw {
			w("| %.0f/s | gateway | %d | %s | %d | %s | %s | %s | %s | **%s** | %s | **%s** | **%s µs** (%s%% sys; schedstat %s) |\n", pr.Rate, pr.Gateway.OK, errs(pr.Gateway), pr.Gateway.Late,
				us(pr.Gateway.Latency.P50), us(pr.Gateway.Latency.P90), us(pr.Gateway.Latency.P99), us(pr.Gateway.Latency.P999),
				signed(pr.Added.P50), signed(pr.Added.P99), signed(pr.AddedP99Median), trimFloat(pr.CPU.USPerReq), trimFloat(pr.CPU.SysPct), trimFloat(pr.CPU.USPerReqSched))
		}
	}
	w("\n\"added\" is gateway minus direct; the medians pair each gateway slice with the direct slice of its round. Late sends left more than 1 ms after their due time (the load generator was short of CPU); their wait counts in their latency.")
	var spread []string
	for _, pr := range r.Plain {
		if len(pr.DirectP99PerRound) > 1 {
			lo, hi := slices.Min(pr.DirectP99PerRound), slices.Max(pr.DirectP99PerRound)
			spread = append(spread, fmt.Sprintf("%s to %s at %.0f/s", us(lo), us(hi), pr.Rate))
		}
	}
	if len(spread) > 0 {
		w(" How noisy the machine was: the direct path's own p99 ranged from %s across rounds.", strings.Join(spread, ", "))
	}
	w("\n\n")

	if s := r.Saturation; s != nil {
		w("## Saturation, closed loop (%d concurrent requests)\n\n| path | throughput | p50 | p99 | errors |\n|---|---:|---:|---:|---|\n", s.Concurrency)
		w("| direct | %.0f req/s | %s | %s | %s |\n", s.Direct.Throughput, us(s.Direct.Latency.P50), us(s.Direct.Latency.P99), errs(s.Direct))
		if gw {
			w("| gateway | %.0f req/s | %s | %s | %s |\n", s.Gateway.Throughput, us(s.Gateway.Latency.P50), us(s.Gateway.Latency.P99), errs(s.Gateway))
			w("\nGateway / direct throughput: **%.2f**. The gateway used %.2f cores at saturation, %s µs CPU per request: about %.0f req/s per core if it were the bottleneck.\n",
				s.Ratio, s.CPU.Cores, trimFloat(s.CPU.USPerReq), s.GatewayCapacityPerCore)
		}
		w("\n")
	}

	if s := r.Streaming; s != nil {
		w("## Streaming, open loop (%.0f streams/s, %s between chunks)\n\n", s.Rate, r.Settings.ChunkDelay)
		w("| stream | path | ok | errors | events/stream | TTFT p50 | TTFT p99 | total p50 | total p99 | added TTFT p50 | added TTFT p99 | added TTFT p99, median of rounds | gateway CPU/stream |\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, c := range []StreamCase{s.Short, s.Long} {
			row := func(name string, p PathStats) {
				var t load.Summary
				if p.TTFT != nil {
					t = *p.TTFT
				}
				w("| %d chunks | %s | %d | %s | %s | %s | %s | %s | %s |", c.Chunks, name, p.OK, errs(p), trimFloat(p.EventsPerReq),
					us(t.P50), us(t.P99), us(p.Latency.P50), us(p.Latency.P99))
			}
			row("direct", c.Direct)
			w(" | | | |\n")
			if gw {
				row("gateway", c.Gateway)
				w(" **%s** | %s | **%s** | %s µs |\n", signed(c.AddedTTFT.P50), signed(c.AddedTTFT.P99), signed(c.AddedTTFTP99Median), trimFloat(c.CPU.USPerReq))
			}
		}
		if gw {
			w("\nGateway CPU per relayed event: **%s µs** (difference between the two stream lengths; schedstat %s µs; all of a long stream's CPU ÷ its events: %s µs).\n",
				trimFloat(s.CPUPerEventUS), trimFloat(s.CPUPerEventUSSched), trimFloat(s.CPUPerEventUpperUS))
		}
		w("\n")
	}

	if m := r.Memory; m != nil {
		w("## Memory with %d open streams (silent upstream)\n\n| idle RSS | RSS with streams open | per open stream | RSS when closed | RSS after 3 s of traffic and settling | returned | streams opened | failed | gateway fds |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n", m.Streams)
		w("| %s | %s | **%s KiB** | %s | %s (after %d s) | %s%% | %d in %.1fs | %d | %d |\n", mib(m.IdleKiB), mib(m.OpenKiB), trimFloat(m.KiBPerStream), mib(m.ClosedKiB), mib(m.AfterKiB), m.SettleSeconds,
			trimFloat(m.ReturnedPct), m.Opened, m.OpenSeconds, m.Failed, m.GatewayFDs)
		w("\nThe upstream held %d streams; %d of them were cancelled by the gateway within 2 s of the clients closing, before the upstream sent another byte.", m.UpstreamHeld, m.CancelledBeforeRelease)
		if m.FirstError != "" {
			w(" First error: %s.", m.FirstError)
		}
		w("\n\n")
		if len(m.Runtime) > 0 && m.Runtime[0].Goroutines > 0 {
			w("The gateway's runtime (its /metrics):\n\n| step | goroutines | heap in use | stacks in use | GCs so far | open streams |\n|---|---:|---:|---:|---:|---:|\n")
			for _, rs := range m.Runtime {
				w("| %s | %d | %s | %s | %d | %d |\n", rs.Step, rs.Goroutines, mib(rs.HeapInuseKiB), mib(rs.StackInuseKiB), rs.GCs, rs.OpenStreams)
			}
			w("\n%s\n\n", m.verdict())
		}
	}
	if len(r.Notes) > 0 {
		w("## Notes\n\n")
		for _, n := range r.Notes {
			w("- %s\n", n)
		}
		w("\n")
	}
	return b.String()
}

// verdict reads the runtime figures: a leak, memory not yet collected, or returned.
func (m *Memory) verdict() string {
	var idle, closed, after RuntimeStats
	for _, rs := range m.Runtime {
		switch rs.Step {
		case "idle":
			idle = rs
		case "closed":
			closed = rs
		case "after":
			after = rs
		}
	}
	switch {
	case after.Goroutines > 2*idle.Goroutines+100:
		return fmt.Sprintf("**%d goroutines are still alive after the streams closed (%d when idle): something per stream leaks.**", after.Goroutines, idle.Goroutines)
	case m.ReturnedPct >= 90:
		return "Goroutines came back to their idle number and the memory was given back."
	case after.GCs == closed.GCs:
		return fmt.Sprintf("Goroutines came back to their idle number, but no garbage collection ran after the streams closed, so the %s of heap they used is not yet collected. The Go runtime forces one every 2 minutes; `-mem-settle 300s` waits for two (objects in a sync.Pool survive the first).", mib(after.HeapInuseKiB))
	case after.GCs-closed.GCs == 1:
		return fmt.Sprintf("Goroutines came back to their idle number and one collection ran, yet %s of heap is still in use. Objects in a sync.Pool (per-connection buffers) survive one collection and go at the second; `-mem-settle 300s` waits for two.", mib(after.HeapInuseKiB))
	default:
		return fmt.Sprintf("**Goroutines came back to their idle number and %d collections ran, yet %s of heap is still in use (%s%% of the growth came back): something keeps memory after a stream ends.**", after.GCs-closed.GCs, mib(after.HeapInuseKiB), trimFloat(m.ReturnedPct))
	}
}

func pinText(e Env) string {
	if e.PinGateway == "" {
		return "not pinned"
	}
	return fmt.Sprintf("gateway pinned to CPU %s, load generator and fake upstream to CPU %s", e.PinGateway, e.PinOthers)
}

func mib(kib int64) string { return fmt.Sprintf("%.1f MiB", float64(kib)/1024) }

func trimFloat(f float64) string {
	s := fmt.Sprintf("%.2f", f)
	s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	if s == "-0" {
		return "0"
	}
	return s
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "**no**"
}

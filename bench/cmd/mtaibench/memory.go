package main

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mtai-dev/mtai/bench/load"
)

// memory measures the gateway's resident memory idle, with o.streams streams
// held open through it against the silent upstream, and after they closed.
// It restarts the gateway first, so that the load scenarios' heap does not
// blur the baseline.
//
// A Go program gives freed memory back to the system only after a garbage
// collection, which a program that allocates nothing may not run for two
// minutes. So after the streams closed, a few seconds of plain requests (as
// a gateway in service would see) give the runtime a reason to collect,
// then RSS is polled for up to -mem-settle; the same traffic ran before the
// idle reading. When the gateway serves Prometheus metrics, its goroutine
// count, heap in use and number of collections are read at each step too,
// which tells memory kept by live objects (a leak) from memory not yet
// given back.
func (b *bench) memory(ctx context.Context) error {
	n := b.o.streams
	b.log("memory: restarting the gateway for a clean baseline")
	if err := b.startGateway(ctx); err != nil {
		return err
	}
	gw, err := b.newPath("gateway", b.gwAddr, true)
	if err != nil {
		return err
	}
	defer gw.close()
	silent := gw.silent
	pid := b.gw.pid()
	m := &Memory{Streams: n}
	b.rep.Memory = m
	traffic := func() error {
		r, err := load.RunClosed(ctx, gw.plain, load.Closed{Concurrency: 8, Duration: trafficTime})
		if err == nil && r.OK == 0 {
			err = fmt.Errorf("memory: plain requests through the gateway failed: %s", r.FirstError)
		}
		return err
	}

	// Warm every path the test uses, so that one-time allocations are in the baseline.
	if err := traffic(); err != nil {
		return err
	}
	warm := load.HoldStreams(silent, 64, 16, time.Now().Add(20*time.Second))
	warm.Close()
	if warm.Opened == 0 {
		return fmt.Errorf("memory: no silent stream could be opened through the gateway: %s", warm.FirstError)
	}
	if err := b.drainSilent(ctx, 30*time.Second); err != nil {
		return err
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	idle, err := readRSS(pid)
	if err != nil {
		return err
	}
	m.IdleKiB = idle
	m.Runtime = append(m.Runtime, b.runtimeStats("idle"))

	b.log("memory: opening %d streams through the gateway (idle RSS %d KiB)", n, idle)
	t0 := time.Now()
	held := load.HoldStreams(silent, n, 256, time.Now().Add(pick(b.o.quick, 90*time.Second, 150*time.Second)))
	m.OpenSeconds = round2(time.Since(t0).Seconds())
	m.Opened, m.Failed, m.FirstError = held.Opened, held.Failed, held.FirstError
	defer held.Close()
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	if m.OpenKiB, err = readRSS(pid); err != nil {
		return err
	}
	m.Runtime = append(m.Runtime, b.runtimeStats("open"))
	if fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid)); err == nil {
		m.GatewayFDs = len(fds)
	}
	if st, err := b.upstreamStats(); err == nil {
		m.UpstreamHeld = st.SilentOpen
	}
	if m.Opened > 0 {
		m.KiBPerStream = round2(float64(m.OpenKiB-m.IdleKiB) / float64(m.Opened))
	}
	b.log("memory: %d open (%d failed) in %.1fs, RSS %d KiB, %.1f KiB/stream, upstream holds %d",
		m.Opened, m.Failed, m.OpenSeconds, m.OpenKiB, m.KiBPerStream, m.UpstreamHeld)

	// Close the clients. A gateway that notices at once cancels its upstream
	// streams now; one that learns it at its next write does so after the
	// release below, when the upstream sends the rest of each stream.
	held.Close()
	if err := sleep(ctx, 2*time.Second); err != nil {
		return err
	}
	if st, err := b.upstreamStats(); err == nil {
		m.CancelledBeforeRelease = m.UpstreamHeld - st.SilentOpen
	}
	if err := b.drainSilent(ctx, 60*time.Second); err != nil {
		return err
	}
	if m.ClosedKiB, err = readRSS(pid); err != nil {
		return err
	}
	m.Runtime = append(m.Runtime, b.runtimeStats("closed"))
	if err := traffic(); err != nil {
		return err
	}

	// Let the runtime give memory back: poll RSS every second for up to
	// -mem-settle, and stop once 90% of the growth has returned.
	settleEnd := time.Now().Add(b.o.memSettle)
	for time.Now().Before(settleEnd) {
		if err := sleep(ctx, time.Second); err != nil {
			return err
		}
		rss, err := readRSS(pid)
		if err != nil {
			return err
		}
		m.AfterSeriesKiB = append(m.AfterSeriesKiB, rss)
		m.AfterKiB = rss
		if grown := m.OpenKiB - m.IdleKiB; grown > 0 && float64(rss-m.IdleKiB) <= 0.1*float64(grown) {
			break
		}
	}
	m.SettleSeconds = len(m.AfterSeriesKiB)
	m.Runtime = append(m.Runtime, b.runtimeStats("after"))
	if grown := m.OpenKiB - m.IdleKiB; grown > 0 {
		m.ReturnedPct = round2(100 * float64(m.OpenKiB-m.AfterKiB) / float64(grown))
	}
	b.log("memory: after close RSS %d KiB (%.0f%% of the growth returned)", m.AfterKiB, m.ReturnedPct)
	return nil
}

// drainSilent releases the upstream's silent streams and waits until none is left.
func (b *bench) drainSilent(ctx context.Context, timeout time.Duration) error {
	if err := b.upstreamRelease(); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	for {
		st, err := b.upstreamStats()
		if err != nil {
			return err
		}
		if st.SilentOpen == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("memory: the upstream still holds %d silent streams %v after release", st.SilentOpen, timeout)
		}
		// Streams that reached the upstream after the last release wait again.
		if err := b.upstreamRelease(); err != nil {
			return err
		}
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return err
		}
	}
}

// trafficTime is how long the plain traffic of the memory test runs.
const trafficTime = 3 * time.Second

// runtimeStats reads a few of the gateway's Go runtime metrics from its
// /metrics page; it returns only the step name when the page is missing.
func (b *bench) runtimeStats(step string) RuntimeStats {
	rs := RuntimeStats{Step: step}
	resp, err := b.ctl.Get("http://" + b.gwAddr + "/metrics")
	if err != nil {
		return rs
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return rs
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			continue
		}
		switch name {
		case "go_goroutines":
			rs.Goroutines = int64(f)
		case "go_memstats_heap_inuse_bytes":
			rs.HeapInuseKiB = int64(f) / 1024
		case "go_memstats_stack_inuse_bytes":
			rs.StackInuseKiB = int64(f) / 1024
		case "go_gc_duration_seconds_count":
			rs.GCs = int64(f)
		case "mtai_open_streams":
			rs.OpenStreams = int64(f)
		}
	}
	return rs
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/bench/load"
)

func TestParseStatTicks(t *testing.T) {
	tests := []struct {
		name, stat string
		user, sys  int64
		wantErr    bool
	}{
		{"plain", "42 (mtai) S 1 42 42 0 -1 4194560 100 0 0 0 700 300 0 0 20 0 9 0 123 456 789", 700, 300, false},
		{"name with spaces and parens", "42 (a (b) c) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 1 2 3", 7, 3, false},
		{"truncated", "42 (x) S 1 2 3", 0, 0, true},
		{"no name", "42 x S", 0, 0, true},
		{"not numbers", "42 (x) S 1 42 42 0 -1 0 0 0 0 0 a b 0 0", 0, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			user, sys, err := parseStatTicks([]byte(tc.stat))
			if (err != nil) != tc.wantErr || user != tc.user || sys != tc.sys {
				t.Errorf("parseStatTicks(%q) = %d, %d, %v; want %d, %d, error %v", tc.stat, user, sys, err, tc.user, tc.sys, tc.wantErr)
			}
		})
	}
}

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tmtai\nVmPeak:\t  9999 kB\nVmRSS:\t   15220 kB\nThreads:\t9\n"
	if got, err := parseVmRSS([]byte(status)); err != nil || got != 15220 {
		t.Errorf("parseVmRSS = %d, %v; want 15220", got, err)
	}
	if _, err := parseVmRSS([]byte("Name:\tx\n")); err == nil {
		t.Error("parseVmRSS without a VmRSS line: want an error")
	}
}

func TestReadOwnProcess(t *testing.T) {
	before, err := readCPU(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// Burn CPU until the kernel's precise counter moved by 30ms (bounded in time).
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for {
		for i := 0; i < 1_000_000; i++ {
			x += i
		}
		now, err := readCPU(os.Getpid())
		if err != nil {
			t.Fatal(err)
		}
		if now.nanos-before.nanos >= 30e6 {
			if now.ticks < before.ticks {
				t.Errorf("ticks went back: %d -> %d", before.ticks, now.ticks)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("schedstat CPU did not grow by 30ms in 10s (x=%d)", x)
		}
	}
	if rss, err := readRSS(os.Getpid()); err != nil || rss <= 0 {
		t.Errorf("readRSS = %d, %v", rss, err)
	}
}

func TestParseFlags(t *testing.T) {
	o, err := parseFlags([]string{"-quick"})
	if err != nil {
		t.Fatal(err)
	}
	if o.slice != 2*time.Second || o.rounds != 2 || len(o.rates) != 2 {
		t.Errorf("quick defaults: slice %v rounds %d rates %v", o.slice, o.rounds, o.rates)
	}
	o, err = parseFlags([]string{"-rates", "100, 250"})
	if err != nil || o.slice != 5*time.Second || len(o.rates) != 2 || o.rates[1] != 250 {
		t.Errorf("full with rates: %+v, %v", o, err)
	}
	for _, bad := range [][]string{{"-rates", "x"}, {"-rates", "0"}, {"-slice", "10ms"}, {"-long-chunks", "4"}, {"extra"}} {
		if _, err := parseFlags(bad); err == nil {
			t.Errorf("parseFlags(%q) = nil error", bad)
		}
	}
}

func TestReportTargetsAndFiles(t *testing.T) {
	o, _ := parseFlags([]string{"-quick"})
	r := newReport(o, 100)
	r.Plain = []PlainRate{
		{Rate: 500, Added: load.Diff{P99: 9000}, AddedP99PerRound: []int64{200, 400}, AddedP99Median: 300, DirectP99PerRound: []int64{9000, 2000}, CPU: GatewayCPU{Requests: 1000, USPerReq: 30}},
		{Rate: 2000, Added: load.Diff{P99: 1500}, AddedP99Median: 1500, CPU: GatewayCPU{Requests: 3000, USPerReq: 50}},
	}
	r.Streaming = &Streaming{Rate: 100, CPUPerEventUS: 2.5,
		Short: StreamCase{Chunks: 8, AddedTTFT: load.Diff{P99: 100}, AddedTTFTP99Median: 1200}, Long: StreamCase{Chunks: 128}}
	r.Memory = &Memory{Opened: 100, KiBPerStream: 12}

	dir := t.TempDir()
	md, err := r.write(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]struct {
		measured float64
		met      bool
	}{
		"added p99 latency, non-streamed":      {300, true}, // 500 is nearer to 1000 than 2000; the median, not the merged 9000
		"gateway CPU per non-streamed request": {45, false}, // weighted by requests
		"gateway CPU per relayed stream event": {2.5, true},
		"added TTFT p99":                       {1200, false},
		"gateway memory per open stream":       {12, true},
	}
	if len(r.Targets) != len(want) {
		t.Fatalf("%d targets, want %d: %+v", len(r.Targets), len(want), r.Targets)
	}
	for _, tg := range r.Targets {
		w, ok := want[tg.Metric]
		if !ok || tg.Measured != w.measured || tg.Met != w.met {
			t.Errorf("target %q = %v (met %v), want %v (met %v)", tg.Metric, tg.Measured, tg.Met, w.measured, w.met)
		}
	}
	for _, s := range []string{"| added TTFT p99 | 1200 µs | ≤ 1000 µs | **no** |", "| 2000/s | gateway |", "## Memory with", "ranged from 2000 µs to 9000 µs at 500/s"} {
		if !strings.Contains(md, s) {
			t.Errorf("markdown lacks %q:\n%s", s, md)
		}
	}
	for _, f := range []string{"latest.md", "latest.json"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s not written: %v", f, err)
		}
	}
}

package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/mtai-dev/mtai/bench/load"
	"github.com/mtai-dev/mtai/bench/upstream"
)

// Model names the gateway routes to the fake upstream's profiles.
const (
	modelPlain  = "bench-model"        // upstream /v1: short streams, plain answers
	modelLong   = "bench-model-long"   // upstream /long/v1: long streams
	modelSilent = "bench-model-silent" // upstream /silent/v1: silent streams
)

// bench is one benchmark run: its processes, callers and report.
type bench struct {
	o         options
	root, tmp string
	clk       int64  // clock ticks per second
	cpuGW     string // taskset list for the gateway ("" unpinned)
	cpuOther  string // taskset list for the upstream and this process
	key       string
	upBin     string
	gwBin     string
	up        *child
	upAddr    string
	gw        *child
	gwAddr    string
	rep       *Report
	spawn     *spawner
	ctl       *http.Client // for the upstream's and the gateway's control pages
	log       func(format string, args ...any)
}

func run(ctx context.Context, o options) error {
	ctx, cancel := context.WithTimeout(ctx, o.maxTime)
	defer cancel()
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "mtaibench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)

	b := &bench{o: o, root: root, tmp: tmp, clk: clockTicks(), key: "sk-bench-" + randHex(12), ctl: &http.Client{Timeout: 5 * time.Second}}
	b.log = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s  %s\n", time.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
	}
	b.rep = newReport(o, b.clk)
	b.spawn = newSpawner()
	defer b.spawn.close()
	defer b.stopAll()

	if err := b.setup(ctx); err != nil {
		return err
	}
	if err := b.measure(ctx); err != nil {
		return err
	}
	out := o.out
	if !filepath.IsAbs(out) {
		out = filepath.Join(root, out)
	}
	md, err := b.rep.write(out)
	if err != nil {
		return err
	}
	fmt.Println(md)
	b.log("wrote %s and %s", filepath.Join(out, "latest.md"), filepath.Join(out, "latest.json"))
	return nil
}

func (b *bench) stopAll() {
	if b.gw != nil {
		b.gw.stop(10 * time.Second)
	}
	if b.up != nil {
		b.up.stop(5 * time.Second)
	}
}

// setup raises limits, pins CPUs, builds and starts both processes.
func (b *bench) setup(ctx context.Context) error {
	o := &b.o
	want := uint64(max(65536, 2*o.streams+8192))
	got := raiseFileLimit(want)
	b.rep.Env.FileLimit = got
	// The gateway holds two descriptors per stream (client and upstream).
	if need := uint64(2*o.streams + 200); o.streams > 0 && got < need {
		asked := o.streams
		o.streams = int(got-200) / 2
		b.rep.note("the open-file limit is %d and cannot be raised here (no CAP_SYS_RESOURCE), so the gateway can hold at most %d streams at two descriptors each: the memory test holds %d streams instead of %d", got, o.streams, o.streams, asked)
		b.rep.Settings.Streams = o.streams
	}

	n := runtime.NumCPU()
	if o.pin && n >= 2 {
		if _, err := exec.LookPath("taskset"); err != nil {
			b.rep.note("taskset not found: processes are not pinned")
		} else {
			b.cpuGW = strconv.Itoa(n - 1)
			b.cpuOther = "0"
			if n > 2 {
				b.cpuOther = fmt.Sprintf("0-%d", n-2)
			}
			if err := pinSelf(b.cpuOther); err != nil {
				return err
			}
			runtime.GOMAXPROCS(n - 1)
		}
	}
	b.rep.Env.PinGateway, b.rep.Env.PinOthers = b.cpuGW, b.cpuOther

	b.upBin = filepath.Join(b.tmp, "fakeupstream")
	b.log("building bench/cmd/fakeupstream")
	if err := goBuild(ctx, b.root, "./bench/cmd/fakeupstream", b.upBin); err != nil {
		return err
	}
	if !o.noGateway {
		b.gwBin = o.gatewayBin
		if b.gwBin == "" {
			b.gwBin = filepath.Join(b.tmp, "mtai")
			b.log("building cmd/mtai")
			if err := goBuild(ctx, b.root, "./cmd/mtai", b.gwBin); err != nil {
				return err
			}
		}
	}
	if err := b.startUpstream(); err != nil {
		return err
	}
	if !o.noGateway {
		return b.startGateway(ctx)
	}
	return nil
}

func (b *bench) startUpstream() error {
	cfg := fmt.Sprintf(`addr: 127.0.0.1:0
model: %[1]s
models: [%[1]s, %[2]s, %[3]s]
default: {content_bytes: %[4]d, chunks: %[5]d, chunk_delay: %[6]s}
profiles:
  long: {chunks: %[7]d, chunk_delay: %[6]s}
  silent: {silent: true, chunks: %[5]d, silent_hold: %[8]s}
`, modelPlain, modelLong, modelSilent, b.o.contentBytes, b.o.chunks, b.o.chunkDelay, b.o.longChunks, b.o.maxTime)
	path := filepath.Join(b.tmp, "upstream.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return err
	}
	var addr string
	c, err := b.spawn.startChild("fakeupstream", b.tmp, b.upBin,
		[]string{"-config", path, "-lifetime", b.o.maxTime.String()},
		minimalEnv(), b.cpuOther, func(line string) bool {
			a, ok := strings.CutPrefix(line, "listening http://")
			addr = a
			return ok
		})
	if err != nil {
		return err
	}
	b.up = c
	if addr == "" {
		return fmt.Errorf("fakeupstream did not start: %v\n%s", c.err, c.tail())
	}
	b.upAddr = addr
	b.log("fake upstream on %s (pid %d)", addr, c.pid())
	return nil
}

// startGateway starts a fresh gateway process (stopping a running one).
func (b *bench) startGateway(ctx context.Context) error {
	if b.gw != nil {
		b.gw.stop(10 * time.Second)
		b.gw = nil
	}
	port, err := freePort()
	if err != nil {
		return err
	}
	b.gwAddr = fmt.Sprintf("127.0.0.1:%d", port)
	var cfg strings.Builder
	cfg.WriteString("providers:\n  models:\n")
	for _, m := range []struct {
		name, path, extra string
	}{
		{modelPlain, "/v1", ""},
		{modelLong, "/long/v1", ""},
		// 10,000 held streams need more than the default 4096 upstream
		// connections, and must outlast the default 60s silence timeout.
		{modelSilent, "/silent/v1", fmt.Sprintf("\n          max_conns: %d\n          timeout: %s", b.o.streams+1024, b.o.maxTime)},
	} {
		fmt.Fprintf(&cfg, `    - name: %s
      deployments:
        - provider: openai
          model: %s
          base_url: http://%s%s
          api_key_env: BENCH_UPSTREAM_KEY%s
`, m.name, m.name, b.upAddr, m.path, m.extra)
	}
	path := filepath.Join(b.tmp, "config.yaml")
	if err := os.WriteFile(path, []byte(cfg.String()), 0o600); err != nil {
		return err
	}
	data := filepath.Join(b.tmp, "data")
	if err := os.MkdirAll(data, 0o700); err != nil {
		return err
	}
	env := append(minimalEnv(),
		"MTAI_ADDR="+b.gwAddr,
		"MTAI_DATA_DIR="+data,
		"MTAI_BOOTSTRAP_API_KEY="+b.key,
		"LOG_LEVEL=warn",
		"MTAI_CONFIG="+path,
		"BENCH_UPSTREAM_KEY=x",
	)
	c, err := b.spawn.startChild("mtai", b.tmp, b.gwBin, nil, env, b.cpuGW, nil)
	if err != nil {
		return err
	}
	b.gw = c
	if err := waitPing(ctx, "http://"+b.gwAddr+"/ping", c, 60*time.Second); err != nil {
		return err
	}
	b.log("gateway on %s (pid %d)", b.gwAddr, c.pid())
	return nil
}

// minimalEnv is what the children get from this process's environment:
// enough to run, nothing that would switch the gateway to other backends.
func minimalEnv() []string {
	var env []string
	for _, k := range []string{"PATH", "HOME", "TMPDIR", "LANG"} {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func randHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// path is one way to reach the upstream: directly or through the gateway.
type path struct {
	name               string
	plain, short, long *load.HTTPCaller
	silent             load.HTTPTarget
}

func (b *bench) newPath(name, base string, gateway bool) (*path, error) {
	prompt := strings.Repeat("How do I benchmark a gateway? ", b.o.promptBytes/30+1)[:b.o.promptBytes]
	body := func(model string, stream bool) []byte {
		m := map[string]any{"model": model, "messages": []map[string]string{{"role": "user", "content": prompt}}}
		if stream {
			m["stream"] = true
		}
		raw, _ := json.Marshal(m)
		return raw
	}
	key := ""
	if gateway {
		key = b.key
	}
	// Through the gateway every model is under /v1; directly, each profile has its prefix.
	url := func(profile string) string {
		if gateway || profile == "" {
			return "http://" + base + "/v1/chat/completions"
		}
		return "http://" + base + "/" + profile + "/v1/chat/completions"
	}
	p := &path{name: name}
	var err error
	mk := func(dst **load.HTTPCaller, t load.HTTPTarget) {
		if err == nil {
			*dst, err = load.NewHTTPCaller(t)
		}
	}
	mk(&p.plain, load.HTTPTarget{URL: url(""), Body: body(modelPlain, false), APIKey: key})
	mk(&p.short, load.HTTPTarget{URL: url(""), Body: body(modelPlain, true), APIKey: key, Stream: true})
	mk(&p.long, load.HTTPTarget{URL: url("long"), Body: body(modelLong, true), APIKey: key, Stream: true})
	p.silent = load.HTTPTarget{URL: url("silent"), Body: body(modelSilent, true), APIKey: key, Stream: true}
	return p, err
}

func (p *path) close() {
	for _, c := range []*load.HTTPCaller{p.plain, p.short, p.long} {
		if c != nil {
			c.Close()
		}
	}
}

// measure runs every scenario and fills the report.
func (b *bench) measure(ctx context.Context) error {
	direct, err := b.newPath("direct", b.upAddr, false)
	if err != nil {
		return err
	}
	defer direct.close()
	var gw *path
	if !b.o.noGateway {
		if gw, err = b.newPath("gateway", b.gwAddr, true); err != nil {
			return err
		}
		defer gw.close()
	}

	b.log("warming up")
	for _, p := range []*path{direct, gw} {
		if p == nil {
			continue
		}
		for _, c := range []*load.HTTPCaller{p.plain, p.short, p.long} {
			r, err := load.RunOpen(ctx, c, load.Open{Rate: 200, Duration: pick(b.o.quick, 500*time.Millisecond, time.Second), Timeout: 30 * time.Second})
			if err != nil {
				return err
			}
			if r.OK == 0 {
				return fmt.Errorf("warm-up via %s failed: %d requests, first error: %s%s", p.name, r.Sent, r.FirstError, b.deaths())
			}
		}
	}

	s := &scenarios{b: b, direct: direct, gw: gw}
	for _, rate := range b.o.rates {
		if err := s.plainAtRate(ctx, rate); err != nil {
			return err
		}
	}
	if err := s.saturation(ctx); err != nil {
		return err
	}
	if err := s.streaming(ctx); err != nil {
		return err
	}
	if b.o.streams > 0 && gw != nil {
		if err := b.memory(ctx); err != nil {
			return err
		}
	}
	return nil
}

// deaths describes the children that have exited, for an error message.
func (b *bench) deaths() string {
	var s string
	for _, c := range []*child{b.up, b.gw} {
		if c != nil && c.exited() {
			s += fmt.Sprintf("\n%s exited: %v\n%s", c.name, c.err, c.tail())
		}
	}
	return s
}

// upstreamStats reads the fake upstream's counters.
func (b *bench) upstreamStats() (upstream.Stats, error) {
	var s upstream.Stats
	resp, err := b.ctl.Get("http://" + b.upAddr + "/_bench/stats")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return s, errors.New(resp.Status)
	}
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func (b *bench) upstreamRelease() error {
	resp, err := b.ctl.Post("http://"+b.upAddr+"/_bench/release", "application/json", nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

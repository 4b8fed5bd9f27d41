// Command mtaibench measures what the mtai gateway adds to a request: it
// builds and starts the fake upstream (bench/cmd/fakeupstream) and the
// gateway (cmd/mtai) as subprocesses, drives both the upstream directly and
// the gateway with the same load in alternating slices, and writes a
// markdown table and a JSON file of the differences to -out.
//
//	go run ./bench/cmd/mtaibench -out bench/results          # full, ~6-8 min
//	go run ./bench/cmd/mtaibench -out bench/results -quick   # ~2 min
//
// See bench/README.md for the method and the meaning of each number.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	opts, err := parseFlags(os.Args[1:])
	if err == nil {
		err = run(ctx, opts)
	}
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "mtaibench:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	out          string
	quick        bool
	slice        time.Duration
	rounds       int
	rates        []float64
	satConc      int
	streamRate   float64
	chunks       int
	longChunks   int
	chunkDelay   time.Duration
	contentBytes int
	promptBytes  int
	streams      int
	memSettle    time.Duration
	pin          bool
	noGateway    bool
	gatewayBin   string
	maxTime      time.Duration
	args         []string
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("mtaibench", flag.ContinueOnError)
	fs.StringVar(&o.out, "out", "bench/results", "directory for latest.md and latest.json (relative to the module root)")
	fs.BoolVar(&o.quick, "quick", false, "short slices and rounds, rates 500 and 2000 req/s (about 2 minutes)")
	fs.DurationVar(&o.slice, "slice", 0, "length of one measurement slice (default 5s, quick 2s)")
	fs.IntVar(&o.rounds, "rounds", 0, "direct/gateway slice pairs per scenario (default 4, quick 2)")
	rates := fs.String("rates", "", "non-streamed open-loop rates in req/s, comma-separated (default 500,1000,2000; quick 500,2000)")
	fs.IntVar(&o.satConc, "sat-concurrency", 32, "closed-loop workers of the saturation run")
	fs.Float64Var(&o.streamRate, "stream-rate", 100, "streams started per second in the streaming scenarios")
	fs.IntVar(&o.chunks, "chunks", 8, "content chunks of a short stream (TTFT scenario)")
	fs.IntVar(&o.longChunks, "long-chunks", 128, "content chunks of a long stream (per-event cost)")
	fs.DurationVar(&o.chunkDelay, "chunk-delay", time.Millisecond, "upstream pause between two content chunks")
	fs.IntVar(&o.contentBytes, "content-bytes", 512, "content size of a non-streamed answer")
	fs.IntVar(&o.promptBytes, "prompt-bytes", 256, "size of the user message in each request")
	fs.IntVar(&o.streams, "streams", 10000, "concurrent silent streams of the memory test (0 skips it)")
	fs.DurationVar(&o.memSettle, "mem-settle", 0, "longest wait for the gateway's memory to return after the streams closed (default 20s, quick 10s; ends early once 90% is back; 300s covers two forced collections)")
	fs.BoolVar(&o.pin, "pin", true, "pin the gateway to the last CPU and everything else to the others (needs 2+ CPUs and taskset)")
	fs.BoolVar(&o.noGateway, "no-gateway", false, "measure the direct path only (to test the harness without a gateway)")
	fs.StringVar(&o.gatewayBin, "gateway-bin", "", "use this mtai binary instead of building ./cmd/mtai")
	fs.DurationVar(&o.maxTime, "max-time", 25*time.Minute, "abort the whole run after this long")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	o.args = args
	if o.slice == 0 {
		o.slice = pick(o.quick, 2*time.Second, 5*time.Second)
	}
	if o.memSettle == 0 {
		o.memSettle = pick(o.quick, 10*time.Second, 20*time.Second)
	}
	if o.rounds == 0 {
		o.rounds = pick(o.quick, 2, 4)
	}
	if *rates == "" {
		*rates = pick(o.quick, "500,2000", "500,1000,2000")
	}
	for _, s := range strings.Split(*rates, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil || r <= 0 {
			return o, fmt.Errorf("-rates: %q is not a positive number", s)
		}
		o.rates = append(o.rates, r)
	}
	switch {
	case o.slice < 500*time.Millisecond:
		return o, errors.New("-slice must be at least 500ms")
	case o.rounds < 1:
		return o, errors.New("-rounds must be at least 1")
	case o.satConc < 1, o.streamRate <= 0, o.chunks < 1, o.longChunks <= o.chunks:
		return o, errors.New("-sat-concurrency, -stream-rate and -chunks must be positive, and -long-chunks above -chunks")
	case o.streams < 0 || o.streams > 100000:
		return o, errors.New("-streams must be between 0 and 100000")
	}
	return o, nil
}

func pick[T any](quick bool, q, full T) T {
	if quick {
		return q
	}
	return full
}

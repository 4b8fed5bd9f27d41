// Command fakeupstream runs the benchmark's fake OpenAI-compatible upstream
// (package bench/upstream) as its own process, so that its CPU use is not
// counted with the load generator's or the gateway's.
//
//	go run ./bench/cmd/fakeupstream -addr 127.0.0.1:9000 -chunks 32 -chunk-delay 1ms
//	go run ./bench/cmd/fakeupstream -config profiles.yaml
//
// Once it listens it prints one line, "listening http://HOST:PORT", on
// standard output. It stops on SIGINT or SIGTERM, or after -lifetime.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"gopkg.in/yaml.v3"

	"github.com/mtai-dev/mtai/bench/upstream"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:])
	stop()
	if err != nil && !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintln(os.Stderr, "fakeupstream:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("fakeupstream", flag.ContinueOnError)
	var (
		cfgPath  = fs.String("config", "", "YAML file with an upstream.Config (addr, default, profiles, ...); flags below override its default profile")
		addr     = fs.String("addr", "", "listen address (default 127.0.0.1:0, a free port)")
		lifetime = fs.Duration("lifetime", 0, "exit after this long (0: run until signalled)")
		p        upstream.Profile
	)
	fs.IntVar(&p.ContentBytes, "content-bytes", 0, "size of a non-streamed answer's content (default 256)")
	fs.IntVar(&p.Chunks, "chunks", 0, "content chunks per stream (default 8)")
	fs.IntVar(&p.ChunkBytes, "chunk-bytes", 0, "content bytes per chunk (default 4)")
	fs.DurationVar(&p.ChunkDelay, "chunk-delay", 0, "pause between two content chunks")
	fs.DurationVar(&p.FirstByte, "first-byte", 0, "pause before the first byte of an answer")
	fs.BoolVar(&p.Silent, "silent", false, "streams send their first event, then wait for the client to close or -silent-hold")
	fs.DurationVar(&p.SilentHold, "silent-hold", 0, "longest wait of a silent stream (default 60s)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	var cfg upstream.Config
	if *cfgPath != "" {
		raw, err := os.ReadFile(*cfgPath)
		if err != nil {
			return err
		}
		if err := yaml.Unmarshal(raw, &cfg); err != nil {
			return fmt.Errorf("%s: %w", *cfgPath, err)
		}
	}
	if *addr != "" {
		cfg.Addr = *addr
	}
	// Flags that were given override the file's default profile.
	fs.Visit(func(f *flag.Flag) {
		d := &cfg.Default
		switch f.Name {
		case "content-bytes":
			d.ContentBytes = p.ContentBytes
		case "chunks":
			d.Chunks = p.Chunks
		case "chunk-bytes":
			d.ChunkBytes = p.ChunkBytes
		case "chunk-delay":
			d.ChunkDelay = p.ChunkDelay
		case "first-byte":
			d.FirstByte = p.FirstByte
		case "silent":
			d.Silent = p.Silent
		case "silent-hold":
			d.SilentHold = p.SilentHold
		}
	})

	s, err := upstream.Start(cfg)
	if err != nil {
		return err
	}
	fmt.Printf("listening http://%s\n", s.Addr())
	if *lifetime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, *lifetime)
		defer cancel()
	}
	<-ctx.Done()
	return s.Close()
}

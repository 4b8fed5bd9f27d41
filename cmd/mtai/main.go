// Command mtai is the multi-tenant AI gateway. It wires the packages
// together; it holds no logic of its own beyond flags, configuration,
// signals and subcommands:
//
//	mtai [serve]      start the gateway (the default)
//	mtai healthcheck  GET /ping on the local gateway; exit 0 when it answers
//	mtai version      print the version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mtai-dev/mtai/gateway"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/mock"
	"github.com/mtai-dev/mtai/providers/openai"
	"github.com/mtai-dev/mtai/tenancy"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "mtai:", err)
		stop()
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd = args[0]
	}
	switch cmd {
	case "serve":
		return serve(ctx, getenv, stdout)
	case "healthcheck":
		return healthcheck(getenv)
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, "mtai", version)
		return nil
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return fmt.Errorf("unknown command %q\n%s", cmd, usage)
}

const usage = `usage: mtai [command]

commands:
  serve        start the gateway (default)
  healthcheck  exit 0 when the local gateway answers /ping (for container health checks)
  version      print the version

configuration: environment variables and the YAML file named by MTAI_CONFIG (see README).
`

// newLogger builds the zap logger: JSON lines (console with DEBUG=true),
// buffered so that logging never costs a write syscall per request; the
// returned stop flushes it.
func newLogger(cfg *Config, out io.Writer) (*zap.Logger, func()) {
	level, _ := zapcore.ParseLevel(cfg.LogLevel)
	var enc zapcore.Encoder
	if cfg.Debug {
		enc = zapcore.NewConsoleEncoder(zap.NewDevelopmentEncoderConfig())
		if cfg.LogLevel == "info" {
			level = zapcore.DebugLevel
		}
	} else {
		ec := zap.NewProductionEncoderConfig()
		ec.TimeKey = "ts"
		ec.EncodeTime = zapcore.ISO8601TimeEncoder
		enc = zapcore.NewJSONEncoder(ec)
	}
	ws := &zapcore.BufferedWriteSyncer{WS: zapcore.AddSync(out), Size: 256 << 10, FlushInterval: time.Second}
	core := zapcore.NewCore(enc, ws, level)
	return zap.New(core), func() { _ = ws.Stop() }
}

func serve(ctx context.Context, getenv func(string) string, stdout io.Writer) error {
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	log, flush := newLogger(cfg, stdout)
	defer flush()

	router, err := providers.NewRouter(cfg.Providers, map[string]providers.Factory{
		"openai": func(d providers.DeploymentConfig) (providers.Provider, error) { return openai.New(d) },
		"azure":  func(d providers.DeploymentConfig) (providers.Provider, error) { return openai.New(d) },
		"mock":   func(d providers.DeploymentConfig) (providers.Provider, error) { return mock.New(d) },
	})
	if err != nil {
		return err
	}
	keys := map[string]string{}
	for _, k := range cfg.Keys {
		keys[k.Key] = k.Tenant
	}
	key, created, err := bootstrapKey(cfg)
	if err != nil {
		return err
	}
	keys[key] = "demo"
	cfg.Server.AllowedHosts = cfg.AllowedHosts
	gw, err := gateway.New(gateway.Options{
		Config:  cfg.Server,
		Router:  router,
		Keys:    tenancy.NewStaticKeys(keys),
		Logger:  log,
		Version: version,
		Checks:  []gateway.Checker{dataDirCheck(cfg.DataDir)},
	})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Server.Addr)
	if err != nil {
		return fmt.Errorf("MTAI_ADDR %s: %w", cfg.Server.Addr, err)
	}
	models := make([]string, 0, len(router.Routes()))
	for _, rt := range router.Routes() {
		models = append(models, rt.Name)
	}
	log.Info("mtai listening", zap.String("addr", ln.Addr().String()), zap.String("version", version),
		zap.Strings("models", models), zap.String("data_dir", cfg.DataDir))
	flushNow(log)
	printWelcome(stdout, ln.Addr().String(), key, created, getenv("MTAI_BOOTSTRAP_API_KEY") != "")
	return gw.Serve(ctx, ln)
}

func flushNow(log *zap.Logger) { _ = log.Sync() }

// printWelcome tells a newcomer how to call the gateway, once.
func printWelcome(w io.Writer, addr, key string, created, fromEnv bool) {
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	base := "http://" + net.JoinHostPort(host, port)
	how := "kept in MTAI_DATA_DIR/bootstrap_api_key"
	if created {
		how = "generated now and kept in MTAI_DATA_DIR/bootstrap_api_key"
	}
	if fromEnv {
		how = "from MTAI_BOOTSTRAP_API_KEY"
	}
	fmt.Fprintf(w, `
  mtai is ready on %[1]s
  API key (tenant demo, %[3]s):
    %[2]s

  Try it:
    curl %[1]s/v1/chat/completions -H "Authorization: Bearer %[2]s" \
      -d '{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}'

`, base, key, how)
}

type dataDirCheck string

func (d dataDirCheck) Name() string { return "data_dir" }

func (d dataDirCheck) Check(context.Context) error {
	f, err := os.CreateTemp(string(d), ".health-*")
	if err != nil {
		return errors.New("data dir is not writable")
	}
	name := f.Name()
	f.Close()
	return os.Remove(filepath.Clean(name))
}

// healthcheck GETs /ping on the local gateway (for container health checks,
// where there is no curl).
func healthcheck(getenv func(string) string) error {
	addr := getenv("MTAI_ADDR")
	if addr == "" {
		addr = ":8080"
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	status, body, err := fasthttp.GetTimeout(nil, "http://127.0.0.1:"+port+"/ping", 3*time.Second)
	if err != nil {
		return err
	}
	if status != 200 || string(body) != "pong" {
		return fmt.Errorf("unhealthy: status %d", status)
	}
	return nil
}

// Command mtai is the multi-tenant AI gateway. It wires the packages
// together; it holds no logic of its own beyond flags, configuration,
// signals and subcommands:
//
//	mtai [serve]      start the gateway (the default)
//	mtai migrate      apply the store's migrations
//	mtai tenant ...   create and list tenants
//	mtai key create   create an API key for a tenant
//	mtai user create  create a user
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

	"github.com/redis/go-redis/v9"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mtai-dev/mtai/admin"
	"github.com/mtai-dev/mtai/gateway"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/anthropic"
	"github.com/mtai-dev/mtai/providers/bedrock"
	"github.com/mtai-dev/mtai/providers/mock"
	"github.com/mtai-dev/mtai/providers/openai"
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
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		return serve(ctx, getenv, stdout)
	case "migrate":
		return migrate(ctx, getenv, stdout)
	case "tenant":
		return tenantCmd(ctx, args, getenv, stdout)
	case "key":
		return keyCmd(ctx, args, getenv, stdout)
	case "user":
		return userCmd(ctx, args, getenv, stdout)
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
  migrate      apply the store's migrations and exit
  tenant       create NAME [flags] | list
  key          create --tenant NAME [--name LABEL] [--expires 720h]
  user         create --tenant NAME --username U [--role R]   (password in MTAI_USER_PASSWORD)
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
	// go-redis logs through a package-level logger: route it to ours, at
	// debug level (the limiter itself logs outages once, at warn).
	redis.SetLogger(redisLog{log})

	router, err := providers.NewRouter(cfg.Providers, providerFactories())
	if err != nil {
		return err
	}
	a, err := openApp(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	if err := a.openMeter(); err != nil {
		return err
	}
	ragSvc, err := a.openRAG(ctx, router)
	if err != nil {
		return err
	}
	checks := []gateway.Checker{namedCheck{"store", a.db.Ping}, dataDirCheck(cfg.DataDir)}
	if a.redis != nil {
		checks = append(checks, namedCheck{"redis", func(ctx context.Context) error { return a.redis.Ping(ctx).Err() }})
	}
	cfg.Server.AllowedHosts = cfg.AllowedHosts
	limiter, err := gateway.NewLimiter(gateway.LimiterOptions{Backend: a.limits, Prices: a.prices,
		DefaultMaxTokens: cfg.Limits.DefaultMaxTokens})
	if err != nil {
		return err
	}
	gw, err := gateway.New(gateway.Options{
		Limiter:       limiter,
		Meter:         a.meter,
		Conversations: a.convs,
		Admin:         admin.New(a.db, nil),
		RAG:           ragSvc,
		Config:        cfg.Server,
		Router:        router,
		Keys:          a.keys,
		Platform:      a.tenancy,
		Logger:        log,
		Version:       version,
		Checks:        checks,
	})
	if err != nil {
		return err
	}
	if a.rl != nil {
		gw.Metrics().Registry().MustRegister(a.rl)
	}
	ln, err := net.Listen("tcp", cfg.Server.Addr)
	if err != nil {
		return fmt.Errorf("MTAI_ADDR %s: %w", cfg.Server.Addr, err)
	}
	models := make([]string, 0, len(router.Routes()))
	for _, rt := range router.Routes() {
		models = append(models, rt.Name)
	}
	store := "sqlite"
	if cfg.DatabaseURL != "" {
		store = "postgres"
	}
	log.Info("mtai listening", zap.String("addr", ln.Addr().String()), zap.String("version", version),
		zap.Strings("models", models), zap.String("store", store), zap.Bool("redis", a.redis != nil),
		zap.String("data_dir", cfg.DataDir))
	_ = log.Sync()
	if err := a.bootstrap(ctx, stdout, ln.Addr().String()); err != nil {
		ln.Close()
		return err
	}
	return gw.Serve(ctx, ln)
}

func providerFactories() map[string]providers.Factory {
	return map[string]providers.Factory{
		"openai": func(d providers.DeploymentConfig) (providers.Provider, error) { return openai.New(d) },
		"azure":  func(d providers.DeploymentConfig) (providers.Provider, error) { return openai.New(d) },
		"mock":   func(d providers.DeploymentConfig) (providers.Provider, error) { return mock.New(d) },
		"anthropic": func(d providers.DeploymentConfig) (providers.Provider, error) {
			return anthropic.New(d, anthropic.WithDefaultMaxTokens(d.MaxTokens))
		},
		"bedrock": func(d providers.DeploymentConfig) (providers.Provider, error) {
			return bedrock.New(d, bedrock.WithRegion(d.Region), bedrock.WithDefaultMaxTokens(d.MaxTokens))
		},
	}
}

// printWelcome tells a newcomer how to call the gateway.
func printWelcome(w io.Writer, addr, tenant, key, adminPassword string, created bool) {
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "localhost"
	}
	base := "http://" + net.JoinHostPort(host, port)
	fmt.Fprintf(w, "\n  mtai is ready on %s\n", base)
	if created {
		fmt.Fprintf(w, "  First start: created tenant %q, platform admin \"admin\" and an API key (shown this once).\n", tenant)
		if adminPassword != "" {
			fmt.Fprintf(w, "  admin password: %s\n", adminPassword)
		}
	}
	fmt.Fprintf(w, `  API key (tenant %[3]s):
    %[2]s

  Try it:
    curl %[1]s/v1/chat/completions -H "Authorization: Bearer %[2]s" \
      -d '{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}'

`, base, key, tenant)
}

type redisLog struct{ l *zap.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.l.Debug("redis", zap.String("msg", fmt.Sprintf(format, v...)))
}

type namedCheck struct {
	name  string
	check func(context.Context) error
}

func (c namedCheck) Name() string                    { return c.name }
func (c namedCheck) Check(ctx context.Context) error { return c.check(ctx) }

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

// Package gateway is the HTTP edge of mtai: the fasthttp server, its router
// and middleware (request ids, authentication, access log, metrics), the
// OpenAI-compatible /v1 handlers, the SSE relay, and the one place where
// errors become HTTP responses (errors.go).
//
// The hot path (POST /v1/chat/completions) reads only the fields it needs
// from the request with a scanner, splices its few changes into the
// original bytes, and relays response bodies and stream events as bytes.
package gateway

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
)

// Config is the HTTP server's configuration (the `server:` section of the
// YAML file, and MTAI_* environment variables).
type Config struct {
	// Addr to listen on (MTAI_ADDR). Default ":8080".
	Addr string `yaml:"addr"`
	// MaxBodyBytes caps a request body (MTAI_MAX_BODY_BYTES); larger gets 413. Default 8 MiB.
	MaxBodyBytes int `yaml:"max_body_bytes"`
	// ShutdownGrace is how long open streams may go on after SIGTERM before
	// they are cut (MTAI_SHUTDOWN_GRACE). Default 30s.
	ShutdownGrace time.Duration `yaml:"shutdown_grace"`
	// ReadTimeout bounds reading one request (headers and body). Default 30s.
	ReadTimeout time.Duration `yaml:"read_timeout"`
	// IdleTimeout closes keep-alive connections idle this long. Default 120s.
	IdleTimeout time.Duration `yaml:"idle_timeout"`
	// MaxConns caps concurrent client connections. Default 65536.
	MaxConns int `yaml:"max_conns"`
	// AllowedHosts, when set, lists the Host header values served (port
	// ignored); others get 400. Empty or "*" serves any host (ALLOWED_HOSTS).
	AllowedHosts []string `yaml:"-"`
}

// SetDefaults fills zero values with the documented defaults.
func (c *Config) SetDefaults() {
	if c.Addr == "" {
		c.Addr = ":8080"
	}
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = 8 << 20
	}
	if c.ShutdownGrace == 0 {
		c.ShutdownGrace = 30 * time.Second
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.MaxConns == 0 {
		c.MaxConns = 65536
	}
}

// Validate reports the first bad value, naming its variable.
func (c *Config) Validate() error {
	if c.MaxBodyBytes < 1024 {
		return errors.New("MTAI_MAX_BODY_BYTES (server.max_body_bytes) must be at least 1024")
	}
	if c.ShutdownGrace < 0 {
		return errors.New("MTAI_SHUTDOWN_GRACE (server.shutdown_grace) must not be negative")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("MTAI_ADDR (server.addr) %q is not host:port: %w", c.Addr, err)
	}
	return nil
}

// Router is what the gateway needs from the routing layer.
// *providers.Router implements it.
type Router interface {
	Route(model string) (*providers.Route, bool)
	Routes() []*providers.Route
	Complete(ctx context.Context, rt *providers.Route, call *providers.Call) (*providers.Response, providers.Served, error)
	Stream(ctx context.Context, rt *providers.Route, call *providers.Call) (providers.Stream, providers.Served, error)
	Embed(ctx context.Context, rt *providers.Route, call *providers.Call) (*providers.Response, providers.Served, error)
	CountTokens(ctx context.Context, rt *providers.Route, call *providers.Call) (int64, providers.Served, error)
}

var _ Router = (*providers.Router)(nil)

// Checker is a dependency that /health reports on.
type Checker interface {
	// Name of the dependency, e.g. "store".
	Name() string
	// Check returns nil when the dependency works.
	Check(ctx context.Context) error
}

// Options are the parts a Server is built from. Router and Keys are required.
type Options struct {
	Config  Config
	Router  Router
	Keys    tenancy.KeyResolver
	Logger  *zap.Logger // nil: no logs
	Version string
	// Checks are reported by /health; a failing required check answers 503.
	Checks []Checker
	// Optional checks are reported but never fail /health.
	Optional []Checker
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Meter receives usage events; nil: none are recorded.
	Meter Meter
	// Platform serves /api/v1 (auth, tenants, keys, users); nil: not served.
	Platform Platform
	// Limiter applies tenants' rate limits and budgets (NewLimiter); nil:
	// no limits.
	Limiter *Limiter
	// Conversations stores /api/v1/chat's conversations (with Platform); nil: /api/v1/chat is not served.
	Conversations ConversationStore
	RAG           RAG // serves /api/v1/rag and retrieval on chats (*rag.Service); nil: neither

	// Admin answers /api/v1/admin/stats and /usage (*admin.Service; with Platform); nil: 501.
	Admin Admin
}

// Server serves the gateway's HTTP API. Build it with New, run it with Serve.
type Server struct {
	cfg      Config
	router   Router
	keys     tenancy.KeyResolver
	log      *zap.Logger
	version  string
	checks   []Checker
	optional []Checker
	now      func() time.Time
	started  time.Time
	metrics  *Metrics
	limiter  *Limiter
	usage    Meter
	platform Platform
	convs    ConversationStore
	rag      RAG
	admin    Admin
	tokens   *billing.Tokenizer // counts prompts for /v1/messages/count_tokens

	srv *fasthttp.Server

	// request ids: a random per-process prefix and a counter.
	idPrefix [8]byte
	idSeq    atomic.Uint64

	// ctx is cancelled when the server stops for good; upstream calls derive from it.
	ctx    context.Context
	cancel context.CancelFunc

	streamsMu sync.Mutex
	streams   map[*relay]struct{}
	draining  atomic.Bool

	reqPool sync.Pool
}

// New builds a Server.
func New(o Options) (*Server, error) {
	if o.Router == nil || o.Keys == nil {
		return nil, errors.New("gateway: Router and Keys are required")
	}
	o.Config.SetDefaults()
	if err := o.Config.Validate(); err != nil {
		return nil, err
	}
	if o.Logger == nil {
		o.Logger = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		cfg: o.Config, router: o.Router, keys: o.Keys, log: o.Logger, version: o.Version,
		checks: o.Checks, optional: o.Optional, now: o.Now, metrics: NewMetrics(), limiter: o.Limiter, usage: o.Meter,
		platform: o.Platform, convs: o.Conversations, rag: o.RAG,
		admin:   o.Admin,
		tokens:  billing.NewTokenizer(),
		streams: make(map[*relay]struct{}),
	}
	s.started = s.now()
	s.ctx, s.cancel = context.WithCancel(context.Background())
	if _, err := rand.Read(s.idPrefix[:]); err != nil {
		return nil, err
	}
	s.reqPool.New = func() any { return new(reqState) }
	s.srv = &fasthttp.Server{
		Handler:                       s.Handler(),
		Name:                          "mtai",
		ReadTimeout:                   s.cfg.ReadTimeout,
		IdleTimeout:                   s.cfg.IdleTimeout,
		MaxRequestBodySize:            s.cfg.MaxBodyBytes,
		Concurrency:                   s.cfg.MaxConns,
		ReadBufferSize:                4096, // request headers must fit; every open connection holds one
		WriteBufferSize:               4096,
		NoDefaultServerHeader:         true,
		NoDefaultDate:                 false,
		DisableHeaderNamesNormalizing: false,
		CloseOnShutdown:               true,
		ErrorHandler:                  s.serverError,
		Logger:                        zapPrintf{s.log},
	}
	return s, nil
}

// Metrics returns the server's metrics registry.
func (s *Server) Metrics() *Metrics { return s.metrics }

type zapPrintf struct{ l *zap.Logger }

func (z zapPrintf) Printf(format string, args ...any) {
	z.l.Debug("fasthttp", zap.String("msg", fmt.Sprintf(format, args...)))
}

// serverError answers errors fasthttp meets before our handler runs.
func (s *Server) serverError(rc *fasthttp.RequestCtx, err error) {
	s.requestID(rc)
	if errors.Is(err, fasthttp.ErrBodyTooLarge) {
		writeError(rc, fmt.Errorf("%w: the limit is %d bytes", errBodyTooLarge, s.cfg.MaxBodyBytes))
		return
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		writeError(rc, &requestError{status: 408, code: "request_timeout", message: "The request was not received in time."})
		return
	}
	writeError(rc, invalid("", "The request could not be parsed as HTTP."))
}

// Handler returns the request handler with every route.
func (s *Server) Handler() fasthttp.RequestHandler {
	r := router.New()
	r.RedirectTrailingSlash = false
	r.HandleMethodNotAllowed = true
	r.GET("/", s.plain(s.root))
	r.GET("/ping", func(rc *fasthttp.RequestCtx) { rc.SetContentType("text/plain"); rc.SetBodyString("pong") })
	r.GET("/healthz", s.plain(s.healthz))
	r.GET("/health", s.plain(s.health))
	r.GET("/metrics", s.metrics.Handler())

	r.POST("/v1/chat/completions", s.chatCompletions)
	r.GET("/v1/models", s.api(routeModels, s.listModels))
	r.GET("/v1/models/{model:*}", s.api(routeModels, s.getModel))
	r.POST("/v1/embeddings", s.api(routeEmbeddings, s.embeddings))
	r.POST("/v1/messages", s.anthropicAPI(routeMessages, s.messages))
	r.POST("/v1/messages/count_tokens", s.anthropicAPI(routeCountTokens, s.countTokens))
	s.platformRoutes(r)
	s.chatRoutes(r)
	s.ragRoutes(r)
	s.adminRoutes(r)
	s.docsRoutes(r)

	r.NotFound = func(rc *fasthttp.RequestCtx) {
		writeError(rc, fmt.Errorf("%w: no route for %s %s", errNotFound, rc.Method(), rc.Path()))
	}
	r.MethodNotAllowed = func(rc *fasthttp.RequestCtx) {
		writeError(rc, fmt.Errorf("%w: %s %s", errMethod, rc.Method(), rc.Path()))
	}
	r.PanicHandler = func(rc *fasthttp.RequestCtx, v any) {
		s.log.Error("panic in handler", zap.Any("panic", v), zap.ByteString("path", rc.Path()), zap.Stack("stack"))
		writeError(rc, fmt.Errorf("panic: %v", v))
	}
	h := r.Handler
	hosts := map[string]bool{}
	for _, host := range s.cfg.AllowedHosts {
		if host == "*" {
			hosts = nil
			break
		}
		hosts[strings.ToLower(host)] = true
	}
	return func(rc *fasthttp.RequestCtx) {
		s.requestID(rc)
		switch p := rc.Path(); string(p) {
		case "/api/v1/tenants", "/api/v1/chat":
			rc.URI().SetPath(string(p) + "/") // both forms of the documented paths
		case "/docs/", "/admin/":
			rc.URI().SetPath(string(p[:len(p)-1]))
		}
		if len(hosts) > 0 && !hosts[hostOnly(rc.Host())] {
			writeError(rc, invalid("", "Host "+strconv.Quote(string(rc.Host()))+" is not served here (ALLOWED_HOSTS)."))
			return
		}
		h(rc)
	}
}

// requestID honours X-Request-ID (if sane) or makes one, and echoes it.
func (s *Server) requestID(rc *fasthttp.RequestCtx) []byte {
	id := rc.Request.Header.Peek("X-Request-ID")
	if len(id) == 0 || len(id) > 128 || !printable(id) {
		var b [36]byte
		copy(b[:], "req_")
		hex.Encode(b[4:20], s.idPrefix[:])
		seq := s.idSeq.Add(1)
		for i := 35; i >= 20; i-- {
			b[i] = "0123456789abcdef"[seq&0xf]
			seq >>= 4
		}
		rc.Response.Header.SetBytesV("X-Request-ID", b[:])
		return rc.Response.Header.Peek("X-Request-ID")
	}
	rc.Response.Header.SetBytesV("X-Request-ID", id)
	return id
}

// hostOnly returns the lower-cased host of a Host header, without port.
func hostOnly(h []byte) string {
	s := strings.ToLower(string(h))
	if host, _, err := net.SplitHostPort(s); err == nil {
		return strings.Trim(host, "[]")
	}
	return s
}

func printable(b []byte) bool {
	for _, c := range b {
		if c < 0x21 || c > 0x7e {
			return false
		}
	}
	return true
}

// authenticate resolves the bearer API key of the request.
func (s *Server) authenticate(rc *fasthttp.RequestCtx) (*tenancy.Principal, error) {
	h := rc.Request.Header.Peek("Authorization")
	const bearer = "Bearer "
	if len(h) <= len(bearer) || !strings.EqualFold(string(h[:len(bearer)]), bearer) {
		if k := rc.Request.Header.Peek("X-Api-Key"); len(k) > 0 {
			return s.keys.ResolveKey(s.ctx, k)
		}
		return nil, tenancy.ErrUnauthenticated
	}
	token := h[len(bearer):]
	if s.platform != nil && !bytes.HasPrefix(token, skPrefix) {
		// not an API key: a JWT, whose tenant must match X-Tenant-ID
		if th := rc.Request.Header.Peek("X-Tenant-ID"); len(th) > 0 {
			return s.platform.AuthenticateJWT(s.ctx, string(token), string(th))
		}
	}
	return s.keys.ResolveKey(s.ctx, token)
}

var skPrefix = []byte("sk-")

// plain wraps a handler that needs no authentication, with access logging.
func (s *Server) plain(h func(rc *fasthttp.RequestCtx)) fasthttp.RequestHandler {
	return h
}

// api wraps an authenticated /v1 handler that answers JSON or an error.
func (s *Server) api(route string, h func(rc *fasthttp.RequestCtx, st *reqState) error) fasthttp.RequestHandler {
	return func(rc *fasthttp.RequestCtx) {
		st := s.begin(rc, route)
		p, err := s.authenticate(rc)
		if err == nil {
			st.principal = p
			err = h(rc, st)
		}
		if err != nil {
			st.fail(writeError(rc, err))
		}
		st.status = rc.Response.StatusCode()
		s.finish(st)
	}
}

// Serve accepts connections on ln until ctx is cancelled, then shuts down
// gracefully: it stops accepting, lets open streams run for the grace
// period, cuts the rest with a final error event, and returns.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	errc := make(chan error, 1)
	go func() { errc <- s.srv.Serve(ln) }()
	select {
	case err := <-errc:
		s.cancel()
		return err
	case <-ctx.Done():
	}
	s.draining.Store(true)
	s.log.Info("shutting down", zap.Duration("grace", s.cfg.ShutdownGrace), zap.Int("open_streams", s.openStreams()))
	grace, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownGrace)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- s.srv.ShutdownWithContext(grace) }()
	var err error
	select {
	case err = <-done:
	case <-grace.Done():
		n := s.cutStreams()
		s.log.Warn("grace period over: open streams cut", zap.Int("streams", n))
		hard, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel2()
		select {
		case err = <-done:
		case <-hard.Done():
			err = hard.Err()
		}
	}
	s.cancel()
	<-errc
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil
	}
	return err
}

func (s *Server) openStreams() int {
	s.streamsMu.Lock()
	defer s.streamsMu.Unlock()
	return len(s.streams)
}

// cutStreams ends every open stream with errShuttingDown.
func (s *Server) cutStreams() int {
	s.streamsMu.Lock()
	list := make([]*relay, 0, len(s.streams))
	for r := range s.streams {
		list = append(list, r)
	}
	s.streamsMu.Unlock()
	for _, r := range list {
		r.cut(errShuttingDown)
	}
	return len(list)
}

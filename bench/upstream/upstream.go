// Package upstream owns the benchmark's fake OpenAI-compatible upstream: a
// fasthttp server that answers /v1/chat/completions (plain and SSE-streamed),
// /v1/models and /v1/embeddings from bodies built once at start, so that it
// spends as little CPU as possible and the gateway's share of a benchmark
// stays easy to see.
//
// One server serves several profiles. The default profile answers under
// /v1/...; a named profile "long" answers under /long/v1/..., so that a
// gateway configured with base_url http://HOST/long/v1 reaches it. A profile
// fixes the answer's size, the number of streamed chunks, the pauses, and the
// "silent" mode used to hold thousands of streams open.
//
// Besides the OpenAI routes the server answers GET /_bench/stats (counters as
// JSON) and POST /_bench/release (ends every silent stream now).
package upstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Config configures a fake upstream. The zero value is usable: it listens on
// 127.0.0.1 at a free port with the default profile only.
type Config struct {
	// Addr to listen on; default "127.0.0.1:0" (a free port).
	Addr string `yaml:"addr"`
	// Default is the profile served under /v1.
	Default Profile `yaml:"default"`
	// Profiles are served under /NAME/v1. A name must be a single path
	// segment and not "v1" or "_bench".
	Profiles map[string]Profile `yaml:"profiles"`

	// ID, Created, Model and SystemFingerprint are written in every chat
	// answer; defaults "chatcmpl-bench", 1694268190, "bench-model", "fp_bench".
	ID                string `yaml:"id"`
	Created           int64  `yaml:"created"`
	Model             string `yaml:"model"`
	SystemFingerprint string `yaml:"system_fingerprint"`
	// Models listed by GET /v1/models; default [Model].
	Models []string `yaml:"models"`
	// EmbeddingDims is the length of each vector from /v1/embeddings; default 8.
	EmbeddingDims int `yaml:"embedding_dims"`
}

// Profile shapes the answers of one route prefix. Zero values take the
// documented defaults.
type Profile struct {
	// ContentBytes is the size of the non-streamed answer's content; default 256.
	ContentBytes int `yaml:"content_bytes"`
	// Content, when set, is the non-streamed answer's content (ContentBytes is ignored).
	Content string `yaml:"content"`
	// CompletionTokens reported in usage; default ContentBytes/4 (at least 1)
	// for a plain answer and Chunks for a stream.
	CompletionTokens int `yaml:"completion_tokens"`
	// PromptTokens reported in usage; default 19.
	PromptTokens int `yaml:"prompt_tokens"`

	// Chunks is the number of content chunks of a stream; default 8. A stream
	// is: one role chunk, Chunks content chunks, a finish chunk, the usage
	// chunk when the request asked for it, then [DONE].
	Chunks int `yaml:"chunks"`
	// ChunkBytes is the content size of each chunk; default 4.
	ChunkBytes int `yaml:"chunk_bytes"`
	// Tokens, when set, are the chunks' contents, used in turn (ChunkBytes is ignored).
	Tokens []string `yaml:"tokens"`
	// ChunkDelay is the pause between two content chunks; default 0. A stream
	// lasts about FirstByte + (Chunks-1)*ChunkDelay.
	ChunkDelay time.Duration `yaml:"chunk_delay"`
	// FirstByte is the pause before the first byte of any answer; default 0.
	FirstByte time.Duration `yaml:"first_byte"`

	// Silent makes a stream send its headers and first (role) event at once,
	// then nothing until the client closes the connection, SilentHold passes,
	// or /_bench/release is called; then the rest of the stream follows and
	// the connection closes. Non-streamed requests are answered as usual.
	Silent bool `yaml:"silent"`
	// SilentHold bounds how long a silent stream waits; default 60s.
	SilentHold time.Duration `yaml:"silent_hold"`
}

// Stats are the server's counters since start.
type Stats struct {
	// Chat counts chat completion requests, Streams the streamed ones among them.
	Chat    int64 `json:"chat"`
	Streams int64 `json:"streams"`
	// Events counts SSE events written (all streams).
	Events int64 `json:"events"`
	// SilentOpen is the number of silent streams currently waiting.
	SilentOpen int64 `json:"silent_open"`
	// Embeddings and Models count those requests.
	Embeddings int64 `json:"embeddings"`
	Models     int64 `json:"models"`
}

// Server is a running fake upstream. Its methods are safe for concurrent use.
type Server struct {
	cfg    Config
	ln     net.Listener
	srv    *fasthttp.Server
	routes map[string]route
	models []byte
	served chan struct{}

	chat, streams, events, silentOpen, embeddings, modelsN atomic.Int64

	mu      sync.Mutex
	waiting map[*silentStream]struct{}
	closed  bool
}

type routeKind int

const (
	routeChat routeKind = iota + 1
	routeModels
	routeEmbeddings
	routeStats
	routeRelease
)

type route struct {
	kind routeKind
	p    *built
}

// Start validates cfg, fills its defaults, builds every answer and starts
// serving. The caller must Close the server.
func Start(cfg Config) (*Server, error) {
	cfg.setDefaults()
	s := &Server{
		cfg:     cfg,
		routes:  map[string]route{},
		served:  make(chan struct{}),
		waiting: map[*silentStream]struct{}{},
	}
	add := func(prefix string, p Profile) error {
		b, err := build(&s.cfg, p)
		if err != nil {
			return fmt.Errorf("upstream: profile %q: %w", strings.TrimPrefix(prefix, "/"), err)
		}
		s.routes[prefix+"/v1/chat/completions"] = route{routeChat, b}
		s.routes[prefix+"/v1/models"] = route{kind: routeModels}
		s.routes[prefix+"/v1/embeddings"] = route{kind: routeEmbeddings}
		return nil
	}
	if err := add("", cfg.Default); err != nil {
		return nil, err
	}
	for name, p := range cfg.Profiles {
		if name == "" || name == "v1" || name == "_bench" || strings.ContainsAny(name, "/?# ") {
			return nil, fmt.Errorf("upstream: profile name %q is not a single path segment", name)
		}
		if err := add("/"+name, p); err != nil {
			return nil, err
		}
	}
	s.routes["/_bench/stats"] = route{kind: routeStats}
	s.routes["/_bench/release"] = route{kind: routeRelease}
	s.models = buildModels(&s.cfg)

	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("upstream: listen: %w", err)
	}
	s.ln = ln
	s.srv = &fasthttp.Server{
		Handler:               s.handle,
		Name:                  "fakeupstream",
		ReadBufferSize:        16 << 10,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		IdleTimeout:           2 * time.Minute,
		CloseOnShutdown:       true,
	}
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln) // returns when the listener closes
	}()
	return s, nil
}

// URL is the base URL of the default profile, e.g. "http://127.0.0.1:4567/v1".
func (s *Server) URL() string { return "http://" + s.Addr() + "/v1" }

// ProfileURL is the base URL of the named profile ("" is the default).
func (s *Server) ProfileURL(name string) string {
	if name == "" {
		return s.URL()
	}
	return "http://" + s.Addr() + "/" + name + "/v1"
}

// Addr is the host:port the server listens on.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	return Stats{
		Chat:       s.chat.Load(),
		Streams:    s.streams.Load(),
		Events:     s.events.Load(),
		SilentOpen: s.silentOpen.Load(),
		Embeddings: s.embeddings.Load(),
		Models:     s.modelsN.Load(),
	}
}

// Release ends every silent stream that is waiting now (each sends the rest
// of its events) and returns how many there were.
func (s *Server) Release() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.waiting {
		w.release()
	}
	return len(s.waiting)
}

// Close releases the silent streams, stops accepting and waits (at most a
// few seconds) for open connections to finish. It is safe to call twice.
func (s *Server) Close() error {
	s.mu.Lock()
	already := s.closed
	s.closed = true
	s.mu.Unlock()
	if already {
		return nil
	}
	s.Release()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	err := s.srv.ShutdownWithContext(ctx)
	<-s.served
	if errors.Is(err, context.DeadlineExceeded) {
		err = nil // streams still sleeping were cut; that is what Close is for
	}
	return err
}

func (s *Server) handle(ctx *fasthttp.RequestCtx) {
	r, ok := s.routes[string(ctx.Path())]
	if !ok {
		ctx.Response.Header.SetContentTypeBytes(ctJSON)
		ctx.SetStatusCode(fasthttp.StatusNotFound)
		ctx.Response.SetBodyRaw(errNotFound)
		return
	}
	switch r.kind {
	case routeChat:
		if !ctx.IsPost() {
			methodNotAllowed(ctx)
			return
		}
		s.chatCompletion(ctx, r.p)
	case routeModels:
		if !ctx.IsGet() {
			methodNotAllowed(ctx)
			return
		}
		s.modelsN.Add(1)
		ctx.Response.Header.SetContentTypeBytes(ctJSON)
		ctx.Response.SetBodyRaw(s.models)
	case routeEmbeddings:
		if !ctx.IsPost() {
			methodNotAllowed(ctx)
			return
		}
		s.embeddings.Add(1)
		body, err := embeddings(&s.cfg, ctx.PostBody())
		ctx.Response.Header.SetContentTypeBytes(ctJSON)
		if err != nil {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			ctx.Response.SetBodyRaw(errBadRequest)
			return
		}
		ctx.Response.SetBodyRaw(body)
	case routeStats:
		b, _ := json.Marshal(s.Stats())
		ctx.Response.Header.SetContentTypeBytes(ctJSON)
		ctx.Response.SetBodyRaw(b)
	case routeRelease:
		if !ctx.IsPost() {
			methodNotAllowed(ctx)
			return
		}
		n := s.Release()
		ctx.Response.Header.SetContentTypeBytes(ctJSON)
		ctx.Response.SetBodyRaw(fmt.Appendf(nil, `{"released":%d}`, n))
	}
}

func methodNotAllowed(ctx *fasthttp.RequestCtx) {
	ctx.Response.Header.SetContentTypeBytes(ctJSON)
	ctx.SetStatusCode(fasthttp.StatusMethodNotAllowed)
	ctx.Response.SetBodyRaw(errMethod)
}

func (s *Server) chatCompletion(ctx *fasthttp.RequestCtx, p *built) {
	s.chat.Add(1)
	body := ctx.PostBody()
	if !jsonTrue(body, keyStream) {
		if p.firstByte > 0 {
			time.Sleep(p.firstByte)
		}
		ctx.Response.Header.SetContentTypeBytes(ctJSON)
		ctx.Response.SetBodyRaw(p.completion)
		return
	}
	s.streams.Add(1)
	events := p.plain
	if jsonTrue(body, keyIncludeUsage) {
		events = p.withUsage
	}
	if p.silent {
		ctx.HijackSetNoResponse(true)
		ctx.Hijack(func(c net.Conn) { s.silent(c, p, events) })
		return
	}
	ctx.Response.Header.SetContentTypeBytes(ctSSE)
	ctx.Response.Header.SetBytesKV(hdrCacheControl, hdrNoCache)
	ctx.SetBodyStream(&eventsBody{events: events, chunks: p.chunks, first: p.firstByte, delay: p.delay, counter: &s.events}, -1)
}

// eventsBody writes a stream's events, one HTTP chunk (and one flush) per
// event, with the profile's pauses. fasthttp calls WriteTo with a writer
// that frames each Write as a chunk and flushes it.
type eventsBody struct {
	events  [][]byte
	next    int
	chunks  int // events[1:chunks+1] are the content chunks
	first   time.Duration
	delay   time.Duration
	counter *atomic.Int64
}

var _ fasthttp.BodyWriterTo = (*eventsBody)(nil)

func (b *eventsBody) pause() {
	switch {
	case b.next == 0 && b.first > 0:
		time.Sleep(b.first)
	case b.delay > 0 && b.next >= 2 && b.next <= b.chunks: // between two content chunks
		time.Sleep(b.delay)
	}
}

// Read returns one event per call; fasthttp uses it only when it cannot use WriteTo.
func (b *eventsBody) Read(p []byte) (int, error) {
	if b.next >= len(b.events) {
		return 0, io.EOF
	}
	b.pause()
	ev := b.events[b.next]
	if len(p) < len(ev) {
		return 0, io.ErrShortBuffer
	}
	b.next++
	b.counter.Add(1)
	return copy(p, ev), nil
}

// WriteTo writes every remaining event, one Write per event.
func (b *eventsBody) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for b.next < len(b.events) {
		b.pause()
		m, err := w.Write(b.events[b.next])
		n += int64(m)
		if err != nil {
			return n, err
		}
		b.next++
		b.counter.Add(1)
	}
	return n, nil
}

// SupportsBodyWriteTo tells fasthttp that WriteTo behaves like Read.
func (b *eventsBody) SupportsBodyWriteTo() bool { return true }

// silentStream is one silent stream waiting on its hijacked connection.
type silentStream struct {
	c        net.Conn
	released atomic.Bool
}

func (w *silentStream) release() {
	w.released.Store(true)
	_ = w.c.SetReadDeadline(time.Now()) // wakes the blocked Read
}

// silent serves a stream on a hijacked connection: headers and the first
// event, then a Read that returns when the client closes (end), or when the
// hold time passes or Release is called (send the rest, then close).
func (s *Server) silent(c net.Conn, p *built, events [][]byte) {
	w := &silentStream{c: c}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.waiting[w] = struct{}{}
	s.mu.Unlock()
	s.silentOpen.Add(1)
	defer func() {
		s.mu.Lock()
		delete(s.waiting, w)
		s.mu.Unlock()
		s.silentOpen.Add(-1)
	}()

	if p.firstByte > 0 {
		time.Sleep(p.firstByte)
	}
	buf := make([]byte, 0, len(silentHeader)+len(events[0])+16)
	buf = append(buf, silentHeader...)
	buf = appendChunk(buf, events[0])
	if _, err := c.Write(buf); err != nil {
		return
	}
	s.events.Add(1)

	_ = c.SetReadDeadline(time.Now().Add(p.silentHold))
	var one [1]byte
	for {
		_, err := c.Read(one[:])
		if err == nil {
			continue // a client sending more bytes is still a client
		}
		var ne net.Error
		if !(errors.As(err, &ne) && ne.Timeout()) && !w.released.Load() {
			return // the client closed
		}
		break
	}
	buf = buf[:0]
	for _, ev := range events[1:] {
		buf = appendChunk(buf, ev)
	}
	buf = append(buf, "0\r\n\r\n"...)
	_ = c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write(buf); err == nil {
		s.events.Add(int64(len(events) - 1))
	}
}

func appendChunk(dst, b []byte) []byte {
	dst = fmt.Appendf(dst, "%x\r\n", len(b))
	dst = append(dst, b...)
	return append(dst, "\r\n"...)
}

// jsonTrue reports whether body has "key": true somewhere (key is given with
// its quotes). It is a scan, not a parse: a quoted key inside a JSON string
// is escaped (\"key\") and so never matches.
func jsonTrue(body, key []byte) bool {
	for {
		i := bytes.Index(body, key)
		if i < 0 {
			return false
		}
		rest := skipSpace(body[i+len(key):])
		if len(rest) > 0 && rest[0] == ':' {
			rest = skipSpace(rest[1:])
			if len(rest) >= 4 && string(rest[:4]) == "true" {
				return true
			}
		}
		body = body[i+len(key):]
	}
}

func skipSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\n' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

var (
	keyStream       = []byte(`"stream"`)
	keyIncludeUsage = []byte(`"include_usage"`)
	ctJSON          = []byte("application/json")
	ctSSE           = []byte("text/event-stream; charset=utf-8")
	hdrCacheControl = []byte("Cache-Control")
	hdrNoCache      = []byte("no-cache")
	errNotFound     = []byte(`{"error":{"message":"Unknown request URL.","type":"invalid_request_error","param":null,"code":"unknown_url"}}`)
	errMethod       = []byte(`{"error":{"message":"Method not allowed.","type":"invalid_request_error","param":null,"code":null}}`)
	errBadRequest   = []byte(`{"error":{"message":"Invalid request body.","type":"invalid_request_error","param":null,"code":null}}`)
	silentHeader    = []byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
)

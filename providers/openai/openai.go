// Package openai is the adapter for upstreams that speak OpenAI's HTTP API:
// OpenAI itself, Azure OpenAI (deployment URLs, api-version, api-key header)
// and any OpenAI-compatible server reached by base URL (vLLM, Ollama, TGI,
// LiteLLM, ...). Request bodies are relayed as they come (the router has
// already set the model); responses and SSE events are relayed as bytes.
package openai

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
)

var (
	_ providers.Provider = (*Client)(nil)
	_ providers.Embedder = (*Client)(nil)
)

// Client calls one OpenAI-compatible deployment. It is safe for concurrent use.
type Client struct {
	name     string
	provider string
	hc       *fasthttp.HostClient
	chatURL  string
	embedURL string
	authKey  string // header name: Authorization or api-key
	authVal  string
	timeout  time.Duration
}

// New returns a client for deployment d (provider openai or azure).
func New(d providers.DeploymentConfig) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(d.BaseURL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("deployment %s: base_url %q is not an http(s) URL", d.Name, d.BaseURL)
	}
	host := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			host += ":443"
		} else {
			host += ":80"
		}
	}
	c := &Client{name: d.Name, provider: d.Provider, timeout: d.Timeout}
	base := u.Scheme + "://" + u.Host + u.Path
	switch d.Provider {
	case "azure":
		q := "?api-version=" + url.QueryEscape(d.APIVersion)
		dep := base + "/openai/deployments/" + url.PathEscape(d.Model)
		c.chatURL = dep + "/chat/completions" + q
		c.embedURL = dep + "/embeddings" + q
		c.authKey, c.authVal = "api-key", d.APIKey
	default:
		c.chatURL = base + "/chat/completions"
		c.embedURL = base + "/embeddings"
		if d.APIKey != "" {
			c.authKey, c.authVal = "Authorization", "Bearer "+d.APIKey
		}
	}
	timeout := d.Timeout
	c.hc = &fasthttp.HostClient{
		Addr:                host,
		IsTLS:               u.Scheme == "https",
		Name:                "mtai",
		MaxConns:            d.MaxConns,
		MaxConnWaitTimeout:  5 * time.Second,
		MaxIdleConnDuration: 90 * time.Second,
		ReadBufferSize:      4096,
		WriteBufferSize:     4096,
		MaxResponseBodySize: 64 << 20,
		Dial: func(addr string) (net.Conn, error) {
			conn, err := fasthttp.DialTimeout(addr, 10*time.Second)
			if err != nil {
				return nil, err
			}
			return &idleConn{Conn: conn, timeout: timeout}, nil
		},
	}
	return c, nil
}

// idleConn bounds the silence between two reads: before the first response
// byte and between two chunks of a stream, like nginx's proxy_read_timeout.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if c.timeout > 0 {
		_ = c.Conn.SetReadDeadline(time.Now().Add(c.timeout))
	}
	return c.Conn.Read(p)
}

func (c *Client) newRequest(target string, r *providers.Request) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.SetRequestURI(target)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	if c.authKey != "" {
		req.Header.Set(c.authKey, c.authVal)
	}
	if r.RequestID != "" {
		req.Header.Set("X-Request-ID", r.RequestID)
	}
	req.SetBodyRaw(r.Body)
	return req
}

// Complete implements providers.Provider.
func (c *Client) Complete(ctx context.Context, r *providers.Request) (*providers.Response, error) {
	return c.roundTrip(ctx, c.chatURL, r)
}

// Embed implements providers.Embedder.
func (c *Client) Embed(ctx context.Context, r *providers.Request) (*providers.Response, error) {
	return c.roundTrip(ctx, c.embedURL, r)
}

func (c *Client) roundTrip(ctx context.Context, target string, r *providers.Request) (*providers.Response, error) {
	req := c.newRequest(target, r)
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	var err error
	if dl, ok := ctx.Deadline(); ok {
		err = c.hc.DoDeadline(req, resp, dl)
	} else {
		err = c.hc.Do(req, resp)
	}
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, c.transportError(err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		defer fasthttp.ReleaseResponse(resp)
		return nil, c.statusError(resp)
	}
	body := resp.Body()
	usage, _ := providers.ParseUsage(body)
	return providers.NewResponse(body, usage, func() { fasthttp.ReleaseResponse(resp) }), nil
}

// Stream implements providers.Provider.
func (c *Client) Stream(ctx context.Context, r *providers.Request) (providers.Stream, error) {
	req := c.newRequest(c.chatURL, r)
	req.Header.Set("Accept", "text/event-stream")
	resp := fasthttp.AcquireResponse()
	resp.StreamBody = true
	err := c.hc.Do(req, resp)
	fasthttp.ReleaseRequest(req)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, c.transportError(err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		defer fasthttp.ReleaseResponse(resp)
		return nil, c.statusError(resp)
	}
	body, ok := resp.BodyStream().(fasthttp.ReadCloserWithError)
	if !ok {
		// A body that was already read whole (tiny answers): relay from memory.
		return newStream(c, resp, nil), nil
	}
	return newStream(c, resp, body), nil
}

func (c *Client) transportError(err error) error {
	var ne net.Error
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) ||
		errors.Is(err, fasthttp.ErrTLSHandshakeTimeout) || (errors.As(err, &ne) && ne.Timeout()) {
		err = fmt.Errorf("%w: %v", providers.ErrTimeout, err)
	}
	return &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Err: err}
}

func (c *Client) statusError(resp *fasthttp.Response) error {
	e := &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Status: resp.StatusCode()}
	if body, ok := providers.ParseErrorBody(resp.Body()); ok {
		e.Type, e.Code, e.Param, e.Message = body.Type, body.Code, body.Param, body.Message
	} else {
		b := resp.Body()
		if len(b) > 200 {
			b = b[:200]
		}
		e.Message = strings.TrimSpace(string(b))
	}
	if ms := resp.Header.Peek("Retry-After-Ms"); len(ms) > 0 {
		if n, err := strconv.Atoi(string(ms)); err == nil && n > 0 {
			e.RetryAfter = time.Duration(n) * time.Millisecond
		}
	} else if s := resp.Header.Peek("Retry-After"); len(s) > 0 {
		if n, err := strconv.Atoi(string(s)); err == nil && n > 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}

// stream reads SSE events from an upstream response body.
type stream struct {
	c    *Client
	resp *fasthttp.Response
	body fasthttp.ReadCloserWithError // nil: the body is in resp.Body()

	buf  []byte // read buffer; buf[r:w] is unread
	r, w int
	ev   []byte // the event being assembled
	eof  bool

	mu       sync.Mutex
	reading  bool
	closed   bool
	released bool
}

const maxEvent = 4 << 20

// streamBufSize is the first size of a stream's read buffer: events are a
// few hundred bytes, and the buffer grows for larger ones. Small, because
// every open stream holds one.
const streamBufSize = 1024

var bufPool = sync.Pool{New: func() any { b := make([]byte, streamBufSize); return &b }}

func newStream(c *Client, resp *fasthttp.Response, body fasthttp.ReadCloserWithError) *stream {
	s := &stream{c: c, resp: resp, body: body}
	if body == nil {
		s.buf = resp.Body()
		s.w = len(s.buf)
		s.eof = true
	} else {
		s.buf = *(bufPool.Get().(*[]byte))
	}
	return s
}

var errClosed = errors.New("stream closed")

// Next implements providers.Stream.
func (s *stream) Next() ([]byte, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errClosed
	}
	s.reading = true
	s.mu.Unlock()
	ev, err := s.next()
	s.mu.Lock()
	s.reading = false
	if s.closed {
		s.releaseLocked()
		if err == nil {
			err = errClosed
		}
	}
	s.mu.Unlock()
	return ev, err
}

func (s *stream) next() ([]byte, error) {
	s.ev = s.ev[:0]
	hasData := false
	for {
		nl := -1
		for i := s.r; i < s.w; i++ {
			if s.buf[i] == '\n' {
				nl = i
				break
			}
		}
		if nl < 0 {
			if s.eof {
				if hasData {
					return s.ev, nil
				}
				return nil, &providers.UpstreamError{Provider: s.c.provider, Deployment: s.c.name,
					Err: io.ErrUnexpectedEOF, Message: "stream ended without [DONE]"}
			}
			if err := s.fill(); err != nil {
				return nil, err
			}
			continue
		}
		line := s.buf[s.r:nl]
		s.r = nl + 1
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			if hasData {
				return s.ev, nil
			}
			continue
		}
		if len(line) >= 5 && string(line[:5]) == "data:" {
			payload := line[5:]
			if len(payload) > 0 && payload[0] == ' ' {
				payload = payload[1:]
			}
			if !hasData && string(payload) == "[DONE]" {
				return nil, io.EOF
			}
			if hasData {
				// SSE joins data lines with a newline; the payload is JSON, where
				// a space is the same and keeps the relayed event on one line.
				s.ev = append(s.ev, ' ')
			}
			s.ev = append(s.ev, payload...)
			hasData = true
			if len(s.ev) > maxEvent {
				return nil, &providers.UpstreamError{Provider: s.c.provider, Deployment: s.c.name,
					Err: errors.New("SSE event larger than 4 MiB")}
			}
		}
		// comments (":"), event:, id:, retry: lines are ignored.
	}
}

// fill reads more bytes from the body, compacting or growing the buffer.
func (s *stream) fill() error {
	if s.r > 0 {
		n := copy(s.buf, s.buf[s.r:s.w])
		s.r, s.w = 0, n
	}
	if s.w == len(s.buf) {
		if len(s.buf) >= maxEvent {
			return &providers.UpstreamError{Provider: s.c.provider, Deployment: s.c.name,
				Err: errors.New("SSE line larger than 4 MiB")}
		}
		nb := make([]byte, 2*len(s.buf))
		copy(nb, s.buf[:s.w])
		s.buf = nb
	}
	n, err := s.body.Read(s.buf[s.w:])
	s.w += n
	if err != nil {
		if errors.Is(err, io.EOF) {
			s.eof = true
			return nil
		}
		if n > 0 {
			return nil
		}
		return s.c.transportError(err)
	}
	return nil
}

// Close implements providers.Stream. It interrupts a blocked Next; the
// connection and buffers are released once no Next is running.
func (s *stream) Close(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	s.closed = true
	if s.body != nil {
		if err == nil && !s.eof {
			err = errClosed // not read to the end: the connection cannot be reused
		}
		_ = s.body.CloseWithError(err)
	}
	if !s.reading {
		s.releaseLocked()
	}
}

func (s *stream) releaseLocked() {
	if s.released {
		return
	}
	s.released = true
	if s.body != nil && cap(s.buf) == streamBufSize {
		b := s.buf[:streamBufSize]
		bufPool.Put(&b)
	}
	s.buf = nil
	fasthttp.ReleaseResponse(s.resp)
}

// Package anthropic is the adapter for Anthropic's Messages API
// (POST {base}/v1/messages, x-api-key and anthropic-version headers), and
// the translators between it and OpenAI's chat completions, in both
// directions:
//
//   - the provider side (Client): OpenAI request → Anthropic request
//     (RequestFromOpenAI), Anthropic response → OpenAI completion
//     (ResponseToOpenAI), Anthropic stream events → OpenAI chunks
//     (ChunkTranslator), Anthropic errors → *providers.UpstreamError;
//   - the serving side (the gateway's /v1/messages, for any routed model):
//     Anthropic request → OpenAI request (ToOpenAIRequest), OpenAI
//     completion → Anthropic response (ResponseFromOpenAI), OpenAI chunks →
//     Anthropic stream events (EventTranslator), errors in Anthropic's shape
//     (AppendError, AppendErrorEvent, ErrorType).
//
// Translation is the one place of the gateway that builds new JSON: requests
// and complete responses go through encoding/json, stream events are read
// with a scanner and written by appending bytes, one event at a time.
package anthropic

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
	_ providers.Stream   = (*stream)(nil)
)

// DefaultBaseURL is where Anthropic's API is when a deployment names no base_url.
const DefaultBaseURL = "https://api.anthropic.com"

// APIVersion is the anthropic-version header sent with every request.
const APIVersion = "2023-06-01"

// Option changes a Client built by New.
type Option func(*Client)

// WithDefaultMaxTokens sets the max_tokens sent when a request has none
// (Anthropic requires one); n <= 0 keeps DefaultMaxTokens (4096).
func WithDefaultMaxTokens(n int) Option {
	return func(c *Client) {
		if n > 0 {
			c.maxTokens = int64(n)
		}
	}
}

// WithClock sets the clock that stamps "created" on translated answers;
// default time.Now.
func WithClock(now func() time.Time) Option {
	return func(c *Client) { c.now = now }
}

// Client calls one Anthropic deployment. It is safe for concurrent use.
type Client struct {
	name      string
	hc        *fasthttp.HostClient
	url       string
	apiKey    string
	model     string
	maxTokens int64
	now       func() time.Time
}

// New returns a client for deployment d (provider anthropic): d.BaseURL
// (default DefaultBaseURL; "/v1/messages" is appended, a trailing "/v1" is
// accepted), d.APIKey sent as x-api-key, d.Timeout as the longest silence
// tolerated (before the first byte and between two reads of a stream),
// d.MaxConns as the connection cap.
func New(d providers.DeploymentConfig, opts ...Option) (*Client, error) {
	base := d.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(strings.TrimRight(base, "/"))
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
	path := strings.TrimSuffix(u.Path, "/v1")
	c := &Client{
		name:      d.Name,
		url:       u.Scheme + "://" + u.Host + path + "/v1/messages",
		apiKey:    d.APIKey,
		model:     d.Model,
		maxTokens: DefaultMaxTokens,
		now:       time.Now,
	}
	for _, o := range opts {
		o(c)
	}
	timeout := d.Timeout
	maxConns := d.MaxConns
	if maxConns <= 0 {
		maxConns = fasthttp.DefaultMaxConnsPerHost
	}
	c.hc = &fasthttp.HostClient{
		Addr:                host,
		IsTLS:               u.Scheme == "https",
		Name:                "mtai",
		MaxConns:            maxConns,
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

// idleConn bounds the silence between two reads, like nginx's proxy_read_timeout.
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

func (c *Client) newRequest(r *providers.Request, stream bool) (*fasthttp.Request, error) {
	model := r.Model
	if model == "" {
		model = c.model
	}
	body, err := RequestFromOpenAI(r.Body, RequestOptions{Model: model, DefaultMaxTokens: c.maxTokens})
	if err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			return nil, &providers.UpstreamError{Provider: "anthropic", Deployment: c.name, Status: 400,
				Type: "invalid_request_error", Message: re.Message}
		}
		return nil, err
	}
	req := fasthttp.AcquireRequest()
	req.SetRequestURI(c.url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set("anthropic-version", APIVersion)
	if c.apiKey != "" {
		req.Header.Set("x-api-key", c.apiKey)
	}
	if r.RequestID != "" {
		req.Header.Set("X-Request-ID", r.RequestID)
	}
	if stream {
		req.Header.Set("Accept", "text/event-stream")
	}
	req.SetBodyRaw(body)
	return req, nil
}

// Complete implements providers.Provider.
func (c *Client) Complete(ctx context.Context, r *providers.Request) (*providers.Response, error) {
	req, err := c.newRequest(r, false)
	if err != nil {
		return nil, err
	}
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	if dl, ok := ctx.Deadline(); ok {
		err = c.hc.DoDeadline(req, resp, dl)
	} else {
		err = c.hc.Do(req, resp)
	}
	if err != nil {
		return nil, c.transportError(err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return nil, c.statusError(resp)
	}
	body, usage, err := ResponseToOpenAI(resp.Body(), c.now().Unix())
	if err != nil {
		return nil, &providers.UpstreamError{Provider: "anthropic", Deployment: c.name, Status: 502,
			Message: "the upstream's answer is not a Messages response: " + err.Error()}
	}
	return providers.NewResponse(body, usage, nil), nil
}

// Stream implements providers.Provider. It reads the stream up to its first
// chunk before returning, so that an error event sent at once (an
// overloaded upstream that already answered 200) is returned as an error
// that the router can retry elsewhere.
func (c *Client) Stream(ctx context.Context, r *providers.Request) (providers.Stream, error) {
	req, err := c.newRequest(r, true)
	if err != nil {
		return nil, err
	}
	resp := fasthttp.AcquireResponse()
	resp.StreamBody = true
	err = c.hc.Do(req, resp)
	fasthttp.ReleaseRequest(req)
	if err != nil {
		fasthttp.ReleaseResponse(resp)
		return nil, c.transportError(err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		defer fasthttp.ReleaseResponse(resp)
		return nil, c.statusError(resp)
	}
	body, _ := resp.BodyStream().(fasthttp.ReadCloserWithError)
	s := newStream(c, resp, body, NewChunkTranslator(r.Model, c.now().Unix()))
	if err := s.prime(); err != nil {
		s.Close(err)
		return nil, err
	}
	return s, nil
}

func (c *Client) transportError(err error) error {
	var ne net.Error
	if errors.Is(err, fasthttp.ErrTimeout) || errors.Is(err, fasthttp.ErrDialTimeout) ||
		errors.Is(err, fasthttp.ErrTLSHandshakeTimeout) || (errors.As(err, &ne) && ne.Timeout()) {
		err = fmt.Errorf("%w: %v", providers.ErrTimeout, err)
	}
	return &providers.UpstreamError{Provider: "anthropic", Deployment: c.name, Err: err}
}

// statusError reads Anthropic's error body and retry-after header. Type
// and Code are in OpenAI's vocabulary (see openAIError); Message is
// Anthropic's.
func (c *Client) statusError(resp *fasthttp.Response) error {
	e := &providers.UpstreamError{Provider: "anthropic", Deployment: c.name, Status: resp.StatusCode()}
	body := resp.Body()
	if typ, msg, ok := parseError(body); ok {
		e.Type, e.Code = openAIError(typ)
		e.Message = msg
	} else {
		if len(body) > 200 {
			body = body[:200]
		}
		e.Message = strings.TrimSpace(string(body))
	}
	if s := resp.Header.Peek("Retry-After"); len(s) > 0 {
		if n, err := strconv.Atoi(string(s)); err == nil && n > 0 {
			e.RetryAfter = time.Duration(n) * time.Second
		}
	}
	return e
}

// stream reads an Anthropic SSE body and hands out OpenAI chunks.
type stream struct {
	c    *Client
	resp *fasthttp.Response
	body fasthttp.ReadCloserWithError // nil: the body is in resp.Body()
	tr   *ChunkTranslator

	buf  []byte // read buffer; buf[r:w] is unread
	r, w int
	ev   []byte // the data of the event being assembled
	eof  bool
	err  error // sticky error of the upstream

	mu       sync.Mutex
	reading  bool
	closed   bool
	released bool
}

const maxEvent = 4 << 20

var errClosed = errors.New("anthropic stream closed")

func newStream(c *Client, resp *fasthttp.Response, body fasthttp.ReadCloserWithError, tr *ChunkTranslator) *stream {
	s := &stream{c: c, resp: resp, body: body, tr: tr}
	if body == nil {
		s.buf = resp.Body()
		s.w = len(s.buf)
		s.eof = true
	} else {
		s.buf = make([]byte, 4096)
	}
	return s
}

// prime reads events until the first chunk is ready (it stays queued in
// the translator); an error event before it becomes the returned error.
func (s *stream) prime() error {
	for {
		data, err := s.event()
		if err != nil {
			return err
		}
		if typ, msg, ok := ErrorEvent(data); ok {
			oaType, code := openAIError(typ)
			return &providers.UpstreamError{Provider: "anthropic", Deployment: s.c.name,
				Status: errorStatus(typ), Type: oaType, Code: code, Message: msg}
		}
		if err := s.tr.Feed(data); err != nil {
			return s.malformed(err)
		}
		if s.tr.n > 0 {
			return nil
		}
	}
}

func (s *stream) malformed(err error) error {
	return &providers.UpstreamError{Provider: "anthropic", Deployment: s.c.name, Err: err,
		Message: "malformed stream event"}
}

// Next implements providers.Stream.
func (s *stream) Next() ([]byte, error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errClosed
	}
	s.reading = true
	s.mu.Unlock()
	chunk, err := s.next()
	s.mu.Lock()
	s.reading = false
	if s.closed {
		s.releaseLocked()
		if err == nil {
			chunk, err = nil, errClosed
		}
	}
	s.mu.Unlock()
	return chunk, err
}

func (s *stream) next() ([]byte, error) {
	for {
		if c, ok := s.tr.Chunk(); ok {
			return c, nil
		}
		if s.tr.Done() {
			return nil, io.EOF
		}
		data, err := s.event()
		if err != nil {
			return nil, err
		}
		if err := s.tr.Feed(data); err != nil {
			return nil, s.malformed(err)
		}
	}
}

// event returns the data of the next SSE event (the lines of one event
// joined by "\n"); event:, id:, retry: and comment lines are ignored, since
// every Anthropic event names its type in its data.
func (s *stream) event() ([]byte, error) {
	if s.err != nil {
		return nil, s.err
	}
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
				if s.r < s.w { // a last line without its newline
					nl = s.w
				} else {
					if hasData {
						return s.ev, nil
					}
					s.err = &providers.UpstreamError{Provider: "anthropic", Deployment: s.c.name,
						Err: io.ErrUnexpectedEOF, Message: "stream ended before message_stop"}
					return nil, s.err
				}
			} else {
				if err := s.fill(); err != nil {
					s.err = err
					return nil, err
				}
				continue
			}
		}
		line := s.buf[s.r:nl]
		s.r = min(nl+1, s.w)
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		if len(line) == 0 {
			if hasData {
				return s.ev, nil
			}
			continue
		}
		if payload, ok := cutPrefix(line, "data:"); ok {
			if len(payload) > 0 && payload[0] == ' ' {
				payload = payload[1:]
			}
			if hasData {
				s.ev = append(s.ev, '\n')
			}
			s.ev = append(s.ev, payload...)
			hasData = true
			if len(s.ev) > maxEvent {
				s.err = &providers.UpstreamError{Provider: "anthropic", Deployment: s.c.name,
					Err: errors.New("SSE event larger than 4 MiB")}
				return nil, s.err
			}
		}
	}
}

func cutPrefix(b []byte, p string) ([]byte, bool) {
	if len(b) >= len(p) && string(b[:len(p)]) == p {
		return b[len(p):], true
	}
	return nil, false
}

// fill reads more bytes from the body, compacting or growing the buffer.
func (s *stream) fill() error {
	if s.r > 0 {
		n := copy(s.buf, s.buf[s.r:s.w])
		s.r, s.w = 0, n
	}
	if s.w == len(s.buf) {
		if len(s.buf) >= maxEvent {
			return &providers.UpstreamError{Provider: "anthropic", Deployment: s.c.name,
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
// connection and buffers are released once, when no Next is running.
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
	s.buf = nil
	fasthttp.ReleaseResponse(s.resp)
}

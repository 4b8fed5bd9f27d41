// Package anthropic is the adapter for Anthropic's Messages API
// (POST {base}/v1/messages, x-api-key and anthropic-version headers; and
// POST {base}/v1/messages/count_tokens, Client.CountTokens), and
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
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/internal/jsonscan"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/sse"
)

var (
	_ providers.Provider     = (*Client)(nil)
	_ providers.TokenCounter = (*Client)(nil)
	_ providers.Stream       = (*stream)(nil)
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
	bufs      sse.Buffers // read buffers of streams
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
		Dial:                sse.DialIdle(d.Timeout),
	}
	return c, nil
}

// call is what a request to Anthropic is for.
type call uint8

const (
	callMessage call = iota // POST /v1/messages
	callStream              // POST /v1/messages, streamed
	callCount               // POST /v1/messages/count_tokens
)

func (c *Client) newRequest(r *providers.Request, kind call) (*fasthttp.Request, error) {
	model := r.Model
	if model == "" {
		model = c.model
	}
	body, err := RequestFromOpenAI(r.Body, RequestOptions{Model: model, DefaultMaxTokens: c.maxTokens, CountTokens: kind == callCount})
	if err != nil {
		var re *RequestError
		if errors.As(err, &re) {
			return nil, &providers.UpstreamError{Provider: "anthropic", Deployment: c.name, Status: 400,
				Type: "invalid_request_error", Message: re.Message}
		}
		return nil, err
	}
	req := fasthttp.AcquireRequest()
	if kind == callCount {
		req.SetRequestURI(c.url + "/count_tokens")
	} else {
		req.SetRequestURI(c.url)
	}
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set("anthropic-version", APIVersion)
	if c.apiKey != "" {
		req.Header.Set("x-api-key", c.apiKey)
	}
	if r.RequestID != "" {
		req.Header.Set("X-Request-ID", r.RequestID)
	}
	if kind == callStream {
		req.Header.Set("Accept", "text/event-stream")
	}
	req.SetBodyRaw(body)
	return req, nil
}

// Complete implements providers.Provider.
func (c *Client) Complete(ctx context.Context, r *providers.Request) (*providers.Response, error) {
	resp, err := c.roundTrip(ctx, r, callMessage)
	if err != nil {
		return nil, err
	}
	defer fasthttp.ReleaseResponse(resp)
	body, usage, err := ResponseToOpenAI(resp.Body(), c.now().Unix())
	if err != nil {
		return nil, &providers.UpstreamError{Provider: "anthropic", Deployment: c.name, Status: 502,
			Message: "the upstream's answer is not a Messages response: " + err.Error()}
	}
	return providers.NewResponse(body, usage, nil), nil
}

// CountTokens implements providers.TokenCounter: the request, translated
// as Complete would send it, is counted by Anthropic's
// POST /v1/messages/count_tokens ({"input_tokens": N}).
func (c *Client) CountTokens(ctx context.Context, r *providers.Request) (int64, error) {
	resp, err := c.roundTrip(ctx, r, callCount)
	if err != nil {
		return 0, err
	}
	defer fasthttp.ReleaseResponse(resp)
	body := resp.Body()
	if s, e, ok := jsonscan.Find(body, 0, "input_tokens"); ok {
		if n, ok := jsonscan.Int(body[s:e]); ok && n >= 0 {
			return n, nil
		}
	}
	return 0, &providers.UpstreamError{Provider: "anthropic", Deployment: c.name, Status: 502,
		Message: "the upstream's answer is not a token count: " + truncate(string(body), 200)}
}

// roundTrip sends a non-streamed request and returns the upstream's
// successful answer (the caller releases it) or its error.
func (c *Client) roundTrip(ctx context.Context, r *providers.Request, kind call) (*fasthttp.Response, error) {
	req, err := c.newRequest(r, kind)
	if err != nil {
		return nil, err
	}
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	if dl, ok := ctx.Deadline(); ok {
		err = c.hc.DoDeadline(req, resp, dl)
	} else {
		err = c.hc.Do(req, resp)
	}
	switch {
	case err != nil:
		err = c.transportError(err)
	case resp.StatusCode() != fasthttp.StatusOK:
		err = c.statusError(resp)
	default:
		return resp, nil
	}
	fasthttp.ReleaseResponse(resp)
	return nil, err
}

// Stream implements providers.Provider. It reads the stream up to its first
// chunk before returning, so that an error event sent at once (an
// overloaded upstream that already answered 200) is returned as an error
// that the router can retry elsewhere.
func (c *Client) Stream(ctx context.Context, r *providers.Request) (providers.Stream, error) {
	req, err := c.newRequest(r, callStream)
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
	s := &stream{c: c, tr: NewChunkTranslator(r.Model, c.now().Unix())}
	s.Init(resp, &c.bufs, "")
	if err := s.prime(); err != nil {
		s.Close(err)
		return nil, err
	}
	return s, nil
}

func (c *Client) transportError(err error) error {
	return &providers.UpstreamError{Provider: "anthropic", Deployment: c.name, Err: sse.MarkTimeout(err)}
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
	c  *Client
	tr *ChunkTranslator
	sse.Stream
}

var errClosed = errors.New("anthropic stream closed")

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

// event returns the data of the next SSE event; event: lines are not
// needed, since every Anthropic event names its type in its data.
func (s *stream) event() ([]byte, error) {
	ev, err := s.Stream.Next()
	switch {
	case err == nil:
		return ev.Data, nil
	case errors.Is(err, sse.ErrClosed):
		return nil, errClosed
	case errors.Is(err, sse.ErrTruncated):
		return nil, &providers.UpstreamError{Provider: "anthropic", Deployment: s.c.name,
			Err: io.ErrUnexpectedEOF, Message: "stream ended before message_stop"}
	case errors.Is(err, sse.ErrEventTooLarge), errors.Is(err, sse.ErrLineTooLarge):
		return nil, &providers.UpstreamError{Provider: "anthropic", Deployment: s.c.name, Err: err}
	}
	return nil, s.c.transportError(err)
}

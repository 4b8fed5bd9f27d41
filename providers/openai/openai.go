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
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/sse"
)

var (
	_ providers.Provider = (*Client)(nil)
	_ providers.Embedder = (*Client)(nil)
	_ providers.Stream   = (*stream)(nil)
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
	bufs     sse.Buffers // read buffers of streams
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
		Dial:                sse.DialIdle(d.Timeout),
	}
	return c, nil
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
	s := &stream{c: c}
	s.Init(resp, &c.bufs, "[DONE]")
	return s, nil
}

func (c *Client) transportError(err error) error {
	return &providers.UpstreamError{Provider: c.provider, Deployment: c.name, Err: sse.MarkTimeout(err)}
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

// stream relays the data of an upstream's SSE events.
type stream struct {
	c *Client
	sse.Stream
}

var errClosed = errors.New("stream closed")

// Next implements providers.Stream.
func (s *stream) Next() ([]byte, error) {
	ev, err := s.Stream.Next()
	switch {
	case err == nil || err == io.EOF:
		return ev.Data, err
	case errors.Is(err, sse.ErrClosed):
		return nil, errClosed
	case errors.Is(err, sse.ErrTruncated):
		return nil, &providers.UpstreamError{Provider: s.c.provider, Deployment: s.c.name,
			Err: io.ErrUnexpectedEOF, Message: "stream ended without [DONE]"}
	case errors.Is(err, sse.ErrEventTooLarge), errors.Is(err, sse.ErrLineTooLarge):
		return nil, &providers.UpstreamError{Provider: s.c.provider, Deployment: s.c.name, Err: err}
	}
	return nil, s.c.transportError(err)
}

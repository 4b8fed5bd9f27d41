package providers

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"time"
)

// Deployment is one upstream that serves a route, with its circuit breaker.
type Deployment struct {
	// Name identifies the deployment in logs and metrics.
	Name string
	// Provider is the protocol name (openai, azure, mock, ...).
	Provider string
	// Model is the upstream's model name.
	Model string
	// Weight for picking the first deployment; 0: order only.
	Weight int

	client  Provider
	breaker breaker
}

// Route is a model name that clients can ask for and its deployments in order.
type Route struct {
	// Name is the model name clients send.
	Name string
	// OwnedBy is shown in /v1/models.
	OwnedBy string
	// Embeddings marks an embeddings model.
	Embeddings bool
	// Deployments in fallback order.
	Deployments []*Deployment

	weighted bool
}

// Factory builds the Provider for one deployment.
type Factory func(d DeploymentConfig) (Provider, error)

// Router maps model names to routes and calls their deployments with
// retries, fallbacks and circuit breaking. It is safe for concurrent use.
type Router struct {
	routes map[string]*Route
	names  []string
	retry  RetryConfig
	brk    BreakerConfig
	now    func() time.Time
	sleep  func(ctx context.Context, d time.Duration) error
}

// NewRouter builds the routes of cfg (defaults applied, validated), asking
// factories (keyed by provider name) for each deployment's client.
func NewRouter(cfg Config, factories map[string]Factory) (*Router, error) {
	cfg.SetDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Router{
		routes: make(map[string]*Route, len(cfg.Models)),
		retry:  cfg.Retry,
		brk:    cfg.Breaker,
		now:    time.Now,
		sleep:  sleepCtx,
	}
	for i, m := range cfg.Models {
		rt := &Route{Name: m.Name, OwnedBy: m.OwnedBy, Embeddings: m.Embeddings}
		for j, dc := range m.Deployments {
			f, ok := factories[dc.Provider]
			if !ok {
				known := make([]string, 0, len(factories))
				for k := range factories {
					known = append(known, k)
				}
				sort.Strings(known)
				return nil, fmt.Errorf("providers.models[%d].deployments[%d].provider %q is unknown (known: %s)",
					i, j, dc.Provider, strings.Join(known, ", "))
			}
			client, err := f(dc)
			if err != nil {
				return nil, err
			}
			rt.Deployments = append(rt.Deployments, &Deployment{
				Name: dc.Name, Provider: dc.Provider, Model: dc.Model, Weight: dc.Weight, client: client,
			})
			if dc.Weight > 0 {
				rt.weighted = true
			}
		}
		r.routes[m.Name] = rt
		r.names = append(r.names, m.Name)
	}
	sort.Strings(r.names)
	return r, nil
}

// Route returns the route for a model name.
func (r *Router) Route(model string) (*Route, bool) {
	rt, ok := r.routes[model]
	return rt, ok
}

// Routes returns every route, sorted by name. The slice is shared: do not modify.
func (r *Router) Routes() []*Route {
	out := make([]*Route, len(r.names))
	for i, n := range r.names {
		out[i] = r.routes[n]
	}
	return out
}

// Call is one request to route: the OpenAI-format body and where the model
// value sits in it, so that each deployment gets its own upstream model name.
type Call struct {
	// Body is the request as the gateway will send it (model as the client named it).
	Body []byte
	// ModelStart and ModelEnd delimit the model string's content inside Body
	// (between the quotes). ModelEnd == 0 means Body names no model.
	ModelStart, ModelEnd int
	// RequestID is forwarded upstream.
	RequestID string

	buf []byte
}

// request builds the upstream request for deployment d.
func (c *Call) request(d *Deployment) *Request {
	body := c.Body
	if c.ModelEnd > 0 && string(body[c.ModelStart:c.ModelEnd]) != d.Model {
		c.buf = append(c.buf[:0], body[:c.ModelStart]...)
		c.buf = appendJSONStringContent(c.buf, d.Model)
		c.buf = append(c.buf, body[c.ModelEnd:]...)
		body = c.buf
	}
	return &Request{Body: body, Model: d.Model, RequestID: c.RequestID}
}

// Served says which deployment answered a call.
type Served struct {
	Deployment *Deployment
	// Attempts made in all, including the successful one.
	Attempts int
}

// Complete sends a non-streamed chat completion along the route.
func (r *Router) Complete(ctx context.Context, rt *Route, call *Call) (*Response, Served, error) {
	var resp *Response
	served, err := r.do(ctx, rt, func(d *Deployment) error {
		var err error
		resp, err = d.client.Complete(ctx, call.request(d))
		return err
	})
	return resp, served, err
}

// Stream opens a streamed chat completion along the route. Retries and
// fallbacks happen only until a deployment answered with success headers:
// nothing has reached the client before that.
func (r *Router) Stream(ctx context.Context, rt *Route, call *Call) (Stream, Served, error) {
	var st Stream
	served, err := r.do(ctx, rt, func(d *Deployment) error {
		var err error
		st, err = d.client.Stream(ctx, call.request(d))
		return err
	})
	return st, served, err
}

// Embed sends an embeddings request along the route.
func (r *Router) Embed(ctx context.Context, rt *Route, call *Call) (*Response, Served, error) {
	var resp *Response
	served, err := r.do(ctx, rt, func(d *Deployment) error {
		e, ok := d.client.(Embedder)
		if !ok {
			return ErrNotSupported
		}
		var err error
		resp, err = e.Embed(ctx, call.request(d))
		return err
	})
	return resp, served, err
}

// CountTokens counts the input tokens of call (an OpenAI chat request)
// with the deployment that would serve it, when that deployment can count
// upstream (TokenCounter), with the retries and fallbacks of a completion.
// When the deployment that would serve cannot count (or is the fallback
// of one that failed), it returns ErrNotSupported and names that
// deployment in Served, for the caller to count locally.
func (r *Router) CountTokens(ctx context.Context, rt *Route, call *Call) (int64, Served, error) {
	var (
		n     int64
		local *Deployment
	)
	served, err := r.do(ctx, rt, func(d *Deployment) error {
		tc, ok := d.client.(TokenCounter)
		if !ok {
			local = d
			return errCountLocally // do returns it at once, as an error that is no upstream's
		}
		var err error
		n, err = tc.CountTokens(ctx, call.request(d))
		return err
	})
	if local != nil {
		served.Attempts-- // local was not called
		served.Deployment = local
		return 0, served, ErrNotSupported
	}
	return n, served, err
}

var errCountLocally = errors.New("count locally")

// do runs attempt on the route's deployments: the first chosen by weight,
// the rest in order; each retried on retryable errors with backoff.
func (r *Router) do(ctx context.Context, rt *Route, attempt func(*Deployment) error) (Served, error) {
	var (
		served  Served
		lastErr error
		first   = 0
	)
	if rt.weighted && len(rt.Deployments) > 1 {
		first = pickWeighted(rt.Deployments)
	}
	n := len(rt.Deployments)
	for i := 0; i < n; i++ {
		d := rt.Deployments[(first+i)%n]
		if !d.breaker.allow(r.now(), r.brk) {
			if lastErr == nil {
				lastErr = ErrUnavailable
			}
			continue
		}
		backoff := r.retry.Backoff
		for a := 0; a < r.retry.Attempts; a++ {
			served.Attempts++
			err := attempt(d)
			if err == nil {
				d.breaker.success()
				served.Deployment = d
				return served, nil
			}
			if ctx.Err() != nil {
				// The client went away or the request's deadline passed:
				// not the upstream's fault, and no point in going on.
				return served, err
			}
			lastErr = err
			if errors.Is(err, ErrNotSupported) {
				break
			}
			if errors.Is(err, ErrTimeout) {
				// A silent upstream is slow to find out about: do not wait for
				// it twice, try the next deployment.
				d.breaker.failure(r.now(), r.brk)
				break
			}
			var ue *UpstreamError
			if !errors.As(err, &ue) {
				return served, err
			}
			if ue.Status != 429 && ue.Retryable() {
				d.breaker.failure(r.now(), r.brk)
			}
			if !ue.Retryable() {
				if fallbackable(ue.Status) {
					break // this deployment is misconfigured: try the next one
				}
				return served, err // the request itself is wrong
			}
			if a+1 < r.retry.Attempts && d.breaker.closed() {
				wait := jitter(backoff)
				if ue.RetryAfter > 0 {
					wait = ue.RetryAfter
				}
				if wait > r.retry.MaxBackoff {
					break // the upstream asks for longer than we wait: fall back
				}
				if err := r.sleep(ctx, wait); err != nil {
					return served, lastErr
				}
				backoff *= 2
			}
		}
	}
	if lastErr == nil {
		lastErr = ErrUnavailable
	}
	return served, lastErr
}

// fallbackable reports whether an upstream's non-retryable status is the
// deployment's problem (its key, its account's credit, its region, its
// model name) rather than the request's, so that another deployment may
// succeed.
func fallbackable(status int) bool {
	return status == 401 || status == 402 || status == 403 || status == 404
}

func pickWeighted(ds []*Deployment) int {
	total := 0
	for _, d := range ds {
		total += d.Weight
	}
	if total <= 0 {
		return 0
	}
	n := rand.IntN(total)
	for i, d := range ds {
		if n < d.Weight {
			return i
		}
		n -= d.Weight
	}
	return 0
}

func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	return d/2 + rand.N(d/2+1)
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// breaker is a consecutive-failure circuit breaker. Open after
// cfg.Failures failures in a row; after cfg.Cooldown one trial request is
// let through (half-open); its success closes the breaker.
type breaker struct {
	mu        sync.Mutex
	failures  int
	openUntil time.Time
	trial     bool
}

func (b *breaker) allow(now time.Time, cfg BreakerConfig) bool {
	if cfg.Failures < 0 {
		return true
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.openUntil.IsZero() {
		return true
	}
	if now.Before(b.openUntil) || b.trial {
		return false
	}
	b.trial = true // half-open: this caller is the one trial
	return true
}

func (b *breaker) closed() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.openUntil.IsZero()
}

func (b *breaker) success() {
	b.mu.Lock()
	b.failures, b.openUntil, b.trial = 0, time.Time{}, false
	b.mu.Unlock()
}

func (b *breaker) failure(now time.Time, cfg BreakerConfig) {
	if cfg.Failures < 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	if b.trial || b.failures >= cfg.Failures {
		b.openUntil = now.Add(cfg.Cooldown)
		b.trial = false
	}
}

// Open reports whether the deployment's breaker currently keeps it out.
func (d *Deployment) Open(now time.Time) bool {
	d.breaker.mu.Lock()
	defer d.breaker.mu.Unlock()
	return !d.breaker.openUntil.IsZero() && now.Before(d.breaker.openUntil)
}

// Reset clears c for reuse, keeping its buffer.
func (c *Call) Reset() {
	*c = Call{buf: c.buf[:0]}
}

package providers

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// scripted is a provider that answers from a script of errors (nil: success).
type scripted struct {
	mu     sync.Mutex
	name   string
	script []error
	calls  int
	models []string
}

func (p *scripted) next(req *Request) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.calls++
	p.models = append(p.models, string(req.Body))
	if len(p.script) == 0 {
		return nil
	}
	err := p.script[0]
	p.script = p.script[1:]
	return err
}

func (p *scripted) Complete(_ context.Context, req *Request) (*Response, error) {
	if err := p.next(req); err != nil {
		return nil, err
	}
	return NewResponse([]byte(p.name), Usage{}, nil), nil
}

func (p *scripted) Stream(_ context.Context, req *Request) (Stream, error) {
	return nil, p.next(req)
}

func status(code int) error {
	return &UpstreamError{Provider: "x", Status: code, Message: fmt.Sprint(code)}
}

func newTestRouter(t *testing.T, ps ...*scripted) *Router {
	t.Helper()
	var deps []DeploymentConfig
	byName := map[string]*scripted{}
	for _, p := range ps {
		deps = append(deps, DeploymentConfig{Name: p.name, Provider: "s", Model: "up-" + p.name})
		byName[p.name] = p
	}
	r, err := NewRouter(Config{
		Models:  []ModelConfig{{Name: "m", Deployments: deps}},
		Breaker: BreakerConfig{Failures: 3, Cooldown: time.Minute},
	}, map[string]Factory{"s": func(d DeploymentConfig) (Provider, error) { return byName[d.Name], nil }})
	if err != nil {
		t.Fatal(err)
	}
	r.sleep = func(context.Context, time.Duration) error { return nil }
	return r
}

func TestRouterRetriesAndFallback(t *testing.T) {
	cases := []struct {
		name     string
		a, b     []error
		wantBody string
		wantErr  int // upstream status of the error, 0 for success
		aCalls   int
		bCalls   int
	}{
		{"first succeeds", nil, nil, "a", 0, 1, 0},
		{"retry then succeed", []error{status(500)}, nil, "a", 0, 2, 0},
		{"429 retried", []error{status(429)}, nil, "a", 0, 2, 0},
		{"fallback after retries", []error{status(502), status(503)}, nil, "b", 0, 2, 1},
		{"connection error falls back", []error{&UpstreamError{Err: errors.New("refused")}, &UpstreamError{Err: errors.New("refused")}}, nil, "b", 0, 2, 1},
		{"400 is the request's fault: no retry", []error{status(400)}, nil, "", 400, 1, 0},
		{"401 is the deployment's fault: fall back", []error{status(401)}, nil, "b", 0, 1, 1},
		{"402 (the account's credit) falls back", []error{status(402)}, nil, "b", 0, 1, 1},
		{"timeout falls back at once", []error{&UpstreamError{Err: fmt.Errorf("%w: read", ErrTimeout)}}, nil, "b", 0, 1, 1},
		{"all fail", []error{status(500), status(500)}, []error{status(503), status(503)}, "", 503, 2, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := &scripted{name: "a", script: tc.a}
			b := &scripted{name: "b", script: tc.b}
			r := newTestRouter(t, a, b)
			rt, _ := r.Route("m")
			call := &Call{Body: []byte(`{"model":"m"}`), ModelStart: 10, ModelEnd: 11}
			resp, served, err := r.Complete(context.Background(), rt, call)
			if tc.wantErr != 0 {
				var ue *UpstreamError
				if !errors.As(err, &ue) || ue.Status != tc.wantErr {
					t.Fatalf("err = %v, want status %d", err, tc.wantErr)
				}
			} else {
				if err != nil {
					t.Fatalf("err = %v", err)
				}
				if string(resp.Body) != tc.wantBody || served.Deployment.Name != tc.wantBody {
					t.Errorf("served by %q (%s), want %q", resp.Body, served.Deployment.Name, tc.wantBody)
				}
			}
			if a.calls != tc.aCalls || b.calls != tc.bCalls {
				t.Errorf("calls a=%d b=%d, want %d %d", a.calls, b.calls, tc.aCalls, tc.bCalls)
			}
			for _, body := range append(a.models, b.models...) {
				if body != `{"model":"up-a"}` && body != `{"model":"up-b"}` {
					t.Errorf("upstream got body %s: model not rewritten", body)
				}
			}
		})
	}
}

func TestCircuitBreaker(t *testing.T) {
	a := &scripted{name: "a"}
	b := &scripted{name: "b"}
	r := newTestRouter(t, a, b)
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	r.retry.Attempts = 1
	rt, _ := r.Route("m")
	call := func() string {
		resp, _, err := r.Complete(context.Background(), rt, &Call{Body: []byte(`{}`)})
		if err != nil {
			return "error"
		}
		return string(resp.Body)
	}
	a.script = []error{status(500), status(500), status(500)}
	for i := 0; i < 3; i++ {
		if got := call(); got != "b" {
			t.Fatalf("call %d served by %s, want b (fallback)", i, got)
		}
	}
	if !rt.Deployments[0].Open(now) {
		t.Fatal("breaker of a is not open after 3 failures")
	}
	callsBefore := a.calls
	if got := call(); got != "b" || a.calls != callsBefore {
		t.Fatalf("open breaker: served by %s, a called %d times more", got, a.calls-callsBefore)
	}
	now = now.Add(2 * time.Minute) // cooldown over: one trial goes to a
	if got := call(); got != "a" {
		t.Fatalf("after cooldown served by %s, want a (trial)", got)
	}
	if rt.Deployments[0].Open(now) {
		t.Error("breaker still open after a successful trial")
	}
}

func TestBreakerTrialFailureReopens(t *testing.T) {
	a := &scripted{name: "a", script: []error{status(500), status(500), status(500), status(500)}}
	b := &scripted{name: "b"}
	r := newTestRouter(t, a, b)
	now := time.Unix(1000, 0)
	r.now = func() time.Time { return now }
	r.retry.Attempts = 1
	rt, _ := r.Route("m")
	for i := 0; i < 3; i++ {
		_, _, _ = r.Complete(context.Background(), rt, &Call{Body: []byte(`{}`)})
	}
	now = now.Add(2 * time.Minute)
	_, _, _ = r.Complete(context.Background(), rt, &Call{Body: []byte(`{}`)}) // the trial fails
	if !rt.Deployments[0].Open(now) {
		t.Error("breaker not reopened after a failed trial")
	}
}

func TestWeightedPick(t *testing.T) {
	ds := []*Deployment{{Weight: 1}, {Weight: 3}}
	counts := [2]int{}
	for i := 0; i < 4000; i++ {
		counts[pickWeighted(ds)]++
	}
	// expected 1000 / 3000; a 5-sigma band around the binomial mean
	if counts[0] < 860 || counts[0] > 1140 {
		t.Errorf("weights 1:3 picked %v", counts)
	}
}

func TestClientGoneStopsRetries(t *testing.T) {
	a := &scripted{name: "a", script: []error{status(500), status(500)}}
	b := &scripted{name: "b"}
	r := newTestRouter(t, a, b)
	rt, _ := r.Route("m")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := r.Complete(ctx, rt, &Call{Body: []byte(`{}`)})
	if err == nil || a.calls != 1 || b.calls != 0 {
		t.Errorf("cancelled request: err=%v calls a=%d b=%d, want one call and an error", err, a.calls, b.calls)
	}
}

// counting is a scripted provider that can count tokens upstream.
type counting struct{ *scripted }

func (p counting) CountTokens(_ context.Context, req *Request) (int64, error) {
	if err := p.next(req); err != nil {
		return 0, err
	}
	return 42, nil
}

// TestRouterCountTokens: the deployment that would serve counts when it
// can; else (also as the fallback of a counter that failed) the caller is
// told to count locally, with the deployment to count for.
func TestRouterCountTokens(t *testing.T) {
	cases := []struct {
		name      string
		first     []error // the first deployment's script
		counter   bool    // whether the first deployment counts (the second never does)
		want      int64
		wantErr   error
		wantLocal string // the deployment named for a local count
		calls     int    // calls to the first deployment
	}{
		{name: "counter counts", counter: true, want: 42, calls: 1},
		{name: "plain deployment: count locally", wantErr: ErrNotSupported, wantLocal: "b0", calls: 0},
		{name: "failing counter falls back to a local count", counter: true, first: []error{status(500), status(500)},
			wantErr: ErrNotSupported, wantLocal: "b1", calls: 2},
		{name: "the request's fault is returned", counter: true, first: []error{status(400)}, wantErr: &UpstreamError{}, calls: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			first := &scripted{name: "b0", script: tc.first}
			second := &scripted{name: "b1"}
			r, err := NewRouter(Config{Models: []ModelConfig{{Name: "m", Deployments: []DeploymentConfig{
				{Name: "b0", Provider: "s"}, {Name: "b1", Provider: "s"}}}},
				Breaker: BreakerConfig{Failures: -1}},
				map[string]Factory{"s": func(d DeploymentConfig) (Provider, error) {
					if d.Name == "b1" {
						return second, nil
					}
					if tc.counter {
						return counting{first}, nil
					}
					return first, nil
				}})
			if err != nil {
				t.Fatal(err)
			}
			r.sleep = func(context.Context, time.Duration) error { return nil }
			rt, _ := r.Route("m")
			n, served, err := r.CountTokens(context.Background(), rt, &Call{Body: []byte(`{"model":"m"}`), ModelStart: 10, ModelEnd: 11})
			var ue *UpstreamError
			switch {
			case tc.wantErr == nil && (err != nil || n != tc.want):
				t.Errorf("CountTokens = %d, %v, want %d", n, err, tc.want)
			case errors.Is(tc.wantErr, ErrNotSupported) && (!errors.Is(err, ErrNotSupported) || served.Deployment == nil || served.Deployment.Name != tc.wantLocal):
				t.Errorf("CountTokens = %v, served %+v, want ErrNotSupported for %s", err, served.Deployment, tc.wantLocal)
			case errors.As(tc.wantErr, &ue) && !errors.As(err, &ue):
				t.Errorf("CountTokens = %v, want the upstream's error", err)
			}
			if first.calls != tc.calls || second.calls != 0 {
				t.Errorf("calls %d, %d, want %d, 0", first.calls, second.calls, tc.calls)
			}
		})
	}
}

package gateway

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
)

func errorsIsNotSupported(err error) bool { return errors.Is(err, providers.ErrNotSupported) }

// root serves GET /: what this is and where to go.
func (s *Server) root(rc *fasthttp.RequestCtx) {
	b := make([]byte, 0, 256)
	b = append(b, `{"name":"mtai","description":"Multi-tenant AI gateway with an OpenAI-compatible API","version":`...)
	b = providers.AppendJSONString(b, s.version)
	b = append(b, `,"links":{"openai_base_url":"/v1","api":"/api/v1","docs":"/docs","openapi":"/openapi.json","health":"/health","metrics":"/metrics","dashboard":"/admin"}}`...)
	rc.SetContentType("application/json")
	rc.SetBody(b)
}

// healthz serves GET /healthz: 200 while the process serves.
func (s *Server) healthz(rc *fasthttp.RequestCtx) {
	rc.SetContentType("application/json")
	if s.draining.Load() {
		rc.SetStatusCode(fasthttp.StatusServiceUnavailable)
		rc.SetBodyString(`{"status":"draining"}`)
		return
	}
	rc.SetBodyString(`{"status":"ok"}`)
}

type checkResult struct {
	name     string
	err      error
	latency  time.Duration
	required bool
}

// health serves GET /health: every dependency with its status and latency;
// 503 when a required one is down.
func (s *Server) health(rc *fasthttp.RequestCtx) {
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Second)
	defer cancel()
	results := make([]checkResult, len(s.checks)+len(s.optional))
	var wg sync.WaitGroup
	run := func(i int, c Checker, required bool) {
		defer wg.Done()
		t0 := time.Now()
		err := c.Check(ctx)
		results[i] = checkResult{name: c.Name(), err: err, latency: time.Since(t0), required: required}
	}
	for i, c := range s.checks {
		wg.Add(1)
		go run(i, c, true)
	}
	for i, c := range s.optional {
		wg.Add(1)
		go run(len(s.checks)+i, c, false)
	}
	wg.Wait()

	healthy := !s.draining.Load()
	b := make([]byte, 0, 512)
	b = append(b, `{"checks":{`...)
	for i, r := range results {
		if i > 0 {
			b = append(b, ',')
		}
		b = providers.AppendJSONString(b, r.name)
		b = append(b, `:{"status":`...)
		if r.err == nil {
			b = append(b, `"up"`...)
		} else {
			b = append(b, `"down","error":`...)
			b = providers.AppendJSONString(b, r.err.Error())
			if r.required {
				healthy = false
			}
		}
		b = append(b, `,"required":`...)
		b = strconv.AppendBool(b, r.required)
		b = append(b, `,"latency_ms":`...)
		b = strconv.AppendFloat(b, float64(r.latency.Microseconds())/1000, 'f', 3, 64)
		b = append(b, '}')
	}
	b = append(b, `},"providers":[`...)
	now := s.now()
	for i, rt := range s.router.Routes() {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"model":`...)
		b = providers.AppendJSONString(b, rt.Name)
		b = append(b, `,"deployments":[`...)
		for j, d := range rt.Deployments {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"name":`...)
			b = providers.AppendJSONString(b, d.Name)
			b = append(b, `,"circuit":`...)
			if d.Open(now) {
				b = append(b, `"open"`...)
			} else {
				b = append(b, `"closed"`...)
			}
			b = append(b, '}')
		}
		b = append(b, "]}"...)
	}
	b = append(b, `],"status":`...)
	if healthy {
		b = append(b, `"ok"`...)
	} else {
		b = append(b, `"unavailable"`...)
		rc.SetStatusCode(fasthttp.StatusServiceUnavailable)
	}
	b = append(b, `,"version":`...)
	b = providers.AppendJSONString(b, s.version)
	b = append(b, `,"uptime_seconds":`...)
	b = strconv.AppendInt(b, int64(now.Sub(s.started).Seconds()), 10)
	b = append(b, '}')
	rc.SetContentType("application/json")
	rc.SetBody(b)
}

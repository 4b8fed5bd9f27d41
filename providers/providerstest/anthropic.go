package providerstest

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// AnthropicKey is the API key the Anthropic fake accepts unless told otherwise.
const AnthropicKey = "sk-ant-test-key"

// Anthropic is a fake of Anthropic's Messages API: a real net/http server
// on 127.0.0.1 that checks requests the way the real API does and answers
// from the shared samples (samples/anthropic):
//
//   - POST /v1/messages without the right x-api-key: 401 (error-401-authentication.json);
//   - without anthropic-version: 400 invalid_request_error;
//   - a body without max_tokens: 400 (error-400-max-tokens-missing.json);
//   - "stream": true: the transcript replayed event by event, each event
//     ended by a blank line and flushed (default messages-stream-text.sse);
//   - otherwise the response body (default messages-response-text.json);
//   - POST /v1/messages/count_tokens (same key and version checks):
//     {"input_tokens": N} with N from CountTokens; a body with a field the
//     endpoint does not take (max_tokens, stream, temperature, ...) is a
//     400, as Anthropic answers it;
//   - anything else: 404 in Anthropic's error shape.
//
// Every request is recorded. All methods are safe for concurrent use; Close
// (registered with t.Cleanup by NewAnthropic) releases blocked handlers.
type Anthropic struct {
	// URL is the base URL to configure as a deployment's base_url,
	// e.g. "http://127.0.0.1:41234".
	URL string
	// Key is the accepted x-api-key.
	Key string

	srv    *httptest.Server
	done   chan struct{}
	err401 []byte
	err400 []byte

	mu         sync.Mutex
	response   []byte
	transcript []byte
	fail       *Failure
	failLeft   int
	blockAfter int // >0: after this many events, block until the client leaves
	requests   []Request
	blocked    chan struct{}
	cancelled  chan struct{}
	closeOnce  sync.Once
}

// NewAnthropic starts an Anthropic fake and registers its Close with t.Cleanup.
func NewAnthropic(t testing.TB) *Anthropic {
	t.Helper()
	a := &Anthropic{
		Key:        AnthropicKey,
		response:   Sample(t, "anthropic/messages-response-text.json"),
		transcript: Sample(t, "anthropic/messages-stream-text.sse"),
		err401:     Sample(t, "anthropic/error-401-authentication.json"),
		err400:     Sample(t, "anthropic/error-400-max-tokens-missing.json"),
		done:       make(chan struct{}),
		blocked:    make(chan struct{}, 16),
		cancelled:  make(chan struct{}, 16),
	}
	a.srv = httptest.NewServer(http.HandlerFunc(a.serve))
	a.URL = a.srv.URL
	t.Cleanup(a.Close)
	return a
}

// Close releases blocked handlers and stops the server. Safe to call twice.
func (a *Anthropic) Close() {
	a.closeOnce.Do(func() {
		close(a.done)
		a.srv.CloseClientConnections()
		a.srv.Close()
	})
}

// SetResponse sets the body of non-streamed answers.
func (a *Anthropic) SetResponse(body []byte) {
	a.mu.Lock()
	a.response = body
	a.mu.Unlock()
}

// SetTranscript sets the SSE transcript replayed for streamed requests.
func (a *Anthropic) SetTranscript(sse []byte) {
	a.mu.Lock()
	a.transcript = sse
	a.mu.Unlock()
}

// Fail makes every request fail with f.
func (a *Anthropic) Fail(f Failure) { a.FailFirst(-1, f) }

// FailFirst makes the next n requests fail with f (n < 0: all of them).
func (a *Anthropic) FailFirst(n int, f Failure) {
	a.mu.Lock()
	a.fail, a.failLeft = &f, n
	a.mu.Unlock()
}

// BlockAfter makes streams stop after n events and wait until the client
// goes away (or the fake closes); WaitBlocked and WaitCancelled observe it.
func (a *Anthropic) BlockAfter(n int) {
	a.mu.Lock()
	a.blockAfter = n
	a.mu.Unlock()
}

// WaitBlocked waits until a stream reached its blocking point.
func (a *Anthropic) WaitBlocked(timeout time.Duration) bool {
	select {
	case <-a.blocked:
		return true
	case <-time.After(timeout):
		return false
	}
}

// WaitCancelled waits until a blocked stream saw its client go away.
func (a *Anthropic) WaitCancelled(timeout time.Duration) bool {
	select {
	case <-a.cancelled:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Requests returns the requests received so far.
func (a *Anthropic) Requests() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Request(nil), a.requests...)
}

// LastBody returns the body of the last request (nil before any).
func (a *Anthropic) LastBody() []byte {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.requests) == 0 {
		return nil
	}
	return a.requests[len(a.requests)-1].Body
}

func anthropicError(w http.ResponseWriter, status int, typ, msg string) {
	b, _ := json.Marshal(map[string]any{"type": "error", "error": map[string]string{"type": typ, "message": msg},
		"request_id": "req_fake"})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func (a *Anthropic) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	a.mu.Lock()
	a.requests = append(a.requests, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, At: time.Now()})
	var fail *Failure
	if a.fail != nil && a.failLeft != 0 {
		fail = a.fail
		if a.failLeft > 0 {
			a.failLeft--
		}
	}
	response, transcript, blockAfter := a.response, a.transcript, a.blockAfter
	a.mu.Unlock()

	w.Header().Set("request-id", "req_fake")
	count := r.URL.Path == "/v1/messages/count_tokens"
	if r.Method != http.MethodPost || r.URL.Path != "/v1/messages" && !count {
		anthropicError(w, 404, "not_found_error", "Not found")
		return
	}
	if r.Header.Get("x-api-key") != a.Key {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(401)
		_, _ = w.Write(a.err401)
		return
	}
	if r.Header.Get("anthropic-version") == "" {
		anthropicError(w, 400, "invalid_request_error", "anthropic-version: header is required")
		return
	}
	if count {
		a.countTokens(w, body, fail)
		return
	}
	var req struct {
		MaxTokens *int            `json:"max_tokens"`
		Messages  json.RawMessage `json:"messages"`
		Model     string          `json:"model"`
		Stream    bool            `json:"stream"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		anthropicError(w, 400, "invalid_request_error", "Invalid JSON: "+err.Error())
		return
	}
	if req.MaxTokens == nil {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(400)
		_, _ = w.Write(a.err400)
		return
	}
	if len(req.Messages) == 0 || req.Model == "" {
		anthropicError(w, 400, "invalid_request_error", "messages and model: Field required")
		return
	}
	if fail != nil {
		writeFailure(w, fail)
		return
	}
	if !req.Stream {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(response)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(200)
	fl, _ := w.(http.Flusher)
	for i, ev := range SSEEvents(transcript) {
		if blockAfter > 0 && i == blockAfter {
			notify(a.blocked)
			select {
			case <-r.Context().Done():
				notify(a.cancelled)
			case <-a.done:
			}
			return
		}
		_, _ = w.Write(ev)
		_, _ = w.Write([]byte("\n\n"))
		if fl != nil {
			fl.Flush()
		}
	}
}

// SSEEvents splits an SSE transcript into its raw events (every line of
// each, "event:" lines included), without the blank lines between them. A
// last event without its blank line (as in the SDK fixtures) is returned
// too.
func SSEEvents(transcript []byte) [][]byte {
	transcript = bytes.ReplaceAll(transcript, []byte("\r\n"), []byte("\n"))
	var out [][]byte
	for _, ev := range bytes.Split(transcript, []byte("\n\n")) {
		ev = bytes.Trim(ev, "\n")
		if len(ev) > 0 {
			out = append(out, ev)
		}
	}
	return out
}

// notify signals on c without ever blocking the handler: with nobody
// waiting and the buffer full, the signal is dropped.
func notify(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// writeFailure answers f.
func writeFailure(w http.ResponseWriter, f *Failure) {
	for k, vs := range f.Header {
		for _, v := range vs {
			w.Header().Add(k, v)
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(f.Status)
	_, _ = w.Write(f.Body)
}

// countField reports whether /v1/messages/count_tokens takes a top-level
// field of that name.
func countField(name string) bool {
	switch name {
	case "model", "messages", "system", "tools", "tool_choice", "thinking", "mcp_servers",
		"output_config", "context_management", "speed", "cache_control":
		return true
	}
	return false
}

// countTokens answers /v1/messages/count_tokens, refusing what the real
// endpoint refuses (a missing model or messages, a field it does not take).
func (a *Anthropic) countTokens(w http.ResponseWriter, body []byte, fail *Failure) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil {
		anthropicError(w, 400, "invalid_request_error", "Invalid JSON: "+err.Error())
		return
	}
	for k := range fields {
		if !countField(k) {
			anthropicError(w, 400, "invalid_request_error", k+": Extra inputs are not permitted")
			return
		}
	}
	if len(fields["messages"]) == 0 || len(fields["model"]) == 0 {
		anthropicError(w, 400, "invalid_request_error", "messages and model: Field required")
		return
	}
	if fail != nil {
		writeFailure(w, fail)
		return
	}
	b, _ := json.Marshal(map[string]int{"input_tokens": CountTokens(body)})
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(b)
}

// CountTokens is the count the Anthropic fake answers for a count_tokens
// body: a plausible one, not Claude's tokenizer: one token per 4 bytes of
// the text of the system prompt, the messages and the tools (their JSON),
// plus 3 per message and 7 for the answer's priming.
func CountTokens(body []byte) int {
	var req struct {
		System   json.RawMessage `json:"system"`
		Messages []struct {
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		Tools json.RawMessage `json:"tools"`
	}
	if json.Unmarshal(body, &req) != nil {
		return 0
	}
	n := len(textOf(req.System)) + len(req.Tools)
	for _, m := range req.Messages {
		n += len(textOf(m.Content)) + 3*4
	}
	return (n+3)/4 + 7
}

// textOf is the text of Anthropic content: a string, or the text of its
// text blocks and the JSON of its other blocks.
func textOf(c json.RawMessage) string {
	var s string
	if json.Unmarshal(c, &s) == nil {
		return s
	}
	var blocks []json.RawMessage
	if json.Unmarshal(c, &blocks) != nil {
		return string(c)
	}
	var b strings.Builder
	for _, raw := range blocks {
		var bl struct {
			Type string `json:"type"`
			Text string `json:"text"`
		}
		if json.Unmarshal(raw, &bl) == nil && bl.Type == "text" {
			b.WriteString(bl.Text)
		} else {
			b.Write(raw)
		}
	}
	return b.String()
}

package providerstest

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Failure is an error answer of the Upstream: a status, extra headers and a
// body, e.g. Failure{Status: 429, Header: http.Header{"Retry-After": {"20"}},
// Body: Sample(t, "openai/error-429-rate-limit.json")}.
type Failure struct {
	Status int
	Header http.Header
	Body   []byte
}

// Request is one request the Upstream received, as it arrived.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   []byte
	At     time.Time
}

// Upstream is a fake OpenAI-compatible server: a real net/http server on
// 127.0.0.1 at a free port (net/http, not fasthttp, so that the gateway's
// fasthttp client is checked against another implementation of HTTP/1.1).
//
// It answers:
//   - POST /v1/chat/completions: the completion body (non-stream), or the
//     SSE transcript (stream:true) as OpenAI would send it for that request:
//     without stream_options.include_usage it leaves out the usage chunk and
//     the "usage":null keys; with it, it sends the transcript as it is,
//     adding a usage chunk before [DONE] when the transcript has none;
//   - POST /v1/embeddings: one vector per input, float or base64 as asked
//     (see EmbeddingVector);
//   - GET /v1/models and GET /v1/models/{id}: the samples' shapes;
//   - anything else: 404 in OpenAI's error shape.
//
// Each behaviour is set with a method (SetTranscript, Fail, FailFirst,
// Block, SetDelay, CutAfter, ...); the zero configuration answers from
// chat-completion-response.json and chat-stream-text.sse. Every request is
// recorded (Requests, Count, LastBody). All methods are safe for
// concurrent use. Close (registered with t.Cleanup by NewUpstream) ends
// blocked handlers and stops the server.
type Upstream struct {
	// URL is the base URL to use as a deployment's base_url, e.g.
	// "http://127.0.0.1:41234/v1".
	URL string

	srv  *httptest.Server
	done chan struct{} // closed by Close: blocked handlers return

	mu           sync.Mutex
	completion   []byte
	transcript   []byte
	models       []byte
	model        []byte
	dims         int
	promptTokens int
	fail         *Failure
	failLeft     int // requests left to fail; <0: every request
	block        bool
	delay        time.Duration
	cutAfter     int // >0: abort the connection after this many events
	requests     []Request
	cancelledAt  time.Time

	// blocked receives one value per stream that reached its blocking
	// point; cancelled one per blocked stream whose client went away.
	// Buffered (64) so that a handler never waits for a test that does not
	// listen; tests use at most a few blocked streams each.
	blocked   chan struct{}
	cancelled chan time.Time
	closeOnce sync.Once
}

// NewUpstream starts an Upstream answering from the shared samples and
// registers its Close with t.Cleanup. It fails t when the samples are missing.
func NewUpstream(t testing.TB) *Upstream {
	t.Helper()
	u := &Upstream{
		completion:   Sample(t, "openai/chat-completion-response.json"),
		transcript:   Sample(t, "openai/chat-stream-text.sse"),
		models:       Sample(t, "openai/models-list.json"),
		model:        Sample(t, "openai/model-retrieve.json"),
		dims:         3,
		promptTokens: 19,
		done:         make(chan struct{}),
		blocked:      make(chan struct{}, 64),
		cancelled:    make(chan time.Time, 64),
	}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	u.URL = u.srv.URL + "/v1"
	t.Cleanup(u.Close)
	return u
}

// Addr is the server's host:port.
func (u *Upstream) Addr() string { return strings.TrimPrefix(u.srv.URL, "http://") }

// Close releases blocked handlers and stops the server. Safe to call twice.
func (u *Upstream) Close() {
	u.closeOnce.Do(func() {
		close(u.done)
		u.srv.CloseClientConnections()
		u.srv.Close()
	})
}

// SetCompletion sets the body of non-streamed chat answers.
func (u *Upstream) SetCompletion(body []byte) {
	u.mu.Lock()
	u.completion = body
	u.mu.Unlock()
}

// SetTranscript sets the SSE transcript of streamed chat answers (as in
// samples/openai/*.sse).
func (u *Upstream) SetTranscript(sse []byte) {
	u.mu.Lock()
	u.transcript = sse
	u.mu.Unlock()
}

// SetEmbeddingDims sets the length of each embedding vector (default 3, as in the sample).
func (u *Upstream) SetEmbeddingDims(n int) {
	u.mu.Lock()
	u.dims = n
	u.mu.Unlock()
}

// SetPromptTokens sets the prompt_tokens of a synthesized usage chunk (default 19).
func (u *Upstream) SetPromptTokens(n int) {
	u.mu.Lock()
	u.promptTokens = n
	u.mu.Unlock()
}

// Fail makes every following request fail with f.
func (u *Upstream) Fail(f Failure) {
	u.mu.Lock()
	u.fail, u.failLeft = &f, -1
	u.mu.Unlock()
}

// FailFirst makes the next n requests fail with f; later ones succeed.
func (u *Upstream) FailFirst(n int, f Failure) {
	u.mu.Lock()
	u.fail, u.failLeft = &f, n
	u.mu.Unlock()
}

// Block makes streams send their headers and first event, then wait until
// the client goes away (or Close); see WaitBlocked and WaitCancelled.
func (u *Upstream) Block() {
	u.mu.Lock()
	u.block = true
	u.mu.Unlock()
}

// SetDelay makes every answer wait d before its headers (or until the
// client goes away), to provoke timeouts.
func (u *Upstream) SetDelay(d time.Duration) {
	u.mu.Lock()
	u.delay = d
	u.mu.Unlock()
}

// CutAfter makes streams send n events and then drop the connection
// without ending the chunked body, as a crashed upstream would.
func (u *Upstream) CutAfter(n int) {
	u.mu.Lock()
	u.cutAfter = n
	u.mu.Unlock()
}

// WaitBlocked waits up to timeout for a stream to reach its blocking point
// (headers and first event sent) and reports whether one did.
func (u *Upstream) WaitBlocked(timeout time.Duration) bool {
	select {
	case <-u.blocked:
		return true
	case <-time.After(timeout):
		return false
	}
}

// WaitCancelled waits up to timeout for a blocked stream to see its client
// close the connection, and reports whether one did. CancelledAt tells when.
func (u *Upstream) WaitCancelled(timeout time.Duration) bool {
	select {
	case at := <-u.cancelled:
		u.mu.Lock()
		u.cancelledAt = at
		u.mu.Unlock()
		return true
	case <-time.After(timeout):
		return false
	}
}

// CancelledAt is when the stream last reported by WaitCancelled saw its
// client go away; zero before.
func (u *Upstream) CancelledAt() time.Time {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.cancelledAt
}

// Requests returns a copy of every request received, in order.
func (u *Upstream) Requests() []Request {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]Request(nil), u.requests...)
}

// Count returns how many requests arrived for path (e.g.
// "/v1/chat/completions"); "" counts all.
func (u *Upstream) Count(path string) int {
	u.mu.Lock()
	defer u.mu.Unlock()
	n := 0
	for _, r := range u.requests {
		if path == "" || r.Path == path {
			n++
		}
	}
	return n
}

// LastRequest returns the last request received; ok is false before any.
func (u *Upstream) LastRequest() (r Request, ok bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.requests) == 0 {
		return Request{}, false
	}
	return u.requests[len(u.requests)-1], true
}

// LastBody returns the body of the last request received (nil before any).
func (u *Upstream) LastBody() []byte {
	r, _ := u.LastRequest()
	return r.Body
}

var errUnknownURL = []byte(`{"error":{"message":"Unknown request URL. Please check the URL for typos.","type":"invalid_request_error","param":null,"code":"unknown_url"}}`)

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body) // read it all, so that a client going away cancels r.Context()
	u.mu.Lock()
	u.requests = append(u.requests, Request{Method: r.Method, Path: r.URL.Path, Header: r.Header.Clone(), Body: body, At: time.Now()})
	var fail *Failure
	if u.fail != nil && u.failLeft != 0 {
		fail = u.fail
		if u.failLeft > 0 {
			u.failLeft--
		}
	}
	delay := u.delay
	u.mu.Unlock()
	w.Header().Set("X-Request-Id", "req_upstream_"+strconv.FormatInt(time.Now().UnixNano(), 16))

	if delay > 0 && !u.sleep(r, delay) {
		return
	}
	if fail != nil {
		for k, vs := range fail.Header {
			w.Header()[http.CanonicalHeaderKey(k)] = vs
		}
		writeJSON(w, fail.Status, fail.Body)
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/v1/chat/completions":
		u.chat(w, r, body)
	case r.Method == http.MethodPost && r.URL.Path == "/v1/embeddings":
		u.embeddings(w, body)
	case r.Method == http.MethodGet && r.URL.Path == "/v1/models":
		u.mu.Lock()
		b := u.models
		u.mu.Unlock()
		writeJSON(w, http.StatusOK, b)
	case r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/models/"):
		u.modelGet(w, strings.TrimPrefix(r.URL.Path, "/v1/models/"))
	default:
		writeJSON(w, http.StatusNotFound, errUnknownURL)
	}
}

func writeJSON(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// sleep waits d; false when the client went away or the server closes.
func (u *Upstream) sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-u.done:
		return false
	}
}

func (u *Upstream) modelGet(w http.ResponseWriter, id string) {
	u.mu.Lock()
	sample := u.model
	u.mu.Unlock()
	var m map[string]any
	if err := json.Unmarshal(sample, &m); err != nil {
		writeJSON(w, http.StatusInternalServerError, []byte(`{"error":{"message":"bad model sample","type":"server_error","param":null,"code":null}}`))
		return
	}
	m["id"] = id
	b, _ := json.Marshal(m)
	writeJSON(w, http.StatusOK, b)
}

// chatRequest is what the Upstream reads from a chat request.
type chatRequest struct {
	Stream        bool `json:"stream"`
	StreamOptions *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

var errBadJSON = []byte(`{"error":{"message":"We could not parse the JSON body of your request.","type":"invalid_request_error","param":null,"code":null}}`)

func (u *Upstream) chat(w http.ResponseWriter, r *http.Request, body []byte) {
	var req chatRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, errBadJSON)
		return
	}
	u.mu.Lock()
	completion, transcript, prompt := u.completion, u.transcript, u.promptTokens
	block, cut := u.block, u.cutAfter
	u.mu.Unlock()
	if !req.Stream {
		writeJSON(w, http.StatusOK, completion)
		return
	}
	includeUsage := req.StreamOptions != nil && req.StreamOptions.IncludeUsage
	events := StreamFor(transcript, includeUsage, prompt)

	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	fl, _ := w.(http.Flusher)
	for i, ev := range events {
		if cut > 0 && i == cut {
			panic(http.ErrAbortHandler) // drop the connection mid-body
		}
		if _, err := w.Write(frame(ev)); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
		if block && i == 0 {
			u.blocked <- struct{}{}
			select {
			case <-r.Context().Done():
				u.cancelled <- time.Now()
			case <-u.done:
			}
			return
		}
	}
}

// frame writes one SSE event: a "data: " line per line of the payload
// (a payload that Events joined from several data lines keeps them), then
// the blank line.
func frame(payload []byte) []byte {
	var b []byte
	for _, line := range bytes.Split(payload, []byte("\n")) {
		b = append(b, "data: "...)
		b = append(b, line...)
		b = append(b, '\n')
	}
	return append(b, '\n')
}

// StreamFor returns the event payloads an OpenAI upstream sends for
// transcript, given whether the request asked for
// stream_options.include_usage:
//   - not asked: the usage-only chunk (choices:[] with a usage object) and
//     every "usage":null key are left out, as OpenAI sends no usage then;
//   - asked: the transcript as it is; when it has no usage chunk but ends
//     with [DONE], a usage chunk is added before [DONE], with the first
//     chunk's id, created, model and system_fingerprint, promptTokens, and
//     one completion token per content or tool-argument delta.
//
// The last payload is Done when the transcript has it.
func StreamFor(transcript []byte, includeUsage bool, promptTokens int) [][]byte {
	events := Events(transcript)
	out := make([][]byte, 0, len(events)+1)
	hasUsage := false
	for _, ev := range events {
		if IsUsageChunk(ev) {
			hasUsage = true
			if !includeUsage {
				continue
			}
		}
		if !includeUsage {
			ev = StripUsageNull(ev)
		}
		out = append(out, ev)
	}
	if includeUsage && !hasUsage && len(out) > 0 && string(out[len(out)-1]) == Done {
		u := synthUsage(events, promptTokens)
		out = append(out[:len(out)-1], u, []byte(Done))
	}
	return out
}

// IsUsageChunk reports whether ev is a chat chunk with no choice and a usage object.
func IsUsageChunk(ev []byte) bool {
	var c struct {
		Choices []json.RawMessage `json:"choices"`
		Usage   json.RawMessage   `json:"usage"`
	}
	if json.Unmarshal(ev, &c) != nil {
		return false
	}
	return c.Choices != nil && len(c.Choices) == 0 && len(c.Usage) > 0 && string(c.Usage) != "null"
}

// StripUsageNull removes a top-level `"usage":null` member from a chunk,
// leaving every other byte as it was.
func StripUsageNull(ev []byte) []byte {
	for _, pat := range []string{`,"usage":null`, `"usage":null,`} {
		if i := bytes.Index(ev, []byte(pat)); i >= 0 {
			return append(ev[:i:i], ev[i+len(pat):]...) // a copy: ev is left as it was
		}
	}
	return ev
}

type usageChunk struct {
	ID                string   `json:"id"`
	Object            string   `json:"object"`
	Created           int64    `json:"created"`
	Model             string   `json:"model"`
	SystemFingerprint string   `json:"system_fingerprint,omitempty"`
	Choices           []string `json:"choices"`
	Usage             struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	} `json:"usage"`
}

func synthUsage(events [][]byte, promptTokens int) []byte {
	var u usageChunk
	u.Object, u.Choices = "chat.completion.chunk", []string{}
	completion := 0
	for i, ev := range events {
		var c struct {
			ID                string `json:"id"`
			Created           int64  `json:"created"`
			Model             string `json:"model"`
			SystemFingerprint string `json:"system_fingerprint"`
			Choices           []struct {
				Delta struct {
					Content   *string `json:"content"`
					ToolCalls []struct {
						Function struct {
							Arguments string `json:"arguments"`
						} `json:"function"`
					} `json:"tool_calls"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal(ev, &c) != nil {
			continue
		}
		if i == 0 {
			u.ID, u.Created, u.Model, u.SystemFingerprint = c.ID, c.Created, c.Model, c.SystemFingerprint
		}
		for _, ch := range c.Choices {
			if ch.Delta.Content != nil && *ch.Delta.Content != "" {
				completion++
			}
			for _, tc := range ch.Delta.ToolCalls {
				if tc.Function.Arguments != "" {
					completion++
				}
			}
		}
	}
	u.Usage.PromptTokens = promptTokens
	u.Usage.CompletionTokens = completion
	u.Usage.TotalTokens = promptTokens + completion
	b, _ := json.Marshal(u)
	return b
}

// embeddingsRequest is what the Upstream reads from an embeddings request.
type embeddingsRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
}

var errNoInput = []byte(`{"error":{"message":"'input' is a required property","type":"invalid_request_error","param":"input","code":null}}`)

func (u *Upstream) embeddings(w http.ResponseWriter, body []byte) {
	var req embeddingsRequest
	if err := json.Unmarshal(body, &req); err != nil {
		writeJSON(w, http.StatusBadRequest, errBadJSON)
		return
	}
	var inputs []json.RawMessage
	switch {
	case len(req.Input) == 0 || string(req.Input) == "null":
	case req.Input[0] == '[':
		if json.Unmarshal(req.Input, &inputs) != nil {
			writeJSON(w, http.StatusBadRequest, errBadJSON)
			return
		}
	default:
		inputs = []json.RawMessage{req.Input}
	}
	if len(inputs) == 0 {
		writeJSON(w, http.StatusBadRequest, errNoInput)
		return
	}
	u.mu.Lock()
	dims := u.dims
	u.mu.Unlock()
	b := []byte(`{"object":"list","data":[`)
	tokens := 0
	for i, in := range inputs {
		tokens += (len(in) + 3) / 4
		if i > 0 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, `{"object":"embedding","index":%d,"embedding":`, i)
		vec := EmbeddingVector(i, dims)
		if req.EncodingFormat == "base64" {
			raw := make([]byte, 4*len(vec))
			for j, f := range vec {
				binary.LittleEndian.PutUint32(raw[4*j:], math.Float32bits(f))
			}
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, raw)
			b = append(b, '"')
		} else {
			b = append(b, '[')
			for j, f := range vec {
				if j > 0 {
					b = append(b, ',')
				}
				b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
			}
			b = append(b, ']')
		}
		b = append(b, '}')
	}
	model, _ := json.Marshal(req.Model)
	b = fmt.Appendf(b, `],"model":%s,"usage":{"prompt_tokens":%d,"total_tokens":%d}}`, model, tokens, tokens)
	writeJSON(w, http.StatusOK, b)
}

// EmbeddingVector is the vector the Upstream answers for the i-th input:
// dims float32 values, the same in the float and base64 encodings.
func EmbeddingVector(i, dims int) []float32 {
	v := make([]float32, dims)
	for j := range v {
		v[j] = float32((i+1)*(j+3)%97-48) / 1024
	}
	return v
}

package providerstest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws/protocol/eventstream"
)

// BedrockEvent is one message of a ConverseStream answer: an event
// (messageStart, contentBlockStart, contentBlockDelta, contentBlockStop,
// messageStop, metadata) or, when Exception is set, an exception
// (throttlingException, validationException, modelStreamErrorException,
// internalServerException, serviceUnavailableException). Payload is the
// member's JSON, as samples/bedrock/converse-stream-wire.txt shows.
type BedrockEvent struct {
	Type      string
	Payload   string
	Exception bool
}

// BedrockTextStream is a ConverseStream answer with text: "Hello there!".
var BedrockTextStream = []BedrockEvent{
	{Type: "messageStart", Payload: `{"role":"assistant"}`},
	{Type: "contentBlockDelta", Payload: `{"contentBlockIndex":0,"delta":{"text":"Hello"}}`},
	{Type: "contentBlockDelta", Payload: `{"contentBlockIndex":0,"delta":{"text":" there!"}}`},
	{Type: "contentBlockStop", Payload: `{"contentBlockIndex":0}`},
	{Type: "messageStop", Payload: `{"stopReason":"end_turn"}`},
	{Type: "metadata", Payload: `{"usage":{"inputTokens":12,"outputTokens":7,"totalTokens":19,"cacheReadInputTokens":0,"cacheWriteInputTokens":0},"metrics":{"latencyMs":321}}`},
}

// BedrockToolStream is a ConverseStream answer with text, then a tool use
// whose input arrives in fragments.
var BedrockToolStream = []BedrockEvent{
	{Type: "messageStart", Payload: `{"role":"assistant"}`},
	{Type: "contentBlockDelta", Payload: `{"contentBlockIndex":0,"delta":{"text":"Let me check."}}`},
	{Type: "contentBlockStop", Payload: `{"contentBlockIndex":0}`},
	{Type: "contentBlockStart", Payload: `{"contentBlockIndex":1,"start":{"toolUse":{"toolUseId":"tooluse_1","name":"get_weather"}}}`},
	{Type: "contentBlockDelta", Payload: `{"contentBlockIndex":1,"delta":{"toolUse":{"input":"{\"city\":"}}}`},
	{Type: "contentBlockDelta", Payload: `{"contentBlockIndex":1,"delta":{"toolUse":{"input":" \"Paris\"}"}}}`},
	{Type: "contentBlockStop", Payload: `{"contentBlockIndex":1}`},
	{Type: "messageStop", Payload: `{"stopReason":"tool_use"}`},
	{Type: "metadata", Payload: `{"usage":{"inputTokens":120,"outputTokens":30,"totalTokens":1150,"cacheReadInputTokens":1000,"cacheWriteInputTokens":0},"metrics":{"latencyMs":500}}`},
}

// BedrockConverseText is a Converse answer with text.
const BedrockConverseText = `{"output":{"message":{"role":"assistant","content":[{"text":"Hello there!"}]}},"stopReason":"end_turn","usage":{"inputTokens":12,"outputTokens":7,"totalTokens":19},"metrics":{"latencyMs":321}}`

// BedrockConverseTool is a Converse answer with text and a tool use.
const BedrockConverseTool = `{"output":{"message":{"role":"assistant","content":[{"text":"Let me check."},{"toolUse":{"toolUseId":"tooluse_1","name":"get_weather","input":{"city":"Paris"}}}]}},"stopReason":"tool_use","usage":{"inputTokens":120,"outputTokens":30,"totalTokens":150,"cacheReadInputTokens":1000,"cacheWriteInputTokens":5},"metrics":{"latencyMs":500}}`

// BedrockRequestID is the x-amzn-RequestId the Bedrock fake answers with.
const BedrockRequestID = "7d3f0c2e-1a2b-4c5d-8e9f-0a1b2c3d4e5f"

// Bedrock is a fake of Amazon Bedrock's runtime API: a real net/http
// server on 127.0.0.1 answering
//
//   - POST /model/{modelId}/converse: JSON (default BedrockConverseText);
//   - POST /model/{modelId}/converse-stream: application/vnd.amazon.eventstream
//     frames built with aws-sdk-go-v2's eventstream encoder, one flushed
//     frame per event (default BedrockTextStream);
//   - a request without an Authorization header (SigV4 or bearer): 403
//     AccessDeniedException; a failure set with Fail: its status, with the
//     error name in X-Amzn-Errortype and {"message":...} as the body.
//
// Point an SDK client at it with bedrockruntime.Options.BaseEndpoint = URL
// and static credentials. Every request is recorded. Safe for concurrent use.
type Bedrock struct {
	// URL is the endpoint, e.g. "http://127.0.0.1:41234".
	URL string

	srv  *httptest.Server
	done chan struct{}

	mu         sync.Mutex
	converse   []byte
	events     []BedrockEvent
	fail       *bedrockFailure
	failLeft   int
	blockAfter int
	requests   []Request
	blocked    chan struct{}
	cancelled  chan struct{}
	closeOnce  sync.Once
}

type bedrockFailure struct {
	status  int
	name    string
	message string
}

// NewBedrock starts a Bedrock fake and registers its Close with t.Cleanup.
func NewBedrock(t testing.TB) *Bedrock {
	t.Helper()
	return newBedrock(t, false)
}

// NewBedrockTLS starts a Bedrock fake that speaks HTTPS (with a test
// certificate that Client trusts), for bearer-token (API key) requests,
// which the SDK sends over HTTPS only.
func NewBedrockTLS(t testing.TB) *Bedrock {
	t.Helper()
	return newBedrock(t, true)
}

// Client returns an HTTP client that trusts the fake's certificate.
func (b *Bedrock) Client() *http.Client { return b.srv.Client() }

func newBedrock(t testing.TB, tls bool) *Bedrock {
	b := &Bedrock{
		converse:  []byte(BedrockConverseText),
		events:    BedrockTextStream,
		done:      make(chan struct{}),
		blocked:   make(chan struct{}, 16),
		cancelled: make(chan struct{}, 16),
	}
	if tls {
		b.srv = httptest.NewTLSServer(http.HandlerFunc(b.serve))
	} else {
		b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	}
	b.URL = b.srv.URL
	t.Cleanup(b.Close)
	return b
}

// Close releases blocked handlers and stops the server. Safe to call twice.
func (b *Bedrock) Close() {
	b.closeOnce.Do(func() {
		close(b.done)
		b.srv.CloseClientConnections()
		b.srv.Close()
	})
}

// SetConverse sets the body of Converse answers.
func (b *Bedrock) SetConverse(body []byte) {
	b.mu.Lock()
	b.converse = body
	b.mu.Unlock()
}

// SetEvents sets the messages of ConverseStream answers.
func (b *Bedrock) SetEvents(evs []BedrockEvent) {
	b.mu.Lock()
	b.events = evs
	b.mu.Unlock()
}

// Fail makes every request fail with status and the AWS error name (e.g.
// 429, "ThrottlingException").
func (b *Bedrock) Fail(status int, name, message string) { b.FailFirst(-1, status, name, message) }

// FailFirst makes the next n requests fail (n < 0: all of them).
func (b *Bedrock) FailFirst(n, status int, name, message string) {
	b.mu.Lock()
	b.fail, b.failLeft = &bedrockFailure{status, name, message}, n
	b.mu.Unlock()
}

// BlockAfter makes streams stop after n events and wait until the client
// goes away (or the fake closes).
func (b *Bedrock) BlockAfter(n int) {
	b.mu.Lock()
	b.blockAfter = n
	b.mu.Unlock()
}

// WaitBlocked waits until a stream reached its blocking point.
func (b *Bedrock) WaitBlocked(timeout time.Duration) bool {
	select {
	case <-b.blocked:
		return true
	case <-time.After(timeout):
		return false
	}
}

// WaitCancelled waits until a blocked stream saw its client go away.
func (b *Bedrock) WaitCancelled(timeout time.Duration) bool {
	select {
	case <-b.cancelled:
		return true
	case <-time.After(timeout):
		return false
	}
}

// Requests returns the requests received so far (Path is the escaped path,
// e.g. /model/anthropic.claude-3-haiku-20240307-v1%3A0/converse).
func (b *Bedrock) Requests() []Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Request(nil), b.requests...)
}

// LastBody returns the body of the last request (nil before any).
func (b *Bedrock) LastBody() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.requests) == 0 {
		return nil
	}
	return b.requests[len(b.requests)-1].Body
}

func bedrockError(w http.ResponseWriter, status int, name, msg string) {
	body, _ := json.Marshal(map[string]string{"message": msg})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Amzn-Errortype", name+":http://internal.amazon.com/coral/com.amazon.bedrock/")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

func (b *Bedrock) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	path := r.URL.EscapedPath()
	b.mu.Lock()
	b.requests = append(b.requests, Request{Method: r.Method, Path: path, Header: r.Header.Clone(), Body: body, At: time.Now()})
	var fail *bedrockFailure
	if b.fail != nil && b.failLeft != 0 {
		fail = b.fail
		if b.failLeft > 0 {
			b.failLeft--
		}
	}
	converse, events, blockAfter := b.converse, b.events, b.blockAfter
	b.mu.Unlock()

	w.Header().Set("X-Amzn-Requestid", BedrockRequestID)
	rest, ok := strings.CutPrefix(path, "/model/")
	op := rest[strings.LastIndexByte(rest, '/')+1:]
	if !ok || r.Method != http.MethodPost || strings.Count(rest, "/") != 1 || (op != "converse" && op != "converse-stream") {
		bedrockError(w, 404, "UnknownOperationException", "no such operation: "+r.Method+" "+path)
		return
	}
	if r.Header.Get("Authorization") == "" {
		bedrockError(w, 403, "AccessDeniedException", "Missing Authentication Token")
		return
	}
	if !json.Valid(body) {
		bedrockError(w, 400, "ValidationException", "Malformed input request")
		return
	}
	if fail != nil {
		bedrockError(w, fail.status, fail.name, fail.message)
		return
	}
	if op == "converse" {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(converse)
		return
	}
	w.Header().Set("Content-Type", "application/vnd.amazon.eventstream")
	w.WriteHeader(200)
	fl, _ := w.(http.Flusher)
	enc := eventstream.NewEncoder()
	for i, ev := range events {
		if blockAfter > 0 && i == blockAfter {
			notify(b.blocked)
			select {
			case <-r.Context().Done():
				notify(b.cancelled)
			case <-b.done:
			}
			return
		}
		if err := enc.Encode(w, BedrockFrame(ev)); err != nil {
			return
		}
		if fl != nil {
			fl.Flush()
		}
	}
}

// BedrockFrame is the event-stream message for ev, with the headers
// Bedrock sends.
func BedrockFrame(ev BedrockEvent) eventstream.Message {
	var h eventstream.Headers
	if ev.Exception {
		h.Set(":message-type", eventstream.StringValue("exception"))
		h.Set(":exception-type", eventstream.StringValue(ev.Type))
	} else {
		h.Set(":message-type", eventstream.StringValue("event"))
		h.Set(":event-type", eventstream.StringValue(ev.Type))
	}
	h.Set(":content-type", eventstream.StringValue("application/json"))
	return eventstream.Message{Headers: h, Payload: []byte(ev.Payload)}
}

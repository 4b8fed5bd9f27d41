package gateway_test

// The harness of the gateway's end-to-end tests (conformance_test.go,
// sdk_test.go, *_e2e_test.go): a real gateway on a loopback port in front of
// providerstest.Upstream fakes and the built-in mock provider, the OpenAI
// spec loaded once per test binary, and checkers for error bodies and
// streams that follow shared/contracts/CONFORMANCE.md (beside the repo).

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/mtai-dev/mtai/gateway"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/mock"
	"github.com/mtai-dev/mtai/providers/openai"
	"github.com/mtai-dev/mtai/providers/providerstest"
	"github.com/mtai-dev/mtai/tenancy"
)

// update reports -update: rewrite the golden files in testdata/
// (go test ./gateway -run Conformance -update). It reuses a flag of that name
// when the package's own tests define one, so that the two never collide.
var update = func() func() bool {
	if f := flag.Lookup("update"); f != nil {
		return func() bool { return f.Value.String() == "true" }
	}
	b := flag.Bool("update", false, "rewrite golden files in testdata/")
	return func() bool { return *b }
}()

// e2eKey is the tenant key every e2e gateway accepts.
const e2eKey = "sk-mtai-e2e-0123456789abcdef"

// upstreamKey is the key the gateway sends to fake upstreams.
const upstreamKey = "sk-upstream-secret-key"

// testGateway is a gateway serving on 127.0.0.1 for one test.
type testGateway struct {
	// URL is the server's root, e.g. http://127.0.0.1:43567 (the OpenAI base URL is URL+"/v1").
	URL string
}

// gatewayOption adjusts the configuration before the gateway starts.
type gatewayOption func(*providers.Config, *gateway.Config)

func withServer(f func(*gateway.Config)) gatewayOption {
	return func(_ *providers.Config, c *gateway.Config) { f(c) }
}

// startGateway starts a gateway routing models, with fast retries (2
// attempts, 1 ms backoff) and no circuit breaker unless opts say otherwise,
// and stops it when the test ends.
func startGateway(t testing.TB, models []providers.ModelConfig, opts ...gatewayOption) *testGateway {
	t.Helper()
	pcfg := providers.Config{
		Models:  models,
		Retry:   providers.RetryConfig{Attempts: 2, Backoff: time.Millisecond, MaxBackoff: 200 * time.Millisecond},
		Breaker: providers.BreakerConfig{Failures: -1},
	}
	gcfg := gateway.Config{Addr: "127.0.0.1:0", ShutdownGrace: time.Second}
	for _, o := range opts {
		o(&pcfg, &gcfg)
	}
	router, err := providers.NewRouter(pcfg, map[string]providers.Factory{
		"openai": func(d providers.DeploymentConfig) (providers.Provider, error) { return openai.New(d) },
		"azure":  func(d providers.DeploymentConfig) (providers.Provider, error) { return openai.New(d) },
		"mock":   func(d providers.DeploymentConfig) (providers.Provider, error) { return mock.New(d) },
	})
	if err != nil {
		t.Fatalf("providers.NewRouter: %v", err)
	}
	srv, err := gateway.New(gateway.Options{
		Config: gcfg,
		Router: router,
		Keys:   tenancy.NewStaticKeys(map[string]string{e2eKey: "e2e"}),
	})
	if err != nil {
		t.Fatalf("gateway.New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("gateway Serve returned %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("gateway did not stop within 10s of its context's cancellation")
		}
	})
	return &testGateway{URL: "http://" + ln.Addr().String()}
}

// upstreamRoute routes model name to the fake upstreams in order, each as an
// openai deployment whose upstream model is "<name>-upstream".
func upstreamRoute(name string, ups ...*providerstest.Upstream) providers.ModelConfig {
	m := providers.ModelConfig{Name: name}
	for i, u := range ups {
		m.Deployments = append(m.Deployments, providers.DeploymentConfig{
			Name: fmt.Sprintf("%s-d%d", name, i), Provider: "openai", BaseURL: u.URL,
			Model: name + "-upstream", APIKey: upstreamKey,
		})
	}
	return m
}

// mockRoutes are the built-in mock models, as cmd/mtai serves them by default.
func mockRoutes() []providers.ModelConfig {
	return []providers.ModelConfig{
		{Name: "mock-gpt", OwnedBy: "mtai", Deployments: []providers.DeploymentConfig{
			{Provider: "mock", Model: "mock-gpt", Mock: providers.MockConfig{Words: 24, Chunks: 8}}}},
		{Name: "mock-embed", OwnedBy: "mtai", Embeddings: true, Deployments: []providers.DeploymentConfig{
			{Provider: "mock", Model: "mock-embed"}}},
	}
}

// reply is an HTTP answer read whole.
type reply struct {
	status int
	header http.Header
	body   []byte
}

// noKey as the Authorization value sends no Authorization header.
const noKey = "\x00"

// do sends a request with the e2e key (unless the headers, given as
// name/value pairs, set Authorization) and reads the whole answer.
func (g *testGateway) do(t testing.TB, method, path, body string, headers ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, g.URL+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+e2eKey)
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == noKey {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, path, err)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func (g *testGateway) post(t testing.TB, path, body string, headers ...string) reply {
	t.Helper()
	return g.do(t, http.MethodPost, path, body, headers...)
}

// ---- the OpenAI spec ----

var spec struct {
	once sync.Once
	doc  *openapi3.T
	err  error
}

// specSchema returns a component schema of contracts/openai-openapi.yaml,
// loaded once per test binary in kin-openapi's default mode.
func specSchema(t testing.TB, name string) *openapi3.Schema {
	t.Helper()
	path := filepath.Join(providerstest.ContractsDir(t), "openai-openapi.yaml")
	spec.once.Do(func() {
		loader := openapi3.NewLoader()
		spec.doc, spec.err = loader.LoadFromFile(path)
	})
	if spec.err != nil {
		t.Fatalf("loading %s: %v", path, spec.err)
	}
	ref := spec.doc.Components.Schemas[name]
	if ref == nil || ref.Value == nil {
		t.Fatalf("the spec has no schema %s", name)
	}
	return ref.Value
}

// validate checks a JSON body against a spec schema.
func validate(t testing.TB, schema string, body []byte) error {
	t.Helper()
	s := specSchema(t, schema)
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	if err := s.VisitJSON(v); err != nil {
		return fmt.Errorf("%s: %w", schema, err)
	}
	return nil
}

// ---- checkers ----

func isJSONContentType(ct string) bool {
	mt, _, err := mime.ParseMediaType(ct)
	return err == nil && mt == "application/json"
}

// wantError describes an expected error answer.
type wantError struct {
	status  int
	typ     string
	code    string // "" expects a null code
	param   string // "" does not check the param
	noRetry bool   // expects x-should-retry: false
}

// checkError asserts CONFORMANCE.md section 2 on an error answer: status,
// type and code; all four keys; JSON content type; x-request-id; integer
// Retry-After on 429; x-should-retry:false where a retry is pointless (and
// never on a 5xx); the body validates against ErrorResponse.
func checkError(t testing.TB, r reply, w wantError) {
	t.Helper()
	if r.status != w.status {
		t.Errorf("status = %d, want %d (body %s)", r.status, w.status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !isJSONContentType(ct) {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if id := r.header.Get("X-Request-Id"); id == "" {
		t.Errorf("no x-request-id on a %d answer", r.status)
	}
	var body struct {
		Error map[string]json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil || body.Error == nil {
		t.Fatalf("error body %s is not {\"error\":{...}}: %v", r.body, err)
	}
	for _, k := range []string{"message", "type", "param", "code"} {
		if _, ok := body.Error[k]; !ok {
			t.Errorf("error body %s lacks the %q key", r.body, k)
		}
	}
	str := func(k string) string {
		var s *string
		_ = json.Unmarshal(body.Error[k], &s)
		if s == nil {
			return ""
		}
		return *s
	}
	if got := str("type"); got != w.typ {
		t.Errorf("error.type = %q, want %q", got, w.typ)
	}
	if got := str("code"); got != w.code {
		t.Errorf("error.code = %q, want %q", got, w.code)
	}
	if w.code == "" && string(body.Error["code"]) != "null" {
		t.Errorf("error.code = %s, want null", body.Error["code"])
	}
	if w.param != "" && str("param") != w.param {
		t.Errorf("error.param = %q, want %q", str("param"), w.param)
	}
	if str("message") == "" {
		t.Errorf("error.message is empty")
	}
	if err := validate(t, "ErrorResponse", r.body); err != nil {
		t.Errorf("error body does not validate: %v\n%s", err, r.body)
	}
	if r.status == 429 {
		ra := r.header.Get("Retry-After")
		var n int
		if _, err := fmt.Sscanf(ra, "%d", &n); err != nil || n < 1 || fmt.Sprint(n) != ra {
			t.Errorf("429 Retry-After = %q, want an integer >= 1", ra)
		}
	}
	sr := strings.ToLower(r.header.Get("X-Should-Retry"))
	switch {
	case w.noRetry && sr != "false":
		t.Errorf("x-should-retry = %q, want false (a retry cannot help a %d %s)", sr, w.status, w.code)
	case !w.noRetry && sr == "false":
		t.Errorf("x-should-retry = false on a %d %s, which a retry may fix", w.status, w.code)
	}
}

// chunk is the part of a stream chunk the checkers read.
type chunk struct {
	ID      string          `json:"id"`
	Object  string          `json:"object"`
	Created int64           `json:"created"`
	Model   string          `json:"model"`
	Usage   json.RawMessage `json:"usage"`
	Choices []struct {
		Index        int     `json:"index"`
		FinishReason *string `json:"finish_reason"`
		Delta        struct {
			Content   *string `json:"content"`
			ToolCalls []struct {
				Index    *int   `json:"index"`
				ID       string `json:"id"`
				Type     string `json:"type"`
				Function *struct {
					Name      *string `json:"name"`
					Arguments string  `json:"arguments"`
				} `json:"function"`
			} `json:"tool_calls"`
		} `json:"delta"`
	} `json:"choices"`
}

// streamWant describes what a stream must look like.
type streamWant struct {
	includeUsage bool
	// failed expects the stream to end with an error event and no [DONE].
	failed bool
}

// streamResult is a checked stream.
type streamResult struct {
	payloads [][]byte // every event's payload, [DONE] or the error included
	chunks   []chunk  // the chat chunks, decoded
	content  string   // the joined content of choice 0
	errorEv  []byte   // the final error event's payload when failed
}

var finishReasons = map[string]bool{"stop": true, "length": true, "tool_calls": true, "content_filter": true, "function_call": true}

// checkStream asserts CONFORMANCE.md sections 3, 4, 5 and 6 on a streamed
// answer and returns what it parsed.
func checkStream(t testing.TB, r reply, w streamWant) streamResult {
	t.Helper()
	var res streamResult
	if r.status != 200 {
		t.Fatalf("stream status = %d, want 200 (body %s)", r.status, r.body)
	}
	if mt, _, _ := mime.ParseMediaType(r.header.Get("Content-Type")); mt != "text/event-stream" {
		t.Errorf("stream Content-Type = %q, want text/event-stream", r.header.Get("Content-Type"))
	}
	payloads, err := providerstest.StrictEvents(r.body)
	if err != nil {
		t.Fatalf("%v\nbody:\n%s", err, r.body)
	}
	res.payloads = payloads
	if len(payloads) == 0 {
		t.Fatalf("empty stream")
	}
	dones := 0
	for _, p := range payloads {
		if string(p) == providerstest.Done {
			dones++
		}
	}
	last := payloads[len(payloads)-1]
	body := payloads
	switch {
	case w.failed:
		if dones != 0 {
			t.Errorf("a failed stream has %d [DONE] events, want none", dones)
		}
		if !bytes.HasPrefix(last, []byte(`{"error":`)) {
			t.Fatalf("a failed stream ends with %s, want data: {\"error\":{...}}", last)
		}
		res.errorEv = last
		if err := validate(t, "ErrorResponse", last); err != nil {
			t.Errorf("the stream's error event does not validate: %v\n%s", err, last)
		}
		var e struct {
			Error map[string]json.RawMessage `json:"error"`
		}
		_ = json.Unmarshal(last, &e)
		for _, k := range []string{"message", "type", "param", "code"} {
			if _, ok := e.Error[k]; !ok {
				t.Errorf("the stream's error event %s lacks %q", last, k)
			}
		}
		body = payloads[:len(payloads)-1]
	default:
		if dones != 1 || string(last) != providerstest.Done {
			t.Fatalf("the stream has %d [DONE] events and ends with %s; want exactly one [DONE], last", dones, last)
		}
		body = payloads[:len(payloads)-1]
	}

	finishes := 0
	type toolKey struct{ choice, index int }
	args := map[toolKey]*strings.Builder{}
	finishOf := map[int]string{}
	var content strings.Builder
	for i, p := range body {
		var top map[string]json.RawMessage
		if err := json.Unmarshal(p, &top); err != nil {
			t.Fatalf("event %d is not a JSON object: %v: %s", i, err, p)
		}
		if _, ok := top["error"]; ok {
			t.Errorf("event %d carries an error key: %s", i, p)
		}
		if err := validate(t, "CreateChatCompletionStreamResponse", p); err != nil {
			t.Errorf("event %d does not validate: %v\n%s", i, err, p)
		}
		var c chunk
		if err := json.Unmarshal(p, &c); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
		res.chunks = append(res.chunks, c)
		if i > 0 {
			f := res.chunks[0]
			if c.ID != f.ID || c.Created != f.Created || c.Model != f.Model {
				t.Errorf("event %d has id/created/model %q/%d/%q, the first had %q/%d/%q", i, c.ID, c.Created, c.Model, f.ID, f.Created, f.Model)
			}
		}
		if _, has := top["usage"]; has && !w.includeUsage {
			t.Errorf("event %d carries a usage key (%s) but the client did not ask include_usage", i, top["usage"])
		}
		for _, ch := range c.Choices {
			if ch.FinishReason != nil {
				finishes++
				if !finishReasons[*ch.FinishReason] {
					t.Errorf("event %d: finish_reason %q is not in the enum", i, *ch.FinishReason)
				}
				finishOf[ch.Index] = *ch.FinishReason
			}
			if ch.Index == 0 && ch.Delta.Content != nil {
				content.WriteString(*ch.Delta.Content)
			}
			for _, tc := range ch.Delta.ToolCalls {
				if tc.Index == nil {
					t.Errorf("event %d: a tool_calls fragment has no index: %s", i, p)
					continue
				}
				k := toolKey{ch.Index, *tc.Index}
				b, seen := args[k]
				if !seen {
					if tc.ID == "" || tc.Type != "function" || tc.Function == nil || tc.Function.Name == nil || *tc.Function.Name == "" {
						t.Errorf("event %d: the first fragment of tool call %d lacks id, type or function.name: %s", i, *tc.Index, p)
					}
					b = &strings.Builder{}
					args[k] = b
				}
				if tc.Function != nil {
					b.WriteString(tc.Function.Arguments)
				}
			}
		}
	}
	res.content = content.String()
	if !w.failed && finishes != 1 {
		t.Errorf("%d choice chunks have a finish_reason, want exactly one", finishes)
	}
	for k, b := range args {
		var v map[string]any
		if err := json.Unmarshal([]byte(b.String()), &v); err != nil {
			t.Errorf("tool call %d: joined arguments %q do not parse as a JSON object: %v", k.index, b.String(), err)
		}
		if !w.failed && finishOf[k.choice] != "tool_calls" {
			t.Errorf("choice %d has tool calls but finish_reason %q, want tool_calls", k.choice, finishOf[k.choice])
		}
	}
	if w.includeUsage && !w.failed {
		if len(res.chunks) == 0 {
			t.Fatalf("no chunk before [DONE]")
		}
		u := res.chunks[len(res.chunks)-1]
		var usage struct {
			Prompt     *int64 `json:"prompt_tokens"`
			Completion *int64 `json:"completion_tokens"`
			Total      *int64 `json:"total_tokens"`
		}
		if u.Choices == nil || len(u.Choices) != 0 || json.Unmarshal(u.Usage, &usage) != nil || usage.Total == nil {
			t.Errorf("the last chunk before [DONE] is %s, want choices:[] and a usage object", body[len(body)-1])
		} else if usage.Prompt == nil || usage.Completion == nil || *usage.Prompt+*usage.Completion != *usage.Total {
			t.Errorf("usage %s: prompt_tokens + completion_tokens != total_tokens", u.Usage)
		}
	}
	return res
}

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t testing.TB, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", filepath.FromSlash(name))
	if update() {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file %s: %v (run go test ./gateway -update to create it)", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from its golden file (rerun with -update if the change is intended):\ngot:  %s\nwant: %s", path, got, want)
	}
}

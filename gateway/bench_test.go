package gateway

import (
	"context"
	"io"
	"net"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
)

// static answers every call with the same bytes, allocating nothing, so
// that benchmarks measure the gateway and not the fake.
type static struct {
	answer []byte
	events [][]byte
}

func (p *static) Complete(context.Context, *providers.Request) (*providers.Response, error) {
	return providers.NewResponse(p.answer, providers.Usage{PromptTokens: 5, CompletionTokens: 1, TotalTokens: 6}, nil), nil
}

func (p *static) Stream(context.Context, *providers.Request) (providers.Stream, error) {
	return &sliceStream{events: p.events}, nil
}

func benchServer(tb testing.TB, p providers.Provider) *Server {
	tb.Helper()
	router, err := providers.NewRouter(providers.Config{Models: []providers.ModelConfig{
		{Name: "gpt-4o-mini", Deployments: []providers.DeploymentConfig{{Provider: "static", Model: "gpt-4o-mini-2024-07-18"}}},
	}}, map[string]providers.Factory{"static": func(providers.DeploymentConfig) (providers.Provider, error) { return p, nil }})
	if err != nil {
		tb.Fatal(err)
	}
	s, err := New(Options{Config: Config{Addr: "127.0.0.1:0"}, Router: router,
		Keys: tenancy.NewStaticKeys(map[string]string{testKey: "t1"})})
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

const benchBody = `{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Tell me a story about a gateway that counted every token it relayed, in three sentences."}],"temperature":0.7,"max_tokens":256}`

// handlerLoop runs the chat handler on one reused RequestCtx, as fasthttp does.
func handlerLoop(tb testing.TB, s *Server, body string) func() {
	h := s.Handler()
	var rc fasthttp.RequestCtx
	var req fasthttp.Request
	req.Header.SetMethod("POST")
	req.SetRequestURI("/v1/chat/completions")
	req.Header.Set("Authorization", "Bearer "+testKey)
	req.Header.SetContentType("application/json")
	req.SetBodyString(body)
	rc.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	return func() {
		rc.Response.Reset()
		h(&rc)
		if rc.Response.StatusCode() != 200 {
			tb.Fatalf("status %d: %s", rc.Response.StatusCode(), rc.Response.Body())
		}
		if bs := rc.Response.BodyStream(); bs != nil {
			_, _ = io.Copy(io.Discard, bs)
			_ = bs.(io.Closer).Close()
		}
	}
}

// BenchmarkChatCompletion is the gateway's own work on a non-streamed
// request (auth, scan, policy, route, splice, relay, metrics, access log),
// without the network: go test -bench ChatCompletion -benchmem ./gateway
func BenchmarkChatCompletion(b *testing.B) {
	s := benchServer(b, &static{answer: answerJSON})
	run := handlerLoop(b, s, benchBody)
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
}

// BenchmarkStreamEvents measures the relay's cost per event.
func BenchmarkStreamEvents(b *testing.B) {
	ev := []byte(`{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}`)
	events := make([][]byte, 100)
	for i := range events {
		events[i] = ev
	}
	s := benchServer(b, &static{events: events})
	run := handlerLoop(b, s, `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

// TestChatCompletionAllocs pins the allocation count of the hot path so
// that a change that adds allocations is noticed.
func TestChatCompletionAllocs(t *testing.T) {
	s := benchServer(t, &static{answer: answerJSON})
	run := handlerLoop(t, s, benchBody)
	run() // warm pools
	allocs := testing.AllocsPerRun(200, run)
	t.Logf("allocations per non-streamed request: %.1f", allocs)
	if allocs > maxAllocsPerRequest {
		t.Errorf("%.1f allocations per request, want at most %d", allocs, maxAllocsPerRequest)
	}
}

// maxAllocsPerRequest is today's count plus a little room; lower it when
// you remove allocations.
const maxAllocsPerRequest = 30

// BenchmarkChatCompletionStoreKeys is BenchmarkChatCompletion with the
// production key resolver: tenancy.KeyCache over a real SQLite store (the
// key is cached after the first request, as in steady state).
func BenchmarkChatCompletionStoreKeys(b *testing.B) {
	_, cache, _ := tenancyStack(b, b.TempDir(), tenancy.BootstrapConfig{APIKey: testKey, AdminPassword: "admin-password-1"})
	s := benchServer(b, &static{answer: answerJSON})
	s.keys = cache
	run := handlerLoop(b, s, benchBody)
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
}

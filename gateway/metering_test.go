package gateway

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/openai"
	"github.com/mtai-dev/mtai/store/sqlite"
	"github.com/mtai-dev/mtai/tenancy"
)

// meterChunk is an OpenAI stream chunk carrying content.
func meterChunk(content string) string {
	return `{"id":"chatcmpl-m","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{"content":"` + content + `"},"finish_reason":null}]}`
}

// meterUsageChunk is the usage chunk of the streams below: 1234 prompt
// tokens of which 1000 cached, 56 completion tokens of which 7 reasoning.
const meterUsageChunk = `{"id":"chatcmpl-m","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","choices":[],` +
	`"usage":{"prompt_tokens":1234,"completion_tokens":56,"total_tokens":1290,"prompt_tokens_details":{"cached_tokens":1000},"completion_tokens_details":{"reasoning_tokens":7}}}`

// meterUpstream streams "Hello", " world", "!" and then, by mode: the usage
// chunk and [DONE] ("complete"); nothing until the client goes away
// ("block"); a dropped connection ("cut").
func meterUpstream(t *testing.T, mode string) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/event-stream")
		for _, c := range []string{"Hello", " world", "!"} {
			fmt.Fprintf(w, "data: %s\n\n", meterChunk(c))
		}
		w.(http.Flusher).Flush()
		switch mode {
		case "complete":
			fmt.Fprintf(w, "data: %s\n\ndata: %s\n\ndata: [DONE]\n\n",
				`{"id":"chatcmpl-m","object":"chat.completion.chunk","created":1,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`,
				meterUsageChunk)
		case "block":
			select {
			case <-r.Context().Done():
			case <-time.After(20 * time.Second):
			}
		case "cut":
			conn, _, err := w.(http.Hijacker).Hijack()
			if err == nil {
				conn.Close()
			}
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// meterPrincipal is the caller of the metering tests.
var meterPrincipal = &tenancy.Principal{Tenant: "acme", TenantID: 5, UserID: 6, KeyID: 7, Role: tenancy.RoleMember}

// meteredServer is a gateway routing "gpt-4o" to upstream (an OpenAI
// deployment of gpt-4o-2024-08-06), metering into SQLite.
func meteredServer(t *testing.T, upstream string) (*Server, *billing.Meter, *sqlite.DB) {
	t.Helper()
	router, err := providers.NewRouter(providers.Config{Models: []providers.ModelConfig{
		{Name: "gpt-4o", Deployments: []providers.DeploymentConfig{{Name: "oai", Provider: "openai", BaseURL: upstream + "/v1", Model: "gpt-4o-2024-08-06", Timeout: 10 * time.Second}}},
	}}, map[string]providers.Factory{
		"openai": func(d providers.DeploymentConfig) (providers.Provider, error) { return openai.New(d) },
	})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	db, err := sqlite.Open(t.Context(), filepath.Join(dir, "mtai.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	m, err := billing.NewMeter(db, billing.MeterConfig{Dir: filepath.Join(dir, "usage"), FlushInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			t.Errorf("meter Close = %v", err)
		}
	})
	s, err := New(Options{Config: Config{Addr: "127.0.0.1:0", ShutdownGrace: time.Second}, Router: router,
		Keys: &policyKeys{p: meterPrincipal}, Meter: m})
	if err != nil {
		t.Fatal(err)
	}
	return s, m, db
}

// usageRow waits for the one usage event the test caused and returns it.
func usageRow(t *testing.T, m *billing.Meter, db *sqlite.DB) billing.Event {
	t.Helper()
	var rows []billing.Event
	waitFor(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := m.Flush(ctx); err != nil {
			return false
		}
		var err error
		rows, err = db.UsageEvents(ctx, billing.UsageQuery{AllTenants: true})
		return err == nil && len(rows) > 0
	}, "the usage event")
	if len(rows) != 1 {
		t.Fatalf("%d usage events, want 1: %+v", len(rows), rows)
	}
	return rows[0]
}

func checkCaller(t *testing.T, e billing.Event) {
	t.Helper()
	if e.TenantID != 5 || e.Tenant != "acme" || e.UserID != 6 || e.KeyID != 7 || e.Endpoint != routeChat ||
		e.Model != "gpt-4o" || e.UpstreamModel != "gpt-4o-2024-08-06" || e.Deployment != "oai" || e.Provider != "openai" ||
		!e.Stream || !strings.HasPrefix(e.RequestID, "req_") {
		t.Errorf("event = %+v, want acme's (5/6/7) streamed gpt-4o through oai", e)
	}
	if e.TTFT <= 0 || e.Latency < e.TTFT {
		t.Errorf("ttft %v, latency %v: want 0 < ttft ≤ latency", e.TTFT, e.Latency)
	}
}

// TestMeteringCompletedStream: a completed stream's row carries the
// upstream's usage exactly, priced with cached input.
func TestMeteringCompletedStream(t *testing.T) {
	s, m, db := meteredServer(t, meterUpstream(t, "complete"))
	base := start(t, s)
	conn, br := rawStream(t, base, "gpt-4o")
	defer conn.Close()
	readUntil(t, br, "[DONE]")

	e := usageRow(t, m, db)
	checkCaller(t, e)
	want := providers.Usage{PromptTokens: 1234, CompletionTokens: 56, TotalTokens: 1290, CachedTokens: 1000, ReasoningTokens: 7}
	if e.Usage != want || e.Estimated {
		t.Errorf("usage %+v (estimated %v), want the upstream's %+v", e.Usage, e.Estimated, want)
	}
	// gpt-4o: 234·$2.50 + 1000·$1.25 + 56·$10 per million = 585 + 1250 + 560 µ$
	if e.Cost != 2395 || !e.Priced || e.Status != 200 || e.ErrorCode != "" {
		t.Errorf("cost %d priced %v status %d %q, want 2395 µ$, priced, 200", e.Cost, e.Priced, e.Status, e.ErrorCode)
	}
}

// TestMeteringCancelledStream: a stream the client leaves midway is billed
// for the prompt and what was generated before it left, counted with
// tiktoken (o200k for gpt-4o) and flagged estimated.
func TestMeteringCancelledStream(t *testing.T) {
	s, m, db := meteredServer(t, meterUpstream(t, "block"))
	base := start(t, s)
	conn, br := rawStream(t, base, "gpt-4o")
	readUntil(t, br, `"content":"!"`)
	conn.Close()

	e := usageRow(t, m, db)
	checkCaller(t, e)
	// prompt [{"role":"user","content":"hi"}]: 3 + "user" 1 + "hi" 1 + 3 = 8;
	// generated "Hello world!": 3 tokens
	want := providers.Usage{PromptTokens: 8, CompletionTokens: 3, TotalTokens: 11}
	if e.Usage != want || !e.Estimated {
		t.Errorf("usage %+v (estimated %v), want %+v estimated", e.Usage, e.Estimated, want)
	}
	// 8·2.5 + 3·10 = 50 µ$
	if e.Cost != 50 || e.Status != 499 || e.ErrorCode != "client_closed_request" {
		t.Errorf("cost %d status %d %q, want 50 µ$, 499 client_closed_request", e.Cost, e.Status, e.ErrorCode)
	}
}

// TestMeteringCutStream: a stream the upstream drops midway is billed for
// what it generated, estimated, with the error code.
func TestMeteringCutStream(t *testing.T) {
	s, m, db := meteredServer(t, meterUpstream(t, "cut"))
	base := start(t, s)
	conn, br := rawStream(t, base, "gpt-4o")
	defer conn.Close()
	readUntil(t, br, `"error"`)

	e := usageRow(t, m, db)
	checkCaller(t, e)
	if want := (providers.Usage{PromptTokens: 8, CompletionTokens: 3, TotalTokens: 11}); e.Usage != want || !e.Estimated {
		t.Errorf("usage %+v (estimated %v), want %+v estimated", e.Usage, e.Estimated, want)
	}
	if e.ErrorCode == "" {
		t.Error("no error code on a stream the upstream cut")
	}
}

// TestMeteringWhatIsMetered: chat and embeddings requests for a routed
// model are metered, refusals included; unknown models, requests that are
// not valid, unauthenticated requests and model listings are not.
func TestMeteringWhatIsMetered(t *testing.T) {
	store := &memUsage{}
	m, err := billing.NewMeter(store, billing.MeterConfig{Dir: t.TempDir(), FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	rec := &recorder{answer: answerJSON}
	s := newTestServer(t, rec, &tenancy.Policy{AllowedModels: []string{"alias", "embed"}})
	s.usage = m
	h := s.Handler()
	do(h, "POST", "/v1/chat/completions", `{"model":"alias","messages":[{"role":"user","content":"hi"}]}`)
	do(h, "POST", "/v1/chat/completions", `{"model":"same","messages":[{"role":"user","content":"hi"}]}`) // 403: metered, no tokens
	do(h, "POST", "/v1/chat/completions", `{"model":"nope","messages":[{"role":"user","content":"hi"}]}`) // 404
	do(h, "POST", "/v1/chat/completions", `{"model":"alias","messages":[]}`)                              // 400
	do(h, "GET", "/v1/models", "")
	do(h, "GET", "/v1/models/alias", "")
	do(h, "POST", "/v1/chat/completions", `{"model":"alias","messages":[{"role":"user","content":"hi"}]}`, "Authorization", "Bearer wrong")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	got := store.all()
	if len(got) != 2 {
		t.Fatalf("%d events, want 2 (the chat requests for routed models): %+v", len(got), got)
	}
	ok, refused := got[0], got[1]
	if ok.Status != 200 || ok.Usage.PromptTokens != 5 || ok.Usage.CompletionTokens != 1 || ok.UpstreamModel != "up-model" ||
		ok.Stream || ok.TTFT != 0 || ok.Tenant != "t1" || ok.Estimated {
		t.Errorf("served event = %+v", ok)
	}
	if refused.Status != 403 || refused.ErrorCode != "model_not_allowed" || refused.Usage != (providers.Usage{}) || refused.Estimated || refused.Deployment != "" {
		t.Errorf("refused event = %+v, want 403 model_not_allowed without tokens", refused)
	}
}

// memUsage is a billing.UsageWriter in memory.
type memUsage struct {
	mu     sync.Mutex
	events []billing.Event
}

func (s *memUsage) WriteUsage(_ context.Context, events []billing.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, events...)
	return nil
}

func (s *memUsage) all() []billing.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]billing.Event(nil), s.events...)
}

// TestChargeResponse: the x-mtai-cost-usd header of a non-streamed answer,
// and an answer without usage kept for counting.
func TestChargeResponse(t *testing.T) {
	m, err := billing.NewMeter(&memUsage{}, billing.MeterConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	s := benchServer(t, &static{answer: answerJSON}) // gpt-4o-mini → gpt-4o-mini-2024-07-18
	s.usage = m
	cases := []struct {
		model    string
		usage    providers.Usage
		hasUsage bool
		want     string
	}{
		// gpt-4o-mini: $0.15 in, $0.075 cached, $0.60 out per million:
		// 600·0.15 + 400·0.075 + 500·0.6 = 90 + 30 + 300 = 420 µ$
		{"gpt-4o-mini", providers.Usage{PromptTokens: 1000, CachedTokens: 400, CompletionTokens: 500}, true, "0.00042"},
		// 1 token in: 0.15 µ$ rounded up to 1 µ$
		{"gpt-4o-mini", providers.Usage{PromptTokens: 1}, true, "0.000001"},
		{"gpt-4o-mini", providers.Usage{PromptTokens: 2_000_000, CompletionTokens: 1_000_000}, true, "0.9"},
		{"gpt-4o-mini", providers.Usage{}, false, ""},
	}
	for _, tc := range cases {
		st := &reqState{model: tc.model, deployment: "static-0", usage: tc.usage, hasUsage: tc.hasUsage}
		if rt, ok := s.router.Route(tc.model); ok {
			st.deployment = rt.Deployments[0].Name
		}
		var rc fasthttp.RequestCtx
		s.chargeResponse(&rc, st, answerJSON)
		if got := string(rc.Response.Header.Peek(hCost)); got != tc.want {
			t.Errorf("%+v: %s = %q, want %q", tc.usage, hCost, got, tc.want)
		}
		if !tc.hasUsage && (st.bill.ev == nil || st.bill.ev.CollectedBytes() != len(answerJSON)) {
			t.Errorf("an answer without usage was not kept for counting")
		}
		if st.bill.ev != nil {
			m.Record(st.bill.ev)
		}
	}
}

func TestAppendUSD(t *testing.T) {
	for _, v := range []tenancy.MicroUSD{0, 1, 10, 420, 999_999, 1_000_000, 1_500_000, 123_456_789, -1, -2_000_001, 1<<63 - 1, -1 << 63} {
		if got, want := string(appendUSD(nil, v)), v.String(); got != want {
			t.Errorf("appendUSD(%d) = %q, want %q", int64(v), got, want)
		}
	}
}

// nopUsage is a store that takes every batch at once, so that benchmarks
// measure the gateway and the meter, not a database.
type nopUsage struct{}

func (nopUsage) WriteUsage(context.Context, []billing.Event) error { return nil }

// meteredBenchServer is benchServer with a meter on a discarding store.
func meteredBenchServer(tb testing.TB) *Server {
	s := benchServer(tb, &static{answer: answerJSON})
	m, err := billing.NewMeter(nopUsage{}, billing.MeterConfig{Dir: tb.TempDir()})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close(context.Background()) })
	s.usage = m
	return s
}

// benchChat runs the non-streamed hot path and reports the process's CPU
// per request (cpu-ns/op, with limits_test.go's cpuTime: the handler, plus
// the meter's goroutines when on), besides the wall time.
func benchChat(b *testing.B, s *Server) {
	run := handlerLoop(b, s, benchBody)
	run()
	b.ReportAllocs()
	c0 := cpuTime()
	for b.Loop() {
		run()
	}
	b.ReportMetric(float64(cpuTime()-c0)/float64(b.N), "cpu-ns/op")
}

// BenchmarkChatCompletionMeteringOff and ...On compare the hot path's CPU
// per request without and with metering (event, price, journal write, and
// the writer's share): go test -bench ChatCompletion -benchmem ./gateway
func BenchmarkChatCompletionMeteringOff(b *testing.B) {
	benchChat(b, benchServer(b, &static{answer: answerJSON}))
}

func BenchmarkChatCompletionMeteringOn(b *testing.B) {
	benchChat(b, meteredBenchServer(b))
}

// TestChatCompletionMeteredAllocs pins metering's allocations on the hot
// path: none (the event is pooled, the journal buffer too).
func TestChatCompletionMeteredAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	off := handlerLoop(t, benchServer(t, &static{answer: answerJSON}), benchBody)
	on := handlerLoop(t, meteredBenchServer(t), benchBody)
	off()
	on()
	a0, a1 := testing.AllocsPerRun(200, off), testing.AllocsPerRun(200, on)
	t.Logf("allocations per request: %.1f without metering, %.1f with", a0, a1)
	if a1 > a0 {
		t.Errorf("metering adds %.1f allocations per request, want 0", a1-a0)
	}
}

// BenchmarkStreamEventsMetered is BenchmarkStreamEvents with metering on:
// the relay also keeps each event's delta text, in case the stream ends
// without usage. The last event is the usage chunk, as upstreams send it.
func BenchmarkStreamEventsMetered(b *testing.B) {
	ev := []byte(`{"id":"chatcmpl-123","object":"chat.completion.chunk","created":1694268190,"model":"gpt-4o-mini","system_fingerprint":"fp_44709d6fcb","choices":[{"index":0,"delta":{"content":"Hello"},"logprobs":null,"finish_reason":null}]}`)
	events := make([][]byte, 100)
	for i := range events {
		events[i] = ev
	}
	events[99] = []byte(meterUsageChunk)
	s := benchServer(b, &static{events: events})
	m, err := billing.NewMeter(nopUsage{}, billing.MeterConfig{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { m.Close(context.Background()) })
	s.usage = m
	run := handlerLoop(b, s, `{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}`)
	b.ReportAllocs()
	for b.Loop() {
		run()
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(events)), "ns/event")
}

// TestChatCostHeader: a non-streamed chat answer carries its cost in
// x-mtai-cost-usd (chat.go calls chargeResponse); an answer without usage
// carries none, and its event is counted by the meter (estimated).
func TestChatCostHeader(t *testing.T) {
	m, err := billing.NewMeter(&memUsage{}, billing.MeterConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	s := benchServer(t, &static{answer: answerJSON}) // usage 5 in, 1 out
	s.usage = m
	resp := do(s.Handler(), "POST", "/v1/chat/completions", benchBody)
	// gpt-4o-mini-2024-07-18: 5·$0.15 + 1·$0.60 per million = 1.35 µ$ → 2 µ$
	if got := string(resp.Header.Peek("x-mtai-cost-usd")); resp.StatusCode() != 200 || got != "0.000002" {
		t.Errorf("status %d, x-mtai-cost-usd %q; want 200 and 0.000002", resp.StatusCode(), got)
	}

	store := &memUsage{}
	m2, err := billing.NewMeter(store, billing.MeterConfig{Dir: t.TempDir(), FlushInterval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer m2.Close(context.Background())
	noUsage := []byte(`{"id":"c","object":"chat.completion","created":1,"model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}]}`)
	s2 := newTestServer(t, &recorder{answer: noUsage}, nil)
	s2.usage = m2
	resp = do(s2.Handler(), "POST", "/v1/chat/completions", `{"model":"alias","messages":[{"role":"user","content":"hi"}]}`)
	if got := resp.Header.Peek("x-mtai-cost-usd"); resp.StatusCode() != 200 || got != nil {
		t.Errorf("status %d, x-mtai-cost-usd %q; want 200 and no header without usage", resp.StatusCode(), got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	evs := store.all()
	// prompt: 3 + "user" 1 + "hi" 1 + 3 = 8 (cl100k for up-model); answer "hi": 1
	if len(evs) != 1 || !evs[0].Estimated || evs[0].Usage != (providers.Usage{PromptTokens: 8, CompletionTokens: 1, TotalTokens: 9}) || evs[0].Priced {
		t.Errorf("events %+v, want one estimated at 8+1 tokens, unpriced", evs)
	}
}

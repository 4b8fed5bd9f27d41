package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/chat"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/store/sqlite"
	"github.com/mtai-dev/mtai/tenancy"
	"github.com/mtai-dev/mtai/tenancy/ratelimit"
)

// chatUpstream is a fake OpenAI upstream for the platform chat: it records
// the bodies it is sent and answers with answer (streamed in two chunks),
// with usage when usage is set (on streams only when asked), or with fail.
type chatUpstream struct {
	mu     sync.Mutex
	bodies [][]byte
	answer string
	usage  *providers.Usage
	fail   error
	// midStreamError ends a stream with an error event after one chunk.
	midStreamError bool
}

func (u *chatUpstream) record(req *providers.Request) (answer string, usage *providers.Usage, fail error, cut bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.bodies = append(u.bodies, append([]byte(nil), req.Body...))
	return u.answer, u.usage, u.fail, u.midStreamError
}

func (u *chatUpstream) set(answer string, usage *providers.Usage) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.answer, u.usage = answer, usage
}

func (u *chatUpstream) calls() int {
	u.mu.Lock()
	defer u.mu.Unlock()
	return len(u.bodies)
}

// sent decodes the last request the upstream received.
func (u *chatUpstream) sent(t *testing.T) upstreamRequest {
	t.Helper()
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.bodies) == 0 {
		t.Fatal("the upstream was not called")
	}
	var r upstreamRequest
	if err := json.Unmarshal(u.bodies[len(u.bodies)-1], &r); err != nil {
		t.Fatalf("upstream body %s: %v", u.bodies[len(u.bodies)-1], err)
	}
	return r
}

type upstreamRequest struct {
	Model       string        `json:"model"`
	Messages    []wireMessage `json:"messages"`
	Temperature *float64      `json:"temperature"`
	MaxTokens   *int64        `json:"max_tokens"`
	Stream      bool          `json:"stream"`
	Options     *struct {
		IncludeUsage bool `json:"include_usage"`
	} `json:"stream_options"`
}

func usageJSON(u *providers.Usage) string {
	if u == nil {
		return ""
	}
	return fmt.Sprintf(`,"usage":{"prompt_tokens":%d,"completion_tokens":%d,"total_tokens":%d}`,
		u.PromptTokens, u.CompletionTokens, u.TotalTokens)
}

func (u *chatUpstream) Complete(_ context.Context, req *providers.Request) (*providers.Response, error) {
	answer, usage, fail, _ := u.record(req)
	if fail != nil {
		return nil, fail
	}
	body := fmt.Sprintf(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":%q,"choices":[{"index":0,"message":{"role":"assistant","content":%s,"refusal":null},"finish_reason":"stop"}]%s}`,
		req.Model, strconv.Quote(answer), usageJSON(usage))
	var u2 providers.Usage
	if usage != nil {
		u2 = *usage
	}
	return providers.NewResponse([]byte(body), u2, nil), nil
}

func (u *chatUpstream) Stream(_ context.Context, req *providers.Request) (providers.Stream, error) {
	answer, usage, fail, cut := u.record(req)
	if fail != nil {
		return nil, fail
	}
	half := len(answer) / 2
	chunk := func(delta, finish string) []byte {
		return fmt.Appendf(nil, `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":%q,"choices":[{"index":0,"delta":%s,"finish_reason":%s}]}`,
			req.Model, delta, finish)
	}
	events := [][]byte{
		chunk(`{"role":"assistant","content":`+strconv.Quote(answer[:half])+`}`, "null"),
	}
	if cut {
		events = append(events, []byte(`{"error":{"message":"the upstream broke","type":"server_error","param":null,"code":"upstream_error"}}`))
		return &sliceStream{events: events}, nil
	}
	events = append(events, chunk(`{"content":`+strconv.Quote(answer[half:])+`}`, `"stop"`))
	if usage != nil && strings.Contains(string(req.Body), `"include_usage":true`) {
		events = append(events, fmt.Appendf(nil, `{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":%q,"choices":[]%s}`,
			req.Model, usageJSON(usage)))
	}
	return &sliceStream{events: events}, nil
}

// chatEnv is a gateway with every part configured (platform, conversations,
// limiter, meter) over a real SQLite store: tenant alpha (admin boss,
// members alice and bob, alice's API key, a service key of no user) and
// tenant beta (admin, member carol); the demo tenant's platform admin.
type chatEnv struct {
	s        *Server
	h        fasthttp.RequestHandler
	db       *sqlite.DB
	svc      *tenancy.Service
	up       *chatUpstream
	meter    *billing.Meter
	adminJWT string // platform admin of tenant demo

	alpha, beta *tenancy.Tenant
	// credentials by name: "boss", "alice", "bob", "alice-key", "service-key" (alpha);
	// "beta-admin", "carol" (beta)
	cred map[string]credential
}

type credential struct {
	bearer, tenant string // tenant: the X-Tenant-ID sent ("" for API keys)
	owner          chat.Owner
}

var defaultUsage = providers.Usage{PromptTokens: 1000, CompletionTokens: 200, TotalTokens: 1200}

func newChatEnv(t *testing.T) *chatEnv {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	db, cache, svc := tenancyStack(t, dir, tenancy.BootstrapConfig{AdminPassword: "admin-password-1"})
	up := &chatUpstream{answer: "Hello from the model!", usage: &defaultUsage}
	router, err := providers.NewRouter(providers.Config{Models: []providers.ModelConfig{
		{Name: "chat-a", OwnedBy: "openai", Deployments: []providers.DeploymentConfig{{Provider: "fake", Model: "gpt-4o"}}},
		{Name: "chat-b", Deployments: []providers.DeploymentConfig{{Provider: "fake", Model: "gpt-4o-mini"}}},
		{Name: "chat-free", Deployments: []providers.DeploymentConfig{{Provider: "fake", Model: "my-local-model"}}},
		{Name: "tiny", Deployments: []providers.DeploymentConfig{{Provider: "fake", Model: "gpt-4"}}},
		{Name: "emb", Embeddings: true, Deployments: []providers.DeploymentConfig{{Provider: "fake", Model: "text-embedding-3-small"}}},
	}}, map[string]providers.Factory{"fake": func(providers.DeploymentConfig) (providers.Provider, error) { return up, nil }})
	if err != nil {
		t.Fatal(err)
	}
	meter, err := billing.NewMeter(db, billing.MeterConfig{Dir: filepath.Join(dir, "usage"), FlushInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := meter.Close(ctx); err != nil {
			t.Errorf("meter Close = %v", err)
		}
	})
	lim, err := NewLimiter(LimiterOptions{Backend: ratelimit.NewLocal(ratelimit.LocalOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(Options{Config: Config{Addr: "127.0.0.1:0"}, Router: router, Keys: cache, Platform: svc,
		Conversations: db, Meter: meter, Limiter: lim})
	if err != nil {
		t.Fatal(err)
	}
	e := &chatEnv{s: s, h: s.Handler(), db: db, svc: svc, up: up, meter: meter, cred: map[string]credential{}}
	e.adminJWT = e.login(t, "demo", "admin", "admin-password-1")

	str := func(v string) *string { return &v }
	e.alpha, err = svc.CreateTenant(ctx, tenancy.TenantUpdate{Name: str("alpha"), DefaultModel: str("chat-a"),
		AllowedModels: &[]string{"chat-a", "chat-free", "tiny", "emb"}, SystemPrompt: str("You are Alpha's assistant.")})
	if err != nil {
		t.Fatal(err)
	}
	e.beta, err = svc.CreateTenant(ctx, tenancy.TenantUpdate{Name: str("beta"), AllowedModels: &[]string{"chat-b"}})
	if err != nil {
		t.Fatal(err)
	}
	user := func(tn *tenancy.Tenant, name string, role tenancy.Role) {
		u, err := svc.CreateUser(ctx, tn.ID, name, name+"-password-1", role)
		if err != nil {
			t.Fatal(err)
		}
		e.cred[name] = credential{bearer: e.login(t, tn.Name, name, name+"-password-1"), tenant: tn.Name,
			owner: chat.Owner{TenantID: tn.ID, UserID: u.ID}}
		if name == "alice" {
			_, secret, err := svc.CreateKey(ctx, tn.ID, u.ID, "alice's key", nil)
			if err != nil {
				t.Fatal(err)
			}
			e.cred["alice-key"] = credential{bearer: secret, owner: chat.Owner{TenantID: tn.ID, UserID: u.ID}}
		}
	}
	user(e.alpha, "boss", tenancy.RoleTenantAdmin)
	user(e.alpha, "alice", tenancy.RoleMember)
	user(e.alpha, "bob", tenancy.RoleMember)
	user(e.beta, "beta-admin", tenancy.RoleTenantAdmin)
	user(e.beta, "carol", tenancy.RoleMember)
	k, secret, err := svc.CreateKey(ctx, e.alpha.ID, 0, "service", nil)
	if err != nil {
		t.Fatal(err)
	}
	e.cred["service-key"] = credential{bearer: secret, owner: chat.Owner{TenantID: e.alpha.ID, KeyID: k.ID}}
	e.cred["platform-admin"] = credential{bearer: e.adminJWT, tenant: "demo"}
	return e
}

func (e *chatEnv) login(t *testing.T, tenant, user, password string) string {
	t.Helper()
	r := e.raw("POST", "/api/v1/auth/login", fmt.Sprintf(`{"username":%q,"password":%q}`, user, password), "", tenant)
	if r.StatusCode() != 200 {
		t.Fatalf("login %s/%s: %d %s", tenant, user, r.StatusCode(), r.Body())
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(r.Body(), &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("login answer %s", r.Body())
	}
	return tok.AccessToken
}

// raw runs one request in memory, reading a streamed body to its end.
func (e *chatEnv) raw(method, path, body, bearer, tenant string) *fasthttp.Response {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI("http://gw" + path)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if tenant != "" {
		req.Header.Set("X-Tenant-ID", tenant)
	}
	if body != "" {
		req.SetBodyString(body)
	}
	var rc fasthttp.RequestCtx
	rc.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	e.h(&rc)
	var resp fasthttp.Response
	rc.Response.CopyTo(&resp)
	if bs := rc.Response.BodyStream(); bs != nil {
		b, _ := io.ReadAll(bs)
		resp.SetBody(b)
		if c, ok := bs.(io.Closer); ok {
			c.Close()
		}
	}
	return &resp
}

// as runs a request with the credential named who.
func (e *chatEnv) as(t *testing.T, who, method, path, body string) *fasthttp.Response {
	t.Helper()
	c, ok := e.cred[who]
	if !ok {
		t.Fatalf("no credential %q", who)
	}
	return e.raw(method, path, body, c.bearer, c.tenant)
}

// chatOK sends a chat turn as who and decodes the documented answer.
func (e *chatEnv) chatOK(t *testing.T, who, body string) chatResponse {
	t.Helper()
	r := e.as(t, who, "POST", "/api/v1/chat/", body)
	if r.StatusCode() != 200 {
		t.Fatalf("chat as %s %s: %d %s", who, body, r.StatusCode(), r.Body())
	}
	checkSchema(t, "ChatResponse", r.Body())
	var out chatResponse
	if err := json.Unmarshal(r.Body(), &out); err != nil {
		t.Fatal(err)
	}
	return out
}

type conversationDetail struct {
	chat.Conversation
	Messages []chat.Message `json:"messages"`
}

func (e *chatEnv) conversation(t *testing.T, who string, id int64) conversationDetail {
	t.Helper()
	r := e.as(t, who, "GET", fmt.Sprintf("/api/v1/chat/conversations/%d", id), "")
	if r.StatusCode() != 200 {
		t.Fatalf("GET conversation %d as %s: %d %s", id, who, r.StatusCode(), r.Body())
	}
	checkSchema(t, "ConversationDetail", r.Body())
	var c conversationDetail
	if err := json.Unmarshal(r.Body(), &c); err != nil {
		t.Fatal(err)
	}
	return c
}

func (e *chatEnv) list(t *testing.T, who, query string) (ids []int64, total int) {
	t.Helper()
	r := e.as(t, who, "GET", "/api/v1/chat/conversations"+query, "")
	if r.StatusCode() != 200 {
		t.Fatalf("list as %s%s: %d %s", who, query, r.StatusCode(), r.Body())
	}
	checkSchema(t, "ConversationList", r.Body())
	var l struct {
		Data  []chat.Conversation `json:"data"`
		Total int                 `json:"total"`
	}
	if err := json.Unmarshal(r.Body(), &l); err != nil {
		t.Fatal(err)
	}
	for _, c := range l.Data {
		ids = append(ids, c.ID)
	}
	return ids, l.Total
}

// wantError checks an error answer: status, code and param ("" for null).
func wantError(t *testing.T, r *fasthttp.Response, status int, code, param string) {
	t.Helper()
	if r.StatusCode() != status {
		t.Errorf("status = %d, want %d (%s)", r.StatusCode(), status, r.Body())
		return
	}
	checkSchema(t, "Error", r.Body())
	_, c, p := errorOf(t, r.Body())
	got := ""
	if p != nil {
		got = *p
	}
	if code != "" && c != code || got != param {
		t.Errorf("error code %q param %q, want %q %q (%s)", c, got, code, param, r.Body())
	}
}

// TestChatNewConversation: every documented field of the request and the
// answer, the policy applied (system prompt), the turn stored.
func TestChatNewConversation(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	for _, path := range []string{"/api/v1/chat/", "/api/v1/chat"} {
		r := e.as(t, "alice", "POST", path,
			`{"message":"Hello there","model":"chat-a","temperature":0.5,"max_tokens":50,"use_rag":false,"conversation_history":null}`)
		if r.StatusCode() != 200 {
			t.Fatalf("POST %s: %d %s", path, r.StatusCode(), r.Body())
		}
		checkSchema(t, "ChatResponse", r.Body())
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(r.Body(), &fields); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for k := range fields {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if want := "[conversation_id cost_usd latency_ms model_used request_id response tokens_used]"; fmt.Sprint(keys) != want {
			t.Errorf("answer fields = %v, want %s", keys, want)
		}
		var out chatResponse
		if err := json.Unmarshal(r.Body(), &out); err != nil {
			t.Fatal(err)
		}
		price, _ := billing.DefaultPrices().Lookup("gpt-4o")
		if out.Response != "Hello from the model!" || out.ConversationID < 1 || out.ModelUsed != "chat-a" ||
			out.TokensUsed != 1200 || out.LatencyMS < 0 || out.CostUSD != price.Cost(defaultUsage) || out.CostUSD == 0 ||
			out.RequestID == "" || out.RequestID != string(r.Header.Peek("X-Request-ID")) {
			t.Errorf("answer = %+v; want the model's answer, a conversation, chat-a, 1200 tokens, cost %v, the request id %q",
				out, price.Cost(defaultUsage), r.Header.Peek("X-Request-ID"))
		}

		sent := e.up.sent(t)
		if sent.Model != "gpt-4o" || sent.Temperature == nil || *sent.Temperature != 0.5 || sent.MaxTokens == nil || *sent.MaxTokens != 50 || sent.Stream {
			t.Errorf("upstream request = %+v; want gpt-4o, temperature 0.5, max_tokens 50, not streamed", sent)
		}
		want := []wireMessage{{Role: "system", Content: "You are Alpha's assistant."}, {Role: "user", Content: "Hello there"}}
		if !slices.Equal(sent.Messages, want) {
			t.Errorf("upstream messages = %+v, want %+v", sent.Messages, want)
		}

		c := e.conversation(t, "alice", out.ConversationID)
		if c.Title != "Hello there" || c.Model != "chat-a" || c.MessageCount != 2 || len(c.Messages) != 2 || c.UserID != e.cred["alice"].owner.UserID {
			t.Fatalf("stored conversation = %+v", c)
		}
		u, a := c.Messages[0], c.Messages[1]
		if u.Role != chat.RoleUser || u.Content != "Hello there" || u.TokensUsed != 0 {
			t.Errorf("stored user message = %+v", u)
		}
		if a.Role != chat.RoleAssistant || a.Content != out.Response || a.Model != "chat-a" || a.TokensUsed != 1200 ||
			a.Cost != out.CostUSD || a.RequestID != out.RequestID || a.LatencyMS != out.LatencyMS {
			t.Errorf("stored answer = %+v, want the answer with %+v", a, out)
		}
	}
}

// TestChatFollowUp: a conversation's stored messages go to the model as
// history; the new turn is appended.
func TestChatFollowUp(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	first := e.chatOK(t, "alice", `{"message":"My name is Alice."}`)
	other := e.chatOK(t, "alice", `{"message":"Another topic."}`)
	e.up.set("Nice to meet you again, Alice.", &defaultUsage)
	second := e.chatOK(t, "alice", fmt.Sprintf(`{"message":"What is my name?","conversation_id":%d}`, first.ConversationID))
	if second.ConversationID != first.ConversationID {
		t.Errorf("follow-up conversation_id = %d, want %d", second.ConversationID, first.ConversationID)
	}
	want := []wireMessage{
		{Role: "system", Content: "You are Alpha's assistant."},
		{Role: "user", Content: "My name is Alice."},
		{Role: "assistant", Content: "Hello from the model!"},
		{Role: "user", Content: "What is my name?"},
	}
	if got := e.up.sent(t).Messages; !slices.Equal(got, want) {
		t.Errorf("upstream messages = %+v, want %+v", got, want)
	}
	c := e.conversation(t, "alice", first.ConversationID)
	var contents []string
	for _, m := range c.Messages {
		contents = append(contents, string(m.Role)+":"+m.Content)
	}
	if fmt.Sprint(contents) != "[user:My name is Alice. assistant:Hello from the model! user:What is my name? assistant:Nice to meet you again, Alice.]" {
		t.Errorf("stored messages = %q", contents)
	}
	// The conversation just used comes first.
	ids, total := e.list(t, "alice", "")
	if total != 2 || fmt.Sprint(ids) != fmt.Sprint([]int64{first.ConversationID, other.ConversationID}) {
		t.Errorf("list = %v (total %d), want [%d %d]", ids, total, first.ConversationID, other.ConversationID)
	}
	// A stored conversation wins over a client's history.
	e.chatOK(t, "alice", fmt.Sprintf(`{"message":"Again?","conversation_id":%d,"conversation_history":[{"role":"user","content":"ignored"}]}`, first.ConversationID))
	for _, m := range e.up.sent(t).Messages {
		if m.Content == "ignored" {
			t.Error("the client's history was sent with a stored conversation")
		}
	}
}

// TestChatClientHistory: without a conversation_id the client's history is
// sent, and stored with the new conversation.
func TestChatClientHistory(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	out := e.chatOK(t, "bob", `{"message":"And in French?","conversation_history":[{"role":"user","content":"Say hello."},{"role":"assistant","content":"Hello!"}]}`)
	want := []wireMessage{
		{Role: "system", Content: "You are Alpha's assistant."},
		{Role: "user", Content: "Say hello."},
		{Role: "assistant", Content: "Hello!"},
		{Role: "user", Content: "And in French?"},
	}
	if got := e.up.sent(t).Messages; !slices.Equal(got, want) {
		t.Errorf("upstream messages = %+v, want %+v", got, want)
	}
	c := e.conversation(t, "bob", out.ConversationID)
	if c.MessageCount != 4 || c.Title != "Say hello." {
		t.Errorf("stored conversation = %+v, want 4 messages titled by the first user message", c.Conversation)
	}
}

// TestChatPolicy: the tenant's default model, allowed models and system
// prompt apply as on /v1.
func TestChatPolicy(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	if out := e.chatOK(t, "alice", `{"message":"hi"}`); out.ModelUsed != "chat-a" {
		t.Errorf("model_used = %q, want the tenant's default chat-a", out.ModelUsed)
	}
	if out := e.chatOK(t, "alice", `{"message":"hi","model":""}`); out.ModelUsed != "chat-a" {
		t.Errorf("empty model: model_used = %q, want chat-a", out.ModelUsed)
	}
	if out := e.chatOK(t, "carol", `{"message":"hi","model":"chat-b"}`); out.ModelUsed != "chat-b" {
		t.Errorf("model_used = %q, want chat-b", out.ModelUsed)
	}
	if got := e.up.sent(t).Messages; len(got) != 1 || got[0].Role != "user" {
		t.Errorf("beta (no system prompt) sent %+v, want the user message alone", got)
	}
	calls := e.up.calls()
	wantError(t, e.as(t, "alice", "POST", "/api/v1/chat/", `{"message":"hi","model":"chat-b"}`), 403, "model_not_allowed", "model")
	wantError(t, e.as(t, "alice", "POST", "/api/v1/chat/", `{"message":"hi","model":"gpt-9"}`), 404, "model_not_found", "model")
	wantError(t, e.as(t, "alice", "POST", "/api/v1/chat/", `{"message":"hi","model":"emb"}`), 400, "", "model")
	wantError(t, e.as(t, "carol", "POST", "/api/v1/chat/", `{"message":"hi"}`), 400, "", "model") // beta has no default model
	if e.up.calls() != calls {
		t.Error("a refused turn reached the upstream")
	}
	if _, total := e.list(t, "carol", ""); total != 1 {
		t.Errorf("carol has %d conversations, want 1 (refused turns store nothing)", total)
	}
}

// TestChatBadFields: every field of the request, wrong, is a 400 that names
// it; nothing reaches the upstream or the store.
func TestChatBadFields(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	tests := []struct {
		name, body, param string
	}{
		{"not JSON", `{"message":`, ""},
		{"not an object", `["hi"]`, ""},
		{"no message", `{"model":"chat-a"}`, "message"},
		{"null message", `{"message":null}`, "message"},
		{"empty message", `{"message":""}`, "message"},
		{"blank message", `{"message":"  \n"}`, "message"},
		{"message not a string", `{"message":5}`, "message"},
		{"model not a string", `{"message":"hi","model":5}`, "model"},
		{"temperature below 0", `{"message":"hi","temperature":-0.1}`, "temperature"},
		{"temperature above 2", `{"message":"hi","temperature":2.01}`, "temperature"},
		{"temperature not a number", `{"message":"hi","temperature":"hot"}`, "temperature"},
		{"max_tokens 0", `{"message":"hi","max_tokens":0}`, "max_tokens"},
		{"max_tokens negative", `{"message":"hi","max_tokens":-3}`, "max_tokens"},
		{"max_tokens not an integer", `{"message":"hi","max_tokens":1.5}`, "max_tokens"},
		{"max_tokens a string", `{"message":"hi","max_tokens":"10"}`, "max_tokens"},
		{"use_rag not a boolean", `{"message":"hi","use_rag":"yes"}`, "use_rag"},
		{"conversation_id 0", `{"message":"hi","conversation_id":0}`, "conversation_id"},
		{"conversation_id a string", `{"message":"hi","conversation_id":"12"}`, "conversation_id"},
		{"conversation_id not an integer", `{"message":"hi","conversation_id":1.5}`, "conversation_id"},
		{"conversation_history not an array", `{"message":"hi","conversation_history":"x"}`, "conversation_history"},
		{"conversation_history item not an object", `{"message":"hi","conversation_history":[1]}`, "conversation_history[0]"},
		{"conversation_history bad role", `{"message":"hi","conversation_history":[{"role":"user","content":"a"},{"role":"robot","content":"x"}]}`, "conversation_history[1].role"},
		{"conversation_history no content", `{"message":"hi","conversation_history":[{"role":"user"}]}`, "conversation_history[0]"},
		{"conversation_history content not a string", `{"message":"hi","conversation_history":[{"role":"user","content":[{"type":"text","text":"x"}]}]}`, "conversation_history[0]"},
		{"conversation_history extra field", `{"message":"hi","conversation_history":[{"role":"user","content":"x","name":"n"}]}`, "conversation_history[0]"},
		{"stream not a boolean", `{"message":"hi","stream":"yes"}`, "stream"},
		{"unknown field", `{"message":"hi","messages":[]}`, "messages"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantError(t, e.as(t, "alice", "POST", "/api/v1/chat/", tc.body), 400, "", tc.param)
		})
	}
	if e.up.calls() != 0 {
		t.Errorf("the upstream was called %d times", e.up.calls())
	}
	if _, total := e.list(t, "alice", ""); total != 0 {
		t.Errorf("%d conversations stored, want none", total)
	}
	// The edges are accepted, and null is absent.
	e.chatOK(t, "alice", `{"message":"hi","temperature":0,"max_tokens":1}`)
	e.chatOK(t, "alice", `{"message":"hi","temperature":2,"model":null,"max_tokens":null,"use_rag":null,"conversation_id":null,"stream":null}`)
	e.chatOK(t, "alice", `{"message":"hi","conversation_history":[]}`)
}

// TestChatErrors: the documented errors other than bad fields.
func TestChatErrors(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	r := e.as(t, "alice", "POST", "/api/v1/chat/", `{"message":"hi","use_rag":true}`)
	wantError(t, r, 501, "not_implemented", "use_rag")
	wantError(t, e.as(t, "alice", "POST", "/api/v1/chat/", `{"message":"hi","conversation_id":999999}`), 404, "not_found", "")
	wantError(t, e.raw("POST", "/api/v1/chat/", `{"message":"hi"}`, "", ""), 401, "invalid_api_key", "")
	wantError(t, e.raw("POST", "/api/v1/chat/", `{"message":"hi"}`, "sk-mtai-wrong", ""), 401, "invalid_api_key", "")
	wantError(t, e.raw("POST", "/api/v1/chat/", `{"message":"hi"}`, e.cred["alice"].bearer, ""), 400, "", "X-Tenant-ID")
	wantError(t, e.raw("POST", "/api/v1/chat/", `{"message":"hi"}`, e.cred["alice"].bearer, "beta"), 403, "forbidden", "")
	wantError(t, e.raw("POST", "/api/v1/chat/", `{"message":"hi"}`, e.cred["alice-key"].bearer, "beta"), 403, "forbidden", "")
	wantError(t, e.as(t, "alice", "GET", "/api/v1/chat/", ""), 405, "method_not_allowed", "")
	if e.up.calls() != 0 {
		t.Errorf("the upstream was called %d times", e.up.calls())
	}

	// The upstream's refusal is passed on; nothing is stored.
	e.up.mu.Lock()
	e.up.fail = &providers.UpstreamError{Provider: "fake", Status: 400, Type: "invalid_request_error", Code: "context_length_exceeded", Message: "too long"}
	e.up.mu.Unlock()
	wantError(t, e.as(t, "alice", "POST", "/api/v1/chat/", `{"message":"hi"}`), 400, "context_length_exceeded", "")
	if _, total := e.list(t, "alice", ""); total != 0 {
		t.Errorf("%d conversations stored after an upstream failure, want none", total)
	}
}

// TestChatAnswerWithoutUsage: an upstream that reports no usage: the
// tokens are counted with tiktoken.
func TestChatAnswerWithoutUsage(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	// Hindi: o200k (gpt-4o, chat-a's upstream model) and cl100k disagree.
	answer, question := "नमस्ते, आप कैसे हैं?", "मैं ठीक हूँ, धन्यवाद।"
	e.up.set(answer, nil)
	out := e.chatOK(t, "alice", `{"message":"`+question+`"}`)
	c := chat.NewCounter()
	prompt := 3 + c.MessageTokens("gpt-4o", chat.Message{Content: "You are Alpha's assistant."}) +
		c.MessageTokens("gpt-4o", chat.Message{Content: question})
	want := int64(prompt + c.Tokens("gpt-4o", answer))
	if out.TokensUsed != want || out.CostUSD == 0 {
		t.Errorf("tokens_used = %d, cost %v; want %d counted, priced", out.TokensUsed, out.CostUSD, want)
	}
}

// TestChatStream: the streamed variant, by path and by field: the
// upstream's chunks, then the documented answer, then [DONE]; the turn is
// stored once complete.
func TestChatStream(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	for _, tc := range []struct{ path, body string }{
		{"/api/v1/chat/stream", `{"message":"Stream, please."}`},
		{"/api/v1/chat/", `{"message":"Stream, please.","stream":true}`},
	} {
		r := e.as(t, "alice", "POST", tc.path, tc.body)
		if r.StatusCode() != 200 || !strings.HasPrefix(string(r.Header.ContentType()), "text/event-stream") {
			t.Fatalf("POST %s: %d %s %s", tc.path, r.StatusCode(), r.Header.ContentType(), r.Body())
		}
		if sent := e.up.sent(t); !sent.Stream || sent.Options == nil || !sent.Options.IncludeUsage {
			t.Errorf("upstream request %+v: want a stream asking for usage", sent)
		}
		events := sseEvents(t, string(r.Body()))
		if len(events) < 3 || events[len(events)-1] != "[DONE]" {
			t.Fatalf("events = %q, want chunks, the answer, [DONE]", events)
		}
		var text strings.Builder
		for _, ev := range events[:len(events)-2] {
			var c struct {
				Object  string `json:"object"`
				Choices []struct {
					Delta struct{ Content string } `json:"delta"`
				} `json:"choices"`
			}
			if err := json.Unmarshal([]byte(ev), &c); err != nil || c.Object != "chat.completion.chunk" {
				t.Fatalf("event %s: not a chunk (%v)", ev, err)
			}
			if len(c.Choices) == 0 {
				t.Errorf("the usage chunk reached the client: %s", ev)
				continue
			}
			text.WriteString(c.Choices[0].Delta.Content)
		}
		if text.String() != "Hello from the model!" {
			t.Errorf("streamed text = %q", text.String())
		}
		final := events[len(events)-2]
		checkSchema(t, "ChatStreamResult", []byte(final))
		var out chatResponse
		if err := json.Unmarshal([]byte(final), &out); err != nil {
			t.Fatal(err)
		}
		if out.Object != "chat.response" || out.Response != "Hello from the model!" || out.TokensUsed != 1200 || out.CostUSD == 0 ||
			out.RequestID != string(r.Header.Peek("X-Request-ID")) || out.ModelUsed != "chat-a" {
			t.Errorf("final event = %+v", out)
		}
		c := e.conversation(t, "alice", out.ConversationID)
		if len(c.Messages) != 2 || c.Messages[1].Content != "Hello from the model!" || c.Messages[1].RequestID != out.RequestID {
			t.Errorf("stored = %+v, want the streamed answer", c.Messages)
		}
	}

	// A stream that fails midway ends with an error event and stores nothing.
	e.up.mu.Lock()
	e.up.midStreamError = true
	e.up.mu.Unlock()
	_, before := e.list(t, "alice", "")
	r := e.as(t, "alice", "POST", "/api/v1/chat/stream", `{"message":"Break, please."}`)
	events := sseEvents(t, string(r.Body()))
	if len(events) == 0 || !strings.HasPrefix(events[len(events)-1], `{"error"`) || slices.Contains(events, "[DONE]") {
		t.Errorf("failed stream events = %q, want an error event last and no [DONE]", events)
	}
	if _, after := e.list(t, "alice", ""); after != before {
		t.Errorf("a failed stream stored a conversation (%d → %d)", before, after)
	}
}

// sseEvents returns the data of each event of an SSE body.
func sseEvents(t *testing.T, body string) []string {
	t.Helper()
	var out []string
	for _, block := range strings.Split(body, "\n\n") {
		if block == "" {
			continue
		}
		data, ok := strings.CutPrefix(block, "data: ")
		if !ok {
			t.Fatalf("event %q has no data line", block)
		}
		out = append(out, data)
	}
	return out
}

// TestChatHistoryWindow: a stored history longer than the model's context
// window is cut, oldest first, counting with tiktoken.
func TestChatHistoryWindow(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	alice := e.cred["alice"].owner
	// 20 messages of about 1000 tokens each: more than tiny's (gpt-4's) 8192.
	c := chat.NewCounter()
	var history []chat.Message
	for i := range 20 {
		role := chat.RoleUser
		if i%2 == 1 {
			role = chat.RoleAssistant
		}
		history = append(history, chat.Message{Role: role, Content: fmt.Sprintf("message %d:", i) + strings.Repeat(" word", 1000),
			CreatedAt: time.Now().UTC()})
	}
	conv := &chat.Conversation{Owner: alice, Title: "long", CreatedAt: time.Now().UTC()}
	if err := e.db.CreateConversation(t.Context(), conv, history); err != nil {
		t.Fatal(err)
	}
	e.chatOK(t, "alice", fmt.Sprintf(`{"message":"Summarize.","model":"tiny","max_tokens":1000,"conversation_id":%d}`, conv.ID))
	sent := e.up.sent(t).Messages
	if len(sent) < 3 || sent[0].Role != "system" || sent[len(sent)-1].Content != "Summarize." {
		t.Fatalf("sent %d messages, want the system prompt, some history, the message", len(sent))
	}
	kept := sent[1 : len(sent)-1]
	// the newest messages, contiguous
	for i, m := range kept {
		if want := history[len(history)-len(kept)+i].Content; m.Content != want {
			t.Fatalf("history message %d sent = %.20q, want %.20q (the newest, in order)", i, m.Content, want)
		}
	}
	// as many as fit in 8192 − 1000 (answer) − 3 (priming), and not one more
	budget := 8192 - 1000 - 3
	for _, m := range sent {
		budget -= c.MessageTokens("gpt-4", chat.Message{Content: m.Content})
	}
	next := c.MessageTokens("gpt-4", history[len(history)-len(kept)-1])
	if budget < 0 || budget >= next {
		t.Errorf("sent %d of 20 history messages leaving %d tokens; the next older one takes %d: want the most that fit",
			len(kept), budget, next)
	}
	if len(kept) == 0 || len(kept) == len(history) {
		t.Errorf("kept %d of %d messages, want some dropped and some kept", len(kept), len(history))
	}
	// A model with a large window gets it all.
	e.chatOK(t, "alice", fmt.Sprintf(`{"message":"Summarize again.","model":"chat-a","conversation_id":%d}`, conv.ID))
	if got := len(e.up.sent(t).Messages); got != 1+22+1 {
		t.Errorf("chat-a (128k) was sent %d messages, want all 24", got)
	}
}

// TestConversationIsolation: members see their own conversations, tenant
// admins their tenant's, nobody another tenant's (404).
func TestConversationIsolation(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	convs := map[string]int64{}
	for _, who := range []string{"alice", "bob", "boss", "service-key", "carol"} {
		convs[who] = e.chatOK(t, who, fmt.Sprintf(`{"message":"I am %s","model":%q}`, who,
			map[bool]string{true: "chat-b", false: "chat-a"}[who == "carol"])).ConversationID
	}
	// alice's key is alice.
	viaKey := e.chatOK(t, "alice-key", `{"message":"via my key"}`).ConversationID

	type access struct {
		who  string
		sees []string // whose conversations
	}
	matrix := []access{
		{"alice", []string{"alice", "alice-key"}},
		{"alice-key", []string{"alice", "alice-key"}},
		{"bob", []string{"bob"}},
		{"service-key", []string{"service-key"}},
		{"boss", []string{"alice", "alice-key", "bob", "boss", "service-key"}},
		{"carol", []string{"carol"}},
		{"beta-admin", []string{"carol"}},
		{"platform-admin", nil},
	}
	convs["alice-key"] = viaKey
	everyone := []string{"alice", "alice-key", "bob", "boss", "service-key", "carol"}
	for _, a := range matrix {
		t.Run(a.who, func(t *testing.T) {
			for _, owner := range everyone {
				id := convs[owner]
				path := fmt.Sprintf("/api/v1/chat/conversations/%d", id)
				if slices.Contains(a.sees, owner) {
					if r := e.as(t, a.who, "GET", path, ""); r.StatusCode() != 200 {
						t.Errorf("GET %s's conversation: %d, want 200", owner, r.StatusCode())
					}
					continue
				}
				wantError(t, e.as(t, a.who, "GET", path, ""), 404, "not_found", "")
				wantError(t, e.as(t, a.who, "DELETE", path, ""), 404, "not_found", "")
				wantError(t, e.as(t, a.who, "POST", "/api/v1/chat/", fmt.Sprintf(`{"message":"intrude","conversation_id":%d}`, id)), 404, "not_found", "")
			}
			// Lists: one's own; admins the tenant's with all=true.
			own, _ := e.list(t, a.who, "")
			for _, id := range own {
				found := false
				for _, owner := range a.sees {
					found = found || convs[owner] == id
				}
				if !found {
					t.Errorf("list has conversation %d that %s may not see", id, a.who)
				}
			}
		})
	}
	// A tenant admin does not write into a member's conversation.
	wantError(t, e.as(t, "boss", "POST", "/api/v1/chat/", fmt.Sprintf(`{"message":"hi","conversation_id":%d}`, convs["alice"])), 404, "not_found", "")
	// The listings.
	listIs := func(who, query string, owners ...string) {
		t.Helper()
		ids, total := e.list(t, who, query)
		var want []int64
		for _, o := range owners {
			want = append(want, convs[o])
		}
		slices.Sort(ids)
		slices.Sort(want)
		if total != len(want) || fmt.Sprint(ids) != fmt.Sprint(want) {
			t.Errorf("%s lists%s %v (total %d), want %v", who, query, ids, total, want)
		}
	}
	listIs("alice", "", "alice", "alice-key")
	listIs("alice-key", "?all=false", "alice", "alice-key")
	listIs("service-key", "", "service-key")
	listIs("boss", "", "boss")
	listIs("boss", "?all=true", "alice", "alice-key", "bob", "boss", "service-key")
	listIs("beta-admin", "?all=1", "carol")
	listIs("platform-admin", "?all=true")
	wantError(t, e.as(t, "alice", "GET", "/api/v1/chat/conversations?all=true", ""), 403, "forbidden", "")
	wantError(t, e.as(t, "service-key", "GET", "/api/v1/chat/conversations?all=true", ""), 403, "forbidden", "")
	wantError(t, e.as(t, "alice", "GET", "/api/v1/chat/conversations?all=maybe", ""), 400, "", "all")

	// Deleting: the owner, or a tenant admin; then it is gone for everyone.
	if r := e.as(t, "bob", "DELETE", fmt.Sprintf("/api/v1/chat/conversations/%d", convs["bob"]), ""); r.StatusCode() != 204 {
		t.Errorf("bob deletes his conversation: %d %s", r.StatusCode(), r.Body())
	}
	if r := e.as(t, "boss", "DELETE", fmt.Sprintf("/api/v1/chat/conversations/%d", convs["alice"]), ""); r.StatusCode() != 204 {
		t.Errorf("the tenant admin deletes alice's conversation: %d %s", r.StatusCode(), r.Body())
	}
	for _, owner := range []string{"bob", "alice"} {
		wantError(t, e.as(t, "boss", "GET", fmt.Sprintf("/api/v1/chat/conversations/%d", convs[owner]), ""), 404, "not_found", "")
	}
	listIs("alice", "", "alice-key")
	wantError(t, e.as(t, "alice", "GET", "/api/v1/chat/conversations/abc", ""), 404, "not_found", "")
}

// TestConversationListPages: limit and offset, newest first.
func TestConversationListPages(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	var ids []int64
	for i := range 5 {
		ids = append(ids, e.chatOK(t, "bob", fmt.Sprintf(`{"message":"turn %d"}`, i)).ConversationID)
	}
	slices.Reverse(ids) // newest first
	got, total := e.list(t, "bob", "?limit=2&offset=1")
	if total != 5 || fmt.Sprint(got) != fmt.Sprint(ids[1:3]) {
		t.Errorf("page = %v (total %d), want %v (5)", got, total, ids[1:3])
	}
	r := e.as(t, "bob", "GET", "/api/v1/chat/conversations?limit=2&offset=1", "")
	var l struct{ Limit, Offset int }
	if err := json.Unmarshal(r.Body(), &l); err != nil || l.Limit != 2 || l.Offset != 1 {
		t.Errorf("page echoes limit %d offset %d (%v), want 2 1", l.Limit, l.Offset, err)
	}
	wantError(t, e.as(t, "bob", "GET", "/api/v1/chat/conversations?limit=0", ""), 400, "", "limit")
	wantError(t, e.as(t, "bob", "GET", "/api/v1/chat/conversations?offset=-1", ""), 400, "", "offset")
}

// TestChatModels: the tenant's allowed chat models, with their prices.
func TestChatModels(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	r := e.as(t, "alice", "GET", "/api/v1/chat/models", "")
	if r.StatusCode() != 200 {
		t.Fatalf("%d %s", r.StatusCode(), r.Body())
	}
	checkSchema(t, "ChatModelList", r.Body())
	var l struct {
		Data []chatModel `json:"data"`
	}
	if err := json.Unmarshal(r.Body(), &l); err != nil {
		t.Fatal(err)
	}
	byID := map[string]chatModel{}
	var ids []string
	for _, m := range l.Data {
		byID[m.ID] = m
		ids = append(ids, m.ID)
	}
	if fmt.Sprint(ids) != "[chat-a chat-free tiny]" {
		t.Errorf("models = %v, want alpha's allowed chat models [chat-a chat-free tiny]", ids)
	}
	prices := billing.DefaultPrices()
	gpt4o, _ := prices.Lookup("gpt-4o")
	a := byID["chat-a"]
	if !a.Default || a.OwnedBy != "openai" || a.ContextWindow != 128000 || a.Pricing == nil ||
		*a.Pricing != (modelPricing{Input: gpt4o.Input, CachedInput: gpt4o.CachedInput, Output: gpt4o.Output}) {
		t.Errorf("chat-a = %+v, want the default, 128k, gpt-4o's price", a)
	}
	if f := byID["chat-free"]; f.Default || f.Pricing != nil || f.ContextWindow != chat.DefaultContextWindow {
		t.Errorf("chat-free = %+v, want no price (unknown upstream model), the default window", f)
	}
	if !strings.Contains(string(r.Body()), `"pricing":null`) {
		t.Errorf("an unknown price is not null: %s", r.Body())
	}
	r = e.as(t, "carol", "GET", "/api/v1/chat/models", "")
	if !strings.Contains(string(r.Body()), `"id":"chat-b"`) || strings.Contains(string(r.Body()), "chat-a") {
		t.Errorf("beta's models = %s, want chat-b alone", r.Body())
	}
	wantError(t, e.raw("GET", "/api/v1/chat/models", "", "", ""), 401, "invalid_api_key", "")
}

// TestChatMetered: a turn is metered like a chat completion, and the
// answer's tokens_used, cost_usd and request_id are the usage event's.
func TestChatMetered(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	plain := e.chatOK(t, "alice", `{"message":"meter me"}`)
	r := e.as(t, "service-key", "POST", "/api/v1/chat/stream", `{"message":"meter my stream"}`)
	events := sseEvents(t, string(r.Body()))
	var streamed chatResponse
	if err := json.Unmarshal([]byte(events[len(events)-2]), &streamed); err != nil {
		t.Fatal(err)
	}
	var rows []billing.Event
	waitFor(t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := e.meter.Flush(ctx); err != nil {
			return false
		}
		var err error
		rows, err = e.db.UsageEvents(ctx, billing.UsageQuery{AllTenants: true})
		return err == nil && len(rows) >= 2
	}, "two usage events")
	for _, tc := range []struct {
		out    chatResponse
		owner  chat.Owner
		stream bool
	}{{plain, e.cred["alice"].owner, false}, {streamed, e.cred["service-key"].owner, true}} {
		var ev *billing.Event
		for i := range rows {
			if rows[i].RequestID == tc.out.RequestID {
				ev = &rows[i]
			}
		}
		if ev == nil {
			t.Fatalf("no usage event with request id %q in %+v", tc.out.RequestID, rows)
		}
		if ev.Endpoint != routeChat || ev.TenantID != e.alpha.ID || ev.UserID != tc.owner.UserID || ev.KeyID != tc.owner.KeyID ||
			ev.Model != "chat-a" || ev.UpstreamModel != "gpt-4o" || ev.Stream != tc.stream || ev.Status != 200 ||
			ev.Usage.PromptTokens+ev.Usage.CompletionTokens != tc.out.TokensUsed || ev.Cost != tc.out.CostUSD || !ev.Priced {
			t.Errorf("usage event = %+v, want the answer's %+v", *ev, tc.out)
		}
	}
}

// TestChatRateLimited: the tenant's rate limits apply to chat turns.
func TestChatRateLimited(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	one := int64(1)
	if _, err := e.svc.UpdateTenant(t.Context(), e.alpha.ID, tenancy.TenantUpdate{RequestsPerMinute: &one}); err != nil {
		t.Fatal(err)
	}
	alice := e.login(t, "alpha", "alice", "alice-password-1") // a token carrying the new policy
	ok := e.raw("POST", "/api/v1/chat/", `{"message":"first"}`, alice, "alpha")
	if ok.StatusCode() != 200 || string(ok.Header.Peek("x-ratelimit-limit-requests")) != "1" {
		t.Fatalf("first turn: %d %s, x-ratelimit-limit-requests %q", ok.StatusCode(), ok.Body(), ok.Header.Peek("x-ratelimit-limit-requests"))
	}
	r := e.raw("POST", "/api/v1/chat/", `{"message":"second"}`, alice, "alpha")
	wantError(t, r, 429, "rate_limit_exceeded", "")
	if r.Header.Peek("Retry-After") == nil {
		t.Error("429 without Retry-After")
	}
	if _, total := e.list(t, "alice", ""); total != 1 {
		t.Errorf("%d conversations, want 1: the refused turn stores nothing", total)
	}
}

// TestChatWithoutStore: without a conversation store (or the platform),
// /api/v1/chat is not served.
func TestChatWithoutStore(t *testing.T) {
	t.Parallel()
	rec := &recorder{answer: answerJSON}
	s := newTestServer(t, rec, nil)
	if r := do(s.Handler(), "POST", "/api/v1/chat/", `{"message":"hi"}`); r.StatusCode() != 404 {
		t.Errorf("POST /api/v1/chat/ without a store: %d, want 404", r.StatusCode())
	}
}

func TestOwnerOf(t *testing.T) {
	tests := []struct {
		p    *tenancy.Principal
		want chat.Owner
		ok   bool
	}{
		{&tenancy.Principal{TenantID: 1, UserID: 2, KeyID: 3}, chat.Owner{TenantID: 1, UserID: 2}, true},
		{&tenancy.Principal{TenantID: 1, KeyID: 3}, chat.Owner{TenantID: 1, KeyID: 3}, true},
		{&tenancy.Principal{Tenant: "static"}, chat.Owner{}, false},
		{&tenancy.Principal{TenantID: 1}, chat.Owner{}, false},
		{nil, chat.Owner{}, false},
	}
	for _, tc := range tests {
		got, ok := chat.OwnerOf(tc.p)
		if got != tc.want || ok != tc.ok {
			t.Errorf("OwnerOf(%+v) = %+v, %v; want %+v, %v", tc.p, got, ok, tc.want, tc.ok)
		}
	}
}

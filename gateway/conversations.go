package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/chat"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/rag"
	"github.com/mtai-dev/mtai/tenancy"
)

// The platform chat (/api/v1/chat): a chat with stored conversations for
// chat UIs. Each turn becomes an OpenAI chat request body that goes through
// the same policy, limits, routing and metering as /v1/chat/completions
// (prepareChat, the router, finish); the caller's message and the answer
// are stored once the answer is complete. Not on the hot path: plain
// encoding/json.

// ConversationStore keeps the platform chat's conversations (Options.Conversations);
// *sqlite.DB and *postgres.DB implement it.
type ConversationStore = chat.Store

// Route labels of the platform chat (POST /api/v1/chat is routeChat: it is
// metered as a chat completion).
const (
	routeConversations = "conversations"
	routeChatModels    = "chat_models"
)

// historyMessages is the most stored messages a turn loads before
// windowing them into the model's context.
const historyMessages = 1000

// storeTimeout bounds one store call of the platform chat.
const storeTimeout = 10 * time.Second

// errRAGNotImplemented answers use_rag: true on a gateway built without RAG.
var errRAGNotImplemented = &requestError{status: fasthttp.StatusNotImplemented, code: "not_implemented", param: "use_rag",
	message: "Retrieval-augmented chat (use_rag: true) is not enabled on this gateway; send use_rag: false or leave it out."}

// chatAPI serves /api/v1/chat. Built by chatRoutes; safe for concurrent use.
type chatAPI struct {
	s      *Server
	store  chat.Store
	prices *billing.Prices // for /api/v1/chat/models, and costs when there is no meter
	tokens *chat.Counter
}

// chatRoutes registers the platform chat API (/api/v1/chat/...), served
// when both the platform (authentication) and a conversation store are set.
func (s *Server) chatRoutes(r *router.Router) {
	if s.platform == nil || s.convs == nil {
		return
	}
	a := &chatAPI{s: s, store: s.convs, prices: billing.DefaultPrices(), tokens: chat.NewCounter()}
	if s.limiter != nil {
		a.prices = s.limiter.prices
	}
	// the documented path has a trailing slash; Handler serves the other form here too
	r.POST("/api/v1/chat/", a.handleChat(false))
	r.POST("/api/v1/chat/stream", a.handleChat(true))
	r.GET("/api/v1/chat/conversations", s.v1api(routeConversations, a.listConversations, true))
	r.GET("/api/v1/chat/conversations/{id}", s.v1api(routeConversations, a.getConversation, true))
	r.DELETE("/api/v1/chat/conversations/{id}", s.v1api(routeConversations, a.deleteConversation, true))
	r.GET("/api/v1/chat/models", s.v1api(routeChatModels, a.listModels, true))
}

// handleChat wraps the chat handler like chatCompletions: a stream's relay
// finishes the request when the stream ends.
func (a *chatAPI) handleChat(streamPath bool) fasthttp.RequestHandler {
	s := a.s
	return func(rc *fasthttp.RequestCtx) {
		st := s.begin(rc, routeChat)
		if err := a.chat(rc, st, streamPath); err != nil {
			st.fail(writeError(rc, err))
			s.finish(st)
			return
		}
		if st.stream {
			return
		}
		st.status = rc.Response.StatusCode()
		s.finish(st)
	}
}

// chatInput is the documented request of POST /api/v1/chat/, plus stream.
type chatInput struct {
	Message             *string         `json:"message"`
	Model               *string         `json:"model"`
	Temperature         *float64        `json:"temperature"`
	MaxTokens           *int64          `json:"max_tokens"`
	UseRAG              *bool           `json:"use_rag"`
	ConversationID      *int64          `json:"conversation_id"`
	ConversationHistory json.RawMessage `json:"conversation_history"`
	Stream              *bool           `json:"stream"`
}

// fieldRules say what each field must be, for errors that name it.
var fieldRules = map[string]string{
	"message":              "'message' must be a non-empty string.",
	"model":                "'model' must be a string.",
	"temperature":          "'temperature' must be a number from 0.0 to 2.0.",
	"max_tokens":           "'max_tokens' must be a positive integer.",
	"use_rag":              "'use_rag' must be a boolean.",
	"conversation_id":      "'conversation_id' must be the integer id of one of your conversations.",
	"conversation_history": "'conversation_history' must be an array of {\"role\": \"system\"|\"user\"|\"assistant\", \"content\": string} objects.",
	"stream":               "'stream' must be a boolean.",
}

func fieldError(param string) error { return invalid(param, fieldRules[param]) }

// decode reads and validates the request body; history is the client's
// conversation_history.
func (in *chatInput) decode(rc *fasthttp.RequestCtx) (history []chat.Message, err error) {
	if err := decodeJSON(rc, in); err != nil {
		var re *requestError
		if errors.As(err, &re) && fieldRules[re.param] != "" {
			return nil, fieldError(re.param) // a clearer message than the decoder's
		}
		return nil, err
	}
	switch {
	case in.Message == nil:
		return nil, invalid("message", "'message' is required.")
	case strings.TrimSpace(*in.Message) == "":
		return nil, fieldError("message")
	case in.Temperature != nil && !(*in.Temperature >= 0 && *in.Temperature <= 2):
		return nil, fieldError("temperature")
	case in.MaxTokens != nil && *in.MaxTokens < 1:
		return nil, fieldError("max_tokens")
	case in.ConversationID != nil && *in.ConversationID < 1:
		return nil, fieldError("conversation_id")
	}
	raw := bytes.TrimSpace(in.ConversationHistory)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, fieldError("conversation_history")
	}
	history = make([]chat.Message, 0, len(items))
	for i, item := range items {
		var m struct {
			Role    *string `json:"role"`
			Content *string `json:"content"`
		}
		dec := json.NewDecoder(bytes.NewReader(item))
		dec.DisallowUnknownFields()
		param := fmt.Sprintf("conversation_history[%d]", i)
		if err := dec.Decode(&m); err != nil || m.Role == nil || m.Content == nil {
			return nil, invalid(param, "Each item of 'conversation_history' must be an object with a string 'role' and a string 'content' (and nothing else).")
		}
		if r := chat.Role(*m.Role); !r.Valid() {
			return nil, invalid(param+".role", "'"+param+".role' must be \"system\", \"user\" or \"assistant\".")
		}
		history = append(history, chat.Message{Role: chat.Role(*m.Role), Content: *m.Content})
	}
	return history, nil
}

// chatResponse is the documented answer of POST /api/v1/chat/. Object is
// set only on the final event of a stream.
type chatResponse struct {
	Object         string           `json:"object,omitempty"`
	Response       string           `json:"response"`
	ConversationID int64            `json:"conversation_id"`
	ModelUsed      string           `json:"model_used"`
	TokensUsed     int64            `json:"tokens_used"`
	LatencyMS      int64            `json:"latency_ms"`
	CostUSD        tenancy.MicroUSD `json:"cost_usd"`
	RequestID      string           `json:"request_id"`
	// Sources are the retrieved chunks injected into this turn (use_rag).
	Sources []rag.Source `json:"sources,omitempty"`
}

// chatTurn is one turn being served: what to store once the answer is in.
type chatTurn struct {
	a     *chatAPI
	owner chat.Owner
	conv  *chat.Conversation // nil: a new conversation
	// stored are the client's history (new conversations only) and the
	// caller's message, to store before the answer.
	stored []chat.Message
	// sent are the messages sent to the model (without the tenant's system
	// prompt, which prepareChat adds), for counting tokens when the
	// upstream reports no usage.
	sent []chat.Message
	// tokenizer is the model whose tokenizer counts them.
	tokenizer string
}

// chat serves POST /api/v1/chat/ and /api/v1/chat/stream.
func (a *chatAPI) chat(rc *fasthttp.RequestCtx, st *reqState, streamPath bool) error {
	s := a.s
	if s.draining.Load() {
		return errShuttingDown
	}
	p, err := s.authenticatePlatform(rc)
	if err != nil {
		return err
	}
	st.principal = p
	var in chatInput
	clientHistory, err := in.decode(rc)
	if err != nil {
		return err
	}
	if in.UseRAG != nil {
		if *in.UseRAG && s.rag == nil {
			return errRAGNotImplemented
		}
		st.ragMode = -1
		if *in.UseRAG {
			st.ragMode = 1
		}
	}
	owner, err := ownerOf(p)
	if err != nil {
		return err
	}
	// History: the stored conversation's, else the client's.
	turn := &chatTurn{a: a, owner: owner}
	now := s.now().UTC()
	history := clientHistory
	if in.ConversationID != nil {
		ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
		defer cancel()
		scope := chat.Scope{Owner: owner}
		if turn.conv, err = a.store.FindConversation(ctx, scope, *in.ConversationID); err != nil {
			return err
		}
		if history, err = a.store.FindMessages(ctx, scope, turn.conv.ID, historyMessages); err != nil {
			return err
		}
	} else {
		for i := range clientHistory {
			clientHistory[i].CreatedAt = now
		}
		turn.stored = clientHistory
	}
	model := ""
	if in.Model != nil {
		model = *in.Model
	}
	if model == "" {
		if p.Policy == nil || p.Policy.DefaultModel == "" {
			return invalid("model", "'model' is required: the tenant has no default model.")
		}
		model = p.Policy.DefaultModel
	}
	user := chat.Message{Role: chat.RoleUser, Content: *in.Message, CreatedAt: now}
	turn.stored = append(turn.stored, user)

	// Windowing: the newest history that fits the model's context with
	// the tenant's system prompt, the message and room for the answer.
	window, tokenizer := a.contextOf(model)
	turn.tokenizer = tokenizer
	fixed := []chat.Message{user}
	if p.Policy != nil && p.Policy.SystemPrompt != "" {
		fixed = append(fixed, chat.Message{Role: chat.RoleSystem, Content: p.Policy.SystemPrompt})
	}
	var maxTokens int64
	if in.MaxTokens != nil {
		maxTokens = *in.MaxTokens
	}
	history = a.tokens.Window(tokenizer, window, chat.AnswerRoom(window, maxTokens), fixed, history)
	turn.sent = append(history[:len(history):len(history)], user)

	stream := streamPath || in.Stream != nil && *in.Stream
	body, err := upstreamBody(model, turn.sent, in.Temperature, in.MaxTokens, stream)
	if err != nil {
		return err
	}
	rt, err := s.prepareChat(rc, st, body)
	if err != nil {
		return err
	}
	if stream {
		up, served, err := s.router.Stream(s.ctx, rt, &st.call)
		st.served(served)
		if err != nil {
			return err
		}
		s.relayStream(rc, st, &turnStream{turn: turn, st: st, up: up})
		return nil
	}
	resp, served, err := s.router.Complete(s.ctx, rt, &st.call)
	st.served(served)
	if err != nil {
		return err
	}
	defer resp.Release()
	st.usage, st.hasUsage = resp.Usage, resp.Usage.TotalTokens > 0
	s.chargeResponse(rc, st, resp.Body)
	answer, err := answerOf(resp.Body)
	if err != nil {
		return err
	}
	out, err := turn.finish(st, answer)
	if err != nil {
		return err
	}
	if st.deployment != "" {
		rc.Response.Header.Set("X-Mtai-Deployment", st.deployment)
	}
	return writeJSON(rc, fasthttp.StatusOK, out)
}

// ownerOf returns the owner of p's conversations.
func ownerOf(p *tenancy.Principal) (chat.Owner, error) {
	o, ok := chat.OwnerOf(p)
	if !ok {
		return o, fmt.Errorf("%w: this credential cannot own conversations (a key from the configuration file, not from the store)", tenancy.ErrForbidden)
	}
	return o, nil
}

// contextOf returns the context window of model (the smallest of its
// deployments', since any of them may serve the turn) and the model name
// whose tokenizer counts it (the first deployment's upstream model).
func (a *chatAPI) contextOf(model string) (window int, tokenizer string) {
	rt, ok := a.s.router.Route(model)
	if !ok || len(rt.Deployments) == 0 {
		return chat.ContextWindow(model), model
	}
	for i, d := range rt.Deployments {
		m := d.Model
		if m == "" {
			m = model
		}
		if w := chat.ContextWindow(m); i == 0 || w < window {
			window = w
		}
		if i == 0 {
			tokenizer = m
		}
	}
	return window, tokenizer
}

// wireMessage is a chat message as OpenAI's API takes it.
type wireMessage struct {
	Role    chat.Role `json:"role"`
	Content string    `json:"content"`
}

// upstreamBody builds the OpenAI chat request of a turn.
func upstreamBody(model string, msgs []chat.Message, temperature *float64, maxTokens *int64, stream bool) ([]byte, error) {
	wire := make([]wireMessage, len(msgs))
	for i, m := range msgs {
		wire[i] = wireMessage{Role: m.Role, Content: m.Content}
	}
	return json.Marshal(struct {
		Model       string        `json:"model"`
		Messages    []wireMessage `json:"messages"`
		Temperature *float64      `json:"temperature,omitempty"`
		MaxTokens   *int64        `json:"max_tokens,omitempty"`
		Stream      bool          `json:"stream,omitempty"`
	}{model, wire, temperature, maxTokens, stream})
}

// answerOf returns the text of a chat completion's first choice (its
// refusal when it has no content).
func answerOf(body []byte) (string, error) {
	var r struct {
		Choices []struct {
			Message struct {
				Content *string `json:"content"`
				Refusal *string `json:"refusal"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(body, &r); err != nil || len(r.Choices) == 0 {
		return "", &providers.UpstreamError{Status: fasthttp.StatusBadGateway, Message: "The model's provider answered without a choice."}
	}
	m := r.Choices[0].Message
	switch {
	case m.Content != nil && *m.Content != "":
		return *m.Content, nil
	case m.Refusal != nil:
		return *m.Refusal, nil
	}
	return "", nil
}

// finish meters and stores a completed turn and returns the answer to send.
func (t *chatTurn) finish(st *reqState, answer string) (*chatResponse, error) {
	a, s := t.a, t.a.s
	u := st.usage
	if !st.hasUsage {
		// the upstream reported none: count what was sent and generated
		prompt := int64(3)
		for _, m := range t.sent {
			prompt += int64(a.tokens.MessageTokens(t.tokenizer, m))
		}
		if p := st.principal.Policy; p != nil && p.SystemPrompt != "" {
			prompt += int64(a.tokens.MessageTokens(t.tokenizer, chat.Message{Content: p.SystemPrompt}))
		}
		completion := int64(a.tokens.Tokens(t.tokenizer, answer))
		u = providers.Usage{PromptTokens: prompt, CompletionTokens: completion, TotalTokens: prompt + completion}
	}
	tokens := u.TotalTokens
	if tokens == 0 {
		tokens = u.PromptTokens + u.CompletionTokens
	}
	end := s.now().UTC()
	out := &chatResponse{
		Response:   answer,
		ModelUsed:  st.model,
		TokensUsed: tokens,
		LatencyMS:  end.Sub(st.start).Milliseconds(),
		CostUSD:    a.cost(st, u),
		RequestID:  st.requestID,
		Sources:    st.sources,
	}
	msgs := append(t.stored, chat.Message{Role: chat.RoleAssistant, Content: answer, Model: st.model,
		TokensUsed: out.TokensUsed, Cost: out.CostUSD, LatencyMS: out.LatencyMS, RequestID: out.RequestID, CreatedAt: end})
	ctx, cancel := context.WithTimeout(s.ctx, storeTimeout)
	defer cancel()
	var err error
	if t.conv != nil {
		err = a.store.AddMessages(ctx, chat.Scope{Owner: t.owner}, t.conv.ID, msgs)
		out.ConversationID = t.conv.ID
	} else {
		title := ""
		for _, m := range msgs {
			if m.Role == chat.RoleUser {
				title = chat.Title(m.Content)
				break
			}
		}
		c := &chat.Conversation{Owner: t.owner, Title: title, Model: st.model, CreatedAt: msgs[0].CreatedAt}
		err = a.store.CreateConversation(ctx, c, msgs)
		out.ConversationID = c.ID
	}
	if err != nil {
		s.log.Error("storing a chat turn failed", zap.String("request_id", st.requestID), zap.Error(err))
		return nil, fmt.Errorf("store the chat turn: %w", err)
	}
	return out, nil
}

// cost prices usage u of st as the meter does (the upstream model's price,
// else the asked model's), from the price table when there is no meter.
func (a *chatAPI) cost(st *reqState, u providers.Usage) tenancy.MicroUSD {
	s := a.s
	up := s.upstreamModel(st)
	if s.usage != nil {
		c, _ := s.usage.Cost(up, st.model, u)
		return c
	}
	if up != "" {
		if c, ok := a.prices.Cost(up, u); ok {
			return c
		}
	}
	c, _ := a.prices.Cost(st.model, u)
	return c
}

// turnStream is the upstream stream of a streamed turn as the relay sees
// it: the upstream's chunks, relayed as they come while their text is
// collected, then, once the upstream finished, one more event, the
// documented answer with "object": "chat.response" (the turn is stored
// first), then the end. A turn whose stream failed is not stored.
type turnStream struct {
	turn   *chatTurn
	st     *reqState // valid until the relay finishes it, after the last Next
	up     providers.Stream
	answer strings.Builder
	failed bool
	done   bool
}

var _ providers.Stream = (*turnStream)(nil)

// Next implements providers.Stream.
func (t *turnStream) Next() ([]byte, error) {
	if t.done {
		return nil, io.EOF
	}
	ev, err := t.up.Next()
	switch {
	case err == io.EOF && !t.failed:
		t.done = true
		out, err := t.turn.finish(t.st, t.answer.String())
		if err != nil {
			return nil, err
		}
		out.Object = "chat.response"
		return json.Marshal(out)
	case err != nil:
		return nil, err
	case bytes.HasPrefix(ev, errorPrefix):
		t.failed = true
	default:
		var c struct {
			Choices []struct {
				Delta struct {
					Content string `json:"content"`
					Refusal string `json:"refusal"`
				} `json:"delta"`
			} `json:"choices"`
		}
		if json.Unmarshal(ev, &c) == nil && len(c.Choices) > 0 {
			t.answer.WriteString(c.Choices[0].Delta.Content)
			t.answer.WriteString(c.Choices[0].Delta.Refusal)
		}
	}
	return ev, nil
}

// Close implements providers.Stream.
func (t *turnStream) Close(err error) { t.up.Close(err) }

// scopeOf is what p may see among conversations: its own, or, for tenant
// admins when all is set, the tenant's.
func scopeOf(p *tenancy.Principal, all bool) (chat.Scope, error) {
	o, err := ownerOf(p)
	if err != nil {
		return chat.Scope{}, err
	}
	return chat.Scope{Owner: o, All: all && p.Role.AtLeast(tenancy.RoleTenantAdmin)}, nil
}

// listConversations serves GET /api/v1/chat/conversations: the caller's
// conversations, most recently active first; tenant admins see the
// tenant's with ?all=true.
func (a *chatAPI) listConversations(rc *fasthttp.RequestCtx, st *reqState) error {
	limit, offset, err := page(rc)
	if err != nil {
		return err
	}
	all := false
	switch v := string(rc.QueryArgs().Peek("all")); v {
	case "", "false", "0":
	case "true", "1":
		if err := requireRole(st.principal, tenancy.RoleTenantAdmin); err != nil {
			return fmt.Errorf("%w: all=true lists the tenant's conversations, for tenant admins", tenancy.ErrForbidden)
		}
		all = true
	default:
		return invalid("all", "'all' must be true or false.")
	}
	scope, err := scopeOf(st.principal, all)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(a.s.ctx, storeTimeout)
	defer cancel()
	cs, total, err := a.store.FindConversations(ctx, scope, limit, offset)
	if err != nil {
		return err
	}
	return writeList(rc, cs, total, limit, offset)
}

// getConversation serves GET /api/v1/chat/conversations/{id}, with its
// messages: the caller's, or any of the tenant's for tenant admins.
func (a *chatAPI) getConversation(rc *fasthttp.RequestCtx, st *reqState) error {
	id, err := idParam(rc)
	if err != nil {
		return err
	}
	scope, err := scopeOf(st.principal, true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(a.s.ctx, storeTimeout)
	defer cancel()
	c, err := a.store.FindConversation(ctx, scope, id)
	if err != nil {
		return err
	}
	msgs, err := a.store.FindMessages(ctx, scope, id, 0)
	if err != nil {
		return err
	}
	return writeJSON(rc, fasthttp.StatusOK, struct {
		*chat.Conversation
		Messages []chat.Message `json:"messages"`
	}{c, msgs})
}

// deleteConversation serves DELETE /api/v1/chat/conversations/{id}: the
// caller's, or any of the tenant's for tenant admins.
func (a *chatAPI) deleteConversation(rc *fasthttp.RequestCtx, st *reqState) error {
	id, err := idParam(rc)
	if err != nil {
		return err
	}
	scope, err := scopeOf(st.principal, true)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(a.s.ctx, storeTimeout)
	defer cancel()
	if err := a.store.DeleteConversation(ctx, scope, id); err != nil {
		return err
	}
	rc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// modelPricing is a model's price in US dollars per million tokens.
type modelPricing struct {
	Input       tenancy.MicroUSD `json:"input_usd_per_1m_tokens"`
	CachedInput tenancy.MicroUSD `json:"cached_input_usd_per_1m_tokens"`
	Output      tenancy.MicroUSD `json:"output_usd_per_1m_tokens"`
}

// chatModel is one entry of GET /api/v1/chat/models.
type chatModel struct {
	ID            string        `json:"id"`
	Object        string        `json:"object"`
	OwnedBy       string        `json:"owned_by"`
	Default       bool          `json:"default"`
	ContextWindow int           `json:"context_window"`
	Pricing       *modelPricing `json:"pricing"` // null: the price table does not know it
}

// listModels serves GET /api/v1/chat/models: the chat models the tenant
// may use, with their context windows and prices.
func (a *chatAPI) listModels(rc *fasthttp.RequestCtx, st *reqState) error {
	pol := st.principal.Policy
	data := []chatModel{}
	for _, rt := range a.s.router.Routes() {
		if rt.Embeddings || !pol.Allows(rt.Name) {
			continue
		}
		window, _ := a.contextOf(rt.Name)
		m := chatModel{ID: rt.Name, Object: "model", OwnedBy: rt.OwnedBy, ContextWindow: window,
			Default: pol != nil && pol.DefaultModel == rt.Name}
		if pr, ok := a.priceOf(rt); ok {
			m.Pricing = &modelPricing{Input: pr.Input, CachedInput: pr.CachedInput, Output: pr.Output}
		}
		data = append(data, m)
	}
	return writeJSON(rc, fasthttp.StatusOK, struct {
		Object string      `json:"object"`
		Data   []chatModel `json:"data"`
	}{"list", data})
}

// priceOf returns a route's price: its name's, else its first
// deployment's upstream model's.
func (a *chatAPI) priceOf(rt *providers.Route) (billing.Price, bool) {
	if pr, ok := a.prices.Lookup(rt.Name); ok {
		return pr, true
	}
	if len(rt.Deployments) > 0 && rt.Deployments[0].Model != "" {
		return a.prices.Lookup(rt.Deployments[0].Model)
	}
	return billing.Price{}, false
}

package gateway

import (
	"fmt"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
)

// chatCompletions serves POST /v1/chat/completions: the hot path.
func (s *Server) chatCompletions(rc *fasthttp.RequestCtx) {
	st := s.begin(rc, routeChat)
	if err := s.chat(rc, st); err != nil {
		st.fail(writeError(rc, err))
		s.finish(st)
		return
	}
	if st.stream {
		return // the relay finishes st when the stream ends
	}
	st.status = rc.Response.StatusCode()
	s.finish(st)
}

func (s *Server) chat(rc *fasthttp.RequestCtx, st *reqState) error {
	if err := s.admit(rc, st); err != nil {
		return err
	}
	rt, err := s.prepareChat(rc, st, rc.PostBody())
	if err != nil {
		return err
	}
	if st.chat.stream {
		return s.startStream(rc, st, rt)
	}
	resp, served, err := s.router.Complete(s.ctx, rt, &st.call)
	st.served(served)
	if err != nil {
		return err
	}
	defer resp.Release()
	st.usage, st.hasUsage = resp.Usage, resp.Usage.TotalTokens > 0
	s.chargeResponse(rc, st, resp.Body)
	writeAnswer(rc, st, resp.Body)
	return nil
}

// writeAnswer writes the successful JSON answer body of st's request
// (fasthttp copies body), naming the deployment that served it.
func writeAnswer(rc *fasthttp.RequestCtx, st *reqState, body []byte) {
	rc.SetStatusCode(fasthttp.StatusOK)
	rc.SetContentType("application/json")
	if st.deployment != "" {
		rc.Response.Header.Set("X-Mtai-Deployment", st.deployment)
	}
	rc.SetBody(body)
	st.bytesOut = len(body)
}

// admit refuses new requests while the server drains, and authenticates
// the request (st.principal).
func (s *Server) admit(rc *fasthttp.RequestCtx, st *reqState) error {
	if s.draining.Load() {
		return errShuttingDown
	}
	p, err := s.authenticate(rc)
	if err != nil {
		return err
	}
	st.principal = p
	return nil
}

// prepareChat validates an OpenAI chat request body and applies the
// tenant's policy to it (default model, allowed models, system prompt), the
// rate limits and budget, and the usage request of streams; it leaves the
// upstream call in st.call and returns the route. st.principal is set.
// /v1/chat/completions and the platform chat (/api/v1/chat) share it.
func (s *Server) prepareChat(rc *fasthttp.RequestCtx, st *reqState, body []byte) (*providers.Route, error) {
	rt, err := s.routeChat(st, body)
	if err != nil {
		return nil, err
	}
	if err := s.reserve(rc, st); err != nil {
		return nil, err
	}
	s.spliceSystemPrompt(st)
	s.ragInject(rc, st, body) // retrieved context, after the tenant's prompt

	// Streams: always ask the upstream for usage (it is what we bill).
	req, sp := &st.chat, &st.splice
	st.stream = req.stream
	if req.stream && !req.includeUsage {
		switch {
		case req.iuEnd > 0: // "include_usage": false or null
			sp.add(edit{at: req.iuStart, end: req.iuEnd, text: sp.text("true")})
		case req.soEnd > 0 && body[req.soStart] == '{':
			txt := `"include_usage":true,`
			if jsonscanEmptyObject(body[req.soStart:req.soEnd]) {
				txt = `"include_usage":true`
			}
			sp.add(edit{at: req.soStart + 1, end: req.soStart + 1, text: sp.text(txt)})
		case req.soEnd > 0: // null
			sp.add(edit{at: req.soStart, end: req.soEnd, text: sp.text(`{"include_usage":true}`)})
		default:
			sp.add(edit{at: req.objEnd, end: req.objEnd, text: sp.text(`,"stream_options":{"include_usage":true}`)})
		}
	}
	s.spliceCall(st, body)
	return rt, nil
}

// routeChat validates an OpenAI chat request body and applies the
// tenant's model policy: the model (or the tenant's default, spliced in),
// the allowed models, and that it is a chat model. It returns the route;
// st.model is set.
func (s *Server) routeChat(st *reqState, body []byte) (*providers.Route, error) {
	p := st.principal
	req := &st.chat
	if err := parseChatRequest(body, req); err != nil {
		return nil, err
	}
	sp := &st.splice

	// Policy: the model (or the tenant's default), the allowed list, the system prompt.
	model := string(req.model)
	if req.modelEnd == 0 || len(req.model) == 0 {
		if p.Policy == nil || p.Policy.DefaultModel == "" {
			return nil, invalid("model", "'model' is required.")
		}
		model = p.Policy.DefaultModel
		if req.modelEnd == 0 {
			text, off, n := sp.jsonString(`"model":`, model, ",")
			sp.add(edit{at: objStart(body), end: objStart(body), text: text, model: true, mOff: off, mLen: n})
		} else {
			text, off, n := sp.jsonString("", model, "")
			// replace "" (the quotes included) by the quoted default
			sp.add(edit{at: req.modelStart - 1, end: req.modelEnd + 1, text: text, model: true, mOff: off, mLen: n})
		}
	}
	st.model = model
	rt, ok := s.router.Route(model)
	if !ok {
		return nil, fmt.Errorf("%w: the model '%s' does not exist or you do not have access to it", providers.ErrModelNotFound, model)
	}
	if !p.Policy.Allows(model) {
		return nil, fmt.Errorf("%w: '%s' is not in the tenant's allowed models", errModelNotAllowed, model)
	}
	if rt.Embeddings {
		return nil, invalid("model", "'"+model+"' is an embeddings model; use /v1/embeddings.")
	}
	return rt, nil
}

// spliceSystemPrompt puts the tenant's system prompt, if any, first among
// the messages of the request that routeChat read.
func (s *Server) spliceSystemPrompt(st *reqState) {
	if p := st.principal.Policy; p != nil && p.SystemPrompt != "" {
		sp := &st.splice
		text, _, _ := sp.jsonString(`{"role":"system","content":`, p.SystemPrompt, "},")
		sp.add(edit{at: st.chat.msgStart + 1, end: st.chat.msgStart + 1, text: text})
	}
}

// spliceCall applies the edits collected in st.splice to body and leaves
// the result in st.call, the upstream call.
func (s *Server) spliceCall(st *reqState, body []byte) {
	req := &st.chat
	out, ms, me := st.splice.apply(body, req.modelStart, req.modelEnd)
	call := &st.call
	call.Body, call.ModelStart, call.ModelEnd, call.RequestID = out, ms, me, st.requestID
}

// objStart returns the index just after the body's opening '{'.
func objStart(body []byte) int {
	for i, c := range body {
		if c == '{' {
			return i + 1
		}
	}
	return 0
}

func jsonscanEmptyObject(v []byte) bool {
	for _, c := range v[1:] {
		switch c {
		case ' ', '\t', '\r', '\n':
		case '}':
			return true
		default:
			return false
		}
	}
	return false
}

package gateway

import (
	"bytes"
	"errors"
	"io"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/anthropic"
)

// routeMessages labels POST /v1/messages in metrics and logs.
const routeMessages = "messages"

// anthropicAPI wraps a handler of Anthropic's API (/v1/messages and
// /v1/messages/count_tokens): the request id also as request-id (where
// Anthropic's clients look for it), errors in Anthropic's shape; the relay
// of a stream finishes st when the stream ends.
func (s *Server) anthropicAPI(route string, h func(rc *fasthttp.RequestCtx, st *reqState) error) fasthttp.RequestHandler {
	return func(rc *fasthttp.RequestCtx) {
		st := s.begin(rc, route)
		rc.Response.Header.Set("request-id", st.requestID)
		if err := h(rc, st); err != nil {
			st.fail(writeAnthropicError(rc, err, st.requestID))
			s.finish(st)
			return
		}
		if st.stream {
			return // the relay finishes st when the stream ends
		}
		st.status = rc.Response.StatusCode()
		s.finish(st)
	}
}

// messages serves POST /v1/messages: Anthropic's Messages API, for any
// routed model (an OpenAI, Anthropic, Bedrock or mock deployment alike),
// so that Anthropic clients and SDKs can use the gateway.
//
// The request is translated into an OpenAI chat request
// (anthropic.ToOpenAIRequest) and then goes the way of /v1/chat/completions:
// the same authentication (x-api-key or bearer), tenant policy (default
// model, allowed models, system prompt), routing with retries and
// fallbacks, metering and access log (reqState, finish). The answer is
// translated back: a Messages response (anthropic.ResponseFromOpenAI), or a
// stream of Anthropic SSE events with their "event:" lines, translated one
// upstream chunk at a time (anthropic.EventTranslator). Errors have
// Anthropic's shape {"type":"error","error":{"type","message"}}, with the
// status and headers toAPIError decides.
func (s *Server) messages(rc *fasthttp.RequestCtx, st *reqState) error {
	if err := s.admit(rc, st); err != nil {
		return err
	}
	body, err := anthropic.ToOpenAIRequest(rc.PostBody())
	if err != nil {
		return anthropicRequestError(err)
	}
	// From here on, as for chat completions: the tenant's policy (default
	// model, allowed models, system prompt), limits and budget.
	rt, err := s.prepareChat(rc, st, body)
	if err != nil {
		return err
	}
	if st.stream { // set by prepareChat
		return s.startMessagesStream(rc, st, rt)
	}
	resp, served, err := s.router.Complete(s.ctx, rt, &st.call)
	st.served(served)
	if err != nil {
		return err
	}
	defer resp.Release()
	st.usage, st.hasUsage = resp.Usage, resp.Usage.TotalTokens > 0
	msg, err := anthropic.ResponseFromOpenAI(resp.Body)
	if err != nil {
		return &providers.UpstreamError{Provider: st.provider, Deployment: st.deployment, Status: 502,
			Message: "the model's answer could not be translated: " + err.Error()}
	}
	writeAnswer(rc, st, msg)
	return nil
}

// anthropicRequestError makes a request that cannot be translated
// (*anthropic.RequestError) the client's 400 naming the field.
func anthropicRequestError(err error) error {
	var re *anthropic.RequestError
	if errors.As(err, &re) {
		return invalid(re.Param, re.Message)
	}
	return err
}

// writeAnthropicError answers err in Anthropic's error shape, with the
// status, Retry-After and X-Should-Retry that toAPIError decides, and
// returns what was answered.
func writeAnthropicError(rc *fasthttp.RequestCtx, err error, requestID string) apiError {
	e := toAPIError(err)
	if e.status == fasthttp.StatusUnauthorized && e.code == "invalid_api_key" {
		e.message = "Incorrect or missing API key. Send it as 'x-api-key: <key>' or 'Authorization: Bearer <key>'."
	}
	rc.Response.ResetBody()
	rc.SetStatusCode(e.status)
	rc.SetContentType("application/json")
	if e.retryAfter > 0 {
		rc.Response.Header.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if e.noRetry {
		rc.Response.Header.Set("X-Should-Retry", "false")
	}
	rc.SetBody(anthropic.AppendError(make([]byte, 0, 256), anthropic.ErrorType(e.status), e.message, requestID))
	return e
}

// startMessagesStream opens the upstream stream (retrying and falling back
// while nothing has been sent) and hands the response body to a relay that
// writes Anthropic events.
func (s *Server) startMessagesStream(rc *fasthttp.RequestCtx, st *reqState, rt *providers.Route) error {
	up, served, err := s.router.Stream(s.ctx, rt, &st.call)
	st.served(served)
	if err != nil {
		return err
	}
	r := s.newRelay(rc, st, up, true)
	m := &messagesRelay{relay: r, tr: anthropic.NewEventTranslator(st.model)}
	r.frames = m.nextFrame
	s.serveRelay(rc, r)
	return nil
}

// messagesRelay is the body of a streamed /v1/messages response. It is a
// relay (same client watcher, shutdown cut, Close and finish) whose frames
// are Anthropic events translated from the upstream's OpenAI chunks, each
// upstream chunk written and flushed as soon as it arrived.
type messagesRelay struct {
	*relay
	tr  *anthropic.EventTranslator
	out []byte
}

// nextFrame reads the next upstream chunk and returns the Anthropic events
// it becomes (possibly none), with last=true after the final ones.
func (m *messagesRelay) nextFrame() (frame []byte, last bool, err error) {
	st := m.st
	ev, err := m.up.Next()
	if err == io.EOF {
		m.out = m.tr.End(m.out[:0]) // nothing when message_stop or an error event was sent
		st.bytesOut += len(m.out)
		return m.out, true, nil
	}
	if err != nil {
		if m.clientGone.Load() {
			st.status = 499
			st.errCode = "client_closed_request"
			return nil, true, errClientClosed
		}
		if cut := m.cutErr.Load(); cut != nil {
			err = *cut
		}
		if m.tr.Ended() {
			return nil, true, nil
		}
		e := toAPIError(err)
		st.noteError(e)
		m.out = anthropic.AppendErrorEvent(m.out[:0], anthropic.ErrorType(e.status), e.message)
		st.bytesOut += len(m.out)
		return m.out, true, nil
	}
	st.events++
	if st.events == 1 {
		st.ttft = m.s.now().Sub(st.start)
	}
	m.s.collectStream(st, ev) // for metering, should the stream end without usage
	switch {
	case bytes.HasPrefix(ev, errorPrefix):
		// never the upstream's words as they are: the translator gets the
		// tenant's version of the error
		ev = appendErrorJSON(make([]byte, 0, 256), upstreamStreamError(st, ev))
	case bytes.Contains(ev, []byte(`"usage":{`)):
		if u, ok := providers.ParseUsage(ev); ok {
			st.usage, st.hasUsage = u, true
		}
	}
	out, terr := m.tr.Chunk(m.out[:0], ev)
	if terr != nil {
		st.errType, st.errCode = "server_error", "upstream_error"
		out = anthropic.AppendErrorEvent(m.out[:0], anthropic.ErrAPI, "the model's provider sent a malformed stream chunk")
		m.out = out
		st.bytesOut += len(out)
		return out, true, nil
	}
	m.out = out
	st.bytesOut += len(out)
	return out, false, nil
}

var _ fasthttp.BodyWriterTo = (*messagesRelay)(nil)

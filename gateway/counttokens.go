package gateway

import (
	"errors"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/anthropic"
)

// routeCountTokens labels POST /v1/messages/count_tokens in metrics and logs.
const routeCountTokens = "count_tokens"

// countTokens serves POST /v1/messages/count_tokens: Anthropic's token
// counting ({"input_tokens": N} for a Messages request without
// max_tokens), for every routed chat model.
//
// The request goes the way of /v1/messages up to the upstream call: the
// same authentication, the tenant's model policy (default model, allowed
// models: 403 otherwise) and the tenant's system prompt, which is counted
// (retrieved RAG context is not: it depends on a search made when the
// message is sent). Then the deployment that would serve the message
// counts: an Anthropic one upstream (/v1/messages/count_tokens, with the
// router's retries and fallbacks), any other locally with tiktoken
// (billing.Tokenizer: OpenAI's accounting of the chat request that
// deployment would get). A count takes one request from the tenant's and
// the key's request buckets (requests per minute and hour), no tokens and
// nothing from the budget, and it is not metered: nothing is generated.
// Errors have Anthropic's shape, as on /v1/messages (anthropicAPI).
func (s *Server) countTokens(rc *fasthttp.RequestCtx, st *reqState) error {
	if err := s.admit(rc, st); err != nil {
		return err
	}
	body, err := anthropic.CountTokensToOpenAI(rc.PostBody())
	if err != nil {
		return anthropicRequestError(err)
	}
	rt, err := s.routeChat(st, body)
	if err != nil {
		return err
	}
	if err := s.reserve(rc, st); err != nil { // requests only (see reserve)
		return err
	}
	s.spliceSystemPrompt(st)
	s.spliceCall(st, body)
	n, served, err := s.router.CountTokens(s.ctx, rt, &st.call)
	st.served(served)
	if errors.Is(err, providers.ErrNotSupported) && served.Deployment != nil {
		n, err = s.tokens.PromptTokens(served.Deployment.Model, st.call.Body), nil
	}
	if err != nil {
		return err
	}
	out := strconv.AppendInt(append(make([]byte, 0, 32), `{"input_tokens":`...), n, 10)
	out = append(out, '}')
	writeAnswer(rc, st, out)
	return nil
}

package gateway

import (
	"fmt"
	"strconv"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/internal/jsonscan"
	"github.com/mtai-dev/mtai/providers"
)

// appendModel appends one OpenAI model object.
func (s *Server) appendModel(b []byte, rt *providers.Route) []byte {
	b = append(b, `{"id":`...)
	b = providers.AppendJSONString(b, rt.Name)
	b = append(b, `,"object":"model","created":`...)
	b = strconv.AppendInt(b, s.started.Unix(), 10)
	b = append(b, `,"owned_by":`...)
	b = providers.AppendJSONString(b, rt.OwnedBy)
	return append(b, '}')
}

// listModels serves GET /v1/models: the routed models the tenant may use.
func (s *Server) listModels(rc *fasthttp.RequestCtx, st *reqState) error {
	b := make([]byte, 0, 1024)
	b = append(b, `{"object":"list","data":[`...)
	n := 0
	for _, rt := range s.router.Routes() {
		if !st.principal.Policy.Allows(rt.Name) {
			continue
		}
		if n > 0 {
			b = append(b, ',')
		}
		b = s.appendModel(b, rt)
		n++
	}
	b = append(b, "]}"...)
	rc.SetContentType("application/json")
	rc.SetBody(b)
	return nil
}

// getModel serves GET /v1/models/{model}. Model names may contain '/'.
func (s *Server) getModel(rc *fasthttp.RequestCtx, st *reqState) error {
	name, _ := rc.UserValue("model").(string)
	st.model = name
	rt, ok := s.router.Route(name)
	if !ok || !st.principal.Policy.Allows(name) {
		return fmt.Errorf("%w: the model '%s' does not exist or you do not have access to it", providers.ErrModelNotFound, name)
	}
	rc.SetContentType("application/json")
	rc.SetBody(s.appendModel(make([]byte, 0, 128), rt))
	return nil
}

// embeddings serves POST /v1/embeddings, relaying the body as it came
// (float or base64 encoding is the upstream's job).
func (s *Server) embeddings(rc *fasthttp.RequestCtx, st *reqState) error {
	body := rc.PostBody()
	var (
		model          []byte
		ms, me         int
		hasInput, bad  bool
		param, message string
	)
	_, err := jsonscan.Object(body, 0, func(f jsonscan.Field) bool {
		v := body[f.Start:f.End]
		switch string(f.Key) {
		case "model":
			s, ok := jsonscan.String(v)
			if !ok {
				bad, param, message = true, "model", "'model' must be a string."
				return false
			}
			model, ms, me = s, f.Start+1, f.End-1
		case "input":
			switch v[0] {
			case '"', '[':
				hasInput = len(v) > 2
				st.chat.promptBytes = len(v) // what the limiter reserves tokens for
			default:
				bad, param, message = true, "input", "'input' must be a string or an array."
				return false
			}
		case "encoding_format":
			s, ok := jsonscan.String(v)
			if !ok || (string(s) != "float" && string(s) != "base64") {
				bad, param, message = true, "encoding_format", "'encoding_format' must be 'float' or 'base64'."
				return false
			}
		}
		return true
	})
	switch {
	case bad:
		return invalid(param, message)
	case err != nil:
		return invalid("", "The request body is not valid JSON.")
	case len(model) == 0:
		return invalid("model", "'model' is required.")
	case !hasInput:
		return invalid("input", "'input' is required and must not be empty.")
	}
	st.model = string(model)
	rt, ok := s.router.Route(st.model)
	if !ok {
		return fmt.Errorf("%w: the model '%s' does not exist or you do not have access to it", providers.ErrModelNotFound, st.model)
	}
	if !st.principal.Policy.Allows(st.model) {
		return fmt.Errorf("%w: '%s' is not in the tenant's allowed models", errModelNotAllowed, st.model)
	}
	if err := s.reserve(rc, st); err != nil {
		return err
	}
	call := &st.call
	call.Body, call.ModelStart, call.ModelEnd, call.RequestID = body, ms, me, st.requestID
	resp, served, err := s.router.Embed(s.ctx, rt, call)
	st.served(served)
	if err != nil {
		if errorsIsNotSupported(err) {
			return invalid("model", "'"+st.model+"' does not support embeddings.")
		}
		return err
	}
	defer resp.Release()
	st.usage, st.hasUsage = resp.Usage, resp.Usage.TotalTokens > 0
	rc.SetContentType("application/json")
	rc.SetBody(resp.Body)
	return nil
}

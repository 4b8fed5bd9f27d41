package gateway

import (
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/rag"
	"github.com/mtai-dev/mtai/tenancy"
)

// Route labels for metrics and logs.
const (
	routeChat       = "chat_completions"
	routeModels     = "models"
	routeEmbeddings = "embeddings"
)

// reqState is what the gateway knows about one request, from its start to
// its access-log line. Pooled; owned by the handler, then by the relay for
// a stream.
type reqState struct {
	route     string
	method    string
	path      string
	requestID string
	start     time.Time
	principal *tenancy.Principal

	model      string // the model asked for (a routed name once validated)
	deployment string
	provider   string
	attempts   int
	stream     bool
	status     int
	errCode    string
	errType    string
	upErr      *providers.UpstreamError // the upstream's answer behind the error, for the operator's log
	usage      providers.Usage
	hasUsage   bool
	ttft       time.Duration
	events     int
	bytesOut   int

	chat   chatRequest
	splice splicer
	call   providers.Call
	lim    limitState

	// ragMode forces retrieval on (1) or off (-1); 0 lets the tenant's
	// policy and the X-MTAI-RAG header decide. sources are what was injected.
	ragMode int8
	sources []rag.Source
	bill    meterState
}

func (s *Server) begin(rc *fasthttp.RequestCtx, route string) *reqState {
	st := s.reqPool.Get().(*reqState)
	st.route = route
	st.start = s.now()
	st.method = string(rc.Method())
	st.path = string(rc.Path())
	st.requestID = string(rc.Response.Header.Peek("X-Request-ID"))
	return st
}

func (st *reqState) fail(e apiError) {
	st.status = e.status
	st.noteError(e)
}

// noteError records the error answered, also inside a started stream
// (whose status stays 200).
func (st *reqState) noteError(e apiError) {
	st.errCode = e.code
	st.errType = e.typ
	st.upErr = e.upstream
}

func (st *reqState) served(sv providers.Served) {
	st.attempts = sv.Attempts
	if d := sv.Deployment; d != nil {
		st.deployment = d.Name
		st.provider = d.Provider
	}
}

// finish writes the access-log line, records metrics and recycles st.
func (s *Server) finish(st *reqState) {
	s.settle(st)
	s.meter(st)
	elapsed := s.now().Sub(st.start)
	s.metrics.observe(st, elapsed)
	if ce := s.log.Check(zapcore.InfoLevel, "request"); ce != nil {
		fields := make([]zap.Field, 0, 18)
		fields = append(fields,
			zap.String("request_id", st.requestID),
			zap.String("method", st.method),
			zap.String("path", st.path),
			zap.Int("status", st.status),
			zap.Duration("latency", elapsed),
		)
		if st.principal != nil {
			fields = append(fields, zap.String("tenant", st.principal.Tenant))
		}
		if st.model != "" {
			fields = append(fields, zap.String("model", st.model))
		}
		if st.deployment != "" {
			fields = append(fields, zap.String("deployment", st.deployment), zap.Int("attempts", st.attempts))
		}
		if st.stream {
			fields = append(fields, zap.Bool("stream", true), zap.Duration("ttft", st.ttft), zap.Int("events", st.events))
		}
		if st.hasUsage {
			fields = append(fields, zap.Int64("prompt_tokens", st.usage.PromptTokens),
				zap.Int64("completion_tokens", st.usage.CompletionTokens))
		}
		if st.errCode != "" {
			fields = append(fields, zap.String("error_code", st.errCode))
		}
		ce.Write(fields...)
	}
	if st.upErr != nil {
		s.logUpstream(st)
	}
	s.release(st)
}

// logUpstream writes, for the operator, what the upstream answered behind
// the error the tenant got (which may say much less: upstreamAPIError):
// at warn level when it is the operator's to fix (credentials, account,
// quota, an upstream failing), at info when the request itself was wrong.
func (s *Server) logUpstream(st *reqState) {
	ue := st.upErr
	lvl := zapcore.WarnLevel
	if requestFault(ue.Status) {
		lvl = zapcore.InfoLevel
	}
	ce := s.log.Check(lvl, "upstream error")
	if ce == nil {
		return
	}
	fields := []zap.Field{
		zap.String("request_id", st.requestID),
		zap.String("provider", ue.Provider),
		zap.String("deployment", ue.Deployment),
		zap.Int("upstream_status", ue.Status),
		zap.String("upstream_type", ue.Type),
		zap.String("upstream_code", ue.Code),
		zap.String("upstream_param", ue.Param),
		zap.String("upstream_message", ue.Message),
		zap.String("error_code", st.errCode),
	}
	if st.principal != nil {
		fields = append(fields, zap.String("tenant", st.principal.Tenant))
	}
	if st.model != "" {
		fields = append(fields, zap.String("model", st.model))
	}
	if ue.Err != nil {
		fields = append(fields, zap.Error(ue.Err))
	}
	ce.Write(fields...)
}

func (s *Server) release(st *reqState) {
	splice, call := st.splice, st.call
	*st = reqState{}
	splice.reset()
	call.Reset()
	st.splice, st.call = splice, call
	s.reqPool.Put(st)
}

package gateway

import (
	"errors"
	"strconv"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
)

// Errors the gateway itself raises; mapped to responses by toAPIError.
var (
	errBodyTooLarge    = errors.New("request body too large")
	errClientClosed    = errors.New("client closed the request")
	errShuttingDown    = errors.New("server shutting down")
	errModelNotAllowed = errors.New("model not allowed for this tenant")
	errNotFound        = errors.New("not found")
	errMethod          = errors.New("method not allowed")
	errBadCredentials  = errors.New("incorrect username or password")
)

// requestError is a problem with what the client sent: 400 unless status is set.
type requestError struct {
	status  int
	param   string
	code    string
	message string
}

func (e *requestError) Error() string { return e.message }

func invalid(param, message string) error {
	return &requestError{param: param, message: message}
}

// apiError is an error as the client sees it, in OpenAI's shape.
type apiError struct {
	status  int
	typ     string
	code    string
	param   string
	message string
	// retryAfter in seconds; 0: no Retry-After header.
	retryAfter int
	// noRetry adds x-should-retry: false (retrying cannot help).
	noRetry bool
	// upstream is the upstream's own answer behind this one (nil when the
	// gateway decided alone): the operator's log shows it (logUpstream).
	upstream *providers.UpstreamError
}

// toAPIError is the one place where an error becomes an HTTP status and an
// OpenAI-shaped body.
func toAPIError(err error) apiError {
	var re *requestError
	var ue *providers.UpstreamError
	var ve *tenancy.ValidationError
	var le *limitError
	switch {
	case errors.As(err, &re):
		st := re.status
		if st == 0 {
			st = fasthttp.StatusBadRequest
		}
		return apiError{status: st, typ: "invalid_request_error", code: re.code, param: re.param, message: re.message, noRetry: true}
	case errors.As(err, &ve):
		return apiError{status: 400, typ: "invalid_request_error", param: ve.Field, message: ve.Error(), noRetry: true}
	case errors.Is(err, errBadCredentials):
		return apiError{status: 401, typ: "invalid_request_error", code: "invalid_credentials", message: "Incorrect tenant, username or password.", noRetry: true}
	case errors.Is(err, tenancy.ErrConflict):
		return apiError{status: 409, typ: "invalid_request_error", code: "conflict", message: err.Error(), noRetry: true}
	case errors.Is(err, tenancy.ErrUnauthenticated):
		return apiError{status: 401, typ: "invalid_request_error", code: "invalid_api_key",
			message: "Incorrect or missing credentials: send 'Authorization: Bearer <API key>' (or a token from /api/v1/auth/login with X-Tenant-ID).", noRetry: true}
	case errors.Is(err, errModelNotAllowed):
		return apiError{status: 403, typ: "invalid_request_error", code: "model_not_allowed", param: "model",
			message: err.Error(), noRetry: true}
	case errors.Is(err, tenancy.ErrForbidden):
		return apiError{status: 403, typ: "invalid_request_error", code: "forbidden", message: err.Error(), noRetry: true}
	case errors.Is(err, providers.ErrModelNotFound):
		return apiError{status: 404, typ: "invalid_request_error", code: "model_not_found", param: "model",
			message: err.Error(), noRetry: true}
	case errors.Is(err, errNotFound), errors.Is(err, tenancy.ErrNotFound):
		return apiError{status: 404, typ: "invalid_request_error", code: "not_found", message: err.Error(), noRetry: true}
	case errors.Is(err, errMethod):
		return apiError{status: 405, typ: "invalid_request_error", code: "method_not_allowed", message: err.Error(), noRetry: true}
	case errors.Is(err, errBodyTooLarge):
		return apiError{status: 413, typ: "invalid_request_error", code: "request_too_large", message: err.Error(), noRetry: true}
	case errors.Is(err, providers.ErrNotSupported):
		return apiError{status: 400, typ: "invalid_request_error", code: "unsupported_model", param: "model",
			message: err.Error(), noRetry: true}
	case errors.As(err, &le):
		return le.apiError()
	case errors.Is(err, errClientClosed):
		return apiError{status: 499, typ: "invalid_request_error", code: "client_closed_request", message: err.Error()}
	case errors.Is(err, errShuttingDown):
		return apiError{status: 503, typ: "server_error", code: "server_shutting_down", message: err.Error(), retryAfter: 1}
	case errors.Is(err, providers.ErrTimeout):
		e := apiError{status: 504, typ: "server_error", code: "upstream_timeout", message: timeoutMessage}
		errors.As(err, &e.upstream)
		return e
	case errors.As(err, &ue):
		return upstreamAPIError(ue)
	case errors.Is(err, providers.ErrUnavailable):
		return apiError{status: 503, typ: "server_error", code: "upstream_unavailable", retryAfter: 1,
			message: "Every provider of this model is unavailable right now; retry shortly."}
	}
	return apiError{status: 500, typ: "server_error", code: "internal_error", message: "Internal error; the request id identifies it in the logs."}
}

// upstreamAPIError maps an upstream's answer to what the tenant sees, and
// keeps the answer itself in e.upstream for the operator's log (finish).
//
// An upstream writes to the gateway's account, not to the tenant: its
// message can name the operator's organisation, project or account, quote
// the operator's key prefix, or carry request ids of the operator's
// account. So only the request's own faults (requestFault: a bad
// parameter, a context too long, a content policy) pass on, with their
// type, code and param, and their message redacted (redact): the client
// needs them to fix its request. Everything else gets a fixed message:
// the upstream refusing the gateway's credentials (401), its account
// (403: permissions, region), a deployment's model (404) or its quota or
// credit (402, 429 insufficient_quota) is a 502 the tenant cannot fix; the
// upstream's rate limit is a 429 with its Retry-After; overload 503,
// timeouts 504, any other failure 502.
func upstreamAPIError(ue *providers.UpstreamError) apiError {
	e := apiError{status: 502, typ: "server_error", code: "upstream_error", upstream: ue,
		message: "The model's provider failed to answer; retry later."}
	switch {
	case ue.Status == 0:
		e.code, e.message = "upstream_unreachable", "The model's provider could not be reached."
	case requestFault(ue.Status):
		e.status, e.noRetry = ue.Status, true
		e.typ = orDefault(safeToken(ue.Type), "invalid_request_error")
		e.code, e.param = safeToken(ue.Code), safeToken(ue.Param)
		e.message = orDefault(redact(ue.Message), "The model's provider rejected the request.")
	case ue.Status == 402 || ue.Code == "insufficient_quota" || ue.Type == "insufficient_quota":
		e.code = "upstream_quota_exceeded"
		e.message = "The gateway's account with the model's provider is out of quota or credit; an operator must fix it."
	case ue.Status == 429:
		e.status, e.code = 429, orDefault(safeToken(ue.Code), "rate_limit_exceeded")
		e.typ = orDefault(safeToken(ue.Type), "requests")
		e.retryAfter = max(1, int((ue.RetryAfter+time.Second-1)/time.Second))
		e.message = "The model's provider is rate-limiting the gateway; retry after the delay in Retry-After."
	case ue.Status == 401:
		e.code = "upstream_auth_failed"
		e.message = "The model's provider refused the gateway's credentials; an operator must fix the deployment's key."
	case ue.Status == 403:
		e.code = "upstream_permission_denied"
		e.message = "The model's provider refused the gateway's account access to this model; an operator must fix the deployment."
	case ue.Status == 404:
		e.code = "upstream_model_not_found"
		e.message = "The model's provider does not know the model this deployment names; an operator must fix the route."
	case ue.Status == 503 || ue.Status == 529:
		e.status, e.code, e.retryAfter = 503, "upstream_overloaded", 1
		e.message = "The model's provider is overloaded; retry shortly."
	case ue.Status == 504 || ue.Status == 408:
		e.status, e.code, e.message = 504, "upstream_timeout", timeoutMessage
	}
	return e
}

// timeoutMessage is what a client reads when the upstream was silent too long.
const timeoutMessage = "The model's provider did not answer in time."

// requestFault reports whether an upstream's status says the request
// itself is wrong (so that its error, redacted, is the client's to read).
func requestFault(status int) bool {
	return status == 400 || status == 413 || status == 422
}

// streamErrorStatus is the HTTP status an upstream's error event, sent
// inside a started stream, stands for: what the providers' own mapping
// (type and code in OpenAI's vocabulary) says, 500 when it says nothing.
func streamErrorStatus(typ, code string) int {
	switch code {
	case "invalid_api_key":
		return 401
	case "permission_denied":
		return 403
	case "model_not_found", "not_found":
		return 404
	case "request_too_large":
		return 413
	case "insufficient_quota", "rate_limit_exceeded":
		return 429
	case "upstream_overloaded", "server_overloaded":
		return 503
	case "upstream_timeout":
		return 504
	}
	switch typ {
	case "invalid_request_error":
		return 400
	case "requests", "tokens", "insufficient_quota":
		return 429
	}
	return 500
}

// upstreamStreamError maps an error event that the upstream sent inside a
// started stream ({"error":{...}}, as OpenAI sends it and as the Anthropic
// and Bedrock adapters translate theirs) as upstreamAPIError does, and
// records it on st (for the access log and the operator's log line).
func upstreamStreamError(st *reqState, ev []byte) apiError {
	b, _ := providers.ParseErrorBody(ev)
	e := upstreamAPIError(&providers.UpstreamError{Provider: st.provider, Deployment: st.deployment,
		Status: streamErrorStatus(b.Type, b.Code), Type: b.Type, Code: b.Code, Param: b.Param, Message: b.Message})
	st.noteError(e)
	return e
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// appendErrorJSON appends {"error":{"message","type","param","code"}}.
func appendErrorJSON(b []byte, e apiError) []byte {
	b = append(b, `{"error":{"message":`...)
	b = providers.AppendJSONString(b, e.message)
	b = append(b, `,"type":`...)
	b = providers.AppendJSONString(b, e.typ)
	b = append(b, `,"param":`...)
	if e.param == "" {
		b = append(b, "null"...)
	} else {
		b = providers.AppendJSONString(b, e.param)
	}
	b = append(b, `,"code":`...)
	if e.code == "" {
		b = append(b, "null"...)
	} else {
		b = providers.AppendJSONString(b, e.code)
	}
	return append(b, "}}"...)
}

// writeError answers err in OpenAI's shape and returns what was answered.
func writeError(rc *fasthttp.RequestCtx, err error) apiError {
	e := toAPIError(err)
	rc.Response.ResetBody()
	rc.SetStatusCode(e.status)
	rc.SetContentType("application/json")
	if e.retryAfter > 0 {
		rc.Response.Header.Set("Retry-After", strconv.Itoa(e.retryAfter))
	}
	if e.noRetry {
		rc.Response.Header.Set("X-Should-Retry", "false")
	}
	rc.SetBody(appendErrorJSON(make([]byte, 0, 256), e))
	return e
}

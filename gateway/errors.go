package gateway

import (
	"errors"
	"strconv"

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
		return apiError{status: 504, typ: "server_error", code: "upstream_timeout",
			message: "The model's provider did not answer in time."}
	case errors.As(err, &ue):
		return upstreamAPIError(ue)
	case errors.Is(err, providers.ErrUnavailable):
		return apiError{status: 503, typ: "server_error", code: "upstream_unavailable", retryAfter: 1,
			message: "Every provider of this model is unavailable right now; retry shortly."}
	}
	return apiError{status: 500, typ: "server_error", code: "internal_error", message: "Internal error; the request id identifies it in the logs."}
}

// upstreamAPIError maps an upstream's answer to what our client sees. The
// request's own faults (400, 404, 413, 422) are passed on; the upstream's
// refusal of OUR credentials is a gateway fault (502), not the client's.
func upstreamAPIError(ue *providers.UpstreamError) apiError {
	msg := ue.Message
	if msg == "" {
		msg = "the model's provider failed"
	}
	typ := ue.Type
	switch {
	case ue.Status == 0:
		return apiError{status: 502, typ: "server_error", code: "upstream_unreachable",
			message: "The model's provider could not be reached."}
	case ue.Status == 429:
		ra := int((ue.RetryAfter + 999_999_999) / 1_000_000_000)
		if ra < 1 {
			ra = 1
		}
		code := ue.Code
		if code == "" {
			code = "rate_limit_exceeded"
		}
		return apiError{status: 429, typ: orDefault(typ, "requests"), code: code, message: msg, retryAfter: ra,
			noRetry: code == "insufficient_quota"}
	case ue.Status == 400 || ue.Status == 404 || ue.Status == 413 || ue.Status == 422:
		return apiError{status: ue.Status, typ: orDefault(typ, "invalid_request_error"), code: ue.Code, param: ue.Param, message: msg, noRetry: true}
	case ue.Status == 401 || ue.Status == 403:
		return apiError{status: 502, typ: "server_error", code: "upstream_auth_failed",
			message: "The model's provider refused the gateway's credentials; an operator must fix the deployment's key."}
	case ue.Status == 503 || ue.Status == 529:
		return apiError{status: 503, typ: "server_error", code: "upstream_overloaded", message: msg, retryAfter: 1}
	case ue.Status == 504 || ue.Status == 408:
		return apiError{status: 504, typ: "server_error", code: "upstream_timeout", message: msg}
	}
	return apiError{status: 502, typ: "server_error", code: "upstream_error", message: msg}
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

package anthropic

import (
	"github.com/mtai-dev/mtai/internal/jsonscan"
	"github.com/mtai-dev/mtai/providers"
)

// RequestError is a request that cannot be translated: a missing or
// malformed field, or something the other protocol cannot express. Param
// names the field ("" when the body as a whole is wrong).
type RequestError struct {
	Param   string
	Message string
}

func (e *RequestError) Error() string { return e.Message }

func badRequest(param, msg string) error { return &RequestError{Param: param, Message: msg} }

// Anthropic's error types, as documented at docs.claude.com/en/api/errors.
const (
	ErrInvalidRequest  = "invalid_request_error"
	ErrAuthentication  = "authentication_error"
	ErrBilling         = "billing_error"
	ErrPermission      = "permission_error"
	ErrNotFound        = "not_found_error"
	ErrRequestTooLarge = "request_too_large"
	ErrRateLimit       = "rate_limit_error"
	ErrAPI             = "api_error"
	ErrTimeout         = "timeout_error"
	ErrOverloaded      = "overloaded_error"
)

// ErrorType returns the Anthropic error type for an HTTP status, for a
// server that answers in Anthropic's shape.
func ErrorType(status int) string {
	switch status {
	case 400, 405, 409, 422, 499:
		return ErrInvalidRequest
	case 401:
		return ErrAuthentication
	case 402:
		return ErrBilling
	case 403:
		return ErrPermission
	case 404:
		return ErrNotFound
	case 413:
		return ErrRequestTooLarge
	case 429:
		return ErrRateLimit
	case 503, 529:
		return ErrOverloaded
	case 504, 408:
		return ErrTimeout
	}
	return ErrAPI
}

// errorStatus is the HTTP status Anthropic documents for an error type;
// it is what an error event inside a stream would have been answered with.
func errorStatus(typ string) int {
	switch typ {
	case ErrInvalidRequest:
		return 400
	case ErrAuthentication:
		return 401
	case ErrBilling:
		return 402
	case ErrPermission:
		return 403
	case ErrNotFound:
		return 404
	case ErrRequestTooLarge:
		return 413
	case ErrRateLimit:
		return 429
	case ErrTimeout:
		return 504
	case ErrOverloaded:
		return 529
	}
	return 500
}

// openAIError maps an Anthropic error type to OpenAI's type and code, the
// vocabulary of providers.UpstreamError and of the gateway's answers.
func openAIError(typ string) (oaType, code string) {
	switch typ {
	case ErrInvalidRequest:
		return "invalid_request_error", ""
	case ErrAuthentication:
		return "invalid_request_error", "invalid_api_key"
	case ErrBilling:
		return "insufficient_quota", "insufficient_quota"
	case ErrPermission:
		return "invalid_request_error", "permission_denied"
	case ErrNotFound:
		return "invalid_request_error", "not_found"
	case ErrRequestTooLarge:
		return "invalid_request_error", "request_too_large"
	case ErrRateLimit:
		return "requests", "rate_limit_exceeded"
	case ErrTimeout:
		return "server_error", "upstream_timeout"
	case ErrOverloaded:
		return "server_error", "upstream_overloaded"
	case ErrAPI, "":
		return "server_error", "upstream_error"
	}
	return "server_error", typ
}

// parseError reads Anthropic's {"type":"error","error":{"type","message"}}.
func parseError(body []byte) (typ, msg string, ok bool) {
	s, e, found := jsonscan.Find(body, 0, "error")
	if !found || body[s] != '{' {
		return "", "", false
	}
	obj := body[s:e]
	_, _ = jsonscan.Object(obj, 0, func(f jsonscan.Field) bool {
		v, isStr := jsonscan.String(obj[f.Start:f.End])
		if !isStr {
			return true
		}
		switch string(f.Key) {
		case "type":
			typ = string(v)
		case "message":
			msg = string(v)
		}
		return true
	})
	return typ, msg, true
}

// AppendError appends Anthropic's error body
// {"type":"error","error":{"type":typ,"message":msg},"request_id":id}
// (request_id left out when id is empty).
func AppendError(b []byte, typ, msg, requestID string) []byte {
	b = append(b, `{"type":"error","error":{"type":`...)
	b = providers.AppendJSONString(b, typ)
	b = append(b, `,"message":`...)
	b = providers.AppendJSONString(b, msg)
	b = append(b, '}')
	if requestID != "" {
		b = append(b, `,"request_id":`...)
		b = providers.AppendJSONString(b, requestID)
	}
	return append(b, '}')
}

// AppendErrorEvent appends an SSE "error" event carrying Anthropic's error body.
func AppendErrorEvent(b []byte, typ, msg string) []byte {
	b = append(b, "event: error\ndata: "...)
	b = AppendError(b, typ, msg, "")
	return append(b, "\n\n"...)
}

// appendOpenAIError appends OpenAI's {"error":{message,type,param,code}}
// for an Anthropic error type and message.
func appendOpenAIError(b []byte, typ, msg string) []byte {
	oaType, code := openAIError(typ)
	if msg == "" {
		msg = "the model's provider failed (" + typ + ")"
	}
	b = append(b, `{"error":{"message":`...)
	b = providers.AppendJSONString(b, msg)
	b = append(b, `,"type":`...)
	b = providers.AppendJSONString(b, oaType)
	b = append(b, `,"param":null,"code":`...)
	b = providers.AppendJSONString(b, code)
	return append(b, "}}"...)
}

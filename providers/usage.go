package providers

import "github.com/mtai-dev/mtai/internal/jsonscan"

// ParseUsage reads the OpenAI "usage" object of a chat completion, a stream
// chunk or an embeddings response. ok is false when doc has no usage object
// (absent or null).
func ParseUsage(doc []byte) (u Usage, ok bool) {
	s, e, found := jsonscan.Find(doc, 0, "usage")
	if !found || doc[s] != '{' {
		return u, false
	}
	obj := doc[s:e]
	_, err := jsonscan.Object(obj, 0, func(f jsonscan.Field) bool {
		v := obj[f.Start:f.End]
		switch string(f.Key) {
		case "prompt_tokens":
			u.PromptTokens, _ = jsonscan.Int(v)
		case "completion_tokens":
			u.CompletionTokens, _ = jsonscan.Int(v)
		case "total_tokens":
			u.TotalTokens, _ = jsonscan.Int(v)
		case "prompt_tokens_details":
			if cs, ce, ok := jsonscan.Find(v, 0, "cached_tokens"); ok {
				u.CachedTokens, _ = jsonscan.Int(v[cs:ce])
			}
		case "completion_tokens_details":
			if rs, re, ok := jsonscan.Find(v, 0, "reasoning_tokens"); ok {
				u.ReasoningTokens, _ = jsonscan.Int(v[rs:re])
			}
		}
		return true
	})
	if err != nil {
		return Usage{}, false
	}
	if u.TotalTokens == 0 {
		u.TotalTokens = u.PromptTokens + u.CompletionTokens
	}
	return u, true
}

// ParseError reads an OpenAI-shaped error body {"error":{message,type,code}}.
// ok is false when body is not one.
func ParseError(body []byte) (typ, code, message string, ok bool) {
	e, ok := ParseErrorBody(body)
	return e.Type, e.Code, e.Message, ok
}

// ErrorBody is the content of an OpenAI-shaped error.
type ErrorBody struct {
	Type, Code, Param, Message string
}

// ParseErrorBody reads an OpenAI-shaped error body, param included.
func ParseErrorBody(body []byte) (e ErrorBody, ok bool) {
	typ, code, param, message, ok := parseError(body)
	return ErrorBody{Type: typ, Code: code, Param: param, Message: message}, ok
}

func parseError(body []byte) (typ, code, param, message string, ok bool) {
	s, e, found := jsonscan.Find(body, 0, "error")
	if !found || body[s] != '{' {
		return "", "", "", "", false
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
		case "code":
			code = string(v)
		case "param":
			param = string(v)
		case "message":
			message = string(v)
		}
		return true
	})
	return typ, code, param, message, true
}

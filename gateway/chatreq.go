package gateway

import (
	"github.com/mtai-dev/mtai/internal/jsonscan"
)

// chatRequest is what the gateway reads from a chat completion request:
// only the fields it needs, with byte offsets for splicing. Everything else
// in the body is relayed untouched.
type chatRequest struct {
	model      []byte // content of the "model" string; nil when absent
	modelStart int    // bounds of model's content (inside the quotes)
	modelEnd   int
	stream     bool
	// streamOptions bounds of the stream_options value (0,0 when absent).
	soStart, soEnd int
	// includeUsage: the client asked for the usage chunk.
	includeUsage bool
	// iuStart, iuEnd: bounds of stream_options.include_usage's value.
	iuStart, iuEnd int
	// msgStart: index of the messages array's '['.
	msgStart int
	messages int // 0 when the array is empty
	// promptBytes is the byte size of the messages (a cheap size estimate).
	promptBytes int
	maxTokens   int64
	objEnd      int // index of the closing '}' of the top-level object
}

// parseChatRequest validates the body's JSON and reads the fields the
// gateway needs. Errors name the offending field (param).
func parseChatRequest(body []byte, r *chatRequest) error {
	*r = chatRequest{}
	var ferr error
	start := jsonscan.SkipSpace(body, 0)
	if start >= len(body) || body[start] != '{' {
		return invalid("", "The request body must be a JSON object.")
	}
	end, err := jsonscan.Object(body, start, func(f jsonscan.Field) bool {
		v := body[f.Start:f.End]
		switch string(f.Key) {
		case "model":
			s, ok := jsonscan.String(v)
			if !ok {
				ferr = invalid("model", "'model' must be a string.")
				return false
			}
			r.model = s // decoded when it had escapes
			r.modelStart, r.modelEnd = f.Start+1, f.End-1
		case "messages":
			if v[0] != '[' {
				ferr = invalid("messages", "'messages' must be an array of messages.")
				return false
			}
			r.msgStart = f.Start
			r.promptBytes = len(v)
			if jsonscan.SkipSpace(v, 1) < len(v)-1 {
				r.messages = 1 // not empty; the upstream judges each message
			}
		case "stream":
			b, ok := jsonscan.Bool(v)
			if !ok && !jsonscan.IsNull(v) {
				ferr = invalid("stream", "'stream' must be a boolean.")
				return false
			}
			r.stream = b
		case "stream_options":
			r.soStart, r.soEnd = f.Start, f.End
			if v[0] == '{' {
				_, _ = jsonscan.Object(v, 0, func(g jsonscan.Field) bool {
					if string(g.Key) == "include_usage" {
						r.iuStart, r.iuEnd = f.Start+g.Start, f.Start+g.End
						r.includeUsage, _ = jsonscan.Bool(v[g.Start:g.End])
					}
					return true
				})
			} else if !jsonscan.IsNull(v) {
				ferr = invalid("stream_options", "'stream_options' must be an object.")
				return false
			}
		case "max_tokens", "max_completion_tokens":
			if jsonscan.IsNull(v) {
				return true
			}
			n, ok := jsonscan.Int(v)
			if !ok || n < 1 {
				ferr = invalid(string(f.Key), "'"+string(f.Key)+"' must be a positive integer.")
				return false
			}
			r.maxTokens = n
		case "temperature":
			if jsonscan.IsNull(v) {
				return true
			}
			t, ok := jsonscan.Float(v)
			if !ok || t < 0 || t > 2 {
				ferr = invalid("temperature", "'temperature' must be a number between 0 and 2.")
				return false
			}
		case "top_p":
			if jsonscan.IsNull(v) {
				return true
			}
			t, ok := jsonscan.Float(v)
			if !ok || t < 0 || t > 1 {
				ferr = invalid("top_p", "'top_p' must be a number between 0 and 1.")
				return false
			}
		case "n":
			if jsonscan.IsNull(v) {
				return true
			}
			n, ok := jsonscan.Int(v)
			if !ok || n < 1 || n > 128 {
				ferr = invalid("n", "'n' must be an integer between 1 and 128.")
				return false
			}
		}
		return true
	})
	if ferr != nil {
		return ferr
	}
	if err != nil {
		return invalid("", "The request body is not valid JSON.")
	}
	if jsonscan.SkipSpace(body, end) != len(body) {
		return invalid("", "The request body has data after the JSON object.")
	}
	r.objEnd = end - 1
	if r.msgStart == 0 {
		return invalid("messages", "'messages' is required.")
	}
	if r.messages == 0 {
		return invalid("messages", "'messages' must contain at least one message.")
	}
	return nil
}

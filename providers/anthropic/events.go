package anthropic

import (
	"bytes"
	"strconv"

	"github.com/mtai-dev/mtai/internal/jsonscan"
	"github.com/mtai-dev/mtai/providers"
)

// EventTranslator turns the payloads of an OpenAI chat-completion stream,
// one chunk at a time, into the SSE events of an Anthropic Messages stream
// (each with its "event:" line):
//
//	first chunk        → message_start, ping
//	content            → content_block_start (text) once, then content_block_delta text_delta
//	tool_calls[i] with id → content_block_stop of the open block, content_block_start tool_use
//	tool_calls[i] arguments → content_block_delta input_json_delta
//	finish_reason      → content_block_stop of the open block
//	usage              → message_delta (stop reason and usage) and message_stop,
//	                     once both the finish reason and the usage are known
//	{"error":{...}}    → error event, the end of the stream
//
// End closes a stream that the upstream ended early (no usage chunk).
// Only choice 0 is read. An EventTranslator holds one stream's state and is
// not safe for concurrent use.
type EventTranslator struct {
	model     []byte // raw JSON string: the fallback model name
	id        []byte
	started   bool
	open      bool     // a content block is open
	openText  bool     // ... and it is a text block
	cur       int      // index of the open block
	next      int      // index of the next block
	toolBlock []int    // per OpenAI tool-call index: its block index, or -1
	toolID    [][]byte // per OpenAI tool-call index: its id (raw JSON string)

	finish    string
	hasFinish bool
	usage     providers.Usage
	hasUsage  bool
	ended     bool
}

// NewEventTranslator returns a translator whose message_start names model
// when the chunks do not.
func NewEventTranslator(model string) *EventTranslator {
	return &EventTranslator{model: providers.AppendJSONString(nil, model)}
}

// Ended reports whether message_stop or an error event was produced.
func (t *EventTranslator) Ended() bool { return t.ended }

// Usage returns the usage the upstream reported (zero until its usage chunk).
func (t *EventTranslator) Usage() (providers.Usage, bool) { return t.usage, t.hasUsage }

// Chunk appends to dst the events for one OpenAI chunk payload. A payload
// that is not a JSON object returns an error and appends nothing.
func (t *EventTranslator) Chunk(dst, chunk []byte) ([]byte, error) {
	if t.ended {
		return dst, nil
	}
	var id, model, choices, usage, errObj []byte
	_, err := jsonscan.Object(chunk, 0, func(f jsonscan.Field) bool {
		v := chunk[f.Start:f.End]
		switch string(f.Key) {
		case "id":
			id = v
		case "model":
			model = v
		case "choices":
			choices = v
		case "usage":
			usage = v
		case "error":
			errObj = v
		}
		return true
	})
	if err != nil {
		return dst, errEvent
	}
	if errObj != nil && errObj[0] == '{' {
		typ, code, msg, _ := providers.ParseError(chunk)
		t.ended = true
		return AppendErrorEvent(dst, errorTypeOfOpenAI(typ, code), msg), nil
	}
	if !t.started {
		if id != nil && id[0] == '"' {
			t.id = append(t.id[:0], id...)
		}
		if model != nil && model[0] == '"' {
			t.model = append(t.model[:0], model...)
		}
		dst = t.start(dst)
	}
	if choices != nil && choices[0] == '[' {
		first := true
		_, _ = jsonscan.Array(choices, 0, func(s, e int) bool {
			if first {
				dst = t.choice(dst, choices[s:e])
			}
			first = false
			return false
		})
	}
	if usage != nil && usage[0] == '{' {
		if u, ok := providers.ParseUsage(chunk); ok {
			t.usage, t.hasUsage = u, true
		}
	}
	if t.hasFinish && t.hasUsage {
		dst = t.stop(dst)
	}
	return dst, nil
}

// End appends the closing events of a stream whose upstream ended: the
// open block's stop, message_delta and message_stop. It appends nothing
// when the stream already ended.
func (t *EventTranslator) End(dst []byte) []byte {
	if t.ended {
		return dst
	}
	if !t.started {
		dst = t.start(dst)
	}
	return t.stop(dst)
}

func (t *EventTranslator) start(dst []byte) []byte {
	t.started = true
	id := t.id
	if len(id) == 0 {
		id = []byte(`"msg"`)
	}
	dst = append(dst, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"...)
	dst = append(dst, id...)
	dst = append(dst, `,"type":"message","role":"assistant","model":`...)
	dst = append(dst, t.model...)
	dst = append(dst, `,"content":[],"stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":0,"output_tokens":0}}}`...)
	dst = append(dst, "\n\nevent: ping\ndata: {\"type\":\"ping\"}\n\n"...)
	return dst
}

func (t *EventTranslator) choice(dst, c []byte) []byte {
	var delta, finish []byte
	_, _ = jsonscan.Object(c, 0, func(f jsonscan.Field) bool {
		switch string(f.Key) {
		case "delta":
			delta = c[f.Start:f.End]
		case "finish_reason":
			finish = c[f.Start:f.End]
		}
		return true
	})
	if delta != nil && delta[0] == '{' {
		_, _ = jsonscan.Object(delta, 0, func(f jsonscan.Field) bool {
			v := delta[f.Start:f.End]
			switch string(f.Key) {
			case "content", "refusal":
				if len(v) > 2 && v[0] == '"' {
					dst = t.text(dst, v)
				}
			case "tool_calls":
				if v[0] == '[' {
					_, _ = jsonscan.Array(v, 0, func(s, e int) bool {
						dst = t.toolCall(dst, v[s:e])
						return true
					})
				}
			}
			return true
		})
	}
	if s, ok := jsonscan.String(finish); ok && !t.hasFinish {
		t.finish, t.hasFinish = string(s), true
		dst = t.closeBlock(dst)
	}
	return dst
}

func (t *EventTranslator) text(dst, raw []byte) []byte {
	if !t.open || !t.openText {
		dst = t.closeBlock(dst)
		dst = t.openBlock(dst, true)
		dst = append(dst, `"text","text":""}}`...)
		dst = append(dst, "\n\n"...)
	}
	dst = t.deltaHead(dst, t.cur)
	dst = append(dst, `"text_delta","text":`...)
	dst = append(dst, raw...)
	return append(dst, "}}\n\n"...)
}

func (t *EventTranslator) toolCall(dst, tc []byte) []byte {
	var index = -1
	var id, name, args []byte
	_, _ = jsonscan.Object(tc, 0, func(f jsonscan.Field) bool {
		v := tc[f.Start:f.End]
		switch string(f.Key) {
		case "index":
			n, ok := jsonscan.Int(v)
			if ok {
				index = int(n)
			}
		case "id":
			id = v
		case "function":
			if v[0] == '{' {
				_, _ = jsonscan.Object(v, 0, func(g jsonscan.Field) bool {
					switch string(g.Key) {
					case "name":
						name = v[g.Start:g.End]
					case "arguments":
						args = v[g.Start:g.End]
					}
					return true
				})
			}
		}
		return true
	})
	if index < 0 {
		index = 0
	}
	for len(t.toolBlock) <= index {
		t.toolBlock = append(t.toolBlock, -1)
		t.toolID = append(t.toolID, nil)
	}
	hasID := len(id) > 2 && id[0] == '"'
	// A new call: an index not seen yet, or a new id for it (some servers
	// repeat the id on every fragment of the same call).
	if t.toolBlock[index] < 0 || hasID && !bytes.Equal(id, t.toolID[index]) {
		if len(id) < 2 || id[0] != '"' {
			id = []byte(`"toolu_` + strconv.Itoa(index) + `"`)
		}
		if len(name) < 2 || name[0] != '"' {
			name = []byte(`""`)
		}
		dst = t.closeBlock(dst)
		dst = t.openBlock(dst, false)
		t.toolBlock[index] = t.cur
		t.toolID[index] = append(t.toolID[index][:0], id...)
		dst = append(dst, `"tool_use","id":`...)
		dst = append(dst, id...)
		dst = append(dst, `,"name":`...)
		dst = append(dst, name...)
		dst = append(dst, `,"input":{}}}`...)
		dst = append(dst, "\n\n"...)
	}
	if len(args) > 2 && args[0] == '"' {
		dst = t.deltaHead(dst, t.toolBlock[index])
		dst = append(dst, `"input_json_delta","partial_json":`...)
		dst = append(dst, args...)
		dst = append(dst, "}}\n\n"...)
	}
	return dst
}

// openBlock appends a content_block_start up to the block's type value
// (the caller completes the content_block object).
func (t *EventTranslator) openBlock(dst []byte, text bool) []byte {
	t.open, t.openText, t.cur = true, text, t.next
	t.next++
	dst = append(dst, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":"...)
	dst = strconv.AppendInt(dst, int64(t.cur), 10)
	return append(dst, `,"content_block":{"type":`...)
}

func (t *EventTranslator) deltaHead(dst []byte, index int) []byte {
	dst = append(dst, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":"...)
	dst = strconv.AppendInt(dst, int64(index), 10)
	return append(dst, `,"delta":{"type":`...)
}

func (t *EventTranslator) closeBlock(dst []byte) []byte {
	if !t.open {
		return dst
	}
	t.open = false
	dst = append(dst, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":"...)
	dst = strconv.AppendInt(dst, int64(t.cur), 10)
	return append(dst, "}\n\n"...)
}

func (t *EventTranslator) stop(dst []byte) []byte {
	dst = t.closeBlock(dst)
	t.ended = true
	u := usageFromOpenAI(t.usage.PromptTokens, t.usage.CompletionTokens, t.usage.CachedTokens)
	dst = append(dst, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\""...)
	dst = append(dst, StopReason(t.finish)...)
	dst = append(dst, `","stop_sequence":null},"usage":{"input_tokens":`...)
	dst = appendInt(dst, u.InputTokens)
	dst = append(dst, `,"cache_read_input_tokens":`...)
	dst = appendInt(dst, u.CacheReadInputTokens)
	dst = append(dst, `,"output_tokens":`...)
	dst = appendInt(dst, u.OutputTokens)
	dst = append(dst, "}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"...)
	return dst
}

// errorTypeOfOpenAI picks the Anthropic error type for an OpenAI error's
// type and code.
func errorTypeOfOpenAI(typ, code string) string {
	switch code {
	case "upstream_overloaded", "server_overloaded", "overloaded_error":
		return ErrOverloaded
	case "upstream_timeout", "timeout_error":
		return ErrTimeout
	case "rate_limit_exceeded", "insufficient_quota":
		return ErrRateLimit
	}
	switch typ {
	case "invalid_request_error":
		return ErrInvalidRequest
	case "requests", "tokens":
		return ErrRateLimit
	}
	return ErrAPI
}

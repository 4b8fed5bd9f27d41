package anthropic

import (
	"errors"
	"strconv"

	"github.com/mtai-dev/mtai/internal/jsonscan"
	"github.com/mtai-dev/mtai/providers"
)

// ChunkTranslator turns the events of an Anthropic Messages stream, one at
// a time and without buffering, into OpenAI chat.completion.chunk payloads:
//
//	message_start                      → role chunk (delta role assistant, content "")
//	content_block_start text           → nothing (or a content chunk if it has text)
//	content_block_start tool_use       → tool-call chunk: index, id, type, name, arguments ""
//	content_block_delta text_delta     → content chunk
//	content_block_delta input_json_delta → tool-call chunk with an arguments fragment
//	message_delta                      → finish chunk (stop reason through FinishReason)
//	message_stop                       → usage chunk (choices: []), then Done
//	error                              → OpenAI error payload {"error":{...}}, then Done
//	ping, content_block_stop, thinking and signature deltas → nothing
//
// Every chunk has the same id, created and model (the id and model of
// message_start). Usage is input and cache counts from message_start
// (overridden by message_delta when it repeats them) and output tokens from
// message_delta.
//
// A ChunkTranslator holds one stream's state and is not safe for concurrent
// use. Build it with NewChunkTranslator.
type ChunkTranslator struct {
	id, model []byte // raw JSON strings, quotes included
	created   []byte

	blockTool []int // per Anthropic block index: OpenAI tool-call index, or -1
	tools     int
	usage     antUsage
	finished  bool // the finish chunk was produced
	done      bool

	out  [2][]byte // chunks produced by the last Feed
	n, r int
}

// NewChunkTranslator returns a translator for one stream whose chunks say
// created (Unix seconds) and, until message_start names one, model.
func NewChunkTranslator(model string, created int64) *ChunkTranslator {
	return &ChunkTranslator{
		id:      []byte(`"msg"`),
		model:   providers.AppendJSONString(nil, model),
		created: strconv.AppendInt(nil, created, 10),
	}
}

// Done reports whether the stream is over: message_stop or error was fed.
func (t *ChunkTranslator) Done() bool { return t.done }

// Usage returns the usage reported so far.
func (t *ChunkTranslator) Usage() providers.Usage { return t.usage.usage() }

// Chunk returns the next chunk produced by the last Feed; ok is false when
// there is none left. The slice is valid until the next Feed.
func (t *ChunkTranslator) Chunk() (chunk []byte, ok bool) {
	if t.r >= t.n {
		return nil, false
	}
	t.r++
	return t.out[t.r-1], true
}

var errEvent = errors.New("malformed Anthropic stream event")

// event is the top-level members of one event that the translator reads.
type event struct {
	typ                          []byte
	index                        int
	hasIndex                     bool
	message, block, delta, usage []byte // raw JSON values
	errType, errMsg              string
}

// Feed translates one event (the JSON of its data line). Afterwards the
// chunks it produced, zero to two, are read with Chunk.
func (t *ChunkTranslator) Feed(data []byte) error {
	t.n, t.r = 0, 0
	var ev event
	_, err := jsonscan.Object(data, 0, func(f jsonscan.Field) bool {
		v := data[f.Start:f.End]
		switch string(f.Key) {
		case "type":
			ev.typ, _ = jsonscan.String(v)
		case "index":
			n, ok := jsonscan.Int(v)
			ev.index, ev.hasIndex = int(n), ok
		case "message":
			ev.message = v
		case "content_block":
			ev.block = v
		case "delta":
			ev.delta = v
		case "usage":
			ev.usage = v
		case "error":
			if v[0] == '{' {
				typ, msg, _ := parseError(data)
				ev.errType, ev.errMsg = typ, msg
			}
		}
		return true
	})
	if err != nil {
		return errEvent
	}
	switch string(ev.typ) {
	case "message_start":
		if ev.message == nil {
			return errEvent
		}
		m := ev.message
		_, _ = jsonscan.Object(m, 0, func(f jsonscan.Field) bool {
			v := m[f.Start:f.End]
			switch string(f.Key) {
			case "id":
				if v[0] == '"' {
					t.id = append(t.id[:0], v...)
				}
			case "model":
				if v[0] == '"' {
					t.model = append(t.model[:0], v...)
				}
			case "usage":
				t.readUsage(v)
			}
			return true
		})
		b := t.head()
		b = append(b, `[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`...)
		t.emit(b)
	case "content_block_start":
		if !ev.hasIndex || ev.block == nil {
			return errEvent
		}
		for len(t.blockTool) <= ev.index {
			t.blockTool = append(t.blockTool, -1)
		}
		blk := ev.block
		var typ, id, name, text []byte
		_, _ = jsonscan.Object(blk, 0, func(f jsonscan.Field) bool {
			v := blk[f.Start:f.End]
			switch string(f.Key) {
			case "type":
				typ, _ = jsonscan.String(v)
			case "id":
				id = v
			case "name":
				name = v
			case "text":
				text = v
			}
			return true
		})
		switch string(typ) {
		case "tool_use":
			if id == nil || name == nil || id[0] != '"' || name[0] != '"' {
				return errEvent
			}
			t.blockTool[ev.index] = t.tools
			b := t.head()
			b = append(b, `[{"index":0,"delta":{"tool_calls":[{"index":`...)
			b = strconv.AppendInt(b, int64(t.tools), 10)
			b = append(b, `,"id":`...)
			b = append(b, id...)
			b = append(b, `,"type":"function","function":{"name":`...)
			b = append(b, name...)
			b = append(b, `,"arguments":""}}]},"logprobs":null,"finish_reason":null}]}`...)
			t.emit(b)
			t.tools++
		case "text":
			if len(text) > 2 && text[0] == '"' {
				t.emitContent(text)
			}
		}
	case "content_block_delta":
		if !ev.hasIndex || ev.delta == nil {
			return errEvent
		}
		d := ev.delta
		var typ, text, partial []byte
		_, _ = jsonscan.Object(d, 0, func(f jsonscan.Field) bool {
			v := d[f.Start:f.End]
			switch string(f.Key) {
			case "type":
				typ, _ = jsonscan.String(v)
			case "text":
				text = v
			case "partial_json":
				partial = v
			}
			return true
		})
		switch string(typ) {
		case "text_delta":
			if len(text) > 2 && text[0] == '"' {
				t.emitContent(text)
			}
		case "input_json_delta":
			if ev.index >= len(t.blockTool) || t.blockTool[ev.index] < 0 {
				return errEvent
			}
			if len(partial) <= 2 || partial[0] != '"' {
				return nil // an empty fragment says nothing
			}
			b := t.head()
			b = append(b, `[{"index":0,"delta":{"tool_calls":[{"index":`...)
			b = strconv.AppendInt(b, int64(t.blockTool[ev.index]), 10)
			b = append(b, `,"function":{"arguments":`...)
			b = append(b, partial...)
			b = append(b, `}}]},"logprobs":null,"finish_reason":null}]}`...)
			t.emit(b)
		}
	case "message_delta":
		if ev.usage != nil {
			t.readUsage(ev.usage)
		}
		stop := ""
		if d := ev.delta; d != nil {
			if s, e, ok := jsonscan.Find(d, 0, "stop_reason"); ok {
				r, _ := jsonscan.String(d[s:e])
				stop = string(r)
			}
		}
		t.emitFinish(stop)
	case "message_stop":
		t.emitFinish("")
		t.emitUsage()
		t.done = true
	case "error":
		b := appendOpenAIError(t.out[t.n][:0], ev.errType, ev.errMsg)
		t.emit(b)
		t.done = true
	}
	return nil
}

// ErrorEvent reports whether data is an Anthropic error event, and its
// type and message.
func ErrorEvent(data []byte) (typ, msg string, ok bool) {
	s, e, found := jsonscan.Find(data, 0, "type")
	if !found {
		return "", "", false
	}
	if v, _ := jsonscan.String(data[s:e]); string(v) != "error" {
		return "", "", false
	}
	typ, msg, _ = parseError(data)
	return typ, msg, true
}

func (t *ChunkTranslator) readUsage(v []byte) {
	_, _ = jsonscan.Object(v, 0, func(f jsonscan.Field) bool {
		n, ok := jsonscan.Int(v[f.Start:f.End])
		if !ok {
			return true
		}
		switch string(f.Key) {
		case "input_tokens":
			t.usage.InputTokens = n
		case "output_tokens":
			t.usage.OutputTokens = n
		case "cache_read_input_tokens":
			t.usage.CacheReadInputTokens = n
		case "cache_creation_input_tokens":
			t.usage.CacheCreationInputTokens = n
		}
		return true
	})
}

// head starts a chunk in the next output buffer.
func (t *ChunkTranslator) head() []byte {
	b := t.out[t.n][:0]
	b = append(b, `{"id":`...)
	b = append(b, t.id...)
	b = append(b, `,"object":"chat.completion.chunk","created":`...)
	b = append(b, t.created...)
	b = append(b, `,"model":`...)
	b = append(b, t.model...)
	return append(b, `,"choices":`...)
}

func (t *ChunkTranslator) emit(b []byte) {
	t.out[t.n] = b
	t.n++
}

// emitContent emits a content chunk for a raw JSON string.
func (t *ChunkTranslator) emitContent(raw []byte) {
	b := t.head()
	b = append(b, `[{"index":0,"delta":{"content":`...)
	b = append(b, raw...)
	b = append(b, `},"logprobs":null,"finish_reason":null}]}`...)
	t.emit(b)
}

func (t *ChunkTranslator) emitFinish(stopReason string) {
	if t.finished {
		return
	}
	t.finished = true
	b := t.head()
	b = append(b, `[{"index":0,"delta":{},"logprobs":null,"finish_reason":"`...)
	b = append(b, FinishReason(stopReason)...)
	b = append(b, `"}]}`...)
	t.emit(b)
}

func (t *ChunkTranslator) emitUsage() {
	u := t.usage.usage()
	b := t.head()
	b = append(b, `[],"usage":`...)
	b = appendOpenAIUsage(b, u)
	b = append(b, '}')
	t.emit(b)
}

// appendOpenAIUsage appends OpenAI's usage object.
func appendOpenAIUsage(b []byte, u providers.Usage) []byte {
	b = append(b, `{"prompt_tokens":`...)
	b = appendInt(b, u.PromptTokens)
	b = append(b, `,"completion_tokens":`...)
	b = appendInt(b, u.CompletionTokens)
	b = append(b, `,"total_tokens":`...)
	b = appendInt(b, u.TotalTokens)
	b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
	b = appendInt(b, u.CachedTokens)
	b = append(b, `},"completion_tokens_details":{"reasoning_tokens":`...)
	b = appendInt(b, u.ReasoningTokens)
	return append(b, "}}"...)
}

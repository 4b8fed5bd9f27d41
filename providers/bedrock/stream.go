package bedrock

import (
	"errors"
	"strconv"

	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"

	"github.com/mtai-dev/mtai/providers"
)

// chunker writes the OpenAI chunks of one ConverseStream, event by event:
//
//	messageStart                 → role chunk
//	contentBlockStart toolUse    → tool-call chunk: index, id, type, name, arguments ""
//	contentBlockDelta text       → content chunk
//	contentBlockDelta toolUse    → tool-call chunk with an arguments fragment
//	messageStop                  → finish chunk (FinishReason)
//	metadata                     → usage chunk (choices: []), the end
//	contentBlockStop, reasoning deltas, unknown events → nothing
//
// Every chunk has the same id, created and model. Not safe for concurrent use.
type chunker struct {
	head      []byte // the chunk up to and including `"choices":`
	buf       []byte
	blockTool []int // per content block index: OpenAI tool-call index, or -1
	tools     int
	usage     providers.Usage
	finished  bool // the usage chunk was written
	failed    bool // an exception ended the stream
	exception *providers.UpstreamError
}

func newChunker(id string, created int64, model string) *chunker {
	h := []byte(`{"id":`)
	h = providers.AppendJSONString(h, id)
	h = append(h, `,"object":"chat.completion.chunk","created":`...)
	h = strconv.AppendInt(h, created, 10)
	h = append(h, `,"model":`...)
	h = providers.AppendJSONString(h, model)
	h = append(h, `,"choices":`...)
	return &chunker{head: h}
}

var errBlock = errors.New("tool input delta for a block that is not a tool use")

func (w *chunker) start() []byte { return append(w.buf[:0], w.head...) }

func (w *chunker) done(b []byte) []byte {
	w.buf = b
	return b
}

// event returns the chunk for one stream event, nil when it has none.
func (w *chunker) event(ev types.ConverseStreamOutput) ([]byte, error) {
	switch v := ev.(type) {
	case *types.ConverseStreamOutputMemberMessageStart:
		b := append(w.start(), `[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}`...)
		return w.done(b), nil
	case *types.ConverseStreamOutputMemberContentBlockStart:
		tu, ok := v.Value.Start.(*types.ContentBlockStartMemberToolUse)
		if !ok {
			return nil, nil
		}
		idx := index(v.Value.ContentBlockIndex)
		for len(w.blockTool) <= idx {
			w.blockTool = append(w.blockTool, -1)
		}
		w.blockTool[idx] = w.tools
		b := append(w.start(), `[{"index":0,"delta":{"tool_calls":[{"index":`...)
		b = strconv.AppendInt(b, int64(w.tools), 10)
		b = append(b, `,"id":`...)
		b = providers.AppendJSONString(b, deref(tu.Value.ToolUseId))
		b = append(b, `,"type":"function","function":{"name":`...)
		b = providers.AppendJSONString(b, deref(tu.Value.Name))
		b = append(b, `,"arguments":""}}]},"logprobs":null,"finish_reason":null}]}`...)
		w.tools++
		return w.done(b), nil
	case *types.ConverseStreamOutputMemberContentBlockDelta:
		switch d := v.Value.Delta.(type) {
		case *types.ContentBlockDeltaMemberText:
			if d.Value == "" {
				return nil, nil
			}
			b := append(w.start(), `[{"index":0,"delta":{"content":`...)
			b = providers.AppendJSONString(b, d.Value)
			b = append(b, `},"logprobs":null,"finish_reason":null}]}`...)
			return w.done(b), nil
		case *types.ContentBlockDeltaMemberToolUse:
			idx := index(v.Value.ContentBlockIndex)
			if idx >= len(w.blockTool) || w.blockTool[idx] < 0 {
				return nil, errBlock
			}
			in := deref(d.Value.Input)
			if in == "" {
				return nil, nil
			}
			b := append(w.start(), `[{"index":0,"delta":{"tool_calls":[{"index":`...)
			b = strconv.AppendInt(b, int64(w.blockTool[idx]), 10)
			b = append(b, `,"function":{"arguments":`...)
			b = providers.AppendJSONString(b, in)
			b = append(b, `}}]},"logprobs":null,"finish_reason":null}]}`...)
			return w.done(b), nil
		}
		return nil, nil
	case *types.ConverseStreamOutputMemberMessageStop:
		b := append(w.start(), `[{"index":0,"delta":{},"logprobs":null,"finish_reason":"`...)
		b = append(b, FinishReason(v.Value.StopReason)...)
		b = append(b, `"}]}`...)
		return w.done(b), nil
	case *types.ConverseStreamOutputMemberMetadata:
		w.usage = usageOf(v.Value.Usage)
		w.finished = true
		u := w.usage
		b := append(w.start(), `[],"usage":{"prompt_tokens":`...)
		b = strconv.AppendInt(b, u.PromptTokens, 10)
		b = append(b, `,"completion_tokens":`...)
		b = strconv.AppendInt(b, u.CompletionTokens, 10)
		b = append(b, `,"total_tokens":`...)
		b = strconv.AppendInt(b, u.TotalTokens, 10)
		b = append(b, `,"prompt_tokens_details":{"cached_tokens":`...)
		b = strconv.AppendInt(b, u.CachedTokens, 10)
		b = append(b, `},"completion_tokens_details":{"reasoning_tokens":0}}}`...)
		return w.done(b), nil
	}
	return nil, nil
}

// error returns the OpenAI error payload for an exception that ended the stream.
func (w *chunker) error(ue *providers.UpstreamError) []byte {
	w.failed, w.exception = true, ue
	b := append(w.buf[:0], `{"error":{"message":`...)
	b = providers.AppendJSONString(b, ue.Message)
	b = append(b, `,"type":`...)
	b = providers.AppendJSONString(b, ue.Type)
	b = append(b, `,"param":null,"code":`...)
	b = providers.AppendJSONString(b, ue.Code)
	b = append(b, "}}"...)
	return w.done(b)
}

func index(p *int32) int {
	if p == nil || *p < 0 {
		return 0
	}
	return int(*p)
}

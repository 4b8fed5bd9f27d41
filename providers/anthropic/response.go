package anthropic

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"

	"github.com/mtai-dev/mtai/providers"
)

// FinishReason maps an Anthropic stop_reason to OpenAI's finish_reason:
// end_turn, stop_sequence and pause_turn → stop; max_tokens and
// model_context_window_exceeded → length; tool_use → tool_calls;
// refusal → content_filter. Anything else (and null) is stop.
func FinishReason(stopReason string) string {
	switch stopReason {
	case "max_tokens", "model_context_window_exceeded":
		return "length"
	case "tool_use":
		return "tool_calls"
	case "refusal":
		return "content_filter"
	}
	return "stop"
}

// StopReason maps an OpenAI finish_reason to Anthropic's stop_reason, the
// inverse of FinishReason: stop → end_turn, length → max_tokens,
// tool_calls (and the legacy function_call) → tool_use, content_filter →
// refusal. Anything else is end_turn.
func StopReason(finishReason string) string {
	switch finishReason {
	case "length":
		return "max_tokens"
	case "tool_calls", "function_call":
		return "tool_use"
	case "content_filter":
		return "refusal"
	}
	return "end_turn"
}

// ResponseToOpenAI translates an Anthropic Messages response into an OpenAI
// chat completion (object chat.completion, one choice) created at the given
// Unix time. Text blocks are joined into the message content, tool_use
// blocks become tool_calls (content is then null when there was no text),
// thinking blocks are dropped. The usage counts cache reads and writes as
// prompt tokens (cached_tokens are the reads); it is also returned.
func ResponseToOpenAI(body []byte, created int64) ([]byte, providers.Usage, error) {
	var in antResponse
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, providers.Usage{}, err
	}
	if in.Type != "message" {
		return nil, providers.Usage{}, errors.New("not a message response")
	}
	var text strings.Builder
	msg := oaOutMessage{Role: "assistant"}
	for _, b := range in.Content {
		switch b.Type {
		case "text":
			if b.Text != nil {
				text.WriteString(*b.Text)
			}
		case "tool_use":
			args := "{}"
			if !isNull(b.Input) {
				var c bytes.Buffer
				if err := json.Compact(&c, b.Input); err == nil {
					args = c.String()
				}
			}
			msg.ToolCalls = append(msg.ToolCalls, oaToolCall{ID: b.ID, Type: "function", Function: oaFunction{Name: b.Name, Arguments: args}})
		}
	}
	if text.Len() > 0 || len(msg.ToolCalls) == 0 {
		s := text.String()
		msg.Content = &s
	}
	stop := ""
	if in.StopReason != nil {
		stop = *in.StopReason
	}
	finish := FinishReason(stop)
	u := in.Usage.usage()
	out := oaResponse{
		ID: in.ID, Object: "chat.completion", Created: created, Model: in.Model,
		Choices: []oaChoice{{Message: msg, Logprobs: json.RawMessage("null"), FinishReason: &finish}},
		Usage: &oaUsage{
			PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens,
			PromptTokensDetails:     &oaPromptDet{CachedTokens: u.CachedTokens},
			CompletionTokensDetails: &oaCompleteDet{},
		},
	}
	b, err := marshal(out)
	return b, u, err
}

// ResponseFromOpenAI translates an OpenAI chat completion into an Anthropic
// Messages response: the first choice's text as a text block, its
// tool_calls as tool_use blocks (arguments that are not a JSON object are
// kept as {"_raw_arguments": "..."}), finish_reason through StopReason, and
// usage with cached tokens reported as cache reads (cache writes are not
// known from OpenAI's usage and are 0).
func ResponseFromOpenAI(body []byte) ([]byte, error) {
	var in oaResponse
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, err
	}
	if len(in.Choices) == 0 {
		return nil, errors.New("the completion has no choices")
	}
	c := in.Choices[0]
	content := []antBlock{}
	text := ""
	if c.Message.Content != nil {
		text = *c.Message.Content
	}
	if text == "" && c.Message.Refusal != nil {
		text = *c.Message.Refusal
	}
	if text != "" {
		content = append(content, antBlock{Type: "text", Text: &text})
	}
	for _, tc := range c.Message.ToolCalls {
		content = append(content, antBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: inputOf(tc.Function.Arguments)})
	}
	finish := ""
	if c.FinishReason != nil {
		finish = *c.FinishReason
	}
	stop := StopReason(finish)
	if finish == "" && len(c.Message.ToolCalls) > 0 {
		stop = "tool_use"
	}
	out := antResponse{ID: in.ID, Type: "message", Role: "assistant", Model: in.Model, Content: content, StopReason: &stop}
	if in.Usage != nil {
		out.Usage = usageFromOpenAI(in.Usage.PromptTokens, in.Usage.CompletionTokens, cachedOf(in.Usage))
	}
	return marshal(out)
}

func cachedOf(u *oaUsage) int64 {
	if u.PromptTokensDetails == nil {
		return 0
	}
	return u.PromptTokensDetails.CachedTokens
}

func usageFromOpenAI(prompt, completion, cached int64) antUsage {
	in := prompt - cached
	if in < 0 {
		in = 0
	}
	return antUsage{InputTokens: in, CacheReadInputTokens: cached, OutputTokens: completion}
}

// inputOf turns OpenAI arguments into a tool_use input object.
func inputOf(args string) json.RawMessage {
	if in, err := toolInput(args); err == nil {
		return in
	}
	b, _ := marshal(map[string]string{"_raw_arguments": args})
	return b
}

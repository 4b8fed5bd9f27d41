package bedrock

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/document"
	"github.com/aws/aws-sdk-go-v2/service/bedrockruntime/types"
	smithydocument "github.com/aws/smithy-go/document"

	"github.com/mtai-dev/mtai/providers"
)

// The OpenAI chat request, as far as the translation reads it.
type oaRequest struct {
	Messages            []oaMessage     `json:"messages"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	Temperature         *float32        `json:"temperature"`
	TopP                *float32        `json:"top_p"`
	Stop                json.RawMessage `json:"stop"`
	N                   *int64          `json:"n"`
	Tools               []oaTool        `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
}

type oaMessage struct {
	Role       string          `json:"role"`
	Content    json.RawMessage `json:"content"`
	ToolCalls  []oaToolCall    `json:"tool_calls"`
	ToolCallID string          `json:"tool_call_id"`
}

type oaPart struct {
	Type     string  `json:"type"`
	Text     *string `json:"text"`
	Refusal  *string `json:"refusal"`
	ImageURL *struct {
		URL string `json:"url"`
	} `json:"image_url"`
}

type oaToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type oaTool struct {
	Type     string `json:"type"`
	Function struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
	} `json:"function"`
}

// converse is the translated request: the members shared by ConverseInput
// and ConverseStreamInput.
type converse struct {
	messages  []types.Message
	system    []types.SystemContentBlock
	inference *types.InferenceConfiguration
	tools     *types.ToolConfiguration
}

// RequestError is an OpenAI request that Converse cannot express; Param
// names the field.
type RequestError struct {
	Param   string
	Message string
}

func (e *RequestError) Error() string { return e.Message }

func badRequest(param, msg string) error { return &RequestError{Param: param, Message: msg} }

// fromOpenAI translates an OpenAI chat request into Converse's members:
//
//   - system and developer messages become "system" text blocks;
//   - user and assistant messages become messages with text, image (from
//     base64 data: URLs; s3:// URLs as S3 locations) and toolUse blocks;
//     tool messages become toolResult blocks of a user message; consecutive
//     messages of one role are merged (Converse wants turns to alternate);
//   - max_completion_tokens (else max_tokens, else defaultMax when > 0),
//     temperature, top_p and stop become inferenceConfig;
//   - tools become toolSpec tools; tool_choice auto/required/named becomes
//     auto/any/tool; "none" leaves the tools out (unless the conversation
//     already holds tool blocks, which Converse only accepts with tools).
func fromOpenAI(body []byte, defaultMax int32) (*converse, error) {
	var in oaRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, badRequest("", "The request body is not a valid chat completion request: "+err.Error())
	}
	if in.N != nil && *in.N > 1 {
		return nil, badRequest("n", "'n' greater than 1 is not supported by Bedrock models.")
	}
	c := &converse{}
	toolBlocks := false
	add := func(role types.ConversationRole, blocks ...types.ContentBlock) {
		if n := len(c.messages); n > 0 && c.messages[n-1].Role == role {
			c.messages[n-1].Content = append(c.messages[n-1].Content, blocks...)
			return
		}
		c.messages = append(c.messages, types.Message{Role: role, Content: blocks})
	}
	for i, m := range in.Messages {
		param := fmt.Sprintf("messages[%d]", i)
		ps, err := parts(m.Content, param+".content")
		if err != nil {
			return nil, err
		}
		switch m.Role {
		case "system", "developer":
			for j, p := range ps {
				if p.Type != "text" || p.Text == nil {
					return nil, badRequest(fmt.Sprintf("%s.content[%d]", param, j), "System content must be text.")
				}
				c.system = append(c.system, &types.SystemContentBlockMemberText{Value: *p.Text})
			}
		case "user":
			var blocks []types.ContentBlock
			for j, p := range ps {
				b, err := userBlock(p, fmt.Sprintf("%s.content[%d]", param, j))
				if err != nil {
					return nil, err
				}
				blocks = append(blocks, b)
			}
			if len(blocks) > 0 {
				add(types.ConversationRoleUser, blocks...)
			}
		case "assistant":
			var blocks []types.ContentBlock
			var text strings.Builder
			for _, p := range ps {
				switch {
				case p.Text != nil:
					text.WriteString(*p.Text)
				case p.Refusal != nil:
					text.WriteString(*p.Refusal)
				}
			}
			if text.Len() > 0 {
				blocks = append(blocks, &types.ContentBlockMemberText{Value: text.String()})
			}
			for j, tc := range m.ToolCalls {
				input, err := decodeDocument(tc.Function.Arguments, "{}")
				if _, isObject := input.(map[string]any); err != nil || !isObject {
					return nil, badRequest(fmt.Sprintf("%s.tool_calls[%d].function.arguments", param, j), "The tool call's arguments are not a JSON object.")
				}
				id, name := tc.ID, tc.Function.Name
				blocks = append(blocks, &types.ContentBlockMemberToolUse{Value: types.ToolUseBlock{
					ToolUseId: &id, Name: &name, Input: document.NewLazyDocument(input)}})
				toolBlocks = true
			}
			if len(blocks) > 0 {
				add(types.ConversationRoleAssistant, blocks...)
			}
		case "tool":
			var content []types.ToolResultContentBlock
			for j, p := range ps {
				if p.Text == nil {
					return nil, badRequest(fmt.Sprintf("%s.content[%d]", param, j), "Tool results must be text.")
				}
				content = append(content, &types.ToolResultContentBlockMemberText{Value: *p.Text})
			}
			if len(content) == 0 {
				content = append(content, &types.ToolResultContentBlockMemberText{Value: ""})
			}
			id := m.ToolCallID
			add(types.ConversationRoleUser, &types.ContentBlockMemberToolResult{Value: types.ToolResultBlock{ToolUseId: &id, Content: content}})
			toolBlocks = true
		default:
			return nil, badRequest(param+".role", fmt.Sprintf("Role %q is not supported; use system, developer, user, assistant or tool.", m.Role))
		}
	}
	if len(c.messages) == 0 {
		return nil, badRequest("messages", "At least one user or assistant message is required.")
	}

	inf := &types.InferenceConfiguration{Temperature: in.Temperature, TopP: in.TopP}
	maxTokens := int64(defaultMax)
	switch {
	case in.MaxCompletionTokens != nil:
		maxTokens = *in.MaxCompletionTokens
	case in.MaxTokens != nil:
		maxTokens = *in.MaxTokens
	}
	if maxTokens > 0 {
		mt := int32(min(maxTokens, 1<<31-1))
		inf.MaxTokens = &mt
	}
	if !isNull(in.Stop) {
		var s string
		if err := json.Unmarshal(in.Stop, &s); err == nil {
			inf.StopSequences = []string{s}
		} else if err := json.Unmarshal(in.Stop, &inf.StopSequences); err != nil {
			return nil, badRequest("stop", "'stop' must be a string or an array of strings.")
		}
	}
	if inf.MaxTokens != nil || inf.Temperature != nil || inf.TopP != nil || inf.StopSequences != nil {
		c.inference = inf
	}

	if len(in.Tools) > 0 {
		tc := &types.ToolConfiguration{}
		for i, t := range in.Tools {
			if t.Type != "function" && t.Type != "" {
				return nil, badRequest(fmt.Sprintf("tools[%d].type", i), fmt.Sprintf("Tool type %q is not supported; only function tools are.", t.Type))
			}
			schema, err := decodeDocument(string(t.Function.Parameters), `{"type":"object","properties":{}}`)
			if err != nil {
				return nil, badRequest(fmt.Sprintf("tools[%d].function.parameters", i), "The parameters are not a JSON schema object.")
			}
			name := t.Function.Name
			spec := types.ToolSpecification{Name: &name, InputSchema: &types.ToolInputSchemaMemberJson{Value: document.NewLazyDocument(schema)}}
			if t.Function.Description != "" {
				d := t.Function.Description
				spec.Description = &d
			}
			tc.Tools = append(tc.Tools, &types.ToolMemberToolSpec{Value: spec})
		}
		keep := true
		if !isNull(in.ToolChoice) {
			var s string
			if err := json.Unmarshal(in.ToolChoice, &s); err == nil {
				switch s {
				case "auto":
					tc.ToolChoice = &types.ToolChoiceMemberAuto{}
				case "required":
					tc.ToolChoice = &types.ToolChoiceMemberAny{}
				case "none":
					keep = toolBlocks
				default:
					return nil, badRequest("tool_choice", fmt.Sprintf("tool_choice %q is not one of auto, required, none.", s))
				}
			} else {
				var named struct {
					Function struct {
						Name string `json:"name"`
					} `json:"function"`
				}
				if err := json.Unmarshal(in.ToolChoice, &named); err != nil || named.Function.Name == "" {
					return nil, badRequest("tool_choice", "tool_choice must be auto, required, none or a named function.")
				}
				n := named.Function.Name
				tc.ToolChoice = &types.ToolChoiceMemberTool{Value: types.SpecificToolChoice{Name: &n}}
			}
		}
		if keep {
			c.tools = tc
		}
	}
	return c, nil
}

func isNull(v json.RawMessage) bool {
	v = bytes.TrimSpace(v)
	return len(v) == 0 || string(v) == "null"
}

func parts(v json.RawMessage, param string) ([]oaPart, error) {
	if isNull(v) {
		return nil, nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return []oaPart{{Type: "text", Text: &s}}, nil
	}
	var ps []oaPart
	if err := json.Unmarshal(v, &ps); err != nil {
		return nil, badRequest(param, "'content' must be a string or an array of content parts.")
	}
	return ps, nil
}

func userBlock(p oaPart, param string) (types.ContentBlock, error) {
	switch p.Type {
	case "text":
		if p.Text == nil {
			return nil, badRequest(param+".text", "A text part needs 'text'.")
		}
		return &types.ContentBlockMemberText{Value: *p.Text}, nil
	case "image_url":
		if p.ImageURL == nil {
			return nil, badRequest(param+".image_url", "An image_url part needs 'image_url.url'.")
		}
		u := p.ImageURL.URL
		if s3, ok := strings.CutPrefix(u, "s3://"); ok {
			format := imageFormat(s3[strings.LastIndexByte(s3, '.')+1:])
			if format == "" {
				return nil, badRequest(param+".image_url.url", "The S3 image's extension must be png, jpeg, gif or webp.")
			}
			return &types.ContentBlockMemberImage{Value: types.ImageBlock{Format: format,
				Source: &types.ImageSourceMemberS3Location{Value: types.S3Location{Uri: &u}}}}, nil
		}
		rest, ok := strings.CutPrefix(u, "data:image/")
		meta, data, ok2 := strings.Cut(rest, ",")
		sub, ok3 := strings.CutSuffix(meta, ";base64")
		if !ok || !ok2 || !ok3 {
			return nil, badRequest(param+".image_url.url", "Bedrock takes images as base64 data: URLs (data:image/png;base64,...) or s3:// URLs, not web URLs.")
		}
		format := imageFormat(sub)
		raw, err := base64.StdEncoding.DecodeString(data)
		if format == "" || err != nil {
			return nil, badRequest(param+".image_url.url", "The image must be base64 png, jpeg, gif or webp.")
		}
		return &types.ContentBlockMemberImage{Value: types.ImageBlock{Format: format, Source: &types.ImageSourceMemberBytes{Value: raw}}}, nil
	}
	return nil, badRequest(param+".type", fmt.Sprintf("Content part type %q is not supported by Bedrock models.", p.Type))
}

func imageFormat(sub string) types.ImageFormat {
	switch strings.ToLower(sub) {
	case "png":
		return types.ImageFormatPng
	case "jpeg", "jpg":
		return types.ImageFormatJpeg
	case "gif":
		return types.ImageFormatGif
	case "webp":
		return types.ImageFormatWebp
	}
	return ""
}

// decodeDocument decodes JSON (def when blank) into a value for a smithy
// document, numbers kept as written.
func decodeDocument(s, def string) (any, error) {
	if strings.TrimSpace(s) == "" || strings.TrimSpace(s) == "null" {
		s = def
	}
	dec := json.NewDecoder(strings.NewReader(s))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the JSON value")
	}
	return numbers(v), nil
}

// numbers turns json.Number into smithy's document.Number, which the
// document encoder writes as a number.
func numbers(v any) any {
	switch t := v.(type) {
	case json.Number:
		return smithydocument.Number(t)
	case map[string]any:
		for k, e := range t {
			t[k] = numbers(e)
		}
	case []any:
		for i, e := range t {
			t[i] = numbers(e)
		}
	}
	return v
}

// FinishReason maps a Converse stop reason to OpenAI's finish_reason:
// end_turn and stop_sequence → stop; tool_use → tool_calls; max_tokens and
// model_context_window_exceeded → length; guardrail_intervened and
// content_filtered → content_filter; anything else → stop.
func FinishReason(r types.StopReason) string {
	switch r {
	case types.StopReasonToolUse:
		return "tool_calls"
	case types.StopReasonMaxTokens, "model_context_window_exceeded":
		return "length"
	case types.StopReasonGuardrailIntervened, types.StopReasonContentFiltered:
		return "content_filter"
	}
	return "stop"
}

// usageOf converts Converse's usage: the prompt counts cache reads and
// writes (Bedrock's inputTokens leaves them out), cached_tokens are the reads.
func usageOf(u *types.TokenUsage) providers.Usage {
	if u == nil {
		return providers.Usage{}
	}
	v := func(p *int32) int64 {
		if p == nil {
			return 0
		}
		return int64(*p)
	}
	out := providers.Usage{
		PromptTokens:     v(u.InputTokens) + v(u.CacheReadInputTokens) + v(u.CacheWriteInputTokens),
		CompletionTokens: v(u.OutputTokens),
		CachedTokens:     v(u.CacheReadInputTokens),
	}
	out.TotalTokens = out.PromptTokens + out.CompletionTokens
	return out
}

// The OpenAI completion written by responseToOpenAI.
type oaResponse struct {
	ID      string     `json:"id"`
	Object  string     `json:"object"`
	Created int64      `json:"created"`
	Model   string     `json:"model"`
	Choices []oaChoice `json:"choices"`
	Usage   oaUsage    `json:"usage"`
}

type oaChoice struct {
	Index        int             `json:"index"`
	Message      oaOutMessage    `json:"message"`
	Logprobs     json.RawMessage `json:"logprobs"`
	FinishReason string          `json:"finish_reason"`
}

type oaOutMessage struct {
	Role      string          `json:"role"`
	Content   *string         `json:"content"`
	Refusal   json.RawMessage `json:"refusal"`
	ToolCalls []oaOutToolCall `json:"tool_calls,omitempty"`
}

type oaOutToolCall struct {
	ID       string `json:"id"`
	Type     string `json:"type"`
	Function struct {
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
	} `json:"function"`
}

type oaUsage struct {
	PromptTokens        int64 `json:"prompt_tokens"`
	CompletionTokens    int64 `json:"completion_tokens"`
	TotalTokens         int64 `json:"total_tokens"`
	PromptTokensDetails struct {
		CachedTokens int64 `json:"cached_tokens"`
	} `json:"prompt_tokens_details"`
	CompletionTokensDetails struct {
		ReasoningTokens int64 `json:"reasoning_tokens"`
	} `json:"completion_tokens_details"`
}

// responseToOpenAI writes a Converse answer as an OpenAI chat completion.
func responseToOpenAI(id string, created int64, model string, msg *types.Message, stop types.StopReason, u providers.Usage) ([]byte, error) {
	var text strings.Builder
	out := oaOutMessage{Role: "assistant", Refusal: json.RawMessage("null")}
	if msg != nil {
		for _, b := range msg.Content {
			switch v := b.(type) {
			case *types.ContentBlockMemberText:
				text.WriteString(v.Value)
			case *types.ContentBlockMemberToolUse:
				args := []byte("{}")
				if v.Value.Input != nil {
					j, err := v.Value.Input.MarshalSmithyDocument()
					if err != nil {
						return nil, err
					}
					args = j
				}
				var tc oaOutToolCall
				tc.ID, tc.Type = deref(v.Value.ToolUseId), "function"
				tc.Function.Name, tc.Function.Arguments = deref(v.Value.Name), string(args)
				out.ToolCalls = append(out.ToolCalls, tc)
			}
		}
	}
	if text.Len() > 0 || len(out.ToolCalls) == 0 {
		s := text.String()
		out.Content = &s
	}
	r := oaResponse{ID: id, Object: "chat.completion", Created: created, Model: model,
		Choices: []oaChoice{{Message: out, Logprobs: json.RawMessage("null"), FinishReason: FinishReason(stop)}},
		Usage:   oaUsage{PromptTokens: u.PromptTokens, CompletionTokens: u.CompletionTokens, TotalTokens: u.TotalTokens}}
	r.Usage.PromptTokensDetails.CachedTokens = u.CachedTokens
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}

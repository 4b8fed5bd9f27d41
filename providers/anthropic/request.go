package anthropic

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
)

// DefaultMaxTokens is the max_tokens sent to Anthropic when an OpenAI
// request sets neither max_tokens nor max_completion_tokens (Anthropic
// requires it).
const DefaultMaxTokens = 4096

// RequestOptions shape the Anthropic request that RequestFromOpenAI builds.
// The zero value is ready to use.
type RequestOptions struct {
	// Model replaces the request's model when not empty.
	Model string
	// DefaultMaxTokens is used when the request has no max_tokens and no
	// max_completion_tokens; 0 means DefaultMaxTokens (4096).
	DefaultMaxTokens int64
	// CountTokens builds the body of /v1/messages/count_tokens instead:
	// what the model reads (model, system, messages, tools, tool_choice),
	// without max_tokens, stream, sampling, stop sequences or metadata,
	// which that endpoint refuses.
	CountTokens bool
}

// RequestFromOpenAI translates an OpenAI chat completion request into an
// Anthropic Messages request:
//
//   - system and developer messages are lifted into "system";
//   - max_completion_tokens (else max_tokens, else the default) becomes max_tokens;
//   - temperature and top_p pass unchanged, stop becomes stop_sequences, user becomes metadata.user_id;
//   - tools become input_schema tools, tool_choice auto/required/none/named
//     becomes auto/any/none/tool, parallel_tool_calls:false sets
//     disable_parallel_tool_use;
//   - assistant tool_calls become tool_use blocks, and tool messages become
//     tool_result blocks of a user message (consecutive ones in one message);
//   - image_url parts become image blocks (data: URLs as base64 sources,
//     others as url sources), PDF file parts become document blocks.
//
// Fields with no Anthropic equivalent (response_format, logprobs, seed,
// frequency and presence penalties, stream_options, ...) are dropped.
// A request that cannot be expressed (n > 1, audio input, a malformed tool
// call) returns a *RequestError.
func RequestFromOpenAI(body []byte, o RequestOptions) ([]byte, error) {
	var in oaRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, badRequest("", "The request body is not a valid chat completion request: "+err.Error())
	}
	if in.N != nil && *in.N > 1 {
		return nil, badRequest("n", "'n' greater than 1 is not supported by Anthropic models.")
	}
	out := antRequest{Model: in.Model, Stream: in.Stream}
	if o.Model != "" {
		out.Model = o.Model
	}
	maxTokens := o.DefaultMaxTokens
	if maxTokens <= 0 {
		maxTokens = DefaultMaxTokens
	}
	switch {
	case in.MaxCompletionTokens != nil:
		maxTokens = *in.MaxCompletionTokens
	case in.MaxTokens != nil:
		maxTokens = *in.MaxTokens
	}
	out.MaxTokens = &maxTokens
	if !isNull(in.Temperature) {
		out.Temperature = in.Temperature
	}
	if !isNull(in.TopP) {
		out.TopP = in.TopP
	}
	if !isNull(in.Stop) {
		stop, err := stopSequences(in.Stop)
		if err != nil {
			return nil, err
		}
		out.StopSequences = stop
	}
	if in.User != "" {
		out.Metadata = &antMetadata{UserID: in.User}
	}

	var system []antBlock
	var results []antBlock // tool results waiting for their user message
	flush := func() error {
		if len(results) == 0 {
			return nil
		}
		c, err := marshal(results)
		if err != nil {
			return err
		}
		out.Messages = append(out.Messages, antMessage{Role: "user", Content: c})
		results = nil
		return nil
	}
	for i, m := range in.Messages {
		param := fmt.Sprintf("messages[%d]", i)
		switch m.Role {
		case "system", "developer":
			blocks, err := textBlocks(m.Content, param+".content")
			if err != nil {
				return nil, err
			}
			system = append(system, blocks...)
		case "user":
			if err := flush(); err != nil {
				return nil, err
			}
			c, err := userContent(m.Content, param+".content")
			if err != nil {
				return nil, err
			}
			out.Messages = append(out.Messages, antMessage{Role: "user", Content: c})
		case "assistant":
			if err := flush(); err != nil {
				return nil, err
			}
			c, err := assistantContent(m, param)
			if err != nil {
				return nil, err
			}
			out.Messages = append(out.Messages, antMessage{Role: "assistant", Content: c})
		case "tool":
			b := antBlock{Type: "tool_result", ToolUseID: m.ToolCallID}
			if _, ok := jsonString(m.Content); ok {
				b.Content = bytes.TrimSpace(m.Content)
			} else if !isNull(m.Content) {
				blocks, err := textBlocks(m.Content, param+".content")
				if err != nil {
					return nil, err
				}
				c, err := marshal(blocks)
				if err != nil {
					return nil, err
				}
				b.Content = c
			}
			results = append(results, b)
		default:
			return nil, badRequest(param+".role", fmt.Sprintf("Role %q is not supported; use system, developer, user, assistant or tool.", m.Role))
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	if len(out.Messages) == 0 {
		return nil, badRequest("messages", "At least one user or assistant message is required.")
	}
	switch len(system) {
	case 0:
	case 1:
		out.System = rawString(*system[0].Text)
	default:
		s, err := marshal(system)
		if err != nil {
			return nil, err
		}
		out.System = s
	}

	for i, t := range in.Tools {
		if t.Type != "function" && t.Type != "" {
			return nil, badRequest(fmt.Sprintf("tools[%d].type", i), fmt.Sprintf("Tool type %q is not supported; only function tools are.", t.Type))
		}
		schema := t.Function.Parameters
		if isNull(schema) {
			schema = json.RawMessage(`{"type":"object","properties":{}}`)
		}
		out.Tools = append(out.Tools, antTool{Name: t.Function.Name, Description: t.Function.Description, InputSchema: schema})
	}
	if len(out.Tools) > 0 {
		tc, err := toolChoice(in.ToolChoice)
		if err != nil {
			return nil, err
		}
		if in.ParallelToolCalls != nil && !*in.ParallelToolCalls {
			if tc == nil {
				tc = &antToolChoice{Type: "auto"}
			}
			if tc.Type != "none" {
				t := true
				tc.DisableParallelToolUse = &t
			}
		}
		out.ToolChoice = tc
	}
	if o.CountTokens {
		out.MaxTokens, out.Stream, out.Temperature, out.TopP, out.StopSequences, out.Metadata = nil, false, nil, nil, nil, nil
	}
	return marshal(out)
}

func stopSequences(v json.RawMessage) ([]string, error) {
	if s, ok := jsonString(v); ok {
		return []string{s}, nil
	}
	var list []string
	if err := json.Unmarshal(v, &list); err != nil {
		return nil, badRequest("stop", "'stop' must be a string or an array of strings.")
	}
	return list, nil
}

func toolChoice(v json.RawMessage) (*antToolChoice, error) {
	if isNull(v) {
		return nil, nil
	}
	if s, ok := jsonString(v); ok {
		switch s {
		case "auto":
			return &antToolChoice{Type: "auto"}, nil
		case "required":
			return &antToolChoice{Type: "any"}, nil
		case "none":
			return &antToolChoice{Type: "none"}, nil
		}
		return nil, badRequest("tool_choice", fmt.Sprintf("tool_choice %q is not one of auto, required, none.", s))
	}
	var named oaNamedChoice
	if err := json.Unmarshal(v, &named); err != nil || named.Function.Name == "" {
		return nil, badRequest("tool_choice", "tool_choice must be auto, required, none or {\"type\":\"function\",\"function\":{\"name\":...}}.")
	}
	return &antToolChoice{Type: "tool", Name: named.Function.Name}, nil
}

// parts decodes an OpenAI content value: a string (returned as one text
// part) or an array of parts.
func parts(v json.RawMessage, param string) ([]oaPart, error) {
	if s, ok := jsonString(v); ok {
		return []oaPart{{Type: "text", Text: &s}}, nil
	}
	if isNull(v) {
		return nil, nil
	}
	var ps []oaPart
	if err := json.Unmarshal(v, &ps); err != nil {
		return nil, badRequest(param, "'content' must be a string or an array of content parts.")
	}
	return ps, nil
}

// textBlocks reads content that may hold only text (system, tool).
func textBlocks(v json.RawMessage, param string) ([]antBlock, error) {
	ps, err := parts(v, param)
	if err != nil {
		return nil, err
	}
	out := make([]antBlock, 0, len(ps))
	for i, p := range ps {
		if p.Type != "text" || p.Text == nil {
			return nil, badRequest(fmt.Sprintf("%s[%d]", param, i), fmt.Sprintf("Content part type %q is not supported here; only text is.", p.Type))
		}
		out = append(out, antBlock{Type: "text", Text: p.Text})
	}
	return out, nil
}

func userContent(v json.RawMessage, param string) (json.RawMessage, error) {
	if _, ok := jsonString(v); ok {
		return bytes.TrimSpace(v), nil // a plain string travels as it is
	}
	ps, err := parts(v, param)
	if err != nil {
		return nil, err
	}
	blocks := make([]antBlock, 0, len(ps))
	for i, p := range ps {
		pp := fmt.Sprintf("%s[%d]", param, i)
		switch p.Type {
		case "text":
			if p.Text == nil {
				return nil, badRequest(pp+".text", "A text part needs 'text'.")
			}
			blocks = append(blocks, antBlock{Type: "text", Text: p.Text})
		case "image_url":
			if p.ImageURL == nil || p.ImageURL.URL == "" {
				return nil, badRequest(pp+".image_url", "An image_url part needs 'image_url.url'.")
			}
			src, err := imageSource(p.ImageURL.URL, pp+".image_url.url")
			if err != nil {
				return nil, err
			}
			blocks = append(blocks, antBlock{Type: "image", Source: src})
		case "file":
			if p.File == nil || p.File.FileData == "" {
				return nil, badRequest(pp+".file", "Only file parts with inline 'file_data' are supported for Anthropic models.")
			}
			mt, data, ok := parseDataURL(p.File.FileData)
			if !ok {
				return nil, badRequest(pp+".file.file_data", "'file_data' must be a base64 data: URL.")
			}
			blocks = append(blocks, antBlock{Type: "document", Source: &antSource{Type: "base64", MediaType: mt, Data: data}})
		default:
			return nil, badRequest(pp+".type", fmt.Sprintf("Content part type %q is not supported by Anthropic models.", p.Type))
		}
	}
	return marshal(blocks)
}

func imageSource(url, param string) (*antSource, error) {
	if strings.HasPrefix(url, "data:") {
		mt, data, ok := parseDataURL(url)
		if !ok {
			return nil, badRequest(param, "An image data: URL must be base64-encoded, e.g. data:image/png;base64,....")
		}
		return &antSource{Type: "base64", MediaType: mt, Data: data}, nil
	}
	return &antSource{Type: "url", URL: url}, nil
}

// parseDataURL splits "data:<media type>;base64,<data>".
func parseDataURL(u string) (mediaType, data string, ok bool) {
	rest, ok := strings.CutPrefix(u, "data:")
	if !ok {
		return "", "", false
	}
	meta, data, ok := strings.Cut(rest, ",")
	if !ok {
		return "", "", false
	}
	mediaType, ok = strings.CutSuffix(meta, ";base64")
	if !ok || mediaType == "" {
		return "", "", false
	}
	return mediaType, data, true
}

func assistantContent(m oaMessage, param string) (json.RawMessage, error) {
	if len(m.ToolCalls) == 0 {
		if _, ok := jsonString(m.Content); ok {
			return bytes.TrimSpace(m.Content), nil
		}
	}
	ps, err := parts(m.Content, param+".content")
	if err != nil {
		return nil, err
	}
	var text strings.Builder
	for i, p := range ps {
		switch {
		case p.Type == "text" && p.Text != nil:
			text.WriteString(*p.Text)
		case p.Type == "refusal" && p.Refusal != nil:
			text.WriteString(*p.Refusal)
		default:
			return nil, badRequest(fmt.Sprintf("%s.content[%d]", param, i), fmt.Sprintf("Assistant content part type %q is not supported.", p.Type))
		}
	}
	var blocks []antBlock
	if text.Len() > 0 {
		s := text.String()
		blocks = append(blocks, antBlock{Type: "text", Text: &s})
	}
	for i, tc := range m.ToolCalls {
		input, err := toolInput(tc.Function.Arguments)
		if err != nil {
			return nil, badRequest(fmt.Sprintf("%s.tool_calls[%d].function.arguments", param, i), err.Error())
		}
		blocks = append(blocks, antBlock{Type: "tool_use", ID: tc.ID, Name: tc.Function.Name, Input: input})
	}
	if len(blocks) == 0 {
		return json.RawMessage(`""`), nil
	}
	return marshal(blocks)
}

// toolInput turns an OpenAI arguments string into Anthropic's input object.
func toolInput(args string) (json.RawMessage, error) {
	if strings.TrimSpace(args) == "" {
		return json.RawMessage(`{}`), nil
	}
	var b bytes.Buffer
	if err := json.Compact(&b, []byte(args)); err != nil || b.Len() == 0 || b.Bytes()[0] != '{' {
		return nil, fmt.Errorf("the arguments %q are not a JSON object", truncate(args, 80))
	}
	return b.Bytes(), nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}

// ToOpenAIRequest translates an Anthropic Messages request into an OpenAI
// chat completion request, for serving the Messages API with any model:
//
//   - "system" (a string or text blocks) becomes the first, system, message;
//   - max_tokens (required, as by Anthropic) becomes max_completion_tokens;
//   - stop_sequences becomes stop; temperature and top_p pass unchanged;
//     metadata.user_id becomes user; top_k has no equivalent and is dropped;
//   - a streamed request asks for stream_options.include_usage;
//   - tool_use blocks become assistant tool_calls, tool_result blocks
//     become tool messages (placed before the rest of their user turn);
//   - image blocks become image_url parts (base64 as data: URLs), PDF
//     document blocks become file parts; thinking blocks are dropped;
//   - tools become function tools, tool_choice auto/any/none/tool becomes
//     auto/required/none/named, disable_parallel_tool_use sets
//     parallel_tool_calls:false.
//
// The output always has a "model" key (possibly ""). Problems with the
// request return a *RequestError whose message follows Anthropic's wording.
func ToOpenAIRequest(body []byte) ([]byte, error) { return toOpenAIRequest(body, false) }

// CountTokensToOpenAI translates the body of a /v1/messages/count_tokens
// request (a Messages request without max_tokens) into an OpenAI chat
// request as ToOpenAIRequest does, keeping only what the model reads:
// messages, the system prompt, tools and tool_choice. An Anthropic
// deployment makes it a count_tokens body again (RequestOptions.CountTokens).
func CountTokensToOpenAI(body []byte) ([]byte, error) { return toOpenAIRequest(body, true) }

func toOpenAIRequest(body []byte, count bool) ([]byte, error) {
	var in antRequest
	if err := json.Unmarshal(body, &in); err != nil {
		return nil, badRequest("", "The request body is not a valid Messages request: "+err.Error())
	}
	if count {
		in = antRequest{Model: in.Model, System: in.System, Messages: in.Messages, Tools: in.Tools, ToolChoice: in.ToolChoice}
	} else if in.MaxTokens == nil {
		return nil, badRequest("max_tokens", "max_tokens: Field required")
	} else if *in.MaxTokens < 1 {
		return nil, badRequest("max_tokens", "max_tokens: Input should be greater than or equal to 1")
	}
	if len(in.Messages) == 0 {
		return nil, badRequest("messages", "messages: at least one message is required")
	}
	out := oaRequest{Model: in.Model, MaxCompletionTokens: in.MaxTokens, Stream: in.Stream}
	if in.Stream {
		out.StreamOptions = &oaStreamOpts{IncludeUsage: true}
	}
	if !isNull(in.Temperature) {
		out.Temperature = in.Temperature
	}
	if !isNull(in.TopP) {
		out.TopP = in.TopP
	}
	if len(in.StopSequences) > 0 {
		s, err := marshal(in.StopSequences)
		if err != nil {
			return nil, err
		}
		out.Stop = s
	}
	if in.Metadata != nil && in.Metadata.UserID != "" {
		out.User = in.Metadata.UserID
	}
	if !isNull(in.System) {
		c, err := openAITextContent(in.System, "system")
		if err != nil {
			return nil, err
		}
		out.Messages = append(out.Messages, oaMessage{Role: "system", Content: c})
	}
	for i, m := range in.Messages {
		param := fmt.Sprintf("messages.%d", i)
		var err error
		switch m.Role {
		case "user":
			out.Messages, err = appendUserTurn(out.Messages, m.Content, param)
		case "assistant":
			out.Messages, err = appendAssistantTurn(out.Messages, m.Content, param)
		default:
			err = badRequest(param+".role", fmt.Sprintf("%s.role: Input should be 'user' or 'assistant'", param))
		}
		if err != nil {
			return nil, err
		}
	}
	for i, t := range in.Tools {
		if t.Type != "" && t.Type != "custom" {
			return nil, badRequest(fmt.Sprintf("tools.%d.type", i), fmt.Sprintf("tools.%d: tool type %q is not supported by this gateway", i, t.Type))
		}
		schema := t.InputSchema
		if isNull(schema) {
			return nil, badRequest(fmt.Sprintf("tools.%d.input_schema", i), fmt.Sprintf("tools.%d.input_schema: Field required", i))
		}
		out.Tools = append(out.Tools, oaTool{Type: "function", Function: oaFunctionDef{Name: t.Name, Description: t.Description, Parameters: schema}})
	}
	if tc := in.ToolChoice; tc != nil && len(out.Tools) > 0 {
		switch tc.Type {
		case "auto":
			out.ToolChoice = json.RawMessage(`"auto"`)
		case "any":
			out.ToolChoice = json.RawMessage(`"required"`)
		case "none":
			out.ToolChoice = json.RawMessage(`"none"`)
		case "tool":
			if tc.Name == "" {
				return nil, badRequest("tool_choice.name", "tool_choice.name: Field required")
			}
			out.ToolChoice = append(append(json.RawMessage(`{"type":"function","function":{"name":`), rawString(tc.Name)...), "}}"...)
		default:
			return nil, badRequest("tool_choice.type", fmt.Sprintf("tool_choice.type %q is not one of auto, any, tool, none", tc.Type))
		}
		if tc.DisableParallelToolUse != nil && *tc.DisableParallelToolUse {
			f := false
			out.ParallelToolCalls = &f
		}
	}
	return marshal(out)
}

// openAITextContent reads Anthropic content that may hold only text (a
// string or text blocks) as OpenAI content: the string itself, or the text
// of a single block, or text parts.
func openAITextContent(v json.RawMessage, param string) (json.RawMessage, error) {
	if _, ok := jsonString(v); ok {
		return bytes.TrimSpace(v), nil
	}
	var blocks []antBlock
	if err := json.Unmarshal(v, &blocks); err != nil {
		return nil, badRequest(param, param+": Input should be a valid string or a list of text blocks")
	}
	ps := make([]oaPart, 0, len(blocks))
	for i, b := range blocks {
		if b.Type != "text" || b.Text == nil {
			return nil, badRequest(fmt.Sprintf("%s.%d", param, i), fmt.Sprintf("%s.%d: only text blocks are supported here, not %q", param, i, b.Type))
		}
		ps = append(ps, oaPart{Type: "text", Text: b.Text})
	}
	if len(ps) == 1 {
		return rawString(*ps[0].Text), nil
	}
	return marshal(ps)
}

func blocksOf(v json.RawMessage, param string) ([]antBlock, bool, error) {
	if _, ok := jsonString(v); ok {
		return nil, true, nil
	}
	var blocks []antBlock
	if err := json.Unmarshal(v, &blocks); err != nil {
		return nil, false, badRequest(param, param+": Input should be a valid string or a list of content blocks")
	}
	return blocks, false, nil
}

func appendUserTurn(msgs []oaMessage, content json.RawMessage, param string) ([]oaMessage, error) {
	blocks, isString, err := blocksOf(content, param+".content")
	if err != nil {
		return nil, err
	}
	if isString {
		return append(msgs, oaMessage{Role: "user", Content: bytes.TrimSpace(content)}), nil
	}
	var ps []oaPart
	for i, b := range blocks {
		bp := fmt.Sprintf("%s.content.%d", param, i)
		switch b.Type {
		case "tool_result":
			c := json.RawMessage(`""`)
			if !isNull(b.Content) {
				c, err = openAITextContent(b.Content, bp+".content")
				if err != nil {
					return nil, err
				}
			}
			msgs = append(msgs, oaMessage{Role: "tool", ToolCallID: b.ToolUseID, Content: c})
		case "text":
			if b.Text == nil {
				return nil, badRequest(bp+".text", bp+".text: Field required")
			}
			ps = append(ps, oaPart{Type: "text", Text: b.Text})
		case "image":
			if b.Source == nil {
				return nil, badRequest(bp+".source", bp+".source: Field required")
			}
			switch b.Source.Type {
			case "base64":
				ps = append(ps, oaPart{Type: "image_url", ImageURL: &oaImageURL{URL: "data:" + b.Source.MediaType + ";base64," + b.Source.Data}})
			case "url":
				ps = append(ps, oaPart{Type: "image_url", ImageURL: &oaImageURL{URL: b.Source.URL}})
			default:
				return nil, badRequest(bp+".source.type", fmt.Sprintf("%s.source.type %q is not supported by this gateway", bp, b.Source.Type))
			}
		case "document":
			if b.Source == nil || b.Source.Type != "base64" {
				return nil, badRequest(bp+".source", bp+": only base64 document sources are supported by this gateway")
			}
			ps = append(ps, oaPart{Type: "file", File: &oaFile{FileData: "data:" + b.Source.MediaType + ";base64," + b.Source.Data}})
		default:
			return nil, badRequest(bp+".type", fmt.Sprintf("%s: content block type %q is not supported in user messages by this gateway", bp, b.Type))
		}
	}
	switch {
	case len(ps) == 0:
		return msgs, nil
	case len(ps) == 1 && ps[0].Type == "text":
		return append(msgs, oaMessage{Role: "user", Content: rawString(*ps[0].Text)}), nil
	}
	c, err := marshal(ps)
	if err != nil {
		return nil, err
	}
	return append(msgs, oaMessage{Role: "user", Content: c}), nil
}

func appendAssistantTurn(msgs []oaMessage, content json.RawMessage, param string) ([]oaMessage, error) {
	blocks, isString, err := blocksOf(content, param+".content")
	if err != nil {
		return nil, err
	}
	if isString {
		return append(msgs, oaMessage{Role: "assistant", Content: bytes.TrimSpace(content)}), nil
	}
	var text strings.Builder
	m := oaMessage{Role: "assistant"}
	for i, b := range blocks {
		bp := fmt.Sprintf("%s.content.%d", param, i)
		switch b.Type {
		case "text":
			if b.Text != nil {
				text.WriteString(*b.Text)
			}
		case "tool_use":
			args := "{}"
			if !isNull(b.Input) {
				var c bytes.Buffer
				if err := json.Compact(&c, b.Input); err != nil {
					return nil, badRequest(bp+".input", bp+".input: Input should be an object")
				}
				args = c.String()
			}
			m.ToolCalls = append(m.ToolCalls, oaToolCall{ID: b.ID, Type: "function", Function: oaFunction{Name: b.Name, Arguments: args}})
		case "thinking", "redacted_thinking":
			// Reasoning of an earlier turn: no OpenAI equivalent.
		default:
			return nil, badRequest(bp+".type", fmt.Sprintf("%s: content block type %q is not supported in assistant messages by this gateway", bp, b.Type))
		}
	}
	if text.Len() > 0 || len(m.ToolCalls) == 0 {
		m.Content = rawString(text.String())
	}
	return append(msgs, m), nil
}

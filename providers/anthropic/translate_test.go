package anthropic_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	sdk "github.com/anthropics/anthropic-sdk-go/v2"

	"github.com/mtai-dev/mtai/providers/anthropic"
	"github.com/mtai-dev/mtai/providers/providerstest"
)

type translateCase struct {
	name string
	in   []byte
}

// cases returns the shared samples named plus every testdata/<dir>/*<suffix> file.
func cases(t *testing.T, samples []string, dir, suffix string) []translateCase {
	t.Helper()
	var out []translateCase
	for _, s := range samples {
		name := "sample-" + strings.TrimSuffix(filepath.Base(s), filepath.Ext(s))
		out = append(out, translateCase{name, providerstest.Sample(t, s)})
	}
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*"+suffix))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		out = append(out, translateCase{strings.TrimSuffix(filepath.Base(f), suffix), readTestdata(t, filepath.Join(dir, filepath.Base(f)))})
	}
	if len(out) == 0 {
		t.Fatal("no test cases")
	}
	return out
}

func TestRequestFromOpenAIGolden(t *testing.T) {
	for _, tc := range cases(t, []string{"openai/chat-completion-request.json", "openai/chat-completion-request-stream-tools.json"}, "from-openai", ".in.json") {
		t.Run(tc.name, func(t *testing.T) {
			got, err := anthropic.RequestFromOpenAI(tc.in, anthropic.RequestOptions{Model: "claude-sonnet-4-20250514"})
			if err != nil {
				t.Fatalf("RequestFromOpenAI: %v", err)
			}
			golden(t, "from-openai/"+tc.name+".golden.json", got)
			if !json.Valid(got) {
				t.Errorf("output is not JSON: %s", got)
			}
		})
	}
}

// TestRequestFromOpenAIConformance checks CONFORMANCE 7 on the request:
// the system prompt is lifted out of the messages and max_tokens is
// defaulted (configurably), or taken from max_completion_tokens first.
func TestRequestFromOpenAIConformance(t *testing.T) {
	type antReq struct {
		Model     string          `json:"model"`
		MaxTokens int64           `json:"max_tokens"`
		System    json.RawMessage `json:"system"`
		Messages  []struct {
			Role    string          `json:"role"`
			Content json.RawMessage `json:"content"`
		} `json:"messages"`
		StopSequences []string `json:"stop_sequences"`
		ToolChoice    *struct {
			Type    string `json:"type"`
			Name    string `json:"name"`
			Disable bool   `json:"disable_parallel_tool_use"`
		} `json:"tool_choice"`
	}
	decode := func(t *testing.T, in string, o anthropic.RequestOptions) antReq {
		t.Helper()
		out, err := anthropic.RequestFromOpenAI([]byte(in), o)
		if err != nil {
			t.Fatalf("RequestFromOpenAI(%s): %v", in, err)
		}
		var r antReq
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	const sys = `{"model":"m","messages":[{"role":"system","content":"S1"},{"role":"user","content":"hi"},{"role":"developer","content":"S2"}]}`
	r := decode(t, sys, anthropic.RequestOptions{})
	if string(r.System) != `[{"type":"text","text":"S1"},{"type":"text","text":"S2"}]` {
		t.Errorf("system = %s, want both system and developer texts lifted", r.System)
	}
	for _, m := range r.Messages {
		if m.Role != "user" && m.Role != "assistant" {
			t.Errorf("message with role %q left in messages", m.Role)
		}
	}
	if len(r.Messages) != 1 {
		t.Errorf("messages = %d, want 1", len(r.Messages))
	}
	if r.MaxTokens != anthropic.DefaultMaxTokens || anthropic.DefaultMaxTokens != 4096 {
		t.Errorf("max_tokens = %d, want the default 4096", r.MaxTokens)
	}
	if r.Model != "m" {
		t.Errorf("model = %q, want m", r.Model)
	}
	if r := decode(t, sys, anthropic.RequestOptions{DefaultMaxTokens: 1000, Model: "up"}); r.MaxTokens != 1000 || r.Model != "up" {
		t.Errorf("with options: max_tokens %d model %q, want 1000 up", r.MaxTokens, r.Model)
	}
	one := decode(t, `{"model":"m","messages":[{"role":"system","content":"only"},{"role":"user","content":"hi"}],"max_tokens":7}`, anthropic.RequestOptions{})
	if string(one.System) != `"only"` || one.MaxTokens != 7 {
		t.Errorf("single system = %s, max_tokens %d; want \"only\", 7", one.System, one.MaxTokens)
	}
	both := decode(t, `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":7,"max_completion_tokens":9}`, anthropic.RequestOptions{})
	if both.MaxTokens != 9 || len(both.System) != 0 {
		t.Errorf("max_tokens = %d (system %s), want max_completion_tokens 9 and no system", both.MaxTokens, both.System)
	}
	choices := []struct{ in, typ, name string }{
		{`"auto"`, "auto", ""}, {`"required"`, "any", ""}, {`"none"`, "none", ""},
		{`{"type":"function","function":{"name":"f"}}`, "tool", "f"},
	}
	for _, c := range choices {
		r := decode(t, `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":`+c.in+`}`, anthropic.RequestOptions{})
		if r.ToolChoice == nil || r.ToolChoice.Type != c.typ || r.ToolChoice.Name != c.name {
			t.Errorf("tool_choice %s = %+v, want type %s name %q", c.in, r.ToolChoice, c.typ, c.name)
		}
	}
	if r := decode(t, `{"model":"m","messages":[{"role":"user","content":"x"}],"stop":"X"}`, anthropic.RequestOptions{}); len(r.StopSequences) != 1 || r.StopSequences[0] != "X" {
		t.Errorf("stop \"X\" = %v, want [X]", r.StopSequences)
	}
	// Consecutive tool results are merged into one user message.
	merged := decode(t, `{"model":"m","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{}"}},{"id":"b","type":"function","function":{"name":"f","arguments":""}}]},{"role":"tool","tool_call_id":"a","content":"1"},{"role":"tool","tool_call_id":"b","content":"2"}]}`, anthropic.RequestOptions{})
	if len(merged.Messages) != 3 || merged.Messages[2].Role != "user" ||
		string(merged.Messages[2].Content) != `[{"type":"tool_result","tool_use_id":"a","content":"1"},{"type":"tool_result","tool_use_id":"b","content":"2"}]` {
		t.Errorf("tool results: %+v", merged.Messages)
	}
}

func TestRequestFromOpenAIErrors(t *testing.T) {
	cases := []struct{ name, in, param string }{
		{"not json", `{"model":`, ""},
		{"n > 1", `{"model":"m","n":2,"messages":[{"role":"user","content":"x"}]}`, "n"},
		{"audio", `{"model":"m","messages":[{"role":"user","content":[{"type":"input_audio","input_audio":{"data":"x","format":"wav"}}]}]}`, "messages[0].content[0].type"},
		{"bad args", `{"model":"m","messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"[1,"}}]}]}`, "messages[0].tool_calls[0].function.arguments"},
		{"role", `{"model":"m","messages":[{"role":"function","content":"x"}]}`, "messages[0].role"},
		{"only system", `{"model":"m","messages":[{"role":"system","content":"x"}]}`, "messages"},
		{"bad data url", `{"model":"m","messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"data:image/png,raw"}}]}]}`, "messages[0].content[0].image_url.url"},
		{"tool type", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search"}]}`, "tools[0].type"},
		{"tool_choice", `{"model":"m","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"always"}`, "tool_choice"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := anthropic.RequestFromOpenAI([]byte(tc.in), anthropic.RequestOptions{})
			var re *anthropic.RequestError
			if !errors.As(err, &re) {
				t.Fatalf("RequestFromOpenAI(%s) = %v, want a *RequestError", tc.in, err)
			}
			if re.Param != tc.param || re.Message == "" {
				t.Errorf("RequestFromOpenAI(%s) param = %q (%s), want %q", tc.in, re.Param, re.Message, tc.param)
			}
		})
	}
}

func TestToOpenAIRequestGolden(t *testing.T) {
	for _, tc := range cases(t, []string{"anthropic/messages-request.json", "anthropic/messages-request-tool-result.json"}, "to-openai", ".in.json") {
		t.Run(tc.name, func(t *testing.T) {
			got, err := anthropic.ToOpenAIRequest(tc.in)
			if err != nil {
				t.Fatalf("ToOpenAIRequest: %v", err)
			}
			golden(t, "to-openai/"+tc.name+".golden.json", got)
			if err := validate(t, "CreateChatCompletionRequest", got); err != nil {
				t.Errorf("translated request does not validate: %v\n%s", err, got)
			}
		})
	}
}

func TestToOpenAIRequestErrors(t *testing.T) {
	cases := []struct{ name, in, param, msg string }{
		{"max_tokens", `{"model":"m","messages":[{"role":"user","content":"x"}]}`, "max_tokens", "max_tokens: Field required"},
		{"max_tokens 0", `{"model":"m","max_tokens":0,"messages":[{"role":"user","content":"x"}]}`, "max_tokens", ""},
		{"no messages", `{"model":"m","max_tokens":5,"messages":[]}`, "messages", ""},
		{"role", `{"model":"m","max_tokens":5,"messages":[{"role":"system","content":"x"}]}`, "messages.0.role", ""},
		{"server tool", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}`, "tools.0.type", ""},
		{"block", `{"model":"m","max_tokens":5,"messages":[{"role":"user","content":[{"type":"search_result"}]}]}`, "messages.0.content.0.type", ""},
		{"not json", `[]`, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := anthropic.ToOpenAIRequest([]byte(tc.in))
			var re *anthropic.RequestError
			if !errors.As(err, &re) {
				t.Fatalf("ToOpenAIRequest(%s) = %v, want a *RequestError", tc.in, err)
			}
			if re.Param != tc.param || (tc.msg != "" && re.Message != tc.msg) {
				t.Errorf("ToOpenAIRequest(%s) = %q (%s), want %q (%s)", tc.in, re.Param, re.Message, tc.param, tc.msg)
			}
		})
	}
}

// TestCountTokensRoundTrip: a count_tokens body (no max_tokens) goes to
// OpenAI's form and back to a count_tokens body with what the model reads,
// and nothing that endpoint refuses.
func TestCountTokensRoundTrip(t *testing.T) {
	in := []byte(`{"model":"m","system":"Be brief.","temperature":0.5,"stream":true,"metadata":{"user_id":"u"},` +
		`"messages":[{"role":"user","content":"hi"}],"tools":[{"name":"t","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"}}`)
	oa, err := anthropic.CountTokensToOpenAI(in)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"model":"m","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"hi"}],` +
		`"tools":[{"type":"function","function":{"name":"t","parameters":{"type":"object"}}}],"tool_choice":"required"}`
	if string(oa) != want {
		t.Errorf("CountTokensToOpenAI = %s\nwant %s", oa, want)
	}
	back, err := anthropic.RequestFromOpenAI(oa, anthropic.RequestOptions{Model: "up", CountTokens: true})
	if err != nil {
		t.Fatal(err)
	}
	want = `{"model":"up","system":"Be brief.","messages":[{"role":"user","content":"hi"}],"tools":[{"name":"t","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"}}`
	if string(back) != want {
		t.Errorf("RequestFromOpenAI(CountTokens) = %s\nwant %s", back, want)
	}
	if _, err := anthropic.CountTokensToOpenAI([]byte(`{"model":"m","messages":[]}`)); err == nil {
		t.Error("CountTokensToOpenAI without messages: no error")
	}
}

// TestRequestRoundTrip checks that Anthropic → OpenAI → Anthropic keeps
// what both protocols can say.
func TestRequestRoundTrip(t *testing.T) {
	for _, s := range []string{"anthropic/messages-request.json", "anthropic/messages-request-tool-result.json"} {
		in := providerstest.Sample(t, s)
		oa, err := anthropic.ToOpenAIRequest(in)
		if err != nil {
			t.Fatal(err)
		}
		back, err := anthropic.RequestFromOpenAI(oa, anthropic.RequestOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var a, b map[string]any
		_ = json.Unmarshal(in, &a)
		_ = json.Unmarshal(back, &b)
		for _, k := range []string{"model", "max_tokens", "tools", "tool_choice"} {
			ja, _ := json.Marshal(a[k])
			jb, _ := json.Marshal(b[k])
			if !bytes.Equal(ja, jb) {
				t.Errorf("%s: %s = %s after the round trip, want %s", s, k, jb, ja)
			}
		}
		// The system prompt and every message survive (system blocks may become a string).
		var sysA, sysB string
		switch v := a["system"].(type) {
		case string:
			sysA = v
		case []any:
			sysA = v[0].(map[string]any)["text"].(string)
		}
		sysB, _ = b["system"].(string)
		if sysA != sysB {
			t.Errorf("%s: system %q, want %q", s, sysB, sysA)
		}
		if len(a["messages"].([]any)) != len(b["messages"].([]any)) {
			t.Errorf("%s: %d messages after the round trip, want %d", s, len(b["messages"].([]any)), len(a["messages"].([]any)))
		}
	}
}

func TestResponseToOpenAIGolden(t *testing.T) {
	for _, tc := range cases(t, []string{"anthropic/messages-response-text.json", "anthropic/messages-response-tool-use.json"}, "responses", ".anthropic.json") {
		t.Run(tc.name, func(t *testing.T) {
			got, u, err := anthropic.ResponseToOpenAI(tc.in, 1700000000)
			if err != nil {
				t.Fatalf("ResponseToOpenAI: %v", err)
			}
			golden(t, "responses/"+tc.name+".openai.json", got)
			if err := validate(t, "CreateChatCompletionResponse", got); err != nil {
				t.Errorf("does not validate: %v\n%s", err, got)
			}
			if u.PromptTokens+u.CompletionTokens != u.TotalTokens {
				t.Errorf("usage %+v does not add up", u)
			}
		})
	}
}

// TestResponseConformance checks the stop-reason map and the usage
// (CONFORMANCE 7): prompt tokens count cache reads and writes, cached
// tokens are the reads.
func TestResponseConformance(t *testing.T) {
	stops := map[string]string{"end_turn": "stop", "stop_sequence": "stop", "max_tokens": "length",
		"tool_use": "tool_calls", "refusal": "content_filter", "pause_turn": "stop", "model_context_window_exceeded": "length"}
	for stop, want := range stops {
		body := `{"id":"m","type":"message","role":"assistant","model":"c","content":[{"type":"text","text":"x"}],"stop_reason":"` + stop + `","usage":{"input_tokens":1,"output_tokens":1}}`
		out, _, err := anthropic.ResponseToOpenAI([]byte(body), 1)
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Choices []struct {
				FinishReason string `json:"finish_reason"`
			} `json:"choices"`
		}
		_ = json.Unmarshal(out, &r)
		if r.Choices[0].FinishReason != want {
			t.Errorf("stop_reason %s → finish_reason %s, want %s", stop, r.Choices[0].FinishReason, want)
		}
		if back := anthropic.StopReason(want); stop != "stop_sequence" && stop != "pause_turn" && stop != "model_context_window_exceeded" && back != stop {
			t.Errorf("StopReason(%s) = %s, want %s", want, back, stop)
		}
	}
	_, u, err := anthropic.ResponseToOpenAI(readTestdata(t, "responses/cache-usage.anthropic.json"), 1)
	if err != nil {
		t.Fatal(err)
	}
	if u.PromptTokens != 1210 || u.CachedTokens != 1000 || u.CompletionTokens != 50 || u.TotalTokens != 1260 {
		t.Errorf("usage = %+v, want prompt 10+1000+200, cached 1000, completion 50", u)
	}
}

func TestResponseFromOpenAIGolden(t *testing.T) {
	for _, s := range []string{"openai/chat-completion-response.json", "openai/chat-completion-response-tool-calls.json"} {
		name := strings.TrimSuffix(filepath.Base(s), ".json")
		t.Run(name, func(t *testing.T) {
			got, err := anthropic.ResponseFromOpenAI(providerstest.Sample(t, s))
			if err != nil {
				t.Fatal(err)
			}
			golden(t, "responses/sample-"+name+".anthropic-out.json", got)
			var m sdk.Message
			if err := json.Unmarshal(got, &m); err != nil {
				t.Fatalf("the Anthropic SDK cannot read it: %v", err)
			}
			if m.Type != "message" || m.Role != "assistant" || len(m.Content) == 0 || m.Usage.OutputTokens == 0 {
				t.Errorf("SDK reads %+v", m)
			}
		})
	}
}

// anthropicTranscripts are the Anthropic streams the stream tests replay.
func anthropicTranscripts(t *testing.T) []translateCase {
	return cases(t, []string{
		"anthropic/messages-stream-text.sse", "anthropic/messages-stream-error-midstream.sse",
		"anthropic/sdk-fixture-basic-stream.sse", "anthropic/sdk-fixture-tool-use-stream.sse",
	}, "streams", ".in.sse")
}

func TestChunkTranslatorGolden(t *testing.T) {
	for _, tc := range anthropicTranscripts(t) {
		t.Run(tc.name, func(t *testing.T) {
			tr := anthropic.NewChunkTranslator("claude-alias", 1700000000)
			var out bytes.Buffer
			var chunks [][]byte
			for _, data := range providerstest.Events(tc.in) {
				if tr.Done() {
					t.Fatalf("event after the end: %s", data)
				}
				if err := tr.Feed(data); err != nil {
					t.Fatalf("Feed(%s): %v", data, err)
				}
				for c, ok := tr.Chunk(); ok; c, ok = tr.Chunk() {
					chunks = append(chunks, append([]byte(nil), c...))
					out.WriteString("data: ")
					out.Write(c)
					out.WriteString("\n\n")
				}
			}
			if !tr.Done() {
				t.Error("the translator did not see the end")
			}
			golden(t, "streams/"+tc.name+".openai.sse", out.Bytes())
			checkOpenAIChunks(t, chunks)
		})
	}
}

// checkOpenAIChunks applies CONFORMANCE 3–6 to a chunk sequence.
func checkOpenAIChunks(t *testing.T, chunks [][]byte) {
	t.Helper()
	type chunk struct {
		ID      string `json:"id"`
		Created int64  `json:"created"`
		Model   string `json:"model"`
		Choices []struct {
			Delta struct {
				ToolCalls []struct {
					Index    *int    `json:"index"`
					ID       *string `json:"id"`
					Type     *string `json:"type"`
					Function struct {
						Name      *string `json:"name"`
						Arguments string  `json:"arguments"`
					} `json:"function"`
				} `json:"tool_calls"`
			} `json:"delta"`
			FinishReason *string `json:"finish_reason"`
		} `json:"choices"`
		Usage *struct {
			Prompt, Completion, Total int64
		} `json:"usage"`
	}
	var first *chunk
	finishes := 0
	args := map[int]string{}
	finish := ""
	for i, raw := range chunks {
		if bytes.HasPrefix(raw, []byte(`{"error"`)) {
			if i != len(chunks)-1 {
				t.Errorf("error payload %d is not the last", i)
			}
			if err := validate(t, "ErrorResponse", raw); err != nil {
				t.Errorf("error payload does not validate: %v: %s", err, raw)
			}
			continue
		}
		if err := validate(t, "CreateChatCompletionStreamResponse", raw); err != nil {
			t.Errorf("chunk %d does not validate: %v\n%s", i, err, raw)
		}
		var c chunk
		if err := json.Unmarshal(raw, &c); err != nil {
			t.Fatal(err)
		}
		if first == nil {
			first = &c
		} else if c.ID != first.ID || c.Created != first.Created || c.Model != first.Model {
			t.Errorf("chunk %d: id/created/model %s/%d/%s differ from the first %s/%d/%s", i, c.ID, c.Created, c.Model, first.ID, first.Created, first.Model)
		}
		if c.Usage != nil && i != len(chunks)-1 {
			t.Errorf("usage chunk %d is not the last", i)
		}
		for _, ch := range c.Choices {
			if ch.FinishReason != nil {
				finishes++
				finish = *ch.FinishReason
			}
			for _, tc := range ch.Delta.ToolCalls {
				if tc.Index == nil {
					t.Fatalf("chunk %d: tool-call fragment without index", i)
				}
				if _, seen := args[*tc.Index]; !seen {
					if tc.ID == nil || tc.Type == nil || tc.Function.Name == nil {
						t.Errorf("chunk %d: first fragment of tool call %d lacks id, type or name", i, *tc.Index)
					}
				}
				args[*tc.Index] += tc.Function.Arguments
			}
		}
	}
	if !bytes.HasPrefix(chunks[len(chunks)-1], []byte(`{"error"`)) {
		if finishes != 1 {
			t.Errorf("%d chunks with a finish_reason, want 1", finishes)
		}
		var last struct {
			Choices []any `json:"choices"`
			Usage   struct {
				PromptTokens     int64 `json:"prompt_tokens"`
				CompletionTokens int64 `json:"completion_tokens"`
				TotalTokens      int64 `json:"total_tokens"`
			} `json:"usage"`
		}
		_ = json.Unmarshal(chunks[len(chunks)-1], &last)
		if last.Choices == nil || len(last.Choices) != 0 || last.Usage.TotalTokens == 0 ||
			last.Usage.PromptTokens+last.Usage.CompletionTokens != last.Usage.TotalTokens {
			t.Errorf("last chunk is not a usage chunk that adds up: %s", chunks[len(chunks)-1])
		}
	}
	for i, a := range args {
		if !json.Valid([]byte(a)) {
			t.Errorf("tool call %d arguments %q are not JSON", i, a)
		}
	}
	if len(args) > 0 && finish != "tool_calls" {
		t.Errorf("finish_reason %q with tool calls, want tool_calls", finish)
	}
}

// TestChunkTranslatorUsage checks CONFORMANCE 7: usage from message_start
// plus message_delta.
func TestChunkTranslatorUsage(t *testing.T) {
	tr := anthropic.NewChunkTranslator("m", 1)
	for _, data := range providerstest.Events(providerstest.Sample(t, "anthropic/messages-stream-text.sse")) {
		if err := tr.Feed(data); err != nil {
			t.Fatal(err)
		}
	}
	if u := tr.Usage(); u.PromptTokens != 11 || u.CompletionTokens != 6 || u.TotalTokens != 17 {
		t.Errorf("usage %+v, want input 11 from message_start, output 6 from message_delta", u)
	}
	tr = anthropic.NewChunkTranslator("m", 1)
	for _, data := range providerstest.Events(readTestdata(t, "streams/thinking-cache.in.sse")) {
		if err := tr.Feed(data); err != nil {
			t.Fatal(err)
		}
	}
	if u := tr.Usage(); u.PromptTokens != 1210 || u.CachedTokens != 1000 || u.CompletionTokens != 50 {
		t.Errorf("usage %+v, want prompt 1210 (cached 1000), completion 50", u)
	}
}

func TestChunkTranslatorMalformed(t *testing.T) {
	for _, ev := range []string{
		`not json`,
		`{"type":"message_start"}`,
		`{"type":"content_block_start","index":0}`,
		`{"type":"content_block_delta","index":3,"delta":{"type":"input_json_delta","partial_json":"{"}}`,
	} {
		tr := anthropic.NewChunkTranslator("m", 1)
		if err := tr.Feed([]byte(ev)); err == nil {
			t.Errorf("Feed(%s) = nil, want an error", ev)
		}
	}
}

// openAITranscripts are the OpenAI streams the event translator replays.
var openAITranscripts = []string{
	"openai/chat-stream-text.sse", "openai/chat-stream-include-usage.sse", "openai/chat-stream-tool-calls.sse",
	"openai/chat-stream-error-midstream.sse", "openai/recorded-openai-python-chat-stream-tool-calls.sse",
	"openai/recorded-openai-python-chat-stream-parallel-tool-calls.sse", "openai/recorded-openai-python-chat-stream-length.sse",
}

func TestEventTranslatorGolden(t *testing.T) {
	for _, s := range openAITranscripts {
		name := strings.TrimSuffix(filepath.Base(s), ".sse")
		t.Run(name, func(t *testing.T) {
			out := translateOpenAIStream(t, providerstest.Sample(t, s))
			golden(t, "streams/sample-"+name+".anthropic.sse", out)
			checkAnthropicEvents(t, out)
		})
	}
}

func translateOpenAIStream(t *testing.T, transcript []byte) []byte {
	t.Helper()
	tr := anthropic.NewEventTranslator("claude-alias")
	var out []byte
	for _, data := range providerstest.Events(transcript) {
		if string(data) == providerstest.Done {
			break
		}
		var err error
		if out, err = tr.Chunk(out, data); err != nil {
			t.Fatalf("Chunk(%s): %v", data, err)
		}
	}
	return tr.End(out)
}

// checkAnthropicEvents checks the framing (every event has an event: line
// naming the type in its data, and a blank line after it) and feeds the
// events to the Anthropic SDK's accumulator.
func checkAnthropicEvents(t *testing.T, out []byte) sdk.Message {
	t.Helper()
	if !bytes.HasSuffix(out, []byte("\n\n")) {
		t.Errorf("the stream does not end with a blank line")
	}
	var msg sdk.Message
	var names []string
	for _, ev := range providerstest.SSEEvents(out) {
		lines := strings.Split(string(ev), "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "event: ") || !strings.HasPrefix(lines[1], "data: ") {
			t.Fatalf("event %q is not an event: line and a data: line", ev)
		}
		name := strings.TrimPrefix(lines[0], "event: ")
		data := strings.TrimPrefix(lines[1], "data: ")
		var typ struct{ Type string }
		if err := json.Unmarshal([]byte(data), &typ); err != nil || typ.Type != name {
			t.Errorf("event %s carries type %q (%v)", name, typ.Type, err)
		}
		names = append(names, name)
		if name == "error" || name == "ping" {
			continue
		}
		var e sdk.MessageStreamEventUnion
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			t.Fatalf("SDK cannot read %s: %v", data, err)
		}
		if err := msg.Accumulate(e); err != nil {
			t.Fatalf("Accumulate(%s): %v", data, err)
		}
	}
	if len(names) < 2 || names[0] != "message_start" || names[1] != "ping" {
		t.Errorf("events %v do not start with message_start, ping", names)
	}
	if last := names[len(names)-1]; last != "message_stop" && last != "error" {
		t.Errorf("events end with %s, want message_stop or error", last)
	}
	return msg
}

// TestStreamRoundTrip: an Anthropic transcript through ChunkTranslator and
// back through EventTranslator accumulates, in the SDK, to the same message.
func TestStreamRoundTrip(t *testing.T) {
	for _, tc := range anthropicTranscripts(t) {
		if strings.Contains(tc.name, "error") {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			var direct sdk.Message
			tr := anthropic.NewChunkTranslator("m", 1)
			var oa bytes.Buffer
			for _, data := range providerstest.Events(tc.in) {
				var e sdk.MessageStreamEventUnion
				if err := json.Unmarshal(data, &e); err != nil {
					t.Fatal(err)
				}
				if err := direct.Accumulate(e); err != nil {
					t.Fatal(err)
				}
				if err := tr.Feed(data); err != nil {
					t.Fatal(err)
				}
				for c, ok := tr.Chunk(); ok; c, ok = tr.Chunk() {
					oa.WriteString("data: " + string(c) + "\n\n")
				}
			}
			back := checkAnthropicEvents(t, translateOpenAIStream(t, oa.Bytes()))
			// OpenAI's usage cannot tell cache writes from other input:
			// the total input and the cache reads survive.
			input := func(m sdk.Message) int64 {
				return m.Usage.InputTokens + m.Usage.CacheReadInputTokens + m.Usage.CacheCreationInputTokens
			}
			if back.StopReason != direct.StopReason || back.Usage.OutputTokens != direct.Usage.OutputTokens ||
				input(back) != input(direct) || back.Usage.CacheReadInputTokens != direct.Usage.CacheReadInputTokens ||
				back.ID != direct.ID || back.Model != direct.Model {
				t.Errorf("round trip: stop %s, input %d (cache reads %d), output %d, id %s, model %s; want %s, %d (%d), %d, %s, %s",
					back.StopReason, input(back), back.Usage.CacheReadInputTokens, back.Usage.OutputTokens, back.ID, back.Model,
					direct.StopReason, input(direct), direct.Usage.CacheReadInputTokens, direct.Usage.OutputTokens, direct.ID, direct.Model)
			}
			if got, want := contentOf(back), contentOf(direct); got != want {
				t.Errorf("round trip content %s, want %s", got, want)
			}
		})
	}
}

// contentOf renders a message's text and tool-use blocks (thinking left out).
func contentOf(m sdk.Message) string {
	var b strings.Builder
	for _, c := range m.Content {
		switch c.Type {
		case "text":
			b.WriteString("text:" + c.Text + ";")
		case "tool_use":
			var in any
			_ = json.Unmarshal(c.Input, &in)
			j, _ := json.Marshal(in)
			b.WriteString("tool:" + c.ID + ":" + c.Name + ":" + string(j) + ";")
		}
	}
	return b.String()
}

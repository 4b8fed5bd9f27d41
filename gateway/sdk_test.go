package gateway_test

// The official Go SDK (github.com/openai/openai-go/v3) as the client of a
// real gateway: whatever it accepts from api.openai.com it must accept from
// mtai by changing only its base URL and key.

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
	"github.com/openai/openai-go/v3/packages/ssestream"
	"github.com/openai/openai-go/v3/shared"

	"github.com/mtai-dev/mtai/providers/mock"
	"github.com/mtai-dev/mtai/providers/providerstest"
)

// sdkClient is an openai-go client of gw, with the given key.
func sdkClient(gw *testGateway, key string, opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(gw.URL + "/v1/"),
		option.WithAPIKey(key),
		option.WithRequestTimeout(20 * time.Second),
	}, opts...)...)
}

func sdkContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func userMessage(s string) []openai.ChatCompletionMessageParamUnion {
	return []openai.ChatCompletionMessageParamUnion{openai.UserMessage(s)}
}

// sdkGateway serves the mock models and "gpt-4o" from a fake upstream
// streaming transcript (chat-stream-text.sse when empty).
func sdkGateway(t *testing.T, transcript string) (*testGateway, *providerstest.Upstream) {
	t.Helper()
	up := providerstest.NewUpstream(t)
	if transcript != "" {
		up.SetTranscript(providerstest.Sample(t, "openai/"+transcript))
	}
	up.SetEmbeddingDims(8)
	return startGateway(t, append(mockRoutes(),
		upstreamRoute("gpt-4o", up),
		upstreamRoute("text-embedding-3-small", up))), up
}

func TestSDKChatCompletion(t *testing.T) {
	t.Parallel()
	gw, _ := sdkGateway(t, "")
	client := sdkClient(gw, e2eKey)
	tests := []struct {
		model   string
		content string // "" accepts any non-empty content
		finish  string
	}{
		{"gpt-4o", "Hello! How can I help you today?", "stop"},
		{"mock-gpt", "", "stop"},
	}
	for _, tc := range tests {
		t.Run(tc.model, func(t *testing.T) {
			t.Parallel()
			c, err := client.Chat.Completions.New(sdkContext(t), openai.ChatCompletionNewParams{
				Model: tc.model, Messages: userMessage("Hello!"),
			})
			if err != nil {
				t.Fatalf("Chat.Completions.New: %v", err)
			}
			if len(c.Choices) != 1 {
				t.Fatalf("%d choices, want 1", len(c.Choices))
			}
			got := c.Choices[0].Message.Content
			if (tc.content != "" && got != tc.content) || got == "" {
				t.Errorf("content = %q, want %q", got, tc.content)
			}
			if c.Choices[0].FinishReason != tc.finish {
				t.Errorf("finish_reason = %q, want %q", c.Choices[0].FinishReason, tc.finish)
			}
			if u := c.Usage; u.TotalTokens == 0 || u.PromptTokens+u.CompletionTokens != u.TotalTokens {
				t.Errorf("usage = %+v, want prompt+completion == total > 0", u)
			}
		})
	}
}

func TestSDKStreamAccumulator(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		model        string
		transcript   string
		includeUsage bool
		content      string // "" accepts any non-empty content
		usage        int64  // total tokens expected; 0: expects none
	}{
		{name: "upstream", model: "gpt-4o", transcript: "chat-stream-text.sse", content: "Hello!"},
		{name: "upstream include_usage", model: "gpt-4o", transcript: "chat-stream-include-usage.sse", includeUsage: true, content: "Hello!", usage: 21},
		{name: "upstream usage hidden", model: "gpt-4o", transcript: "chat-stream-include-usage.sse", content: "Hello!"},
		{name: "mock", model: "mock-gpt"},
		{name: "mock include_usage", model: "mock-gpt", includeUsage: true, usage: -1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			gw, _ := sdkGateway(t, tc.transcript)
			client := sdkClient(gw, e2eKey)
			params := openai.ChatCompletionNewParams{Model: tc.model, Messages: userMessage("Hello!")}
			if tc.includeUsage {
				params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
			}
			stream := client.Chat.Completions.NewStreaming(sdkContext(t), params)
			defer stream.Close()
			var acc openai.ChatCompletionAccumulator
			chunks, finished := 0, false
			for stream.Next() {
				chunks++
				if !acc.AddChunk(stream.Current()) {
					t.Fatalf("the accumulator refused chunk %d: %s", chunks, stream.Current().RawJSON())
				}
				if _, ok := acc.JustFinishedContent(); ok {
					finished = true
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if len(acc.Choices) != 1 {
				t.Fatalf("%d choices accumulated, want 1", len(acc.Choices))
			}
			got := acc.Choices[0].Message.Content
			if got == "" || (tc.content != "" && got != tc.content) {
				t.Errorf("joined content = %q, want %q", got, tc.content)
			}
			if !finished {
				t.Errorf("JustFinishedContent never reported the content as done")
			}
			if acc.Choices[0].FinishReason != "stop" {
				t.Errorf("finish_reason = %q, want stop", acc.Choices[0].FinishReason)
			}
			u := acc.Usage
			switch {
			case tc.usage == 0 && u.TotalTokens != 0:
				t.Errorf("usage %+v reached a client that did not ask include_usage", u)
			case tc.usage > 0 && u.TotalTokens != tc.usage:
				t.Errorf("usage total = %d, want %d", u.TotalTokens, tc.usage)
			case tc.usage != 0 && (u.TotalTokens == 0 || u.PromptTokens+u.CompletionTokens != u.TotalTokens):
				t.Errorf("usage = %+v, want prompt+completion == total > 0", u)
			}
		})
	}
}

func TestSDKToolCalls(t *testing.T) {
	t.Parallel()
	weather := openai.ChatCompletionFunctionTool(shared.FunctionDefinitionParam{
		Name:        "get_weather",
		Description: openai.String("Get the weather in a city"),
		Parameters: shared.FunctionParameters{
			"type":       "object",
			"properties": map[string]any{"city": map[string]any{"type": "string"}},
			"required":   []string{"city"},
		},
	})
	tests := []struct {
		transcript string
		want       []string // name + " " + arguments of each call, in order
	}{
		{"recorded-openai-python-chat-stream-tool-calls.sse", []string{`get_weather {"city":"New York City"}`}},
		{"chat-stream-tool-calls.sse", []string{`get_current_weather {"location":"Boston, MA"}`}},
		{"recorded-openai-python-chat-stream-parallel-tool-calls.sse", nil}, // checked by count and JSON below
	}
	for _, tc := range tests {
		t.Run(tc.transcript, func(t *testing.T) {
			t.Parallel()
			gw, up := sdkGateway(t, tc.transcript)
			client := sdkClient(gw, e2eKey)
			stream := client.Chat.Completions.NewStreaming(sdkContext(t), openai.ChatCompletionNewParams{
				Model: "gpt-4o", Messages: userMessage("What's the weather like in New York City?"),
				Tools:         []openai.ChatCompletionToolUnionParam{weather},
				StreamOptions: openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)},
			})
			defer stream.Close()
			var acc openai.ChatCompletionAccumulator
			var justFinished []string
			for stream.Next() {
				if !acc.AddChunk(stream.Current()) {
					t.Fatalf("the accumulator refused %s", stream.Current().RawJSON())
				}
				if tool, ok := acc.JustFinishedToolCall(); ok {
					justFinished = append(justFinished, tool.Name+" "+tool.Arguments)
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatalf("stream: %v", err)
			}
			if len(acc.Choices) != 1 || acc.Choices[0].FinishReason != "tool_calls" {
				t.Fatalf("choices %+v, want one with finish_reason tool_calls", acc.Choices)
			}
			calls := acc.Choices[0].Message.ToolCalls
			var final []string
			for _, c := range calls {
				if c.ID == "" || c.Function.Name == "" {
					t.Errorf("tool call %+v lacks its id or name", c)
				}
				var args map[string]any
				if err := json.Unmarshal([]byte(c.Function.Arguments), &args); err != nil {
					t.Errorf("tool call %s: arguments %q are not a JSON object: %v", c.Function.Name, c.Function.Arguments, err)
				}
				final = append(final, c.Function.Name+" "+c.Function.Arguments)
			}
			want := tc.want
			if want == nil {
				if len(final) != 2 {
					t.Fatalf("%d parallel tool calls, want 2: %v", len(final), final)
				}
				want = final
			}
			if strings.Join(final, "\n") != strings.Join(want, "\n") {
				t.Errorf("final tool calls:\n%s\nwant\n%s", strings.Join(final, "\n"), strings.Join(want, "\n"))
			}
			if strings.Join(justFinished, "\n") != strings.Join(want, "\n") {
				t.Errorf("JustFinishedToolCall reported\n%s\nwant\n%s", strings.Join(justFinished, "\n"), strings.Join(want, "\n"))
			}
			if acc.Usage.TotalTokens == 0 {
				t.Errorf("no usage although include_usage was asked")
			}
			// The SDK's tools reached the upstream as the SDK wrote them.
			var sent struct {
				Tools []struct {
					Function struct{ Name string } `json:"function"`
				} `json:"tools"`
			}
			if err := json.Unmarshal(up.LastBody(), &sent); err != nil || len(sent.Tools) != 1 || sent.Tools[0].Function.Name != "get_weather" {
				t.Errorf("the upstream got tools %+v (%v)", sent.Tools, err)
			}
		})
	}
}

// TestSDKStreamMidstreamError: the SDK reports an upstream failure in the
// middle of a stream as a stream error (never as a clean end).
func TestSDKStreamMidstreamError(t *testing.T) {
	t.Parallel()
	gw, _ := sdkGateway(t, "chat-stream-error-midstream.sse")
	client := sdkClient(gw, e2eKey)
	stream := client.Chat.Completions.NewStreaming(sdkContext(t), openai.ChatCompletionNewParams{
		Model: "gpt-4o", Messages: userMessage("Hello!"),
	})
	defer stream.Close()
	var acc openai.ChatCompletionAccumulator
	for stream.Next() {
		acc.AddChunk(stream.Current())
	}
	var se *ssestream.StreamError
	if err := stream.Err(); !errors.As(err, &se) {
		t.Fatalf("stream.Err() = %v, want a *ssestream.StreamError", err)
	}
	if got := acc.Choices[0].Message.Content; got != "Hel" {
		t.Errorf("content before the error = %q, want %q", got, "Hel")
	}
}

func TestSDKModels(t *testing.T) {
	t.Parallel()
	gw, _ := sdkGateway(t, "")
	client := sdkClient(gw, e2eKey)
	ctx := sdkContext(t)
	page, err := client.Models.List(ctx)
	if err != nil {
		t.Fatalf("Models.List: %v", err)
	}
	ids := map[string]bool{}
	for _, m := range page.Data {
		ids[m.ID] = true
		if m.OwnedBy == "" || m.Created == 0 {
			t.Errorf("model %+v lacks owned_by or created", m)
		}
	}
	for _, want := range []string{"mock-gpt", "mock-embed", "gpt-4o", "text-embedding-3-small"} {
		if !ids[want] {
			t.Errorf("Models.List has no %q (got %v)", want, ids)
		}
		m, err := client.Models.Get(ctx, want)
		if err != nil {
			t.Errorf("Models.Get(%q): %v", want, err)
			continue
		}
		if m.ID != want {
			t.Errorf("Models.Get(%q).ID = %q", want, m.ID)
		}
	}
}

func TestSDKEmbeddings(t *testing.T) {
	t.Parallel()
	gw, _ := sdkGateway(t, "")
	client := sdkClient(gw, e2eKey)
	tests := []struct {
		model  string
		format openai.EmbeddingNewParamsEncodingFormat
		dims   int
	}{
		{"text-embedding-3-small", openai.EmbeddingNewParamsEncodingFormatFloat, 8},
		{"text-embedding-3-small", openai.EmbeddingNewParamsEncodingFormatBase64, 8},
		{"mock-embed", openai.EmbeddingNewParamsEncodingFormatFloat, mock.EmbeddingDims},
		{"mock-embed", openai.EmbeddingNewParamsEncodingFormatBase64, mock.EmbeddingDims},
	}
	vectors := map[string][][]float64{}
	for _, tc := range tests {
		res, err := client.Embeddings.New(sdkContext(t), openai.EmbeddingNewParams{
			Model:          tc.model,
			Input:          openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"The quick brown fox", "hello"}},
			EncodingFormat: tc.format,
		})
		if err != nil {
			t.Fatalf("Embeddings.New(%s, %s): %v", tc.model, tc.format, err)
		}
		if len(res.Data) != 2 {
			t.Fatalf("%s %s: %d embeddings, want 2", tc.model, tc.format, len(res.Data))
		}
		for i, d := range res.Data {
			if len(d.Embedding) != tc.dims || int(d.Index) != i {
				t.Errorf("%s %s: embedding %d has index %d and %d dims, want %d", tc.model, tc.format, i, d.Index, len(d.Embedding), tc.dims)
			}
			vectors[tc.model+string(tc.format)] = append(vectors[tc.model+string(tc.format)], d.Embedding)
		}
		if res.Usage.PromptTokens == 0 {
			t.Errorf("%s %s: no usage", tc.model, tc.format)
		}
	}
	for _, model := range []string{"text-embedding-3-small", "mock-embed"} {
		fl, b64 := vectors[model+"float"], vectors[model+"base64"]
		for i := range fl {
			for j := range fl[i] {
				if j >= len(b64[i]) || float32(fl[i][j]) != float32(b64[i][j]) {
					t.Fatalf("%s: the SDK decoded base64 vector %d differently from the float one at %d", model, i, j)
				}
			}
		}
	}
	want := providerstest.EmbeddingVector(1, 8)
	for j, v := range vectors["text-embedding-3-smallbase64"][1] {
		if float32(v) != want[j] {
			t.Fatalf("base64 vector 1 = %v, the upstream sent %v", vectors["text-embedding-3-smallbase64"][1], want)
		}
	}
}

func TestSDKErrors(t *testing.T) {
	t.Parallel()
	up := providerstest.NewUpstream(t)
	up.Fail(providerstest.Failure{Status: 429, Header: http.Header{"Retry-After": {"20"}},
		Body: providerstest.Sample(t, "openai/error-429-rate-limit.json")})
	gw := startGateway(t, append(mockRoutes(), upstreamRoute("gpt-4o", up)))
	tests := []struct {
		name   string
		key    string
		model  string
		stream bool
		status int
		code   string
	}{
		{name: "wrong key", key: "sk-wrong-key-000000000000", model: "mock-gpt", status: 401, code: "invalid_api_key"},
		{name: "wrong key stream", key: "sk-wrong-key-000000000000", model: "mock-gpt", stream: true, status: 401, code: "invalid_api_key"},
		{name: "unknown model", key: e2eKey, model: "gpt-nope", status: 404, code: "model_not_found"},
		{name: "rate limited", key: e2eKey, model: "gpt-4o", status: 429, code: "rate_limit_exceeded"},
		{name: "rate limited stream", key: e2eKey, model: "gpt-4o", stream: true, status: 429, code: "rate_limit_exceeded"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			client := sdkClient(gw, tc.key, option.WithMaxRetries(0))
			params := openai.ChatCompletionNewParams{Model: tc.model, Messages: userMessage("Hello!")}
			var err error
			if tc.stream {
				stream := client.Chat.Completions.NewStreaming(sdkContext(t), params)
				for stream.Next() {
				}
				err = stream.Err()
				stream.Close()
			} else {
				_, err = client.Chat.Completions.New(sdkContext(t), params)
			}
			var apiErr *openai.Error
			if !errors.As(err, &apiErr) {
				t.Fatalf("err = %v (%T), want *openai.Error", err, err)
			}
			if apiErr.StatusCode != tc.status || apiErr.Code != tc.code {
				t.Errorf("error %d %q, want %d %q (%v)", apiErr.StatusCode, apiErr.Code, tc.status, tc.code, apiErr)
			}
			if apiErr.Message == "" || apiErr.Type == "" {
				t.Errorf("error %+v lacks its message or type", apiErr)
			}
			if id := apiErr.Response.Header.Get("X-Request-Id"); id == "" {
				t.Errorf("no x-request-id on the SDK's error response")
			}
		})
	}

}

// TestSDKMockRouteOnly shows that a client pointed at the gateway needs
// nothing but the base URL and key: the default mock models answer.
func TestSDKMockRouteOnly(t *testing.T) {
	t.Parallel()
	gw := startGateway(t, mockRoutes())
	client := sdkClient(gw, e2eKey)
	c, err := client.Chat.Completions.New(sdkContext(t), openai.ChatCompletionNewParams{
		Model: "mock-gpt", Messages: userMessage("hi"), MaxTokens: openai.Int(3),
	})
	if err != nil {
		t.Fatal(err)
	}
	if c.Choices[0].FinishReason != "length" || len(strings.Fields(c.Choices[0].Message.Content)) != 3 {
		t.Errorf("max_tokens 3 gave %q (finish %q), want 3 words and length", c.Choices[0].Message.Content, c.Choices[0].FinishReason)
	}
}

package bedrock_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/getkin/kin-openapi/openapi3"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/bedrock"
	"github.com/mtai-dev/mtai/providers/providerstest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

const modelID = "anthropic.claude-3-5-haiku-20241022-v1:0"

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", filepath.FromSlash(name))
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("golden file %s: %v (go test ./providers/bedrock -update creates it)", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from its golden file (rerun with -update if intended):\n got: %s\nwant: %s", path, got, want)
	}
}

var spec struct {
	once sync.Once
	doc  *openapi3.T
	err  error
}

func validate(t *testing.T, schema string, body []byte) error {
	t.Helper()
	path := filepath.Join(providerstest.ContractsDir(t), "openai-openapi.yaml")
	spec.once.Do(func() { spec.doc, spec.err = openapi3.NewLoader().LoadFromFile(path) })
	if spec.err != nil {
		t.Fatalf("loading %s: %v", path, spec.err)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return spec.doc.Components.Schemas[schema].Value.VisitJSON(v)
}

// fakeConfig is an AWS configuration with static fake credentials.
func fakeConfig() aws.Config {
	return aws.Config{Region: "us-east-1", Credentials: credentials.NewStaticCredentialsProvider("AKIDFAKE", "fake-secret", "")}
}

func newClient(t *testing.T, fake *providerstest.Bedrock, timeout time.Duration, opts ...bedrock.Option) *bedrock.Client {
	t.Helper()
	opts = append([]bedrock.Option{bedrock.WithAWSConfig(fakeConfig()), bedrock.WithClock(func() time.Time { return time.Unix(1700000000, 0) })}, opts...)
	c, err := bedrock.New(providers.DeploymentConfig{Name: "bedrock-test", Provider: "bedrock", BaseURL: fake.URL, Model: modelID, Timeout: timeout, MaxConns: 8}, opts...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func request(body string) *providers.Request {
	return &providers.Request{Body: []byte(body), Model: modelID, RequestID: "req-1"}
}

const hi = `{"model":"x","messages":[{"role":"user","content":"hi"}]}`
const hiStream = `{"model":"x","stream":true,"messages":[{"role":"user","content":"hi"}]}`

func upstreamError(t *testing.T, err error) *providers.UpstreamError {
	t.Helper()
	var ue *providers.UpstreamError
	if !errors.As(err, &ue) {
		t.Fatalf("error %v (%T) is not an UpstreamError", err, err)
	}
	return ue
}

// TestRequestTranslationGolden checks the Converse request body as the
// SDK sends it (captured by the fake) for each OpenAI request, for both
// Converse and ConverseStream.
func TestRequestTranslationGolden(t *testing.T) {
	type tc struct {
		name string
		in   []byte
	}
	cases := []tc{
		{"sample-chat-completion-request", providerstest.Sample(t, "openai/chat-completion-request.json")},
		{"sample-chat-completion-request-stream-tools", providerstest.Sample(t, "openai/chat-completion-request-stream-tools.json")},
	}
	files, _ := filepath.Glob("testdata/requests/*.in.json")
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		cases = append(cases, tc{strings.TrimSuffix(filepath.Base(f), ".in.json"), b})
	}
	fake := providerstest.NewBedrock(t)
	c := newClient(t, fake, 5*time.Second)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := c.Complete(context.Background(), &providers.Request{Body: tc.in, Model: modelID})
			if err != nil {
				t.Fatal(err)
			}
			resp.Release()
			r := fake.Requests()[len(fake.Requests())-1]
			if r.Path != "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse" {
				t.Errorf("path %s", r.Path)
			}
			if a := r.Header.Get("Authorization"); !strings.HasPrefix(a, "AWS4-HMAC-SHA256 Credential=AKIDFAKE/") || !strings.Contains(a, "/us-east-1/bedrock/aws4_request") {
				t.Errorf("Authorization %q is not SigV4 for bedrock in us-east-1 with the fake key", a)
			}
			golden(t, "requests/"+tc.name+".converse.json", r.Body)

			st, err := c.Stream(context.Background(), &providers.Request{Body: tc.in, Model: modelID})
			if err != nil {
				t.Fatal(err)
			}
			st.Close(nil)
			r2 := fake.Requests()[len(fake.Requests())-1]
			if r2.Path != "/model/anthropic.claude-3-5-haiku-20241022-v1%3A0/converse-stream" || !bytes.Equal(r2.Body, r.Body) {
				t.Errorf("converse-stream %s body %s, want the Converse body", r2.Path, r2.Body)
			}
		})
	}
}

// TestRequestConformance checks CONFORMANCE 7 on the Converse request: the
// system prompt is lifted into "system", max tokens go to inferenceConfig
// (defaulted when configured).
func TestRequestConformance(t *testing.T) {
	fake := providerstest.NewBedrock(t)
	var got struct {
		System          []map[string]string `json:"system"`
		Messages        []struct{ Role string }
		InferenceConfig *struct {
			MaxTokens *int `json:"maxTokens"`
		} `json:"inferenceConfig"`
	}
	for _, tc := range []struct {
		opt  []bedrock.Option
		body string
		max  int
	}{
		{nil, `{"messages":[{"role":"system","content":"S"},{"role":"user","content":"hi"}]}`, 0},
		{[]bedrock.Option{bedrock.WithDefaultMaxTokens(2048)}, `{"messages":[{"role":"system","content":"S"},{"role":"user","content":"hi"}]}`, 2048},
		{[]bedrock.Option{bedrock.WithDefaultMaxTokens(2048)}, `{"max_tokens":9,"messages":[{"role":"system","content":"S"},{"role":"user","content":"hi"}]}`, 9},
	} {
		c := newClient(t, fake, 5*time.Second, tc.opt...)
		resp, err := c.Complete(context.Background(), request(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Release()
		got.InferenceConfig = nil
		if err := json.Unmarshal(fake.LastBody(), &got); err != nil {
			t.Fatal(err)
		}
		if len(got.System) != 1 || got.System[0]["text"] != "S" || len(got.Messages) != 1 || got.Messages[0].Role != "user" {
			t.Errorf("system %v messages %v: want the system prompt lifted", got.System, got.Messages)
		}
		switch {
		case tc.max == 0 && got.InferenceConfig != nil:
			t.Errorf("inferenceConfig %+v, want none", got.InferenceConfig)
		case tc.max > 0 && (got.InferenceConfig == nil || got.InferenceConfig.MaxTokens == nil || *got.InferenceConfig.MaxTokens != tc.max):
			t.Errorf("inferenceConfig %s, want maxTokens %d", fake.LastBody(), tc.max)
		}
	}
}

func TestRequestErrors(t *testing.T) {
	fake := providerstest.NewBedrock(t)
	c := newClient(t, fake, time.Second)
	for _, body := range []string{
		`{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://example.com/a.png"}}]}]}`,
		`{"messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"[1]"}}]}]}`,
		`{"n":2,"messages":[{"role":"user","content":"x"}]}`,
		`{"messages":[{"role":"system","content":"x"}]}`,
		`{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"always"}`,
		`not json`,
	} {
		_, err := c.Complete(context.Background(), request(body))
		if ue := upstreamError(t, err); ue.Status != 400 || ue.Type != "invalid_request_error" || ue.Message == "" {
			t.Errorf("Complete(%s) = %+v, want a 400", body, ue)
		}
	}
	if n := len(fake.Requests()); n != 0 {
		t.Errorf("%d requests reached Bedrock, want 0", n)
	}
}

func TestCompleteGolden(t *testing.T) {
	cases := []struct{ name, body string }{
		{"text", providerstest.BedrockConverseText},
		{"tool", providerstest.BedrockConverseTool},
		{"guardrail", `{"output":{"message":{"role":"assistant","content":[{"text":"Sorry."}]}},"stopReason":"guardrail_intervened","usage":{"inputTokens":3,"outputTokens":2,"totalTokens":5}}`},
		{"max-tokens", `{"output":{"message":{"role":"assistant","content":[{"reasoningContent":{"reasoningText":{"text":"hmm"}}},{"text":"cut \"short\" <here>"}]}},"stopReason":"max_tokens","usage":{"inputTokens":3,"outputTokens":64,"totalTokens":67}}`},
	}
	fake := providerstest.NewBedrock(t)
	c := newClient(t, fake, 5*time.Second)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake.SetConverse([]byte(tc.body))
			resp, err := c.Complete(context.Background(), request(hi))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Release()
			golden(t, "responses/"+tc.name+".openai.json", resp.Body)
			if err := validate(t, "CreateChatCompletionResponse", resp.Body); err != nil {
				t.Errorf("does not validate: %v", err)
			}
			if u := resp.Usage; u.TotalTokens != u.PromptTokens+u.CompletionTokens || u.TotalTokens == 0 {
				t.Errorf("usage %+v", u)
			}
		})
	}
	fake.SetConverse([]byte(providerstest.BedrockConverseTool))
	resp, err := c.Complete(context.Background(), request(hi))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Release()
	if u := resp.Usage; u.PromptTokens != 1125 || u.CachedTokens != 1000 || u.CompletionTokens != 30 {
		t.Errorf("usage %+v, want prompt 120+1000+5 (cached 1000), completion 30", u)
	}
}

var streamCases = []struct {
	name   string
	events []providerstest.BedrockEvent
}{
	{"text", providerstest.BedrockTextStream},
	{"tool", providerstest.BedrockToolStream},
	{"exception-midstream", []providerstest.BedrockEvent{
		{Type: "messageStart", Payload: `{"role":"assistant"}`},
		{Type: "contentBlockDelta", Payload: `{"contentBlockIndex":0,"delta":{"text":"Hel"}}`},
		{Type: "throttlingException", Exception: true, Payload: `{"message":"Too many tokens, please wait before trying again."}`},
	}},
	{"reasoning-length", []providerstest.BedrockEvent{
		{Type: "messageStart", Payload: `{"role":"assistant"}`},
		{Type: "contentBlockDelta", Payload: `{"contentBlockIndex":0,"delta":{"reasoningContent":{"text":"thinking"}}}`},
		{Type: "contentBlockDelta", Payload: `{"contentBlockIndex":0,"delta":{"reasoningContent":{"signature":"sig"}}}`},
		{Type: "contentBlockStop", Payload: `{"contentBlockIndex":0}`},
		{Type: "contentBlockDelta", Payload: `{"contentBlockIndex":1,"delta":{"text":"Quote: \"<&>\"\n\té"}}`},
		{Type: "contentBlockStop", Payload: `{"contentBlockIndex":1}`},
		{Type: "messageStop", Payload: `{"stopReason":"max_tokens"}`},
		{Type: "metadata", Payload: `{"usage":{"inputTokens":5,"outputTokens":64,"totalTokens":69},"metrics":{"latencyMs":9}}`},
	}},
}

func collect(t *testing.T, st providers.Stream) ([]byte, [][]byte) {
	t.Helper()
	var out bytes.Buffer
	var chunks [][]byte
	for {
		ev, err := st.Next()
		if err == io.EOF {
			return out.Bytes(), chunks
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		chunks = append(chunks, append([]byte(nil), ev...))
		out.WriteString("data: " + string(ev) + "\n\n")
	}
}

func TestStreamGolden(t *testing.T) {
	fake := providerstest.NewBedrock(t)
	c := newClient(t, fake, 5*time.Second)
	for _, tc := range streamCases {
		t.Run(tc.name, func(t *testing.T) {
			fake.SetEvents(tc.events)
			st, err := c.Stream(context.Background(), request(hiStream))
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close(nil)
			out, chunks := collect(t, st)
			golden(t, "streams/"+tc.name+".openai.sse", out)
			ids := map[string]bool{}
			finishes := 0
			for i, ch := range chunks {
				if bytes.HasPrefix(ch, []byte(`{"error"`)) {
					if i != len(chunks)-1 {
						t.Error("error payload is not last")
					}
					continue
				}
				if err := validate(t, "CreateChatCompletionStreamResponse", ch); err != nil {
					t.Errorf("chunk %d does not validate: %v", i, err)
				}
				var c struct {
					ID, Model string
					Created   int64
					Choices   []struct {
						FinishReason *string `json:"finish_reason"`
					}
				}
				_ = json.Unmarshal(ch, &c)
				ids[fmt.Sprint(c.ID, c.Model, c.Created)] = true
				for _, ch := range c.Choices {
					if ch.FinishReason != nil {
						finishes++
					}
				}
			}
			if len(ids) != 1 {
				t.Errorf("id/model/created vary: %v", ids)
			}
			if !strings.Contains(tc.name, "exception") && finishes != 1 {
				t.Errorf("%d finish reasons, want 1", finishes)
			}
		})
	}
}

// TestStreamUsageFromMetadata: usage comes from the metadata event (CONFORMANCE 7).
func TestStreamUsageFromMetadata(t *testing.T) {
	fake := providerstest.NewBedrock(t)
	fake.SetEvents(providerstest.BedrockToolStream)
	c := newClient(t, fake, 5*time.Second)
	st, err := c.Stream(context.Background(), request(hiStream))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(nil)
	_, chunks := collect(t, st)
	u, ok := providers.ParseUsage(chunks[len(chunks)-1])
	if !ok || u.PromptTokens != 1120 || u.CachedTokens != 1000 || u.CompletionTokens != 30 || u.TotalTokens != 1150 {
		t.Errorf("last chunk %s: usage %+v, want prompt 1120 (cached 1000), completion 30", chunks[len(chunks)-1], u)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct {
		status    int
		name      string
		want      int
		typ, code string
		retryable bool
	}{
		{429, "ThrottlingException", 429, "requests", "rate_limit_exceeded", true},
		{400, "ValidationException", 400, "invalid_request_error", "", false},
		{503, "ServiceUnavailableException", 503, "server_error", "upstream_overloaded", true},
		{429, "ModelNotReadyException", 503, "server_error", "upstream_overloaded", true},
		{403, "AccessDeniedException", 403, "invalid_request_error", "permission_denied", false},
		{403, "UnrecognizedClientException", 401, "invalid_request_error", "invalid_api_key", false},
		{400, "ExpiredTokenException", 401, "invalid_request_error", "invalid_api_key", false},
		{404, "ResourceNotFoundException", 404, "invalid_request_error", "model_not_found", false},
		{408, "ModelTimeoutException", 408, "server_error", "upstream_timeout", true},
		{500, "InternalServerException", 500, "server_error", "upstream_error", true},
		{424, "ModelErrorException", 424, "server_error", "upstream_error", false},
	}
	for _, tc := range cases {
		for _, stream := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s stream=%v", tc.name, stream), func(t *testing.T) {
				fake := providerstest.NewBedrock(t)
				fake.Fail(tc.status, tc.name, "it failed: "+tc.name)
				c := newClient(t, fake, 5*time.Second)
				var err error
				if stream {
					_, err = c.Stream(context.Background(), request(hiStream))
				} else {
					_, err = c.Complete(context.Background(), request(hi))
				}
				ue := upstreamError(t, err)
				if ue.Status != tc.want || ue.Type != tc.typ || ue.Code != tc.code || ue.Message != "it failed: "+tc.name ||
					ue.Retryable() != tc.retryable || ue.Provider != "bedrock" || ue.Deployment != "bedrock-test" {
					t.Errorf("error %+v (retryable %v), want status %d type %s code %s retryable %v", ue, ue.Retryable(), tc.want, tc.typ, tc.code, tc.retryable)
				}
			})
		}
	}
}

// TestStreamExceptionFirst: an exception before any event is returned by
// Stream, so the router can retry or fall back.
func TestStreamExceptionFirst(t *testing.T) {
	fake := providerstest.NewBedrock(t)
	fake.SetEvents([]providerstest.BedrockEvent{{Type: "serviceUnavailableException", Exception: true, Payload: `{"message":"busy"}`}})
	c := newClient(t, fake, 5*time.Second)
	st, err := c.Stream(context.Background(), request(hiStream))
	if st != nil {
		t.Fatal("Stream returned a stream")
	}
	if ue := upstreamError(t, err); ue.Status != 503 || ue.Message != "busy" || !ue.Retryable() {
		t.Errorf("error %+v, want a retryable 503", ue)
	}
}

func TestStreamTruncated(t *testing.T) {
	fake := providerstest.NewBedrock(t)
	fake.SetEvents(providerstest.BedrockTextStream[:3])
	c := newClient(t, fake, 5*time.Second)
	st, err := c.Stream(context.Background(), request(hiStream))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(nil)
	for {
		_, err := st.Next()
		if err == nil {
			continue
		}
		if ue := upstreamError(t, err); !errors.Is(ue, io.ErrUnexpectedEOF) {
			t.Errorf("Next = %+v, want unexpected EOF", ue)
		}
		return
	}
}

func TestStreamCloseInterruptsNext(t *testing.T) {
	fake := providerstest.NewBedrock(t)
	fake.BlockAfter(2)
	c := newClient(t, fake, 30*time.Second)
	st, err := c.Stream(context.Background(), request(hiStream))
	if err != nil {
		t.Fatal(err)
	}
	if !fake.WaitBlocked(5 * time.Second) {
		t.Fatal("the fake never blocked")
	}
	done := make(chan error, 1)
	go func() {
		for {
			if _, err := st.Next(); err != nil {
				done <- err
				return
			}
		}
	}()
	time.Sleep(50 * time.Millisecond)
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); st.Close(errors.New("client left")) }()
	}
	wg.Wait()
	select {
	case err := <-done:
		if err == nil || err == io.EOF {
			t.Errorf("Next after Close = %v, want an error", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt Next")
	}
	if !fake.WaitCancelled(5 * time.Second) {
		t.Error("Bedrock did not see the request cancelled")
	}
}

func TestStreamIdleTimeout(t *testing.T) {
	fake := providerstest.NewBedrock(t)
	fake.BlockAfter(2)
	c := newClient(t, fake, 200*time.Millisecond)
	st, err := c.Stream(context.Background(), request(hiStream))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close(nil)
	start := time.Now()
	for {
		_, err := st.Next()
		if err == nil {
			continue
		}
		if !errors.Is(err, providers.ErrTimeout) {
			t.Errorf("Next = %v, want ErrTimeout", err)
		}
		break
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("the timeout took %v", d)
	}
}

func TestRegion(t *testing.T) {
	for host, want := range map[string]string{
		"bedrock-runtime.eu-west-1.amazonaws.com":      "eu-west-1",
		"bedrock-runtime-fips.us-east-1.amazonaws.com": "us-east-1",
		"bedrock-runtime.cn-north-1.amazonaws.com.cn":  "cn-north-1",
		"127.0.0.1": "",
		"vpce-1.bedrock-runtime.us-east-1.vpce.amazonaws.com": "",
	} {
		if got := bedrock.RegionFromURL(host); got != want {
			t.Errorf("RegionFromURL(%q) = %q, want %q", host, got, want)
		}
	}
	noRegion := aws.Config{Credentials: fakeConfig().Credentials}
	if _, err := bedrock.New(providers.DeploymentConfig{Name: "d", Model: modelID}, bedrock.WithAWSConfig(noRegion)); err == nil ||
		!strings.Contains(err.Error(), "AWS_REGION") {
		t.Errorf("New without a region = %v, want an error naming AWS_REGION", err)
	}
	if _, err := bedrock.New(providers.DeploymentConfig{Name: "d", Model: modelID, BaseURL: "https://bedrock-runtime.eu-west-3.amazonaws.com"},
		bedrock.WithAWSConfig(noRegion)); err != nil {
		t.Errorf("New with a regional base_url: %v", err)
	}
	if _, err := bedrock.New(providers.DeploymentConfig{Name: "d", BaseURL: "ftp://x"}, bedrock.WithAWSConfig(fakeConfig())); err == nil {
		t.Error("New with an ftp base_url succeeded")
	}
}

// TestDefaultCredentialChain: without WithAWSConfig the standard chain is
// used (here: the environment), and the region can come from WithRegion.
func TestDefaultCredentialChain(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDENV")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "env-secret")
	t.Setenv("AWS_SESSION_TOKEN", "")
	t.Setenv("AWS_REGION", "us-west-2")
	t.Setenv("AWS_PROFILE", "")
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	t.Setenv("AWS_BEARER_TOKEN_BEDROCK", "")
	fake := providerstest.NewBedrock(t)
	for _, tc := range []struct {
		opts   []bedrock.Option
		region string
	}{{nil, "us-west-2"}, {[]bedrock.Option{bedrock.WithRegion("ap-south-1")}, "ap-south-1"}} {
		c, err := bedrock.New(providers.DeploymentConfig{Name: "d", BaseURL: fake.URL, Model: modelID, Timeout: 5 * time.Second}, tc.opts...)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.Complete(context.Background(), request(hi))
		if err != nil {
			t.Fatal(err)
		}
		resp.Release()
		r := fake.Requests()[len(fake.Requests())-1]
		if a := r.Header.Get("Authorization"); !strings.Contains(a, "Credential=AKIDENV/") || !strings.Contains(a, "/"+tc.region+"/bedrock/") {
			t.Errorf("Authorization %q, want the environment's key and region %s", a, tc.region)
		}
	}
}

// TestAPIKeyBearer: a deployment api_key is a Bedrock API key, sent as a
// bearer token (over HTTPS, as the SDK requires).
func TestAPIKeyBearer(t *testing.T) {
	fake := providerstest.NewBedrockTLS(t)
	c, err := bedrock.New(providers.DeploymentConfig{Name: "d", BaseURL: fake.URL, Model: modelID, APIKey: "ABSKfakebedrockkey"},
		bedrock.WithAWSConfig(fakeConfig()), bedrock.WithHTTPClient(fake.Client()))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Complete(context.Background(), request(hi))
	if err != nil {
		t.Fatal(err)
	}
	resp.Release()
	if a := fake.Requests()[0].Header.Get("Authorization"); a != "Bearer ABSKfakebedrockkey" {
		t.Errorf("Authorization %q, want the bearer key", a)
	}
}

func TestConcurrent(t *testing.T) {
	fake := providerstest.NewBedrock(t)
	fake.SetEvents(providerstest.BedrockToolStream)
	c := newClient(t, fake, 5*time.Second)
	var wg sync.WaitGroup
	errs := make(chan error, 12)
	for i := range 12 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				resp, err := c.Complete(context.Background(), request(hi))
				if err != nil {
					errs <- err
					return
				}
				resp.Release()
				return
			}
			st, err := c.Stream(context.Background(), request(hiStream))
			if err != nil {
				errs <- err
				return
			}
			defer st.Close(nil)
			n := 0
			for {
				_, err := st.Next()
				if err == io.EOF {
					break
				}
				if err != nil {
					errs <- err
					return
				}
				n++
			}
			if n != 7 {
				errs <- fmt.Errorf("%d chunks, want 7", n)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestStreamConnectionSurvivesEarlyResponse is the regression test for the
// SDK closing the request body as soon as the response headers arrive,
// which used to make net/http tear the connection down under the stream
// (see plainBodies): every stream here must end by its idle timeout, never
// by "use of closed network connection".
func TestStreamConnectionSurvivesEarlyResponse(t *testing.T) {
	fake := providerstest.NewBedrock(t)
	fake.BlockAfter(2)
	c := newClient(t, fake, 100*time.Millisecond)
	for i := range 20 {
		st, err := c.Stream(context.Background(), request(hiStream))
		if err != nil {
			t.Fatal(err)
		}
		for {
			_, err := st.Next()
			if err == nil {
				continue
			}
			if !errors.Is(err, providers.ErrTimeout) {
				t.Errorf("stream %d ended with %v, want its idle timeout", i, err)
			}
			break
		}
		st.Close(nil)
	}
}

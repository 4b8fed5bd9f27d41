package mock

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/providers"
)

func newMock(t *testing.T, mc providers.MockConfig) *Provider {
	t.Helper()
	p, err := New(providers.DeploymentConfig{Name: "mock", Mock: mc})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCompleteDeterministic(t *testing.T) {
	p := newMock(t, providers.MockConfig{Words: 10})
	req := &providers.Request{Model: "mock-gpt", Body: []byte(`{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}`)}
	a, err := p.Complete(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.Complete(context.Background(), req)
	var ra, rb struct {
		Choices []struct {
			Message      struct{ Content string }
			FinishReason string `json:"finish_reason"`
		}
		Usage struct{ PromptTokens, CompletionTokens, TotalTokens int } `json:"usage"`
	}
	if err := json.Unmarshal(a.Body, &ra); err != nil {
		t.Fatalf("%s: %v", a.Body, err)
	}
	_ = json.Unmarshal(b.Body, &rb)
	if ra.Choices[0].Message.Content != rb.Choices[0].Message.Content {
		t.Error("same request, different answers")
	}
	if n := len(strings.Fields(ra.Choices[0].Message.Content)); n != 10 {
		t.Errorf("answer has %d words, want 10", n)
	}
	if ra.Choices[0].FinishReason != "stop" || a.Usage.CompletionTokens != 10 || a.Usage.TotalTokens != a.Usage.PromptTokens+10 {
		t.Errorf("finish %q usage %+v", ra.Choices[0].FinishReason, a.Usage)
	}
	short, _ := p.Complete(context.Background(), &providers.Request{Body: []byte(`{"messages":[{"role":"user","content":"hi"}],"max_tokens":3}`)})
	if !strings.Contains(string(short.Body), `"finish_reason":"length"`) || short.Usage.CompletionTokens != 3 {
		t.Errorf("max_tokens 3: %s", short.Body)
	}
}

func TestStreamChunksAndUsage(t *testing.T) {
	p := newMock(t, providers.MockConfig{Words: 9, Chunks: 3})
	st, err := p.Stream(context.Background(), &providers.Request{Model: "m", Body: []byte(`{"messages":[{"role":"user","content":"x"}]}`)})
	if err != nil {
		t.Fatal(err)
	}
	var content strings.Builder
	var n int
	var sawUsage bool
	for {
		ev, err := st.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		n++
		var c struct {
			Choices []struct {
				Delta struct{ Content string }
			}
			Usage *struct {
				TotalTokens int `json:"total_tokens"`
			}
		}
		if err := json.Unmarshal(ev, &c); err != nil {
			t.Fatalf("chunk %s: %v", ev, err)
		}
		if len(c.Choices) > 0 {
			content.WriteString(c.Choices[0].Delta.Content)
		}
		if c.Usage != nil {
			sawUsage = true
		}
	}
	if n != 1+3+1+1 || !sawUsage || len(strings.Fields(content.String())) != 9 {
		t.Errorf("%d events, usage %v, content %q", n, sawUsage, content.String())
	}
}

func TestStreamCloseInterrupts(t *testing.T) {
	p := newMock(t, providers.MockConfig{Words: 4, Chunks: 4, ChunkInterval: time.Hour})
	st, _ := p.Stream(context.Background(), &providers.Request{Body: []byte(`{"messages":[]}`)})
	if _, err := st.Next(); err != nil { // role chunk, no wait
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := st.Next(); done <- err }()
	st.Close(nil)
	select {
	case err := <-done:
		if err == nil {
			t.Error("no error after Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Next blocked after Close")
	}
}

func TestEmbeddingsFloatAndBase64Agree(t *testing.T) {
	p := newMock(t, providers.MockConfig{})
	get := func(format string) []float32 {
		resp, err := p.Embed(context.Background(), &providers.Request{Model: "mock-embed",
			Body: []byte(`{"model":"mock-embed","input":["hello"],"encoding_format":"` + format + `"}`)})
		if err != nil {
			t.Fatal(err)
		}
		var r struct {
			Data []struct{ Embedding json.RawMessage }
		}
		if err := json.Unmarshal(resp.Body, &r); err != nil {
			t.Fatalf("%s: %v", resp.Body, err)
		}
		if format == "float" {
			var v []float32
			_ = json.Unmarshal(r.Data[0].Embedding, &v)
			return v
		}
		var s string
		_ = json.Unmarshal(r.Data[0].Embedding, &s)
		raw, _ := base64.StdEncoding.DecodeString(s)
		v := make([]float32, len(raw)/4)
		for i := range v {
			v[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
		return v
	}
	f, b := get("float"), get("base64")
	if len(f) != EmbeddingDims || len(b) != EmbeddingDims {
		t.Fatalf("dims %d %d", len(f), len(b))
	}
	var norm float64
	for i := range f {
		if f[i] != b[i] {
			t.Fatalf("float[%d]=%v base64[%d]=%v", i, f[i], i, b[i])
		}
		norm += float64(f[i]) * float64(f[i])
	}
	if math.Abs(norm-1) > 1e-3 {
		t.Errorf("norm %v, want 1", norm)
	}
}

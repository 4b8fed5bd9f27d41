package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go/v3"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/providerstest"
)

// TestE2EClientDisconnectCancelsUpstream: a client that goes away in the
// middle of a stream makes the gateway drop the upstream request at once,
// even though the upstream is silent (DESIGN.md: "A client that disconnects
// cancels the upstream request at once").
func TestE2EClientDisconnectCancelsUpstream(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// open starts a stream through gw, returns once its first event
		// arrived, and returns the function that makes the client go away.
		open func(t *testing.T, gw *testGateway) (hangUp func())
	}{
		{name: "raw connection closed", open: func(t *testing.T, gw *testGateway) func() {
			conn, err := net.Dial("tcp", strings.TrimPrefix(gw.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			body := `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}`
			req := "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer " + e2eKey +
				"\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body
			if _, err := conn.Write([]byte(req)); err != nil {
				t.Fatal(err)
			}
			_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(conn)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					t.Fatalf("reading the stream: %v", err)
				}
				if strings.HasPrefix(line, "data: ") {
					break
				}
			}
			return func() { conn.Close() }
		}},
		{name: "openai-go context cancelled", open: func(t *testing.T, gw *testGateway) func() {
			ctx, cancel := context.WithCancel(context.Background())
			client := sdkClient(gw, e2eKey)
			stream := client.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
				Model: "gpt-4o", Messages: userMessage("hi"),
			})
			if !stream.Next() {
				cancel()
				t.Fatalf("no first chunk: %v", stream.Err())
			}
			return func() { cancel(); stream.Close() }
		}},
		{name: "net/http request cancelled", open: func(t *testing.T, gw *testGateway) func() {
			ctx, cancel := context.WithCancel(context.Background())
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, gw.URL+chatPath,
				strings.NewReader(`{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}`))
			req.Header.Set("Authorization", "Bearer "+e2eKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				cancel()
				t.Fatal(err)
			}
			if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
				cancel()
				t.Fatal(err)
			}
			return func() { cancel(); resp.Body.Close() }
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			up := providerstest.NewUpstream(t)
			up.Block()
			gw := startGateway(t, []providers.ModelConfig{upstreamRoute("gpt-4o", up)})
			hangUp := tc.open(t, gw)
			if !up.WaitBlocked(5 * time.Second) {
				t.Fatal("the upstream stream never started")
			}
			if up.WaitCancelled(100 * time.Millisecond) {
				t.Fatal("the upstream request was cancelled while the client was still reading")
			}
			gone := time.Now()
			hangUp()
			if !up.WaitCancelled(3 * time.Second) {
				t.Fatal("the upstream request was not cancelled within 3s of the client going away")
			}
			if d := up.CancelledAt().Sub(gone); d > time.Second {
				t.Errorf("the upstream request was cancelled %v after the client went away, want well under 1s", d)
			}
		})
	}
}

// TestE2EConcurrentStreamsIntact: many clients at once, streamed and not,
// on two upstreams with different transcripts: every client gets exactly
// its own answer (pooled buffers never leak between requests).
func TestE2EConcurrentStreamsIntact(t *testing.T) {
	t.Parallel()
	files := map[string]string{
		"tools":    "recorded-openai-python-chat-stream-parallel-tool-calls.sse",
		"weather":  "recorded-openai-python-chat-stream-tool-calls.sse",
		"plain":    "chat-stream-include-usage.sse",
		"complete": "",
	}
	var routes []providers.ModelConfig
	want := map[string][][]byte{}
	for model, file := range files {
		up := providerstest.NewUpstream(t)
		if file != "" {
			sse := providerstest.Sample(t, "openai/"+file)
			up.SetTranscript(sse)
			want[model] = transcriptEvents(sse, false)
		}
		routes = append(routes, upstreamRoute(model, up))
	}
	completion := providerstest.Sample(t, "openai/chat-completion-response.json")
	gw := startGateway(t, routes)

	const clients = 48
	errs := make(chan string, clients)
	var wg sync.WaitGroup
	models := []string{"tools", "weather", "plain", "complete"}
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			model := models[i%len(models)]
			stream := model != "complete"
			body := `{"model":"` + model + `","messages":[{"role":"user","content":"client ` + strconv.Itoa(i) + `"}],"stream":` + strconv.FormatBool(stream) + `}`
			req, _ := http.NewRequest(http.MethodPost, gw.URL+chatPath, strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+e2eKey)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if err != nil || resp.StatusCode != 200 {
				errs <- "client " + strconv.Itoa(i) + ": " + resp.Status + " " + string(b)
				return
			}
			if !stream {
				if !bytes.Equal(b, completion) {
					errs <- "client " + strconv.Itoa(i) + " got another completion: " + string(b)
				}
				return
			}
			got, err := providerstest.StrictEvents(b)
			if err != nil {
				errs <- "client " + strconv.Itoa(i) + ": " + err.Error()
				return
			}
			w := want[model]
			if len(got) != len(w) {
				errs <- "client " + strconv.Itoa(i) + ": " + strconv.Itoa(len(got)) + " events, want " + strconv.Itoa(len(w))
				return
			}
			for j := range w {
				if !bytes.Equal(got[j], w[j]) {
					errs <- "client " + strconv.Itoa(i) + " event " + strconv.Itoa(j) + ": " + string(got[j]) + " want " + string(w[j])
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// TestE2ELargeEvent: an event far larger than the relay's buffers arrives whole.
func TestE2ELargeEvent(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("0123456789abcdef", 1<<14) // 256 KiB of content in one chunk
	sse := "data: " + `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":"` + big + `"},"logprobs":null,"finish_reason":null}]}` + "\n\n" +
		"data: " + `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}` + "\n\n" +
		"data: [DONE]\n\n"
	up := providerstest.NewUpstream(t)
	up.SetTranscript([]byte(sse))
	gw := startGateway(t, []providers.ModelConfig{upstreamRoute("gpt-4o", up)})
	r := gw.post(t, chatPath, `{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}],"stream":true}`)
	res := checkStream(t, r, streamWant{})
	if res.content != big {
		t.Errorf("content of %d bytes arrived as %d bytes", len(big), len(res.content))
	}
}

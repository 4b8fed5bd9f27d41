package gateway

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
)

const testKey = "sk-test-0123456789abcdef"

// recorder is an in-process upstream that records what it was sent and
// answers with fixed bytes.
type recorder struct {
	mu     sync.Mutex
	bodies [][]byte
	answer []byte
	events [][]byte
}

func (r *recorder) record(req *providers.Request) {
	r.mu.Lock()
	r.bodies = append(r.bodies, append([]byte(nil), req.Body...))
	r.mu.Unlock()
}

func (r *recorder) last() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.bodies) == 0 {
		return nil
	}
	return r.bodies[len(r.bodies)-1]
}

func (r *recorder) Complete(_ context.Context, req *providers.Request) (*providers.Response, error) {
	r.record(req)
	u, _ := providers.ParseUsage(r.answer)
	return providers.NewResponse(r.answer, u, nil), nil
}

func (r *recorder) Stream(_ context.Context, req *providers.Request) (providers.Stream, error) {
	r.record(req)
	return &sliceStream{events: r.events}, nil
}

type sliceStream struct {
	events [][]byte
	i      int
}

func (s *sliceStream) Next() ([]byte, error) {
	if s.i >= len(s.events) {
		return nil, io.EOF
	}
	s.i++
	return s.events[s.i-1], nil
}

func (s *sliceStream) Close(error) {}

var answerJSON = []byte(`{"id":"chatcmpl-1","object":"chat.completion","created":1,"model":"up-model","choices":[{"index":0,"message":{"role":"assistant","content":"hi","refusal":null},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":1,"total_tokens":6}}`)

// newTestServer builds a Server whose models route to rec: "alias" (upstream
// model "up-model") and "same" (upstream "same").
func newTestServer(t testing.TB, rec *recorder, policy *tenancy.Policy) *Server {
	t.Helper()
	router, err := providers.NewRouter(providers.Config{Models: []providers.ModelConfig{
		{Name: "alias", Deployments: []providers.DeploymentConfig{{Provider: "rec", Model: "up-model"}}},
		{Name: "same", Deployments: []providers.DeploymentConfig{{Provider: "rec"}}},
		{Name: "embed", Embeddings: true, Deployments: []providers.DeploymentConfig{{Provider: "rec"}}},
	}}, map[string]providers.Factory{"rec": func(providers.DeploymentConfig) (providers.Provider, error) { return rec, nil }})
	if err != nil {
		t.Fatal(err)
	}
	keys := &policyKeys{p: &tenancy.Principal{Tenant: "t1", Role: tenancy.RoleMember, Policy: policy}}
	s, err := New(Options{Config: Config{Addr: "127.0.0.1:0", MaxBodyBytes: 64 << 10}, Router: router, Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type policyKeys struct{ p *tenancy.Principal }

func (k *policyKeys) ResolveKey(_ context.Context, key []byte) (*tenancy.Principal, error) {
	if string(key) == testKey {
		return k.p, nil
	}
	return nil, tenancy.ErrUnauthenticated
}

// do runs one request through the handler in memory.
func do(h fasthttp.RequestHandler, method, path, body string, header ...string) *fasthttp.Response {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI("http://gw" + path)
	req.Header.Set("Authorization", "Bearer "+testKey)
	for i := 0; i+1 < len(header); i += 2 {
		if header[i] == "Host" {
			req.SetHost(header[i+1])
			continue
		}
		req.Header.Set(header[i], header[i+1])
	}
	if body != "" {
		req.SetBodyString(body)
	}
	var rc fasthttp.RequestCtx
	rc.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	h(&rc)
	var resp fasthttp.Response
	rc.Response.CopyTo(&resp)
	if bs := rc.Response.BodyStream(); bs != nil {
		b, _ := io.ReadAll(bs)
		resp.SetBody(b)
		if c, ok := bs.(io.Closer); ok {
			c.Close()
		}
	}
	return &resp
}

// errorOf decodes an OpenAI error body.
func errorOf(t testing.TB, b []byte) (typ, code string, param *string) {
	t.Helper()
	var e struct {
		Error struct {
			Message *string `json:"message"`
			Type    string  `json:"type"`
			Param   *string `json:"param"`
			Code    *string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		t.Fatalf("error body %q: %v", b, err)
	}
	if e.Error.Message == nil || *e.Error.Message == "" {
		t.Errorf("error body %s has no message", b)
	}
	c := ""
	if e.Error.Code != nil {
		c = *e.Error.Code
	}
	return e.Error.Type, c, e.Error.Param
}

// start serves s on a loopback port until the test ends; it returns the base URL.
func start(t testing.TB, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

// doWithKey posts body to /v1/chat/completions over a real connection.
func doWithKey(t testing.TB, s *Server, body, key string) *fasthttp.Response {
	t.Helper()
	url := start(t, s)
	req := fasthttp.AcquireRequest()
	defer fasthttp.ReleaseRequest(req)
	req.Header.SetMethod("POST")
	req.SetRequestURI(url + "/v1/chat/completions")
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.SetBodyString(body)
	resp := &fasthttp.Response{}
	if err := fasthttp.Do(req, resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

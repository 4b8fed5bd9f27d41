package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/mtai-dev/mtai/admin"
	"github.com/mtai-dev/mtai/rag"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoadConfigErrorsNameTheVariable(t *testing.T) {
	cases := []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{"LOG_LEVEL": "loud"}, "LOG_LEVEL"},
		{map[string]string{"DEBUG": "maybe"}, "DEBUG"},
		{map[string]string{"MTAI_ADDR": "nonsense"}, "MTAI_ADDR"},
		{map[string]string{"MTAI_MAX_BODY_BYTES": "big"}, "MTAI_MAX_BODY_BYTES"},
		{map[string]string{"MTAI_SHUTDOWN_GRACE": "soon"}, "MTAI_SHUTDOWN_GRACE"},
		{map[string]string{"MTAI_BOOTSTRAP_API_KEY": "short"}, "MTAI_BOOTSTRAP_API_KEY"},
		{map[string]string{"MTAI_JWT_SECRET": "short"}, "MTAI_JWT_SECRET"},
		{map[string]string{"MTAI_CONFIG": "/nonexistent.yaml"}, "MTAI_CONFIG"},
		{map[string]string{"MTAI_USAGE_RETENTION": "a month"}, "MTAI_USAGE_RETENTION"},
		{map[string]string{"MTAI_USAGE_ROLLUP_RETENTION": "-1h"}, "MTAI_USAGE_ROLLUP_RETENTION"},
	}
	for _, c := range cases {
		_, err := LoadConfig(env(c.env))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("LoadConfig(%v) = %v, want an error naming %s", c.env, err, c.want)
		}
	}
}

func TestLoadConfigFileAndDefaults(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mtai.yaml")
	os.WriteFile(path, []byte(`
server:
  addr: 127.0.0.1:9999
  shutdown_grace: 5s
providers:
  models:
    - name: my-model
      deployments:
        - {provider: openai, base_url: "http://127.0.0.1:1/v1", api_key_env: MY_KEY}
`), 0o600)
	cfg, err := LoadConfig(env(map[string]string{"MTAI_CONFIG": path, "MY_KEY": "sk-upstream", "OPENAI_API_KEY": "sk-x"}))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Server.Addr != "127.0.0.1:9999" || cfg.Server.ShutdownGrace != 5*time.Second {
		t.Errorf("server = %+v", cfg.Server)
	}
	names := map[string]bool{}
	for _, m := range cfg.Providers.Models {
		names[m.Name] = true
		if m.Name == "my-model" && m.Deployments[0].APIKey != "sk-upstream" {
			t.Errorf("api_key_env not resolved")
		}
	}
	for _, want := range []string{"my-model", "mock-gpt", "mock-embed", "gpt-4o-mini", "text-embedding-3-small"} {
		if !names[want] {
			t.Errorf("model %s not routed (have %v)", want, names)
		}
	}
	// unknown keys in the file are an error, not silently ignored
	os.WriteFile(path, []byte("sever:\n  addr: x\n"), 0o600)
	if _, err := LoadConfig(env(map[string]string{"MTAI_CONFIG": path})); err == nil {
		t.Error("a misspelt section was accepted")
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeFirstStart is `make run` on a fresh data dir: the gateway starts
// with no server, prints the key, answers a chat with it, and stops on the
// signal (context cancel).
func TestServeFirstStart(t *testing.T) {
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	dir := t.TempDir()
	const adminPassword = "first-admin-password-42"
	vars := map[string]string{"MTAI_ADDR": addr, "MTAI_DATA_DIR": dir, "LOG_LEVEL": "debug",
		"MTAI_BOOTSTRAP_ADMIN_PASSWORD": adminPassword}
	out := &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve"}, env(vars), out, io.Discard) }()
	var key string
	deadline := time.Now().Add(20 * time.Second)
	for key == "" && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		if b, err := os.ReadFile(filepath.Join(dir, "bootstrap_api_key")); err == nil {
			key = strings.TrimSpace(string(b))
		}
	}
	if key == "" || !strings.HasPrefix(key, "sk-mtai-") {
		cancel()
		t.Fatalf("no key after start; output:\n%s", out.String())
	}
	for _, stream := range []bool{false, true} {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + addr + "/v1/chat/completions")
		req.Header.SetMethod("POST")
		req.Header.Set("Authorization", "Bearer "+key)
		body := `{"model":"mock-gpt","messages":[{"role":"user","content":"hi"}]}`
		if stream {
			body = `{"model":"mock-gpt","stream":true,"messages":[{"role":"user","content":"hi"}]}`
		}
		req.SetBodyString(body)
		if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode() != 200 {
			t.Errorf("stream=%v: %d %s", stream, resp.StatusCode(), resp.Body())
		}
		if stream && !strings.HasSuffix(string(resp.Body()), "data: [DONE]\n\n") {
			t.Errorf("stream body: %s", resp.Body())
		}
	}
	if !strings.Contains(out.String(), key) || !strings.Contains(out.String(), "admin password") {
		t.Errorf("the first start did not print the key and the admin password:\n%s", out.String())
	}

	// Secrets never reach a log line: log in, make a key, try wrong ones.
	post := func(path, auth, tenant, body string) []byte {
		req := fasthttp.AcquireRequest()
		resp := fasthttp.AcquireResponse()
		req.SetRequestURI("http://" + addr + path)
		req.Header.SetMethod("POST")
		if auth != "" {
			req.Header.Set("Authorization", "Bearer "+auth)
		}
		if tenant != "" {
			req.Header.Set("X-Tenant-ID", tenant)
		}
		req.SetBodyString(body)
		if err := fasthttp.DoTimeout(req, resp, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		return append([]byte(nil), resp.Body()...)
	}
	const wrongKey = "sk-mtai-this-is-a-wrong-key-000000000"
	post("/v1/chat/completions", wrongKey, "", `{"model":"mock-gpt","messages":[{"role":"user","content":"x"}]}`)
	post("/api/v1/auth/login", "", "demo", `{"username":"admin","password":"wrong-password-99"}`)
	var login struct {
		AccessToken string `json:"access_token"`
	}
	json.Unmarshal(post("/api/v1/auth/login", "", "demo", `{"username":"admin","password":"`+adminPassword+`"}`), &login)
	if login.AccessToken == "" {
		t.Fatal("login failed")
	}
	var created struct {
		Key string `json:"key"`
	}
	json.Unmarshal(post("/api/v1/keys", login.AccessToken, "demo", `{"name":"ci"}`), &created)
	if created.Key == "" {
		t.Fatal("key creation failed")
	}
	time.Sleep(1500 * time.Millisecond) // the log is flushed every second
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("serve did not stop after the signal")
	}
	var logLines int
	for _, line := range strings.Split(out.String(), "\n") {
		if !strings.HasPrefix(line, "{") {
			continue // the welcome banner, which shows the first key once on purpose
		}
		logLines++
		for name, secret := range map[string]string{"api key": key, "admin password": adminPassword,
			"wrong key": wrongKey, "wrong password": "wrong-password-99", "jwt": login.AccessToken, "new key": created.Key} {
			if strings.Contains(line, secret) {
				t.Errorf("the %s appears in a log line: %s", name, line)
			}
		}
	}
	if logLines < 5 {
		t.Errorf("only %d log lines: the check above saw too little", logLines)
	}
}

func TestCLI(t *testing.T) {
	dir := t.TempDir()
	vars := env(map[string]string{"MTAI_DATA_DIR": dir})
	ctx := context.Background()
	var out bytes.Buffer
	if err := run(ctx, []string{"migrate"}, vars, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(ctx, []string{"tenant", "create", "acme", "--display-name", "Acme", "--rpm", "60", "--budget", "12.5"}, vars, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), `"requests_per_minute": 60`) || !strings.Contains(out.String(), `"monthly_budget_usd": 12.5`) {
		t.Errorf("tenant create printed:\n%s", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"key", "create", "--tenant", "acme", "--name", "ci"}, vars, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "sk-mtai-") {
		t.Errorf("key create printed:\n%s", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"key", "create", "--tenant", "acme", "--name", "batch", "--rpm", "30", "--tpm", "5000"}, vars, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "requests_per_minute 30, requests_per_hour 0, tokens_per_minute 5000") {
		t.Errorf("key create with limits printed:\n%s", out.String())
	}
	if err := run(ctx, []string{"key", "create", "--tenant", "acme", "--rpm", "-1"}, vars, &out, io.Discard); err == nil {
		t.Error("a key with a negative limit was created")
	}
	if err := run(ctx, []string{"key", "create", "--tenant", "nope"}, vars, &out, io.Discard); err == nil {
		t.Error("key for an unknown tenant was created")
	}
	if err := run(ctx, []string{"frobnicate"}, vars, &out, io.Discard); err == nil {
		t.Error("unknown command accepted")
	}
}

// TestEmbeddingTokensAreMetered: RAG's embedding usage becomes a usage
// event of its tenant (what the rollups, budgets and the dashboard read).
func TestEmbeddingTokensAreMetered(t *testing.T) {
	ctx := context.Background()
	cfg, err := LoadConfig(env(map[string]string{"MTAI_DATA_DIR": t.TempDir()}))
	if err != nil {
		t.Fatal(err)
	}
	a, err := openApp(ctx, cfg, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.openMeter(); err != nil {
		t.Fatal(err)
	}
	a.meterEmbedding(rag.Usage{TenantID: 7, Embedder: "openai-text-embedding-3-small-1536", Tokens: 42, Query: true})
	a.meterEmbedding(rag.Usage{TenantID: 7, Tokens: 0}) // nothing billed: no event
	closeCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := a.meter.Close(closeCtx); err != nil {
		t.Fatal(err)
	}
	st, err := admin.New(a.db, nil).Stats(ctx, admin.Filter{TenantID: 7}, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Requests != 1 || st.PromptTokens != 42 {
		t.Errorf("stats after one embedding call of 42 tokens: %+v", st.Totals)
	}
}

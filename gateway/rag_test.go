package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net"
	"net/textproto"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/providers/mock"
	"github.com/mtai-dev/mtai/rag"
	"github.com/mtai-dev/mtai/rag/embedded"
	"github.com/mtai-dev/mtai/rag/hashembed"
	"github.com/mtai-dev/mtai/rag/localblob"
	"github.com/mtai-dev/mtai/tenancy"
)

// ragEnv is a gateway over a real SQLite store (tenants and documents), an
// embedded vector store and local blobs, with the tenants alpha and beta of
// platformEnv.
type ragEnv struct {
	*platformEnv
	srv     *Server
	rag     *rag.Service
	vectors *embedded.Store
	blobs   *localblob.Store
}

func newRAGEnv(t *testing.T) *ragEnv {
	t.Helper()
	ctx := t.Context()
	dir := t.TempDir()
	db, cache, svc := tenancyStack(t, dir, tenancy.BootstrapConfig{AdminPassword: "admin-password-1"})
	router, err := providers.NewRouter(providers.Config{Models: []providers.ModelConfig{
		{Name: "mock-gpt", Deployments: []providers.DeploymentConfig{{Provider: "mock"}}},
	}}, map[string]providers.Factory{"mock": func(d providers.DeploymentConfig) (providers.Provider, error) { return mock.New(d) }})
	if err != nil {
		t.Fatal(err)
	}
	emb := hashembed.New(0)
	vectors, err := embedded.Open(filepath.Join(dir, "vectors"), emb.ID(), emb.Dimension())
	if err != nil {
		t.Fatal(err)
	}
	blobs, err := localblob.Open(filepath.Join(dir, "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	ragSvc, err := rag.New(rag.Config{Documents: db, Vectors: vectors, Blobs: blobs, Embedder: emb, MaxDocumentBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	if err := ragSvc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ragSvc.Close() })
	s, err := New(Options{Config: Config{Addr: "127.0.0.1:0"}, Router: router, Keys: cache, Platform: svc, RAG: ragSvc})
	if err != nil {
		t.Fatal(err)
	}
	e := &ragEnv{platformEnv: &platformEnv{h: s.Handler(), svc: svc, t: map[string]*tenantFixture{}},
		srv: s, rag: ragSvc, vectors: vectors, blobs: blobs}
	e.adminJWT = e.login(t, "demo", "admin", "admin-password-1")
	for _, name := range []string{"alpha", "beta"} {
		n := name
		tn, err := svc.CreateTenant(ctx, tenancy.TenantUpdate{Name: &n})
		if err != nil {
			t.Fatal(err)
		}
		f := &tenantFixture{tenant: tn}
		if _, err := svc.CreateUser(ctx, tn.ID, "boss", "boss-password-1", tenancy.RoleTenantAdmin); err != nil {
			t.Fatal(err)
		}
		alice, err := svc.CreateUser(ctx, tn.ID, "alice", "alice-password-"+name, tenancy.RoleMember)
		if err != nil {
			t.Fatal(err)
		}
		_, f.memberKey, err = svc.CreateKey(ctx, tn.ID, alice.ID, "alice key", nil)
		if err != nil {
			t.Fatal(err)
		}
		f.adminJWT = e.login(t, name, "boss", "boss-password-1")
		f.memberJWT = e.login(t, name, "alice", "alice-password-"+name)
		e.t[name] = f
	}
	return e
}

// send runs one request with a content type; it returns the status, the
// body and the response headers.
func (e *ragEnv) send(method, path, ctype string, body []byte, bearer, tenant string) (int, []byte, *fasthttp.ResponseHeader) {
	var req fasthttp.Request
	req.Header.SetMethod(method)
	req.SetRequestURI("http://gw" + path)
	req.Header.Set("Authorization", "Bearer "+bearer)
	if tenant != "" {
		req.Header.Set("X-Tenant-ID", tenant)
	}
	if ctype != "" {
		req.Header.SetContentType(ctype)
	}
	req.SetBody(body)
	var rc fasthttp.RequestCtx
	rc.Init(&req, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}, nil)
	e.h(&rc)
	var h fasthttp.ResponseHeader
	rc.Response.Header.CopyTo(&h)
	return rc.Response.StatusCode(), append([]byte(nil), rc.Response.Body()...), &h
}

// uploadJSON uploads text as tenant's admin.
func (e *ragEnv) uploadJSON(t *testing.T, tenant, name, text string) (int, documentView) {
	t.Helper()
	b, _ := json.Marshal(map[string]string{"name": name, "text": text, "content_type": "text/markdown"})
	code, body, _ := e.send("POST", "/api/v1/rag/documents", "application/json", b, e.t[tenant].adminJWT, tenant)
	var d documentView
	json.Unmarshal(body, &d)
	if code != 202 && code != 200 {
		t.Logf("upload %s: %d %s", name, code, body)
	}
	return code, d
}

// multipartBody builds a form with one file part.
func multipartBody(t *testing.T, field, filename, ctype string, data []byte) (string, []byte) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", fmt.Sprintf(`form-data; name=%q; filename=%q`, field, filename))
	if ctype != "" {
		h.Set("Content-Type", ctype)
	}
	p, err := w.CreatePart(h)
	if err != nil {
		t.Fatal(err)
	}
	p.Write(data)
	w.Close()
	return w.FormDataContentType(), b.Bytes()
}

type documentView struct {
	Object    string `json:"object"`
	ID        int64  `json:"id"`
	Name      string `json:"name"`
	Status    string `json:"status"`
	Error     string `json:"error"`
	Chunks    int    `json:"chunks"`
	SHA256    string `json:"sha256"`
	Type      string `json:"content_type"`
	Duplicate bool   `json:"duplicate"`
}

type searchView struct {
	Object string `json:"object"`
	Data   []struct {
		Object       string  `json:"object"`
		N            int     `json:"n"`
		DocumentID   int64   `json:"document_id"`
		DocumentName string  `json:"document_name"`
		Chunk        int     `json:"chunk_index"`
		Score        float32 `json:"score"`
		Text         string  `json:"text"`
	} `json:"data"`
}

// waitReady polls GET /api/v1/rag/documents/{id} until it is not processing.
func (e *ragEnv) waitReady(t *testing.T, tenant string, id int64) documentView {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, body, _ := e.send("GET", fmt.Sprintf("/api/v1/rag/documents/%d", id), "", nil, e.t[tenant].memberJWT, tenant)
		var d documentView
		json.Unmarshal(body, &d)
		if code != 200 {
			t.Fatalf("GET document %d: %d %s", id, code, body)
		}
		if d.Status != "processing" {
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("document %d still processing", id)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (e *ragEnv) search(t *testing.T, tenant, bearer, body string) (int, searchView) {
	t.Helper()
	code, b, _ := e.send("POST", "/api/v1/rag/search", "application/json", []byte(body), bearer, tenant)
	var v searchView
	json.Unmarshal(b, &v)
	if code != 200 {
		t.Logf("search: %d %s", code, b)
	}
	return code, v
}

const handbook = `# Handbook

## Vault

The vault behind the blue door opens with the launch code %s-7741.

## Lunch

Lunch is served at noon in the east wing.
`

func TestRAGDocumentAPI(t *testing.T) {
	t.Parallel()
	e := newRAGEnv(t)
	alpha := e.t["alpha"]

	// JSON text
	code, d := e.uploadJSON(t, "alpha", "handbook.md", fmt.Sprintf(handbook, "ALPHA"))
	if code != 202 || d.Object != "rag.document" || d.Status != "processing" || d.ID == 0 || len(d.SHA256) != 64 {
		t.Fatalf("POST JSON = %d %+v", code, d)
	}
	d = e.waitReady(t, "alpha", d.ID)
	if d.Status != "ready" || d.Chunks == 0 || d.Type != rag.TypeMarkdown {
		t.Fatalf("after ingestion: %+v", d)
	}
	// the same content again: the existing document, 200
	code, dup := e.uploadJSON(t, "alpha", "copy.md", fmt.Sprintf(handbook, "ALPHA"))
	if code != 200 || !dup.Duplicate || dup.ID != d.ID {
		t.Errorf("duplicate upload = %d %+v", code, dup)
	}

	// multipart: an HTML file
	ctype, body := multipartBody(t, "file", "runbook.html", "text/html",
		[]byte("<html><body><h1>Failover</h1><p>Promote the standby with pg_ctl promote.</p></body></html>"))
	code, raw, _ := e.send("POST", "/api/v1/rag/documents", ctype, body, alpha.adminJWT, "alpha")
	var html documentView
	json.Unmarshal(raw, &html)
	if code != 202 || html.Name != "runbook.html" {
		t.Fatalf("POST multipart = %d %s", code, raw)
	}
	if html = e.waitReady(t, "alpha", html.ID); html.Status != "ready" || html.Type != rag.TypeHTML {
		t.Fatalf("HTML document: %+v", html)
	}

	// refusals, each a clear 4xx
	pngType, png := multipartBody(t, "file", "logo.png", "image/png", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00"))
	bigType, big := multipartBody(t, "file", "big.txt", "text/plain", bytes.Repeat([]byte("a"), 1<<20+10))
	refusals := []struct {
		name, ctype string
		body        []byte
		bearer      string
		status      int
		code        string
	}{
		{"image", pngType, png, alpha.adminJWT, 415, "unsupported_media_type"},
		{"too large", bigType, big, alpha.adminJWT, 413, "request_too_large"},
		{"raw octets", "application/octet-stream", []byte("x"), alpha.adminJWT, 415, "unsupported_media_type"},
		{"empty text", "application/json", []byte(`{"name":"a","text":"  "}`), alpha.adminJWT, 400, ""},
		{"unknown field", "application/json", []byte(`{"text":"a","url":"http://x"}`), alpha.adminJWT, 400, ""},
		{"member may not upload", "application/json", []byte(`{"text":"hello"}`), alpha.memberJWT, 403, "forbidden"},
	}
	for _, tc := range refusals {
		code, raw, _ := e.send("POST", "/api/v1/rag/documents", tc.ctype, tc.body, tc.bearer, "alpha")
		var er struct {
			Error struct{ Code *string } `json:"error"`
		}
		json.Unmarshal(raw, &er)
		gotCode := ""
		if er.Error.Code != nil {
			gotCode = *er.Error.Code
		}
		if code != tc.status || (tc.code != "" && gotCode != tc.code) {
			t.Errorf("%s: %d %s, want %d %s", tc.name, code, raw, tc.status, tc.code)
		}
	}

	// list
	code, raw, _ = e.send("GET", "/api/v1/rag/documents?limit=1", "", nil, alpha.memberKey, "")
	var l struct {
		Data  []documentView `json:"data"`
		Total int            `json:"total"`
	}
	json.Unmarshal(raw, &l)
	if code != 200 || l.Total != 2 || len(l.Data) != 1 || l.Data[0].ID != d.ID {
		t.Errorf("GET documents = %d %s", code, raw)
	}

	// search (an API key acts as a member)
	code, res := e.search(t, "", alpha.memberKey, `{"query":"what opens the vault","top_k":2}`)
	if code != 200 || len(res.Data) == 0 || res.Data[0].DocumentID != d.ID || res.Data[0].N != 1 ||
		!strings.Contains(res.Data[0].Text, "ALPHA-7741") || res.Data[0].DocumentName != "handbook.md" || res.Data[0].Score <= 0 {
		t.Errorf("search = %d %+v", code, res)
	}
	code, res = e.search(t, "alpha", alpha.memberJWT, fmt.Sprintf(`{"query":"vault","document_id":%d}`, html.ID))
	if code != 200 {
		t.Errorf("filtered search = %d", code)
	}
	for _, r := range res.Data {
		if r.DocumentID != html.ID {
			t.Errorf("search filtered to document %d returned %d", html.ID, r.DocumentID)
		}
	}
	for _, bad := range []string{`{"query":""}`, `{"query":"x","top_k":0}`, `{"query":"x","top_k":1000}`, `{"q":"x"}`} {
		if code, _ := e.search(t, "alpha", alpha.memberJWT, bad); code != 400 {
			t.Errorf("search %s = %d, want 400", bad, code)
		}
	}

	// delete: 204, then 404; vectors, chunks and file gone; re-upload re-indexes
	if code, raw, _ := e.send("DELETE", fmt.Sprintf("/api/v1/rag/documents/%d", d.ID), "", nil, alpha.memberJWT, "alpha"); code != 403 {
		t.Errorf("member DELETE = %d %s, want 403", code, raw)
	}
	if code, raw, _ := e.send("DELETE", fmt.Sprintf("/api/v1/rag/documents/%d", d.ID), "", nil, alpha.adminJWT, "alpha"); code != 204 {
		t.Fatalf("DELETE = %d %s", code, raw)
	}
	if code, _, _ := e.send("GET", fmt.Sprintf("/api/v1/rag/documents/%d", d.ID), "", nil, alpha.adminJWT, "alpha"); code != 404 {
		t.Errorf("GET deleted = %d, want 404", code)
	}
	if n, file, _ := e.vectors.Count(t.Context(), alpha.tenant.ID, d.ID); n != 0 || file {
		t.Errorf("after DELETE: %d chunks, segment file %v", n, file)
	}
	if _, err := e.blobs.Get(t.Context(), fmt.Sprintf("%d/%s", alpha.tenant.ID, d.SHA256)); err == nil {
		t.Error("after DELETE: the stored file is still there")
	}
	_, res = e.search(t, "alpha", alpha.memberJWT, `{"query":"launch code vault"}`)
	for _, r := range res.Data {
		if r.DocumentID == d.ID {
			t.Errorf("deleted document still found: %+v", r)
		}
	}
	code, again := e.uploadJSON(t, "alpha", "handbook.md", fmt.Sprintf(handbook, "ALPHA"))
	if code != 202 || again.ID == d.ID || e.waitReady(t, "alpha", again.ID).Status != "ready" {
		t.Fatalf("re-upload = %d %+v", code, again)
	}
	_, res = e.search(t, "alpha", alpha.memberJWT, `{"query":"launch code vault","top_k":1}`)
	if len(res.Data) != 1 || res.Data[0].DocumentID != again.ID {
		t.Errorf("after re-upload: %+v", res)
	}
}

// TestRAGIsolation: near-identical documents in two tenants; neither sees,
// searches, reads nor deletes the other's (another tenant's document is 404).
func TestRAGIsolation(t *testing.T) {
	t.Parallel()
	e := newRAGEnv(t)
	ids := map[string]int64{}
	for _, name := range []string{"alpha", "beta"} {
		code, d := e.uploadJSON(t, name, "handbook.md", fmt.Sprintf(handbook, strings.ToUpper(name)))
		if code != 202 {
			t.Fatalf("upload %s: %d", name, code)
		}
		e.waitReady(t, name, d.ID)
		ids[name] = d.ID
	}
	for name, other := range map[string]string{"alpha": "beta", "beta": "alpha"} {
		f := e.t[name]
		for _, bearer := range []string{f.memberKey, f.memberJWT, f.adminJWT} {
			_, res := e.search(t, name, bearer, `{"query":"launch code vault lunch","top_k":10}`)
			if len(res.Data) == 0 {
				t.Errorf("%s: no results", name)
			}
			for _, r := range res.Data {
				if r.DocumentID != ids[name] || strings.Contains(r.Text, strings.ToUpper(other)) {
					t.Errorf("%s sees %s's chunk: %+v", name, other, r)
				}
			}
			_, res = e.search(t, name, bearer, fmt.Sprintf(`{"query":"vault","document_ids":[%d]}`, ids[other]))
			if len(res.Data) != 0 {
				t.Errorf("%s searching %s's document id: %+v", name, other, res.Data)
			}
		}
		path := fmt.Sprintf("/api/v1/rag/documents/%d", ids[other])
		if code, _, _ := e.send("GET", path, "", nil, f.adminJWT, name); code != 404 {
			t.Errorf("%s GET %s's document = %d, want 404", name, other, code)
		}
		if code, _, _ := e.send("DELETE", path, "", nil, f.adminJWT, name); code != 404 {
			t.Errorf("%s DELETE %s's document = %d, want 404", name, other, code)
		}
		code, raw, _ := e.send("GET", "/api/v1/rag/documents", "", nil, f.adminJWT, name)
		if code != 200 || strings.Count(string(raw), `"id":`) != 1 {
			t.Errorf("%s lists: %s", name, raw)
		}
		// another tenant named by a tenant admin: 404, as for tenants
		if code, _, _ := e.send("GET", "/api/v1/rag/documents?tenant="+other, "", nil, f.adminJWT, name); code != 404 {
			t.Errorf("%s listing ?tenant=%s = %d, want 404", name, other, code)
		}
	}
	// a platform admin may act on a tenant by name
	code, raw, _ := e.send("GET", "/api/v1/rag/documents?tenant=beta", "", nil, e.adminJWT, "demo")
	if code != 200 || !strings.Contains(string(raw), fmt.Sprintf(`"id":%d`, ids["beta"])) {
		t.Errorf("platform admin ?tenant=beta = %d %s", code, raw)
	}
}

// TestRAGInjectV1 runs the /v1 injection helper on a parsed chat request.
func TestRAGInjectV1(t *testing.T) {
	t.Parallel()
	e := newRAGEnv(t)
	_, d := e.uploadJSON(t, "alpha", "handbook.md", fmt.Sprintf(handbook, "ALPHA"))
	e.waitReady(t, "alpha", d.ID)
	p, err := e.srv.keys.ResolveKey(t.Context(), []byte(e.t["alpha"].memberKey))
	if err != nil {
		t.Fatal(err)
	}
	body := `{"model":"mock-gpt","messages":[{"role":"system","content":"be brief"},{"role":"user","content":"hi"},` +
		`{"role":"user","content":[{"type":"text","text":"What opens the vault?"}]}],"stream":true}`
	run := func(header string) (string, *fasthttp.ResponseHeader) {
		var req fasthttp.Request
		req.SetBodyString(body)
		if header != "" {
			req.Header.Set(ragHeader, header)
		}
		var rc fasthttp.RequestCtx
		rc.Init(&req, nil, nil)
		st := &reqState{principal: p}
		if err := parseChatRequest(rc.PostBody(), &st.chat); err != nil {
			t.Fatal(err)
		}
		e.srv.ragInject(&rc, st, rc.PostBody())
		out, _, _ := st.splice.apply(rc.PostBody(), st.chat.modelStart, st.chat.modelEnd)
		var h fasthttp.ResponseHeader
		rc.Response.Header.CopyTo(&h)
		return string(out), &h
	}
	out, h := run("on")
	var parsed struct {
		Messages []struct {
			Role    string `json:"role"`
			Content any    `json:"content"`
		} `json:"messages"`
	}
	if err := json.Unmarshal([]byte(out), &parsed); err != nil {
		t.Fatalf("spliced body is not JSON: %v\n%s", err, out)
	}
	if len(parsed.Messages) != 4 || parsed.Messages[0].Role != "system" ||
		!strings.Contains(parsed.Messages[0].Content.(string), "[1] handbook.md › Handbook\n") ||
		!strings.Contains(parsed.Messages[0].Content.(string), "ALPHA-7741") {
		t.Errorf("injected body = %s", out)
	}
	var srcs []struct {
		N          int    `json:"n"`
		DocumentID int64  `json:"document_id"`
		Name       string `json:"document_name"`
	}
	if err := json.Unmarshal(h.Peek("X-MTAI-RAG-Sources"), &srcs); err != nil || len(srcs) == 0 || srcs[0].DocumentID != d.ID || srcs[0].N != 1 {
		t.Errorf("X-MTAI-RAG-Sources = %s (%v)", h.Peek("X-MTAI-RAG-Sources"), err)
	}
	if out, h := run(""); out != body || len(h.Peek("X-MTAI-RAG-Sources")) != 0 {
		t.Errorf("without the header (tenant default off): body changed or sources sent: %s", out)
	}
	if out, _ := run("off"); out != body {
		t.Errorf("X-MTAI-RAG: off changed the body: %s", out)
	}
}

func TestSourcesHeaderASCII(t *testing.T) {
	t.Parallel()
	h := sourcesHeader([]rag.Source{{N: 1, DocumentID: 2, DocumentName: "résumé 📄.md\n", Score: 0.5}})
	for _, c := range h {
		if c < 0x20 || c > 0x7e {
			t.Fatalf("non-ASCII byte %q in %s", c, h)
		}
	}
	var v []struct {
		Name string `json:"document_name"`
	}
	if err := json.Unmarshal(h, &v); err != nil || v[0].Name != "résumé 📄.md\n" {
		t.Errorf("header %s decodes to %+v, %v", h, v, err)
	}
}

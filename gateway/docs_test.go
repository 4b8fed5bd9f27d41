package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"gopkg.in/yaml.v3"
)

// The OpenAPI document as served by a gateway with every part configured,
// loaded once for the tests that validate bodies against its schemas.
var (
	docOnce sync.Once
	docErr  error
	apiDoc  *openapi3.T
)

func loadDoc(t *testing.T) *openapi3.T {
	t.Helper()
	docOnce.Do(func() {
		var n yaml.Node
		if docErr = yaml.Unmarshal(openapiYAML, &n); docErr != nil {
			return
		}
		var b []byte
		if b, docErr = appendNodeJSON(nil, &n); docErr == nil {
			apiDoc, docErr = openapi3.NewLoader().LoadFromData(b)
		}
	})
	if docErr != nil {
		t.Fatalf("the OpenAPI document: %v", docErr)
	}
	return apiDoc
}

// checkSchema validates a JSON body against the document's schema name
// (kin-openapi's default mode).
func checkSchema(t *testing.T, name string, body []byte) {
	t.Helper()
	doc := loadDoc(t)
	ref := doc.Components.Schemas[name]
	if ref == nil || ref.Value == nil {
		t.Fatalf("the document has no schema %q", name)
	}
	var v any
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("%s body %s: %v", name, body, err)
	}
	if err := ref.Value.VisitJSON(v); err != nil {
		t.Errorf("body does not match schema %s: %v\n%s", name, err, body)
	}
}

// operations returns "METHOD path" of every operation of doc.
func operations(doc *openapi3.T) []string {
	var ops []string
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			ops = append(ops, method+" "+path)
		}
	}
	sort.Strings(ops)
	return ops
}

// TestOpenAPIMatchesRoutes: with every optional part configured, every
// route the router serves is in the document, and every operation of the
// document is served (the served document is fitted to the router's
// List(): nothing left out, nothing added).
func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	e := newChatEnv(t)
	r := e.raw("GET", "/openapi.json", "", "", "")
	if r.StatusCode() != 200 || string(r.Header.ContentType()) != "application/json" {
		t.Fatalf("GET /openapi.json: %d %s", r.StatusCode(), r.Header.ContentType())
	}
	served, err := openapi3.NewLoader().LoadFromData(r.Body())
	if err != nil {
		t.Fatal(err)
	}
	full := loadDoc(t)
	got, want := operations(served), operations(full)
	if !slices.Equal(got, want) {
		var missing, extra []string
		for _, op := range want {
			if !slices.Contains(got, op) {
				missing = append(missing, op)
			}
		}
		for _, op := range got {
			if !slices.Contains(want, op) {
				extra = append(extra, op)
			}
		}
		t.Errorf("documented but not served: %v\nserved but not documented (add them to gateway/openapi/openapi.yaml): %v", missing, extra)
	}
	if strings.Contains(string(r.Body()), "x-mtai-undocumented") {
		t.Error("the served document flags undocumented routes")
	}
	// Not vacuous: the router's list was read.
	for _, op := range []string{"POST /api/v1/chat/", "GET /api/v1/chat/conversations/{id}", "GET /v1/models/{model}",
		"POST /v1/chat/completions", "GET /docs/{filepath}", "GET /openapi.json", "POST /api/v1/auth/login"} {
		if !slices.Contains(got, op) {
			t.Errorf("%s is not in the served document", op)
		}
	}
	if len(got) < 30 {
		t.Errorf("the served document has %d operations, want every route", len(got))
	}
}

// TestServedDocumentFits: a route not served is left out of the document;
// a served route the document lacks is added and reported.
func TestServedDocumentFits(t *testing.T) {
	doc := []byte(`openapi: 3.0.3
info: {title: t, version: "1"}
tags: [{name: ta}, {name: tb}, {name: tc}]
paths:
  /a:
    get: {tags: [ta], responses: {"200": {description: ok}}}
    post: {tags: [ta], responses: {"200": {description: ok}}}
  /b/{id}:
    parameters: [{name: id, in: path, required: true, schema: {type: string}}]
    delete: {tags: [tb], responses: {"204": {description: gone}}}
  /c:
    get: {tags: [tc], responses: {"200": {description: ok}}}
`)
	routes := map[string][]string{
		"GET":    {"/a", "/c", "/new/{name:*}"},
		"DELETE": {"/b/{id}"},
		"PUT":    {"/a"},
	}
	out, undocumented, err := servedDocument(doc, routes)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(undocumented) != "[GET /new/{name} PUT /a]" {
		t.Errorf("undocumented = %v, want [GET /new/{name} PUT /a]", undocumented)
	}
	d, err := openapi3.NewLoader().LoadFromData(out)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if err := d.Validate(context.Background()); err != nil {
		t.Errorf("fitted document invalid: %v\n%s", err, out)
	}
	if got := fmt.Sprint(operations(d)); got != "[DELETE /b/{id} GET /a GET /c GET /new/{name} PUT /a]" {
		t.Errorf("operations = %s", got)
	}
	if d.Paths.Find("/new/{name}").Get.Extensions["x-mtai-undocumented"] != true {
		t.Error("the added route is not flagged x-mtai-undocumented")
	}
	// Nothing served: only the unserved are gone, the rest of the document stays.
	out, _, err = servedDocument(doc, map[string][]string{"GET": {"/c"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"info":{"title":"t","version":"1"},"tags":[{"name":"tc"}],"paths"`) || strings.Contains(string(out), `"/a"`) {
		t.Errorf("fitted to GET /c: %s", out)
	}
}

// TestOpenAPIWithoutPlatform: a gateway without the platform API does not
// document it.
func TestOpenAPIWithoutPlatform(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, &recorder{answer: answerJSON}, nil)
	r := do(s.Handler(), "GET", "/openapi.json", "")
	d, err := openapi3.NewLoader().LoadFromData(r.Body())
	if err != nil {
		t.Fatal(err)
	}
	ops := operations(d)
	if !slices.Contains(ops, "POST /v1/chat/completions") {
		t.Errorf("operations %v lack POST /v1/chat/completions", ops)
	}
	for _, op := range ops {
		if strings.Contains(op, "/api/v1/") {
			t.Errorf("%s is documented by a gateway that does not serve it", op)
		}
	}
	if d.Tags.Get("chat") != nil || d.Tags.Get("openai") == nil {
		t.Errorf("tags = %v, want the chat group gone with its operations", d.Tags)
	}
}

// TestOpenAPIDocument: the document is valid OpenAPI 3 and every example
// validates against its schema (kin-openapi, default mode). Every JSON
// request body and JSON success answer has an example.
func TestOpenAPIDocument(t *testing.T) {
	doc := loadDoc(t)
	if err := doc.Validate(context.Background(), openapi3.EnableExamplesValidation()); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	if doc.OpenAPI != "3.0.3" {
		t.Errorf("openapi = %q, want 3.0.3", doc.OpenAPI)
	}
	validated := 0
	check := func(where string, mt *openapi3.MediaType) {
		if mt == nil || mt.Schema == nil || mt.Schema.Value == nil {
			return
		}
		values := map[string]any{}
		if mt.Example != nil {
			values["example"] = mt.Example
		}
		for name, ex := range mt.Examples {
			if ex == nil || ex.Value == nil {
				t.Errorf("%s: example %s is empty", where, name)
				continue
			}
			values["examples."+name] = ex.Value.Value
		}
		for name, v := range values {
			if err := mt.Schema.Value.VisitJSON(v); err != nil {
				t.Errorf("%s %s does not match its schema: %v", where, name, err)
			}
			validated++
		}
	}
	hasExample := func(mt *openapi3.MediaType) bool {
		return mt != nil && (mt.Example != nil || len(mt.Examples) > 0)
	}
	for _, op := range operations(doc) {
		method, path, _ := strings.Cut(op, " ")
		o := doc.Paths.Find(path).GetOperation(method)
		if o.Summary == "" || o.OperationID == "" {
			t.Errorf("%s has no summary or operationId", op)
		}
		if o.RequestBody != nil {
			for ct, mt := range o.RequestBody.Value.Content {
				check(op+" request "+ct, mt)
				if ct == "application/json" && !hasExample(mt) {
					t.Errorf("%s: the JSON request has no example", op)
				}
			}
		}
		for code, resp := range o.Responses.Map() {
			for ct, mt := range resp.Value.Content {
				check(op+" "+code+" "+ct, mt)
				if ct == "application/json" && strings.HasPrefix(code, "2") && !hasExample(mt) {
					t.Errorf("%s: the %s answer has no example", op, code)
				}
			}
		}
		for _, p := range o.Parameters {
			if p.Value.Example != nil && p.Value.Schema != nil {
				if err := p.Value.Schema.Value.VisitJSON(p.Value.Example); err != nil {
					t.Errorf("%s parameter %s example: %v", op, p.Value.Name, err)
				}
				validated++
			}
		}
	}
	for name, s := range doc.Components.Schemas {
		if s.Value.Example != nil {
			if err := s.Value.VisitJSON(s.Value.Example); err != nil {
				t.Errorf("schema %s example: %v", name, err)
			}
			validated++
		}
	}
	if validated < 60 {
		t.Errorf("validated %d examples, want every one (more than 60)", validated)
	}
	// Authentication as the page sends it.
	for _, name := range []string{"bearerAuth", "tenantHeader", "apiKeyHeader"} {
		if doc.Components.SecuritySchemes[name] == nil {
			t.Errorf("no security scheme %s", name)
		}
	}
	if s := doc.Components.SecuritySchemes["tenantHeader"].Value; s.In != "header" || s.Name != "X-Tenant-ID" {
		t.Errorf("tenantHeader = %+v, want the X-Tenant-ID header", s)
	}
}

// TestDocsPage: Swagger UI from the binary, loading /openapi.json, nothing
// from elsewhere.
func TestDocsPage(t *testing.T) {
	t.Parallel()
	s := newTestServer(t, &recorder{answer: answerJSON}, nil)
	h := s.Handler()
	for _, tc := range []struct {
		path, ctype, contains string
	}{
		{"/docs", "text/html; charset=utf-8", `<div id="swagger-ui">`},
		{"/docs", "text/html; charset=utf-8", `<script src="/docs/swagger-ui-bundle.js"`},
		{"/docs", "text/html; charset=utf-8", `href="/docs/index.css"`},
		{"/docs/index.html", "text/html; charset=utf-8", "<title>mtai API</title>"},
		{"/docs/swagger-initializer.js", "text/javascript; charset=utf-8", `url: "/openapi.json"`},
		{"/docs/swagger-ui-bundle.js", "text/javascript; charset=utf-8", "SwaggerUIBundle"},
		{"/docs/swagger-ui-standalone-preset.js", "text/javascript; charset=utf-8", "SwaggerUIStandalonePreset"},
		{"/docs/swagger-ui.css", "text/css; charset=utf-8", ".swagger-ui"},
		{"/docs/index.css", "text/css; charset=utf-8", "body"},
		{"/docs/favicon-32x32.png", "image/png", "PNG"},
	} {
		r := do(h, "GET", tc.path, "")
		if r.StatusCode() != 200 || string(r.Header.ContentType()) != tc.ctype || !strings.Contains(string(r.Body()), tc.contains) {
			t.Errorf("GET %s: %d %s, contains %q: %v", tc.path, r.StatusCode(), r.Header.ContentType(), tc.contains,
				strings.Contains(string(r.Body()), tc.contains))
		}
		if csp := string(r.Header.Peek("Content-Security-Policy")); !strings.Contains(csp, "default-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q", tc.path, csp)
		}
	}
	// No CDN, no petstore, no validator badge.
	for _, path := range []string{"/docs", "/docs/swagger-initializer.js"} {
		body := string(do(h, "GET", path, "").Body())
		for _, bad := range []string{"http://", "https://", "petstore", `"./`} {
			if strings.Contains(body, bad) {
				t.Errorf("%s refers to %q", path, bad)
			}
		}
	}
	if !strings.Contains(swaggerInitializer, "validatorUrl: null") {
		t.Error("the initializer leaves the validator badge on (a request to validator.swagger.io)")
	}
	for _, path := range []string{"/docs/nope.js", "/docs/swagger-ui.js.map", "/docs/../gateway.go", "/docs/a/b"} {
		if r := do(h, "GET", path, ""); r.StatusCode() != 404 {
			t.Errorf("GET %s: %d, want 404", path, r.StatusCode())
		}
	}
}

func TestDocPath(t *testing.T) {
	for in, want := range map[string]string{
		"/v1/models/{model:*}": "/v1/models/{model}",
		"/docs/{filepath:*}":   "/docs/{filepath}",
		"/a/{id}/b/{x:[0-9]+}": "/a/{id}/b/{x}",
		"/plain":               "/plain",
		"/broken/{":            "/broken/{",
	} {
		if got := docPath(in); got != want {
			t.Errorf("docPath(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestYAMLToJSON(t *testing.T) {
	got, err := appendNodeJSON(nil, mustNode(t, "b: 1\na: [x, 2.5, true, null, .5, 0x10, \"3\"]\nc: &k {d: e}\nf: *k\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := `{"b":1,"a":["x",2.5,true,null,0.5,16,"3"],"c":{"d":"e"},"f":{"d":"e"}}`
	if string(got) != want || !json.Valid(got) {
		t.Errorf("YAML to JSON = %s, want %s", got, want)
	}
}

func mustNode(t *testing.T, doc string) *yaml.Node {
	t.Helper()
	var n yaml.Node
	if err := yaml.Unmarshal([]byte(doc), &n); err != nil {
		t.Fatal(err)
	}
	return &n
}

func TestDocsWithTrailingSlash(t *testing.T) {
	e := newChatEnv(t)
	for _, p := range []string{"/docs", "/docs/"} {
		resp := e.raw("GET", p, "", "", "")
		if resp.StatusCode() != 200 || !strings.Contains(string(resp.Body()), `<div id="swagger-ui">`) {
			t.Errorf("GET %s: %d (%d bytes)", p, resp.StatusCode(), len(resp.Body()))
		}
	}
}

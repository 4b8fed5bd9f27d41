package gateway

import (
	"bytes"
	_ "embed" // the OpenAPI document
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"github.com/fasthttp/router"
	swaggerFiles "github.com/swaggo/files/v2"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/mtai-dev/mtai/providers"
)

// The API documentation: the OpenAPI 3 document of every route (written by
// hand in openapi/openapi.yaml, embedded, served as JSON at /openapi.json)
// and Swagger UI at /docs, from the files github.com/swaggo/files/v2
// embeds: nothing is fetched from a CDN, and the page's Content Security
// Policy keeps its requests on this origin.

//go:embed openapi/openapi.yaml
var openapiYAML []byte

// swaggerInitializer replaces Swagger UI's own, which loads a petstore
// document from the internet: this one loads /openapi.json, and turns off
// the badge that asks validator.swagger.io to check the document.
const swaggerInitializer = `window.onload = function () {
  window.ui = SwaggerUIBundle({
    url: "/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    validatorUrl: null,
    persistAuthorization: true,
    tryItOutEnabled: false,
    displayRequestDuration: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "BaseLayout"
  });
};
`

// docsCSP allows the page nothing but this origin (Swagger UI styles
// elements inline and draws its icons from data: URLs).
const docsCSP = "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; " +
	"connect-src 'self'; font-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'self'"

// docsRoutes registers /openapi.json and /docs.
//
// The document served is the embedded one fitted to this server: an
// operation whose route is not served (a part not configured, such as the
// platform API) is left out, and a served route that the document lacks is
// added as an operation flagged x-mtai-undocumented (and logged), so that
// the page never hides a route. docs_test.go checks that, with every part
// configured, nothing is left out and nothing is added.
func (s *Server) docsRoutes(r *router.Router) {
	routes := r.List() // the router's own map: complete once Handler returns
	var (
		once    sync.Once
		spec    []byte
		specErr error
	)
	r.GET("/openapi.json", func(rc *fasthttp.RequestCtx) {
		once.Do(func() {
			var undocumented []string
			spec, undocumented, specErr = servedDocument(openapiYAML, routes)
			if len(undocumented) > 0 {
				s.log.Warn("routes missing from the OpenAPI document (gateway/openapi/openapi.yaml)", zap.Strings("routes", undocumented))
			}
		})
		if specErr != nil {
			writeError(rc, fmt.Errorf("the embedded OpenAPI document is broken: %w", specErr))
			return
		}
		rc.SetContentType("application/json")
		rc.Response.Header.Set("Cache-Control", "no-cache")
		rc.Response.Header.Set("Access-Control-Allow-Origin", "*") // a public document: other tools may read it
		rc.SetBody(spec)
	})
	index := docsIndex()
	serve := func(rc *fasthttp.RequestCtx, name string) {
		var body []byte
		switch name {
		case "index.html":
			body = index
		case "swagger-initializer.js":
			body = []byte(swaggerInitializer)
		default:
			b, err := fs.ReadFile(swaggerFiles.FS, name)
			if err != nil || strings.HasSuffix(name, ".map") || strings.Contains(name, "/") {
				writeError(rc, fmt.Errorf("%w: no file %q in the API docs", errNotFound, name))
				return
			}
			body = b
			rc.Response.Header.Set("Cache-Control", "public, max-age=86400")
		}
		rc.SetContentType(docsContentType(name))
		rc.Response.Header.Set("Content-Security-Policy", docsCSP)
		rc.Response.Header.Set("X-Content-Type-Options", "nosniff")
		rc.SetBody(body)
	}
	// The page is /docs; its files are below /docs/ (the router cannot
	// also serve /docs/ itself: it is /docs with a trailing slash).
	r.GET("/docs", func(rc *fasthttp.RequestCtx) { serve(rc, "index.html") })
	r.GET("/docs/{filepath:*}", func(rc *fasthttp.RequestCtx) {
		name, _ := rc.UserValue("filepath").(string)
		serve(rc, name)
	})
}

// docsIndex is Swagger UI's index.html with mtai's title, its files
// referred to below /docs/ (the page is served as /docs).
func docsIndex() []byte {
	b, err := fs.ReadFile(swaggerFiles.FS, "index.html")
	if err != nil {
		return []byte("Swagger UI is missing from this build.")
	}
	b = bytes.Replace(b, []byte("<title>Swagger UI</title>"), []byte("<title>mtai API</title>"), 1)
	b = bytes.ReplaceAll(b, []byte(`"./`), []byte(`"/docs/`))
	return bytes.ReplaceAll(b, []byte(`"index.css"`), []byte(`"/docs/index.css"`))
}

func docsContentType(name string) string {
	switch path.Ext(name) {
	case ".html":
		return "text/html; charset=utf-8"
	case ".js":
		return "text/javascript; charset=utf-8"
	case ".css":
		return "text/css; charset=utf-8"
	case ".png":
		return "image/png"
	}
	return "application/octet-stream"
}

// httpMethods are the operation keys of an OpenAPI path item.
var httpMethods = map[string]bool{"get": true, "put": true, "post": true, "delete": true, "options": true,
	"head": true, "patch": true, "trace": true}

// docPath returns a router path as OpenAPI writes it: "/v1/models/{model:*}"
// is "/v1/models/{model}".
func docPath(p string) string {
	var b strings.Builder
	for {
		i := strings.IndexByte(p, '{')
		if i < 0 {
			b.WriteString(p)
			return b.String()
		}
		j := strings.IndexByte(p[i:], '}')
		if j < 0 {
			b.WriteString(p)
			return b.String()
		}
		name, _, _ := strings.Cut(p[i+1:i+j], ":")
		b.WriteString(p[:i+1])
		b.WriteString(name)
		b.WriteByte('}')
		p = p[i+j+1:]
	}
}

// servedDocument returns the OpenAPI document doc (YAML) as JSON, fitted to
// the routes served (method → router paths, as router.List gives them):
// operations of routes not served are left out, and served routes the
// document lacks are added, flagged x-mtai-undocumented, and returned as
// "METHOD path".
func servedDocument(doc []byte, routes map[string][]string) ([]byte, []string, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(doc, &root); err != nil {
		return nil, nil, err
	}
	if root.Kind != yaml.DocumentNode || len(root.Content) != 1 || root.Content[0].Kind != yaml.MappingNode {
		return nil, nil, errors.New("openapi: the document is not a mapping")
	}
	var paths *yaml.Node
	top := root.Content[0]
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "paths" {
			paths = top.Content[i+1]
		}
	}
	if paths == nil || paths.Kind != yaml.MappingNode {
		return nil, nil, errors.New("openapi: the document has no paths")
	}
	served := map[string]bool{} // "GET /v1/models/{model}"
	for method, ps := range routes {
		for _, p := range ps {
			served[method+" "+docPath(p)] = true
		}
	}
	seen := map[string]bool{}
	kept := paths.Content[:0]
	for i := 0; i+1 < len(paths.Content); i += 2 {
		key, item := paths.Content[i], paths.Content[i+1]
		if item.Kind != yaml.MappingNode {
			return nil, nil, fmt.Errorf("openapi: line %d: path %s is not a mapping", key.Line, key.Value)
		}
		fields, ops := item.Content[:0], 0
		for j := 0; j+1 < len(item.Content); j += 2 {
			k := item.Content[j].Value
			if httpMethods[k] {
				op := strings.ToUpper(k) + " " + key.Value
				if !served[op] {
					continue
				}
				seen[op] = true
				ops++
			}
			fields = append(fields, item.Content[j], item.Content[j+1])
		}
		item.Content = fields
		if ops > 0 {
			kept = append(kept, key, item)
		}
	}
	paths.Content = kept
	dropUnusedTags(top, paths)
	var undocumented []string
	for op := range served {
		if !seen[op] {
			undocumented = append(undocumented, op)
		}
	}
	sort.Strings(undocumented)
	for _, op := range undocumented {
		method, p, _ := strings.Cut(op, " ")
		var params []map[string]any
		for _, seg := range strings.Split(p, "/") {
			if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
				params = append(params, map[string]any{"name": seg[1 : len(seg)-1], "in": "path", "required": true,
					"schema": map[string]any{"type": "string"}})
			}
		}
		operation := map[string]any{
			"summary":             "Undocumented route",
			"x-mtai-undocumented": true,
			"responses":           map[string]any{"default": map[string]any{"description": "Not documented."}},
		}
		if params != nil {
			operation["parameters"] = params
		}
		var k, v yaml.Node
		if err := k.Encode(p); err != nil {
			return nil, nil, err
		}
		if err := v.Encode(map[string]any{strings.ToLower(method): operation}); err != nil {
			return nil, nil, err
		}
		// the same path may already be there with other methods
		merged := false
		for i := 0; i+1 < len(paths.Content); i += 2 {
			if paths.Content[i].Value == p {
				paths.Content[i+1].Content = append(paths.Content[i+1].Content, v.Content...)
				merged = true
			}
		}
		if !merged {
			paths.Content = append(paths.Content, &k, &v)
		}
	}
	out, err := appendNodeJSON(nil, &root)
	return out, undocumented, err
}

// dropUnusedTags removes from the document's tag list (top) the tags that
// no operation left in paths has, so that the page shows no empty group.
func dropUnusedTags(top, paths *yaml.Node) {
	used := map[string]bool{}
	for i := 1; i < len(paths.Content); i += 2 {
		item := paths.Content[i]
		for j := 0; j+1 < len(item.Content); j += 2 {
			if op := item.Content[j+1]; httpMethods[item.Content[j].Value] && op.Kind == yaml.MappingNode {
				for k := 0; k+1 < len(op.Content); k += 2 {
					if op.Content[k].Value == "tags" {
						for _, tag := range op.Content[k+1].Content {
							used[tag.Value] = true
						}
					}
				}
			}
		}
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value != "tags" {
			continue
		}
		list := top.Content[i+1]
		kept := list.Content[:0]
		for _, tag := range list.Content {
			for k := 0; k+1 < len(tag.Content); k += 2 {
				if tag.Content[k].Value == "name" && used[tag.Content[k+1].Value] {
					kept = append(kept, tag)
				}
			}
		}
		list.Content = kept
	}
}

func appendNodeJSON(b []byte, n *yaml.Node) ([]byte, error) {
	var err error
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) != 1 {
			return nil, errors.New("openapi: want one YAML document")
		}
		return appendNodeJSON(b, n.Content[0])
	case yaml.AliasNode:
		return appendNodeJSON(b, n.Alias)
	case yaml.MappingNode:
		b = append(b, '{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			if i > 0 {
				b = append(b, ',')
			}
			b = providers.AppendJSONString(b, n.Content[i].Value)
			b = append(b, ':')
			if b, err = appendNodeJSON(b, n.Content[i+1]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case yaml.SequenceNode:
		b = append(b, '[')
		for i, c := range n.Content {
			if i > 0 {
				b = append(b, ',')
			}
			if b, err = appendNodeJSON(b, c); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			return append(b, "null"...), nil
		case "!!bool":
			var v bool
			if err := n.Decode(&v); err != nil {
				return nil, err
			}
			return strconv.AppendBool(b, v), nil
		case "!!int", "!!float":
			var v float64
			if err := n.Decode(&v); err != nil {
				return nil, fmt.Errorf("openapi: line %d: %w", n.Line, err)
			}
			if json.Valid([]byte(n.Value)) {
				return append(b, n.Value...), nil
			}
			return strconv.AppendFloat(b, v, 'f', -1, 64), nil // YAML's own forms: .5, +1, 0x1f
		default:
			return providers.AppendJSONString(b, n.Value), nil
		}
	}
	return nil, fmt.Errorf("openapi: line %d: unexpected YAML node", n.Line)
}

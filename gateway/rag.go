package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"strings"
	"time"

	"github.com/fasthttp/router"
	"github.com/valyala/fasthttp"
	"go.uber.org/zap"

	"github.com/mtai-dev/mtai/internal/jsonscan"
	"github.com/mtai-dev/mtai/rag"
	"github.com/mtai-dev/mtai/tenancy"
)

// The RAG document API (/api/v1/rag) and retrieval on /v1/chat/completions.

// RAG is what the gateway needs from retrieval. *rag.Service implements it.
type RAG interface {
	Upload(ctx context.Context, up rag.Upload) (*rag.Document, bool, error)
	Document(ctx context.Context, tenantID, id int64) (*rag.Document, error)
	Documents(ctx context.Context, tenantID int64, limit, offset int) ([]*rag.Document, int, error)
	Delete(ctx context.Context, tenantID, id int64) error
	Search(ctx context.Context, q rag.Query) ([]rag.Source, error)
}

var _ RAG = (*rag.Service)(nil)

// ragTimeout bounds one retrieval (embedding the question and searching).
const ragTimeout = 10 * time.Second

// ragRoutes registers the RAG document API (/api/v1/rag/...).
func (s *Server) ragRoutes(r *router.Router) {
	if s.rag == nil || s.platform == nil {
		return
	}
	r.POST("/api/v1/rag/documents", s.v1api("rag", s.uploadDocument, true))
	r.GET("/api/v1/rag/documents", s.v1api("rag", s.listDocuments, true))
	r.GET("/api/v1/rag/documents/{id}", s.v1api("rag", s.getDocument, true))
	r.DELETE("/api/v1/rag/documents/{id}", s.v1api("rag", s.deleteDocument, true))
	r.POST("/api/v1/rag/search", s.v1api("rag", s.searchDocuments, true))
}

// documentJSON is a document as the API shows it.
type documentJSON struct {
	Object string `json:"object"`
	*rag.Document
	// Duplicate: the tenant already had this content; this is that document.
	Duplicate bool `json:"duplicate,omitempty"`
}

// ragTenant is the tenant a RAG request acts on (platform admins may name
// another with ?tenant=) and its chunking settings.
func (s *Server) ragTenant(rc *fasthttp.RequestCtx, p *tenancy.Principal) (int64, tenancy.RAGConfig, error) {
	cfg := tenancy.DefaultRAG()
	if p.Policy != nil {
		cfg = p.Policy.RAG
	}
	id, err := s.targetTenant(p, string(rc.QueryArgs().Peek("tenant")))
	if err != nil {
		return 0, cfg, err
	}
	if id != p.TenantID {
		t, err := s.platform.GetTenant(s.ctx, id)
		if err != nil {
			return 0, cfg, err
		}
		cfg = t.RAG
	}
	if id == 0 {
		return 0, cfg, fmt.Errorf("%w: this key belongs to no stored tenant", tenancy.ErrForbidden)
	}
	return id, cfg, nil
}

// uploadDocument serves POST /api/v1/rag/documents (tenant admins): a
// multipart form with a "file" part (and an optional "name" field), or JSON
// {"name", "text", "content_type"}. 202 with the document while it is
// ingested; 200 with the existing document when the tenant already has
// this content.
func (s *Server) uploadDocument(rc *fasthttp.RequestCtx, st *reqState) error {
	if err := requireRole(st.principal, tenancy.RoleTenantAdmin); err != nil {
		return err
	}
	tenantID, cfg, err := s.ragTenant(rc, st.principal)
	if err != nil {
		return err
	}
	up := rag.Upload{TenantID: tenantID, ChunkSize: cfg.ChunkSize, ChunkOverlap: cfg.ChunkOverlap}
	ctype, _, _ := mime.ParseMediaType(string(rc.Request.Header.ContentType()))
	if ctype == "application/x-www-form-urlencoded" && bytes.HasPrefix(bytes.TrimSpace(rc.PostBody()), []byte("{")) {
		ctype = "application/json" // curl -d's default type on a JSON body
	}
	switch ctype {
	case "multipart/form-data":
		form, err := rc.MultipartForm()
		if err != nil {
			return invalid("file", "The multipart body could not be read: "+err.Error())
		}
		files := form.File["file"]
		if len(files) == 0 {
			for _, fs := range form.File {
				files = append(files, fs...)
			}
		}
		if len(files) != 1 {
			return invalid("file", "Send exactly one file, in the form field 'file'.")
		}
		fh := files[0]
		f, err := fh.Open()
		if err != nil {
			return invalid("file", "The uploaded file could not be read.")
		}
		up.Data, err = io.ReadAll(f)
		f.Close()
		if err != nil {
			return invalid("file", "The uploaded file could not be read.")
		}
		up.Name, up.ContentType = fh.Filename, fh.Header.Get("Content-Type")
		if v := form.Value["name"]; len(v) > 0 && v[0] != "" {
			up.Name = v[0]
		}
	case "application/json", "":
		var in struct {
			Name        string `json:"name"`
			Text        string `json:"text"`
			ContentType string `json:"content_type"`
		}
		if err := decodeJSON(rc, &in); err != nil {
			return err
		}
		if strings.TrimSpace(in.Text) == "" {
			return invalid("text", "'text' is required and must not be empty.")
		}
		switch in.ContentType {
		case "", rag.TypeText, rag.TypeMarkdown, rag.TypeHTML:
		default:
			return invalid("content_type", "'content_type' must be text/plain, text/markdown or text/html; upload other files as multipart.")
		}
		up.Name, up.Data, up.ContentType = in.Name, []byte(in.Text), in.ContentType
		if up.ContentType == "" {
			up.ContentType = rag.TypeText
		}
	default:
		return &requestError{status: fasthttp.StatusUnsupportedMediaType, code: "unsupported_media_type",
			message: "Upload a document as multipart/form-data (a 'file' part) or as JSON {\"name\", \"text\"}."}
	}
	d, created, err := s.rag.Upload(s.ctx, up)
	if err != nil {
		return ragError(err)
	}
	status := fasthttp.StatusAccepted
	if !created {
		status = fasthttp.StatusOK
	}
	return writeJSON(rc, status, documentJSON{Object: "rag.document", Document: d, Duplicate: !created})
}

// listDocuments serves GET /api/v1/rag/documents.
func (s *Server) listDocuments(rc *fasthttp.RequestCtx, st *reqState) error {
	limit, offset, err := page(rc)
	if err != nil {
		return err
	}
	tenantID, _, err := s.ragTenant(rc, st.principal)
	if err != nil {
		return err
	}
	docs, total, err := s.rag.Documents(s.ctx, tenantID, limit, offset)
	if err != nil {
		return err
	}
	out := make([]documentJSON, len(docs))
	for i, d := range docs {
		out[i] = documentJSON{Object: "rag.document", Document: d}
	}
	return writeList(rc, out, total, limit, offset)
}

// getDocument serves GET /api/v1/rag/documents/{id} (to follow its status).
func (s *Server) getDocument(rc *fasthttp.RequestCtx, st *reqState) error {
	id, err := idParam(rc)
	if err != nil {
		return err
	}
	tenantID, _, err := s.ragTenant(rc, st.principal)
	if err != nil {
		return err
	}
	d, err := s.rag.Document(s.ctx, tenantID, id)
	if err != nil {
		return err
	}
	return writeJSON(rc, fasthttp.StatusOK, documentJSON{Object: "rag.document", Document: d})
}

// deleteDocument serves DELETE /api/v1/rag/documents/{id} (tenant admins).
func (s *Server) deleteDocument(rc *fasthttp.RequestCtx, st *reqState) error {
	if err := requireRole(st.principal, tenancy.RoleTenantAdmin); err != nil {
		return err
	}
	id, err := idParam(rc)
	if err != nil {
		return err
	}
	tenantID, _, err := s.ragTenant(rc, st.principal)
	if err != nil {
		return err
	}
	if err := s.rag.Delete(s.ctx, tenantID, id); err != nil {
		return err
	}
	rc.SetStatusCode(fasthttp.StatusNoContent)
	return nil
}

// searchResult is one ranked chunk of POST /api/v1/rag/search.
type searchResult struct {
	Object string `json:"object"`
	rag.Source
}

// searchDocuments serves POST /api/v1/rag/search: {"query", "top_k",
// "document_id" or "document_ids"} → the ranked chunks.
func (s *Server) searchDocuments(rc *fasthttp.RequestCtx, st *reqState) error {
	var in struct {
		Query       string  `json:"query"`
		TopK        *int    `json:"top_k"`
		DocumentID  int64   `json:"document_id"`
		DocumentIDs []int64 `json:"document_ids"`
	}
	if err := decodeJSON(rc, &in); err != nil {
		return err
	}
	tenantID, cfg, err := s.ragTenant(rc, st.principal)
	if err != nil {
		return err
	}
	q := rag.Query{TenantID: tenantID, Text: in.Query, TopK: cfg.TopK, DocumentIDs: in.DocumentIDs}
	if in.TopK != nil {
		if *in.TopK < 1 || *in.TopK > rag.MaxTopK {
			return invalid("top_k", fmt.Sprintf("'top_k' must be an integer from 1 to %d.", rag.MaxTopK))
		}
		q.TopK = *in.TopK
	}
	if in.DocumentID != 0 {
		q.DocumentIDs = append(q.DocumentIDs, in.DocumentID)
	}
	if strings.TrimSpace(in.Query) == "" {
		return invalid("query", "'query' is required and must not be empty.")
	}
	srcs, err := s.rag.Search(s.ctx, q)
	if err != nil {
		return ragError(err)
	}
	out := make([]searchResult, len(srcs))
	for i, src := range srcs {
		out[i] = searchResult{Object: "rag.chunk", Source: src}
	}
	return writeJSON(rc, fasthttp.StatusOK, struct {
		Object string         `json:"object"`
		Query  string         `json:"query"`
		Data   []searchResult `json:"data"`
	}{"list", in.Query, out})
}

// ragError turns the rag package's errors into what the client sees
// (toAPIError renders them).
func ragError(err error) error {
	switch {
	case errors.Is(err, rag.ErrTooLarge):
		return fmt.Errorf("%w: %s", errBodyTooLarge, strings.TrimPrefix(err.Error(), rag.ErrTooLarge.Error()+": "))
	case errors.Is(err, rag.ErrUnsupportedType):
		return &requestError{status: fasthttp.StatusUnsupportedMediaType, code: "unsupported_media_type", param: "file",
			message: "Unsupported document: " + strings.TrimPrefix(err.Error(), rag.ErrUnsupportedType.Error()+": ")}
	case errors.Is(err, rag.ErrEmpty):
		return invalid("file", "The document is empty: it has no text.")
	case errors.Is(err, rag.ErrInvalid):
		return invalid("", strings.TrimPrefix(err.Error(), rag.ErrInvalid.Error()+": "))
	}
	return err
}

// ragHeader turns retrieval on or off for one /v1 chat request
// ("on"/"off"; absent: the tenant's default).
const ragHeader = "X-MTAI-RAG"

// ragInject is retrieval on /v1/chat/completions. When the tenant's RAG is
// on by default or the client sends X-MTAI-RAG: on (and not off), it
// retrieves the tenant's chunks most relevant to the last user message,
// splices them in as a system message with numbered sources (after the
// tenant's system prompt, before the client's messages), and answers the
// sources in the X-MTAI-RAG-Sources header (a JSON array; the body is
// relayed untouched, so streaming is unchanged). A failed retrieval does not
// fail the chat: the answer carries X-MTAI-RAG: error and no context.
// chat() calls it after the policy's system prompt edit.
func (s *Server) ragInject(rc *fasthttp.RequestCtx, st *reqState, body []byte) {
	p := st.principal
	if s.rag == nil || p == nil || p.TenantID == 0 {
		return
	}
	on := p.Policy != nil && p.Policy.RAG.Enabled
	switch strings.ToLower(string(rc.Request.Header.Peek(ragHeader))) {
	case "on", "true", "1":
		on = true
	case "off", "false", "0":
		on = false
	}
	if st.ragMode != 0 { // the platform chat's use_rag decides
		on = st.ragMode > 0
	}
	if !on {
		return
	}
	question := lastUserText(body, st.chat.msgStart)
	if strings.TrimSpace(question) == "" {
		return
	}
	topK := 0
	if p.Policy != nil {
		topK = p.Policy.RAG.TopK
	}
	ctx, cancel := context.WithTimeout(s.ctx, ragTimeout)
	defer cancel()
	srcs, err := s.rag.Search(ctx, rag.Query{TenantID: p.TenantID, Text: question, TopK: topK})
	if err != nil {
		s.log.Warn("rag: retrieval failed; answering without context", zap.String("request_id", st.requestID), zap.Error(err))
		rc.Response.Header.Set(ragHeader, "error")
		return
	}
	st.sources = srcs
	rc.Response.Header.Set(ragHeader, "on")
	rc.Response.Header.SetBytesV("X-MTAI-RAG-Sources", sourcesHeader(srcs))
	if len(srcs) == 0 {
		return
	}
	sp := &st.splice
	text, _, _ := sp.jsonString(`{"role":"system","content":`, rag.BuildContext(srcs), "},")
	sp.add(edit{at: st.chat.msgStart + 1, end: st.chat.msgStart + 1, text: text})
}

// sourcesHeader is the JSON array of the sources without their text,
// escaped to ASCII so that it is a valid header value.
func sourcesHeader(srcs []rag.Source) []byte {
	type hdr struct {
		N          int     `json:"n"`
		DocumentID int64   `json:"document_id"`
		Name       string  `json:"document_name"`
		Chunk      int     `json:"chunk_index"`
		Score      float32 `json:"score"`
	}
	hs := make([]hdr, len(srcs))
	for i, s := range srcs {
		hs[i] = hdr{s.N, s.DocumentID, s.DocumentName, s.Chunk, s.Score}
	}
	b, _ := json.Marshal(hs) // plain values always marshal
	out := make([]byte, 0, len(b))
	for _, r := range string(b) {
		switch {
		case r < 0x20 || r == 0x7f:
			out = fmt.Appendf(out, `\u%04x`, r)
		case r < 0x80:
			out = append(out, byte(r))
		case r > 0xffff:
			r -= 0x10000
			out = fmt.Appendf(out, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			out = fmt.Appendf(out, `\u%04x`, r)
		}
	}
	return out
}

// lastUserText returns the text of the last user message of the messages
// array at body[msgStart] (string content, or the text parts of an array).
func lastUserText(body []byte, msgStart int) string {
	var last string
	_, _ = jsonscan.Array(body, msgStart, func(start, end int) bool {
		msg := body[start:end]
		if len(msg) == 0 || msg[0] != '{' {
			return true
		}
		var role, content []byte
		_, _ = jsonscan.Object(msg, 0, func(f jsonscan.Field) bool {
			switch string(f.Key) {
			case "role":
				role, _ = jsonscan.String(msg[f.Start:f.End])
			case "content":
				content = msg[f.Start:f.End]
			}
			return true
		})
		if string(role) != "user" || len(content) == 0 {
			return true
		}
		switch content[0] {
		case '"':
			if s, ok := jsonscan.String(content); ok {
				last = string(s)
			}
		case '[':
			var parts []string
			_, _ = jsonscan.Array(content, 0, func(ps, pe int) bool {
				part := content[ps:pe]
				var typ, text []byte
				_, _ = jsonscan.Object(part, 0, func(f jsonscan.Field) bool {
					switch string(f.Key) {
					case "type":
						typ, _ = jsonscan.String(part[f.Start:f.End])
					case "text":
						text, _ = jsonscan.String(part[f.Start:f.End])
					}
					return true
				})
				if string(typ) == "text" && len(text) > 0 {
					parts = append(parts, string(text))
				}
				return true
			})
			last = strings.Join(parts, "\n")
		}
		return true
	})
	return last
}

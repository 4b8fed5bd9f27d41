package rag_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-pdf/fpdf"

	"github.com/mtai-dev/mtai/rag"
	"github.com/mtai-dev/mtai/rag/embedded"
	"github.com/mtai-dev/mtai/rag/hashembed"
	"github.com/mtai-dev/mtai/rag/localblob"
	"github.com/mtai-dev/mtai/rag/milvus"
	"github.com/mtai-dev/mtai/rag/milvus/milvustest"
	"github.com/mtai-dev/mtai/rag/ragtest"
	"github.com/mtai-dev/mtai/tenancy"
)

var (
	chunkerOnce sync.Once
	chunker     *rag.Chunker
)

func sharedChunker(t testing.TB) *rag.Chunker {
	chunkerOnce.Do(func() {
		c, err := rag.NewChunker()
		if err != nil {
			t.Fatal(err)
		}
		chunker = c
	})
	return chunker
}

// backend is a vector store under test, with a way to count its chunks.
type backend struct {
	name string
	open func(t *testing.T, emb rag.Embedder) (rag.VectorStore, func(tenant, doc int64) int)
}

var backends = []backend{
	{name: "embedded", open: func(t *testing.T, emb rag.Embedder) (rag.VectorStore, func(int64, int64) int) {
		s, err := embedded.Open(filepath.Join(t.TempDir(), "vectors"), emb.ID(), emb.Dimension())
		if err != nil {
			t.Fatal(err)
		}
		return s, func(tenant, doc int64) int {
			n, file, err := s.Count(context.Background(), tenant, doc)
			if err != nil {
				t.Fatal(err)
			}
			if file && n == 0 {
				t.Errorf("document %d: a segment file without chunks", doc)
			}
			return n
		}
	}},
	{name: "milvus", open: func(t *testing.T, emb rag.Embedder) (rag.VectorStore, func(int64, int64) int) {
		srv := milvustest.Start(t, "")
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		s, err := milvus.Open(ctx, milvus.Config{Address: srv.Addr()}, emb.ID(), emb.Dimension())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s, func(tenant, doc int64) int {
			n, err := s.Count(context.Background(), tenant, doc)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}},
}

type env struct {
	svc   *rag.Service
	docs  *ragtest.Documents
	blobs *localblob.Store
	count func(tenant, doc int64) int
}

func newEnv(t *testing.T, b backend, cfg rag.Config) *env {
	t.Helper()
	e := &env{docs: &ragtest.Documents{}}
	if cfg.Embedder == nil {
		cfg.Embedder = hashembed.New(0)
	}
	var err error
	if cfg.Vectors == nil {
		cfg.Vectors, e.count = b.open(t, cfg.Embedder)
	}
	if cfg.Documents == nil {
		cfg.Documents = e.docs
	}
	e.blobs, err = localblob.Open(filepath.Join(t.TempDir(), "blobs"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Blobs == nil {
		cfg.Blobs = e.blobs
	}
	cfg.Chunker = sharedChunker(t)
	e.svc, err = rag.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.svc.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.svc.Close() })
	return e
}

func (e *env) upload(t *testing.T, tenant int64, name, text string) *rag.Document {
	t.Helper()
	d, created, err := e.svc.Upload(t.Context(), rag.Upload{TenantID: tenant, Name: name, Data: []byte(text), ChunkSize: 64, ChunkOverlap: 8})
	if err != nil || !created {
		t.Fatalf("Upload(%s) = %v, created %v", name, err, created)
	}
	return e.ready(t, tenant, d.ID, rag.StatusReady)
}

// ready waits for the document's ingestion and checks its status.
func (e *env) ready(t *testing.T, tenant, id int64, want rag.Status) *rag.Document {
	t.Helper()
	waitIdle(t, e.svc, time.Minute)
	d, err := e.svc.Document(t.Context(), tenant, id)
	if err != nil {
		t.Fatalf("Document(%d) = %v", id, err)
	}
	if d.Status != want {
		t.Fatalf("document %d: status %s (%s), want %s", id, d.Status, d.Error, want)
	}
	return d
}

func secretText(tenant string) string {
	return fmt.Sprintf(`# Operations handbook

## Vault

The vault behind the blue door opens with the launch code %s-7741.
Only the night shift may open it.

## Lunch

Lunch is served at noon in the east wing.
`, strings.ToUpper(tenant))
}

// TestIsolation: two tenants with near-identical documents; on both vector
// stores, a tenant's searches only ever return its own chunks, even when
// asked for the other tenant's document ids, and the other tenant's
// documents cannot be read or deleted.
func TestIsolation(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b, rag.Config{})
			alpha := e.upload(t, 1, "handbook.md", secretText("alpha"))
			beta := e.upload(t, 2, "handbook.md", secretText("beta"))
			mine := map[int64]*rag.Document{1: alpha, 2: beta}
			for tenant, own := range mine {
				other := mine[3-tenant]
				word := map[int64]string{1: "ALPHA", 2: "BETA"}
				for _, q := range []string{"launch code of the vault", "when is lunch served", "BETA-7741 ALPHA-7741"} {
					srcs, err := e.svc.Search(t.Context(), rag.Query{TenantID: tenant, Text: q, TopK: 10})
					if err != nil {
						t.Fatal(err)
					}
					if len(srcs) == 0 {
						t.Errorf("tenant %d, %q: no result", tenant, q)
					}
					for _, s := range srcs {
						if s.DocumentID != own.ID || strings.Contains(s.Text, word[3-tenant]) {
							t.Errorf("tenant %d, %q: got another tenant's chunk %+v", tenant, q, s)
						}
					}
				}
				cross, err := e.svc.Search(t.Context(), rag.Query{TenantID: tenant, Text: "launch code", DocumentIDs: []int64{other.ID}})
				if err != nil || len(cross) != 0 {
					t.Errorf("tenant %d searching the other's document: %+v, %v", tenant, cross, err)
				}
				if _, err := e.svc.Document(t.Context(), tenant, other.ID); !errors.Is(err, tenancy.ErrNotFound) {
					t.Errorf("tenant %d reading the other's document: %v", tenant, err)
				}
				if err := e.svc.Delete(t.Context(), tenant, other.ID); !errors.Is(err, tenancy.ErrNotFound) {
					t.Errorf("tenant %d deleting the other's document: %v", tenant, err)
				}
			}
			if e.count(2, beta.ID) == 0 {
				t.Error("the other tenant's chunks are gone")
			}
		})
	}
}

// TestDeleteAndReupload: delete removes the vectors and chunks, the stored
// file and the row; uploading the same file again indexes it again.
func TestDeleteAndReupload(t *testing.T) {
	t.Parallel()
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, b, rag.Config{})
			ctx := t.Context()
			text := secretText("alpha")
			d := e.upload(t, 1, "handbook.md", text)
			keep := e.upload(t, 1, "other.md", "The cafeteria menu changes every Monday.")
			if d.Chunks == 0 || e.count(1, d.ID) != d.Chunks {
				t.Fatalf("ready document: %d chunks recorded, %d in the store", d.Chunks, e.count(1, d.ID))
			}
			if err := e.svc.Delete(ctx, 1, d.ID); err != nil {
				t.Fatalf("Delete = %v", err)
			}
			if n := e.count(1, d.ID); n != 0 {
				t.Errorf("after delete: %d chunks left", n)
			}
			if _, err := e.blobs.Get(ctx, d.BlobKey()); !errors.Is(err, rag.ErrBlobNotFound) {
				t.Errorf("after delete: stored file: %v", err)
			}
			if _, err := e.svc.Document(ctx, 1, d.ID); !errors.Is(err, tenancy.ErrNotFound) {
				t.Errorf("after delete: Document = %v", err)
			}
			srcs, _ := e.svc.Search(ctx, rag.Query{TenantID: 1, Text: "launch code vault", TopK: 10})
			for _, s := range srcs {
				if s.DocumentID == d.ID {
					t.Errorf("deleted document found: %+v", s)
				}
			}
			if e.count(1, keep.ID) == 0 {
				t.Error("delete took another document's chunks")
			}
			again := e.upload(t, 1, "handbook.md", text)
			if again.ID == d.ID || e.count(1, again.ID) != again.Chunks {
				t.Errorf("re-upload: id %d (was %d), %d chunks stored", again.ID, d.ID, e.count(1, again.ID))
			}
			srcs, _ = e.svc.Search(ctx, rag.Query{TenantID: 1, Text: "launch code vault", TopK: 1})
			if len(srcs) != 1 || srcs[0].DocumentID != again.ID || !strings.Contains(srcs[0].Text, "ALPHA-7741") {
				t.Errorf("after re-upload: %+v", srcs)
			}
		})
	}
}

func TestUploadDedupAndFailures(t *testing.T) {
	t.Parallel()
	e := newEnv(t, backends[0], rag.Config{MaxDocumentBytes: 1 << 20})
	ctx := t.Context()
	d := e.upload(t, 1, "a.txt", "Some plain text about kernels.")
	again, created, err := e.svc.Upload(ctx, rag.Upload{TenantID: 1, Name: "copy.txt", Data: []byte("Some plain text about kernels.")})
	if err != nil || created || again.ID != d.ID {
		t.Errorf("the same content again = %+v, created %v, %v; want document %d, not created", again, created, err, d.ID)
	}
	if _, created, _ := e.svc.Upload(ctx, rag.Upload{TenantID: 2, Data: []byte("Some plain text about kernels.")}); !created {
		t.Error("another tenant's identical file was deduplicated against tenant 1")
	}
	for _, tc := range []struct {
		name string
		data []byte
		want error
	}{
		{"image.png", []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), rag.ErrUnsupportedType},
		{"archive.zip", []byte("PK\x03\x04\x14\x00\x00\x00"), rag.ErrUnsupportedType},
		{"fake.pdf", []byte("just text pretending"), rag.ErrUnsupportedType},
		{"latin1.txt", []byte("caf\xe9 cr\xe8me"), rag.ErrUnsupportedType},
		{"empty.txt", []byte(" \n\t "), rag.ErrEmpty},
		{"big.txt", bytes.Repeat([]byte("a"), 1<<20+1), rag.ErrTooLarge},
	} {
		if _, _, err := e.svc.Upload(ctx, rag.Upload{TenantID: 1, Name: tc.name, Data: tc.data}); !errors.Is(err, tc.want) {
			t.Errorf("Upload(%s) = %v, want %v", tc.name, err, tc.want)
		}
	}
	// A PDF that cannot be read fails in the background, with a reason.
	broken, created, err := e.svc.Upload(ctx, rag.Upload{TenantID: 1, Name: "broken.pdf", Data: []byte("%PDF-1.4\nnot really a pdf")})
	if err != nil || !created || broken.Status != rag.StatusProcessing {
		t.Fatalf("Upload(broken.pdf) = %+v, %v", broken, err)
	}
	got := e.ready(t, 1, broken.ID, rag.StatusFailed)
	if got.Error == "" || got.Chunks != 0 {
		t.Errorf("failed document = %+v, want a reason and no chunks", got)
	}
	// Uploading a failed document again retries it.
	if d, created, err := e.svc.Upload(ctx, rag.Upload{TenantID: 1, Name: "broken.pdf", Data: []byte("%PDF-1.4\nnot really a pdf")}); err != nil || !created || d.ID != broken.ID {
		t.Errorf("re-upload of a failed document = %+v, created %v, %v", d, created, err)
	}
	e.ready(t, 1, broken.ID, rag.StatusFailed)
	if _, err := e.svc.Search(ctx, rag.Query{TenantID: 1, Text: " "}); !errors.Is(err, rag.ErrInvalid) {
		t.Errorf("Search(empty) = %v, want ErrInvalid", err)
	}
	if _, err := e.svc.Search(ctx, rag.Query{TenantID: 1, Text: "x", TopK: 101}); !errors.Is(err, rag.ErrInvalid) {
		t.Errorf("Search(top_k 101) = %v, want ErrInvalid", err)
	}
}

// pdfOf makes a real PDF (fpdf) with a title and paragraphs.
func pdfOf(t *testing.T, title string, paras ...string) []byte {
	t.Helper()
	p := fpdf.New("P", "mm", "A4", "")
	p.AddPage()
	p.SetFont("Helvetica", "B", 16)
	p.Cell(0, 10, title)
	p.Ln(14)
	p.SetFont("Helvetica", "", 11)
	for _, s := range paras {
		p.MultiCell(0, 6, s, "", "", false)
		p.Ln(4)
	}
	var b bytes.Buffer
	if err := p.Output(&b); err != nil {
		t.Fatal(err)
	}
	return b.Bytes()
}

func TestFileTypes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, backends[0], rag.Config{})
	ctx := t.Context()
	files := []struct {
		name, ctype string
		data        []byte
		query, want string
	}{
		{"notes.txt", "", []byte("The backup job runs at 03:00 and keeps 14 copies."), "how many backup copies are kept", "14 copies"},
		{"guide.md", "text/markdown", []byte("# Guide\n\n## Rotation\n\nCertificates rotate every 90 days."), "certificate rotation period", "90 days"},
		{"page.html", "", []byte(`<!doctype html><html><head><title>Runbook</title><style>p{color:red}</style><script>var x="secret script";</script></head>
<body><h1>Failover</h1><p>Promote the standby with <b>pg_ctl promote</b> when the primary is lost.</p></body></html>`), "promote standby failover", "pg_ctl promote"},
		{"report.pdf", "application/pdf", pdfOf(t, "Quarterly report", "Revenue grew by 12 percent in the third quarter.", "Churn fell to 3 percent."), "how much did revenue grow", "12 percent"},
	}
	for _, f := range files {
		d, created, err := e.svc.Upload(ctx, rag.Upload{TenantID: 1, Name: f.name, ContentType: f.ctype, Data: f.data})
		if err != nil || !created {
			t.Fatalf("Upload(%s) = %v", f.name, err)
		}
		d = e.ready(t, 1, d.ID, rag.StatusReady)
		srcs, err := e.svc.Search(ctx, rag.Query{TenantID: 1, Text: f.query, TopK: 1})
		if err != nil || len(srcs) != 1 || srcs[0].DocumentID != d.ID || !strings.Contains(srcs[0].Text, f.want) {
			t.Errorf("%s (%s): Search(%q) = %+v, %v; want its chunk with %q", f.name, d.ContentType, f.query, srcs, err, f.want)
		}
		if strings.Contains(srcs[0].Text, "secret script") || strings.Contains(srcs[0].Text, "color:red") {
			t.Errorf("%s: script or style text indexed: %q", f.name, srcs[0].Text)
		}
	}
}

func TestSniff(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, declared, data, want string
	}{
		{"a.txt", "", "plain words", rag.TypeText},
		{"a.md", "", "plain words", rag.TypeMarkdown},
		{"a", "text/markdown; charset=utf-8", "words", rag.TypeMarkdown},
		{"notes", "", "intro\n# Title\nbody", rag.TypeMarkdown},
		{"a.txt", "", "<!DOCTYPE html><p>x</p>", rag.TypeHTML},
		{"a.htm", "", "<div>fragment</div>", rag.TypeHTML},
		{"x.bin", "application/octet-stream", "%PDF-1.7 ...", rag.TypePDF},
	}
	for _, tc := range tests {
		got, err := rag.Sniff(tc.name, tc.declared, []byte(tc.data))
		if err != nil || got != tc.want {
			t.Errorf("Sniff(%q, %q) = %q, %v; want %q", tc.name, tc.declared, got, err, tc.want)
		}
	}
}

func TestChunker(t *testing.T) {
	t.Parallel()
	c := sharedChunker(t)
	var b strings.Builder
	b.WriteString("# Manual\n\nIntro paragraph.\n\n## Install\n\n")
	for i := range 60 {
		fmt.Fprintf(&b, "Step %d of the installation copies the files into place and checks them. ", i)
		if i%10 == 9 {
			b.WriteString("\n\n")
		}
	}
	b.WriteString("\n\n## Remove\n\nRun the uninstaller, then delete the data directory.\n")
	chunks := c.Chunk(b.String(), 100, 20)
	if len(chunks) < 5 {
		t.Fatalf("Chunk = %d chunks, want several", len(chunks))
	}
	for i, ch := range chunks {
		if ch.Index != i || ch.Tokens > 100 || c.Count(ch.Text) > 110 {
			t.Errorf("chunk %d: index %d, %d tokens (%d counted)", i, ch.Index, ch.Tokens, c.Count(ch.Text))
		}
	}
	last := chunks[len(chunks)-1]
	if !strings.HasPrefix(last.Text, "## Remove") || last.Heading != "Manual > Remove" {
		t.Errorf("the last section starts no chunk of its own: %+v", last)
	}
	// neighbouring chunks of the Install section share text
	overlapped := 0
	for i := 1; i < len(chunks); i++ {
		if chunks[i].Heading == "Manual > Install" && chunks[i-1].Heading == "Manual > Install" {
			tail := chunks[i-1].Text[len(chunks[i-1].Text)-20:]
			if strings.Contains(chunks[i].Text, tail) {
				overlapped++
			}
			if strings.HasPrefix(chunks[i].Text, "## ") {
				t.Errorf("chunk %d restarts the heading mid-section", i)
			}
		}
	}
	if overlapped == 0 {
		t.Error("no overlap between neighbouring chunks")
	}
	// a paragraph longer than a chunk is cut, not lost
	long := strings.Repeat("word ", 1000)
	total := 0
	for _, ch := range c.Chunk(long, 50, 0) {
		total += strings.Count(ch.Text, "word")
	}
	if total != 1000 {
		t.Errorf("a long paragraph cut into chunks keeps %d of 1000 words", total)
	}
}

// TestReindexOnNewEmbedder: documents indexed by another embedder are
// re-indexed into the new vector space at Start; those still processing
// after a crash are resumed.
func TestReindexOnNewEmbedder(t *testing.T) {
	t.Parallel()
	docs := &ragtest.Documents{}
	blobs, _ := localblob.Open(filepath.Join(t.TempDir(), "blobs"))
	dir := t.TempDir()
	first := hashembed.New(64)
	v1, _ := embedded.Open(dir, first.ID(), first.Dimension())
	s1, err := rag.New(rag.Config{Documents: docs, Vectors: v1, Blobs: blobs, Embedder: first, Chunker: sharedChunker(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	d, _, err := s1.Upload(t.Context(), rag.Upload{TenantID: 1, Name: "a.md", Data: []byte(secretText("alpha"))})
	if err != nil {
		t.Fatal(err)
	}
	waitIdle(t, s1, time.Minute)
	s1.Close()
	// A document left processing by a crash.
	stuck, _, err := s1.Upload(t.Context(), rag.Upload{TenantID: 1, Name: "b.md", Data: []byte("Crash course in recovery.")})
	if err != nil {
		t.Fatal(err)
	}

	second := hashembed.New(128)
	v2, _ := embedded.Open(dir, second.ID(), second.Dimension())
	s2, err := rag.New(rag.Config{Documents: docs, Vectors: v2, Blobs: blobs, Embedder: second, Chunker: sharedChunker(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	waitIdle(t, s2, time.Minute)
	for _, id := range []int64{d.ID, stuck.ID} {
		got, _ := docs.Document(t.Context(), 1, id)
		if got.Status != rag.StatusReady || got.Embedder != second.ID() {
			t.Errorf("document %d after restart: %s by %q, want ready by %q", id, got.Status, got.Embedder, second.ID())
		}
	}
	srcs, err := s2.Search(t.Context(), rag.Query{TenantID: 1, Text: "launch code", TopK: 1})
	if err != nil || len(srcs) != 1 || srcs[0].DocumentID != d.ID {
		t.Errorf("search in the new space = %+v, %v", srcs, err)
	}
}

func TestBuildContext(t *testing.T) {
	t.Parallel()
	if rag.BuildContext(nil) != "" {
		t.Error("BuildContext(nil) is not empty")
	}
	got := rag.BuildContext([]rag.Source{
		{N: 1, DocumentName: "a.md", Heading: "Vault", Text: " Opens at nine. "},
		{N: 2, DocumentName: "b.pdf", Text: "Closed on Sundays."},
	})
	for _, want := range []string{"[1] a.md › Vault\nOpens at nine.", "[2] b.pdf\nClosed on Sundays.", "Cite the sources"} {
		if !strings.Contains(got, want) {
			t.Errorf("BuildContext = %q, want it to contain %q", got, want)
		}
	}
}

func TestUsageMetered(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []rag.Usage
	e := newEnv(t, backends[0], rag.Config{Embedder: billing{hashembed.New(0)}, OnUsage: func(u rag.Usage) {
		mu.Lock()
		got = append(got, u)
		mu.Unlock()
	}})
	e.upload(t, 7, "a.txt", "Some words to embed.")
	if _, err := e.svc.Search(t.Context(), rag.Query{TenantID: 7, Text: "words"}); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 2 || got[0].TenantID != 7 || got[0].Query || !got[1].Query || got[1].Tokens != 1 {
		t.Errorf("usage = %+v, want one ingestion and one query of tenant 7", got)
	}
}

// billing is an embedder that bills one token per text.
type billing struct{ *hashembed.Embedder }

func (b billing) Embed(ctx context.Context, texts []string) ([][]float32, int, error) {
	v, _, err := b.Embedder.Embed(ctx, texts)
	return v, len(texts), err
}

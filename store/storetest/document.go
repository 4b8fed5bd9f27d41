package storetest

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/rag"
	"github.com/mtai-dev/mtai/tenancy"
)

// documentTests are the RAG document cases of the suite (see Run). They
// need the adapter's store to implement rag.DocumentStore too; Stores.Tenants
// is asserted to, so that adapters need no new field.
var documentTests = []struct {
	name string
	fn   func(t *testing.T, s Stores)
}{
	{"DocumentCreateFind", testDocumentCreateFind},
	{"DocumentHashUniquePerTenant", testDocumentHashUnique},
	{"DocumentIsolation", testDocumentIsolation},
	{"DocumentUpdateDelete", testDocumentUpdateDelete},
	{"DocumentsToIndex", testDocumentsToIndex},
}

func documentStore(t *testing.T, s Stores) rag.DocumentStore {
	t.Helper()
	ds, ok := s.Tenants.(rag.DocumentStore)
	if !ok {
		t.Fatalf("%T does not implement rag.DocumentStore", s.Tenants)
	}
	return ds
}

func newDocument(tenantID int64, content string) *rag.Document {
	n := now()
	return &rag.Document{
		TenantID: tenantID, Name: "guide-" + content + ".md", ContentType: rag.TypeMarkdown, Size: int64(len(content)),
		SHA256: fmt.Sprintf("%064x", len(content)*7919+int(content[0])) + "", Status: rag.StatusProcessing,
		ChunkSize: 512, ChunkOverlap: 64, CreatedAt: n, UpdatedAt: n,
	}
}

func mustDocument(t *testing.T, ds rag.DocumentStore, d *rag.Document) *rag.Document {
	t.Helper()
	if err := ds.CreateDocument(ctx(t), d); err != nil {
		t.Fatalf("CreateDocument(%s) = %v", d.Name, err)
	}
	if d.ID == 0 {
		t.Fatalf("CreateDocument(%s) set no id", d.Name)
	}
	return d
}

func testDocumentCreateFind(t *testing.T, s Stores) {
	ds := documentStore(t, s)
	tn := mustTenant(t, s, uniq("docs"))
	a := mustDocument(t, ds, newDocument(tn.ID, "alpha"))
	b := mustDocument(t, ds, newDocument(tn.ID, "bravo-longer"))
	got, err := ds.Document(ctx(t), tn.ID, a.ID)
	if err != nil {
		t.Fatalf("Document = %v", err)
	}
	sameJSON(t, "Document", got, a)
	if got.TenantID != tn.ID {
		t.Errorf("TenantID = %d, want %d", got.TenantID, tn.ID)
	}
	got, err = ds.DocumentByHash(ctx(t), tn.ID, b.SHA256)
	if err != nil {
		t.Fatalf("DocumentByHash = %v", err)
	}
	sameJSON(t, "DocumentByHash", got, b)
	if _, err := ds.DocumentByHash(ctx(t), tn.ID, strings.Repeat("f", 64)); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("DocumentByHash(unknown) = %v, want ErrNotFound", err)
	}
	list, total, err := ds.Documents(ctx(t), tn.ID, 1, 1)
	if err != nil || total != 2 || len(list) != 1 || list[0].ID != b.ID {
		t.Errorf("Documents(limit 1, offset 1) = %d docs, total %d, %v; want [%d], 2", len(list), total, err, b.ID)
	}
	all, total, err := ds.Documents(ctx(t), tn.ID, 0, 0)
	if err != nil || total != 2 || len(all) != 2 || all[0].ID != a.ID {
		t.Errorf("Documents(all) = %d docs, total %d, %v", len(all), total, err)
	}
	empty, total, err := ds.Documents(ctx(t), mustTenant(t, s, uniq("empty")).ID, 10, 0)
	if err != nil || total != 0 || empty == nil || len(empty) != 0 {
		t.Errorf("Documents(no documents) = %v, %d, %v; want [], 0", empty, total, err)
	}
}

func testDocumentHashUnique(t *testing.T, s Stores) {
	ds := documentStore(t, s)
	t1 := mustTenant(t, s, uniq("docs"))
	t2 := mustTenant(t, s, uniq("docs"))
	mustDocument(t, ds, newDocument(t1.ID, "same"))
	if err := ds.CreateDocument(ctx(t), newDocument(t1.ID, "same")); !errors.Is(err, tenancy.ErrConflict) {
		t.Errorf("CreateDocument(same content, same tenant) = %v, want ErrConflict", err)
	}
	mustDocument(t, ds, newDocument(t2.ID, "same")) // another tenant may have it
	if err := ds.CreateDocument(ctx(t), newDocument(1<<40, "orphan")); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("CreateDocument(no such tenant) = %v, want ErrNotFound", err)
	}
}

func testDocumentIsolation(t *testing.T, s Stores) {
	ds := documentStore(t, s)
	mine := mustTenant(t, s, uniq("docs"))
	other := mustTenant(t, s, uniq("docs"))
	d := mustDocument(t, ds, newDocument(mine.ID, "private"))
	if _, err := ds.Document(ctx(t), other.ID, d.ID); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("Document(other tenant) = %v, want ErrNotFound", err)
	}
	if _, err := ds.DocumentByHash(ctx(t), other.ID, d.SHA256); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("DocumentByHash(other tenant) = %v, want ErrNotFound", err)
	}
	if list, total, _ := ds.Documents(ctx(t), other.ID, 10, 0); total != 0 || len(list) != 0 {
		t.Errorf("Documents(other tenant) = %d, total %d", len(list), total)
	}
	steal := *d
	steal.TenantID, steal.Status = other.ID, rag.StatusFailed
	if err := ds.UpdateDocument(ctx(t), &steal); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("UpdateDocument(other tenant) = %v, want ErrNotFound", err)
	}
	if err := ds.DeleteDocument(ctx(t), other.ID, d.ID); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("DeleteDocument(other tenant) = %v, want ErrNotFound", err)
	}
	if got, err := ds.Document(ctx(t), mine.ID, d.ID); err != nil || got.Status != rag.StatusProcessing {
		t.Errorf("after the other tenant's attempts: %+v, %v", got, err)
	}
}

func testDocumentUpdateDelete(t *testing.T, s Stores) {
	ds := documentStore(t, s)
	tn := mustTenant(t, s, uniq("docs"))
	d := mustDocument(t, ds, newDocument(tn.ID, "grows"))
	d.Status, d.Chunks, d.Tokens, d.Embedder = rag.StatusReady, 12, 5000, "hash-v1-256"
	d.UpdatedAt = now().Add(time.Minute)
	if err := ds.UpdateDocument(ctx(t), d); err != nil {
		t.Fatalf("UpdateDocument = %v", err)
	}
	got, _ := ds.Document(ctx(t), tn.ID, d.ID)
	sameJSON(t, "after UpdateDocument", got, d)
	d.Status, d.Error, d.Chunks, d.Tokens, d.Embedder = rag.StatusFailed, "no text in the PDF", 0, 0, ""
	if err := ds.UpdateDocument(ctx(t), d); err != nil {
		t.Fatal(err)
	}
	got, _ = ds.Document(ctx(t), tn.ID, d.ID)
	sameJSON(t, "after failing", got, d)
	bad := *d
	bad.Status = "lost"
	if err := ds.UpdateDocument(ctx(t), &bad); err == nil {
		t.Error("UpdateDocument(status lost) = nil, want an error")
	}
	if err := ds.DeleteDocument(ctx(t), tn.ID, d.ID); err != nil {
		t.Fatalf("DeleteDocument = %v", err)
	}
	if _, err := ds.Document(ctx(t), tn.ID, d.ID); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("Document(deleted) = %v, want ErrNotFound", err)
	}
	if err := ds.DeleteDocument(ctx(t), tn.ID, d.ID); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("DeleteDocument(twice) = %v, want ErrNotFound", err)
	}
	if err := ds.UpdateDocument(ctx(t), d); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("UpdateDocument(deleted) = %v, want ErrNotFound", err)
	}
	// the content may come back as a new document
	again := mustDocument(t, ds, newDocument(tn.ID, "grows"))
	if again.ID == d.ID {
		t.Errorf("re-created document reuses id %d", d.ID)
	}
}

func testDocumentsToIndex(t *testing.T, s Stores) {
	ds := documentStore(t, s)
	t1 := mustTenant(t, s, uniq("docs"))
	t2 := mustTenant(t, s, uniq("docs"))
	set := func(d *rag.Document, st rag.Status, emb string) *rag.Document {
		d.Status, d.Embedder = st, emb
		if err := ds.UpdateDocument(ctx(t), d); err != nil {
			t.Fatal(err)
		}
		return d
	}
	processing := mustDocument(t, ds, newDocument(t1.ID, "p"))
	current := set(mustDocument(t, ds, newDocument(t1.ID, "cur")), rag.StatusReady, "hash-v1-256")
	old := set(mustDocument(t, ds, newDocument(t2.ID, "oldemb")), rag.StatusReady, "openai/ada/1536")
	set(mustDocument(t, ds, newDocument(t2.ID, "failed")), rag.StatusFailed, "")
	_ = current
	got, err := ds.DocumentsToIndex(ctx(t), "hash-v1-256", 0, 100)
	if err != nil {
		t.Fatalf("DocumentsToIndex = %v", err)
	}
	var ids []int64
	for _, d := range got {
		if d.TenantID == t1.ID || d.TenantID == t2.ID {
			ids = append(ids, d.ID)
		}
	}
	if len(ids) != 2 || ids[0] != processing.ID || ids[1] != old.ID {
		t.Errorf("DocumentsToIndex = %v, want [%d %d] (processing, other embedder)", ids, processing.ID, old.ID)
	}
	after, err := ds.DocumentsToIndex(ctx(t), "hash-v1-256", processing.ID, 100)
	if err != nil || len(after) == 0 || after[0].ID <= processing.ID {
		t.Errorf("DocumentsToIndex(after %d) = %v, %v", processing.ID, after, err)
	}
	if one, _ := ds.DocumentsToIndex(ctx(t), "hash-v1-256", 0, 1); len(one) != 1 {
		t.Errorf("DocumentsToIndex(limit 1) = %d documents", len(one))
	}
}

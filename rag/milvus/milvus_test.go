package milvus_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/rag"
	"github.com/mtai-dev/mtai/rag/hashembed"
	"github.com/mtai-dev/mtai/rag/milvus"
	"github.com/mtai-dev/mtai/rag/milvus/milvustest"
)

var emb = hashembed.New(64)

func open(t *testing.T, srv *milvustest.Server, token string) *milvus.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s, err := milvus.Open(ctx, milvus.Config{Address: srv.Addr(), Token: token}, emb.ID(), emb.Dimension())
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func recs(tenant, doc int64, texts ...string) []rag.Record {
	out := make([]rag.Record, len(texts))
	for i, txt := range texts {
		out[i] = rag.Record{TenantID: tenant, DocumentID: doc, DocumentName: "doc.md", Chunk: i, Heading: "Intro", Text: txt, Vector: emb.Vector(txt)}
	}
	return out
}

func TestStore(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := milvustest.Start(t, "root:Milvus")
	s := open(t, srv, "root:Milvus")
	if s.Collection() != "mtai_hash_v1_64" {
		t.Errorf("Collection() = %q", s.Collection())
	}
	// Near-identical documents in two tenants.
	for tenant := int64(1); tenant <= 2; tenant++ {
		if err := s.Add(ctx, recs(tenant, 10*tenant, "The vault opens with the launch code.", "Lunch is served at noon.")); err != nil {
			t.Fatalf("Add = %v", err)
		}
	}
	if err := s.Add(ctx, recs(1, 11, "Backups run every night at three.")); err != nil {
		t.Fatal(err)
	}
	for tenant := int64(1); tenant <= 2; tenant++ {
		hits, err := s.Search(ctx, rag.SearchRequest{TenantID: tenant, Vector: emb.Vector("launch code vault"), K: 10})
		if err != nil {
			t.Fatalf("Search = %v", err)
		}
		if len(hits) == 0 || hits[0].Text != "The vault opens with the launch code." || hits[0].Heading != "Intro" || hits[0].DocumentName != "doc.md" {
			t.Errorf("tenant %d: Search = %+v", tenant, hits)
		}
		for _, h := range hits {
			if h.DocumentID/10 != tenant {
				t.Errorf("tenant %d sees document %d", tenant, h.DocumentID)
			}
		}
		for i := 1; i < len(hits); i++ {
			if hits[i].Score > hits[i-1].Score {
				t.Errorf("hits not best first: %+v", hits)
			}
		}
		// the other tenant's document id filters to nothing
		cross, err := s.Search(ctx, rag.SearchRequest{TenantID: tenant, Vector: emb.Vector("vault"), K: 10, DocumentIDs: []int64{10 * (3 - tenant)}})
		if err != nil || len(cross) != 0 {
			t.Errorf("tenant %d filtered to the other's document: %+v, %v", tenant, cross, err)
		}
	}
	if n, _ := s.Count(ctx, 1, 0); n != 3 {
		t.Errorf("Count(tenant 1) = %d, want 3", n)
	}
	only, err := s.Search(ctx, rag.SearchRequest{TenantID: 1, Vector: emb.Vector("vault"), K: 10, DocumentIDs: []int64{11}})
	if err != nil || len(only) != 1 || only[0].DocumentID != 11 {
		t.Errorf("filtered to document 11: %+v, %v", only, err)
	}
	// Delete by document: only that document of that tenant goes.
	if err := s.DeleteDocument(ctx, 1, 10); err != nil {
		t.Fatal(err)
	}
	if n, _ := s.Count(ctx, 1, 10); n != 0 {
		t.Errorf("Count(deleted document) = %d", n)
	}
	if n, _ := s.Count(ctx, 2, 20); n != 2 {
		t.Errorf("the other tenant's document lost chunks: %d", n)
	}
	if got := srv.Rows(s.Collection()); got != 3 {
		t.Errorf("collection rows = %d, want 3", got)
	}
	if err := s.DeleteDocument(ctx, 1, 10); err != nil {
		t.Errorf("second delete = %v", err)
	}
	// A long text is cut to the field's limit, at a character.
	long := strings.Repeat("é", 40000)
	if err := s.Add(ctx, []rag.Record{{TenantID: 3, DocumentID: 1, Text: long, Vector: emb.Vector("x")}}); err != nil {
		t.Errorf("Add(long text) = %v", err)
	}
}

func TestReopen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := milvustest.Start(t, "")
	s := open(t, srv, "")
	if err := s.Add(ctx, recs(1, 1, "persisted chunk")); err != nil {
		t.Fatal(err)
	}
	s2 := open(t, srv, "") // the collection exists: it is reused
	if n, err := s2.Count(ctx, 1, 1); err != nil || n != 1 {
		t.Errorf("after reopen: Count = %d, %v", n, err)
	}
	if _, err := milvus.Open(ctx, milvus.Config{Address: srv.Addr()}, emb.ID(), 32); err == nil || !strings.Contains(err.Error(), "dimensions") {
		t.Errorf("Open with another dimension = %v, want a dimension error", err)
	}
}

func TestToken(t *testing.T) {
	t.Parallel()
	srv := milvustest.Start(t, "secret-token")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := milvus.Open(ctx, milvus.Config{Address: srv.Addr(), Token: "wrong"}, emb.ID(), emb.Dimension()); err == nil {
		t.Error("Open with a wrong token = nil, want an error")
	}
	open(t, srv, "secret-token")
}

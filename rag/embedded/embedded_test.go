package embedded_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/rag"
	"github.com/mtai-dev/mtai/rag/embedded"
	"github.com/mtai-dev/mtai/rag/hashembed"
	"github.com/mtai-dev/mtai/rag/internal/mancorpus"
)

var emb = hashembed.New(0)

func open(t testing.TB, dir string) *embedded.Store {
	t.Helper()
	s, err := embedded.Open(dir, emb.ID(), emb.Dimension())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func records(tenant, doc int64, name string, texts ...string) []rag.Record {
	recs := make([]rag.Record, len(texts))
	for i, txt := range texts {
		recs[i] = rag.Record{TenantID: tenant, DocumentID: doc, DocumentName: name, Chunk: i, Text: txt, Vector: emb.Vector(txt)}
	}
	return recs
}

func search(t *testing.T, s *embedded.Store, tenant int64, q string, k int, docs ...int64) []rag.Hit {
	t.Helper()
	hits, err := s.Search(context.Background(), rag.SearchRequest{TenantID: tenant, Vector: emb.Vector(q), K: k, DocumentIDs: docs})
	if err != nil {
		t.Fatalf("Search(%q) = %v", q, err)
	}
	return hits
}

func TestAddSearchPersistDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.Add(ctx, records(1, 10, "pets.md", "Cats purr and sleep all day.", "Dogs bark at the postman.")); err != nil {
		t.Fatal(err)
	}
	if err := s.Add(ctx, records(1, 11, "db.md", "PostgreSQL replicas stream the write-ahead log.")); err != nil {
		t.Fatal(err)
	}
	hits := search(t, s, 1, "why do dogs bark", 2)
	if len(hits) != 2 || hits[0].DocumentID != 10 || hits[0].Chunk != 1 || hits[0].DocumentName != "pets.md" {
		t.Fatalf("Search = %+v, want pets.md chunk 1 first", hits)
	}
	if hits := search(t, s, 1, "dogs", 5, 11); len(hits) != 1 || hits[0].DocumentID != 11 {
		t.Errorf("Search filtered to doc 11 = %+v", hits)
	}
	kw, err := s.SearchText(ctx, 1, "write-ahead log replicas", 3, nil)
	if err != nil || len(kw) == 0 || kw[0].DocumentID != 11 {
		t.Errorf("SearchText = %+v, %v; want db.md first", kw, err)
	}

	// A new process sees the same chunks.
	s2 := open(t, dir)
	if hits := search(t, s2, 1, "why do dogs bark", 1); len(hits) != 1 || hits[0].Text != "Dogs bark at the postman." {
		t.Fatalf("after reopen: %+v", hits)
	}
	// Delete removes the segment file and the chunks, in this process and the next.
	if err := s2.DeleteDocument(ctx, 1, 10); err != nil {
		t.Fatal(err)
	}
	if n, file, _ := s2.Count(ctx, 1, 10); n != 0 || file {
		t.Errorf("after delete: %d chunks, file %v", n, file)
	}
	if _, err := os.Stat(filepath.Join(s2.Dir(), "1", "10.seg")); !os.IsNotExist(err) {
		t.Errorf("segment file still there: %v", err)
	}
	for _, st := range []*embedded.Store{s2, open(t, dir)} {
		for _, h := range search(t, st, 1, "dogs bark cats purr", 10) {
			if h.DocumentID == 10 {
				t.Errorf("deleted document found: %+v", h)
			}
		}
		if kw, _ := st.SearchText(ctx, 1, "dogs bark", 5, nil); len(kw) != 0 {
			t.Errorf("deleted document found by keywords: %+v", kw)
		}
	}
	if err := s2.DeleteDocument(ctx, 1, 10); err != nil {
		t.Errorf("second delete = %v, want nil", err)
	}
}

func TestTornRecordIgnored(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	if err := s.Add(ctx, records(3, 1, "a", "first chunk about rivers", "second chunk about mountains")); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(s.Dir(), "3", "1.seg")
	st, _ := os.Stat(p)
	if err := os.Truncate(p, st.Size()-5); err != nil { // a crash in the middle of the last record
		t.Fatal(err)
	}
	if n, _, err := open(t, dir).Count(ctx, 3, 1); err != nil || n != 1 {
		t.Errorf("after a torn write: %d chunks, %v; want the 1 whole record", n, err)
	}
}

// TestTenantIsolation: two tenants with near-identical documents; each
// tenant's searches (vector, keywords, filtered by the other's document id)
// see only its own chunks, also after a reload.
func TestTenantIsolation(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := t.TempDir()
	s := open(t, dir)
	for tenant := int64(1); tenant <= 2; tenant++ {
		txt := fmt.Sprintf("The launch code of tenant %d is kept in the vault behind the blue door.", tenant)
		if err := s.Add(ctx, records(tenant, 100+tenant, "secret.md", txt, "The vault opens at nine.")); err != nil {
			t.Fatal(err)
		}
	}
	for _, st := range []*embedded.Store{s, open(t, dir)} {
		for tenant := int64(1); tenant <= 2; tenant++ {
			other := 3 - tenant
			all := search(t, st, tenant, "launch code vault blue door", 10)
			kw, _ := st.SearchText(ctx, tenant, "launch code vault blue door", 10, nil)
			cross := search(t, st, tenant, "launch code", 10, 100+other)
			if len(all) != 2 || len(kw) != 2 || len(cross) != 0 {
				t.Errorf("tenant %d: %d vector hits, %d keyword hits, %d with the other's document id; want 2, 2, 0", tenant, len(all), len(kw), len(cross))
			}
			for _, h := range append(all, kw...) {
				if h.DocumentID != 100+tenant {
					t.Errorf("tenant %d sees document %d: %+v", tenant, h.DocumentID, h)
				}
			}
		}
	}
}

// corpus returns n passages of the manual pages and their embeddings, and
// the pages' summaries as queries.
func corpus(tb testing.TB, n int) ([]string, [][]float32, []string) {
	tb.Helper()
	if _, err := os.Stat(mancorpus.Dir); err != nil {
		tb.Skipf("no manual pages in %s", mancorpus.Dir)
	}
	pages, err := mancorpus.Load(mancorpus.Dir, min(n/10+50, 4000))
	if err != nil {
		tb.Fatal(err)
	}
	texts := mancorpus.Passages(pages, 120, n)
	vecs := make([][]float32, len(texts))
	var wg sync.WaitGroup
	for w := range 2 {
		wg.Go(func() {
			for i := w; i < len(texts); i += 2 {
				vecs[i] = emb.Vector(texts[i])
			}
		})
	}
	wg.Wait()
	queries := make([]string, len(pages))
	for i, p := range pages {
		queries[i] = p.Summary
	}
	return texts, vecs, queries
}

func fill(tb testing.TB, s *embedded.Store, tenant int64, texts []string, vecs [][]float32) {
	tb.Helper()
	const perDoc = 500
	for i := 0; i < len(texts); i += perDoc {
		recs := make([]rag.Record, 0, perDoc)
		for j := i; j < min(i+perDoc, len(texts)); j++ {
			recs = append(recs, rag.Record{TenantID: tenant, DocumentID: int64(i/perDoc + 1), Chunk: j - i, Text: texts[j], Vector: vecs[j]})
		}
		if err := s.Add(context.Background(), recs); err != nil {
			tb.Fatal(err)
		}
	}
}

// recallAt measures the approximate search against the exact one: the
// share of the exact top k that the approximate top k finds.
func recallAt(tb testing.TB, s *embedded.Store, tenant int64, queries []string, k int) float64 {
	found, total := 0, 0
	for _, q := range queries {
		req := rag.SearchRequest{TenantID: tenant, Vector: emb.Vector(q), K: k}
		exact, err := s.SearchExact(context.Background(), req)
		if err != nil {
			tb.Fatal(err)
		}
		approx, err := s.Search(context.Background(), req)
		if err != nil {
			tb.Fatal(err)
		}
		type key struct {
			d int64
			c int
		}
		got := map[key]bool{}
		for _, h := range approx {
			got[key{h.DocumentID, h.Chunk}] = true
		}
		for _, h := range exact {
			total++
			if got[key{h.DocumentID, h.Chunk}] {
				found++
			}
		}
	}
	return float64(found) / float64(total)
}

// TestApproximateRecall: above embedded.ExactBelow chunks the search is
// approximate; its recall@10 against exact search must be ≥ 0.95.
func TestApproximateRecall(t *testing.T) {
	t.Parallel()
	n := 20000
	if testing.Short() || raceEnabled {
		n = 6000
	}
	texts, vecs, queries := corpus(t, n)
	s := open(t, t.TempDir())
	fill(t, s, 1, texts, vecs)
	r := recallAt(t, s, 1, queries[:min(300, len(queries))], 10)
	t.Logf("recall@10 of the approximate search vs exact over %d chunks: %.4f", len(texts), r)
	if r < 0.95 {
		t.Errorf("recall@10 = %.4f, want ≥ 0.95", r)
	}
}

// BenchmarkSearch100k: one tenant with 100,000 chunks (passages of the
// manual pages, offline embedder); the queries are the pages' NAME lines.
// Reports p50 and p99 latency of Search (what the service calls) and of
// exact search, and the recall@10 of Search against exact.
func BenchmarkSearch100k(b *testing.B) {
	texts, vecs, queries := corpus(b, 100000)
	s := open(b, b.TempDir())
	start := time.Now()
	fill(b, s, 1, texts, vecs)
	b.Logf("%d chunks stored in %v", len(texts), time.Since(start))
	qvecs := make([][]float32, len(queries))
	for i, q := range queries {
		qvecs[i] = emb.Vector(q)
	}
	for _, mode := range []string{"approximate", "exact"} {
		b.Run(mode, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			for i := 0; b.Loop(); i++ {
				req := rag.SearchRequest{TenantID: 1, Vector: qvecs[i%len(qvecs)], K: 10}
				t0 := time.Now()
				var err error
				if mode == "exact" {
					_, err = s.SearchExact(context.Background(), req)
				} else {
					_, err = s.Search(context.Background(), req)
				}
				lat = append(lat, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
	b.Run("recall", func(b *testing.B) {
		for b.Loop() {
		}
		b.ReportMetric(recallAt(b, s, 1, queries[:min(500, len(queries))], 10), "recall@10")
	})

}

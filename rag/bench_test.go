package rag_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/rag"
	"github.com/mtai-dev/mtai/rag/embedded"
	"github.com/mtai-dev/mtai/rag/hashembed"
	"github.com/mtai-dev/mtai/rag/internal/mancorpus"
	"github.com/mtai-dev/mtai/rag/localblob"
	"github.com/mtai-dev/mtai/rag/ragtest"
)

// fiveMB is a Markdown document of at least 5,000,000 bytes: manual pages,
// one section each.
func fiveMB(b *testing.B) string {
	b.Helper()
	if _, err := os.Stat(mancorpus.Dir); err != nil {
		b.Skipf("no manual pages in %s", mancorpus.Dir)
	}
	pages, err := mancorpus.Load(mancorpus.Dir, 3000)
	if err != nil {
		b.Fatal(err)
	}
	var sb strings.Builder
	for i := 0; sb.Len() < 5_000_000; i++ {
		p := pages[i%len(pages)]
		fmt.Fprintf(&sb, "# %s (%d)\n\n%s\n\n%s\n\n", p.File, i, p.Summary, p.Text)
	}
	return sb.String()
}

// BenchmarkIngest5MB: upload a 5 MB Markdown document and wait until it is
// ready (extraction, chunking by tokens at 512/64, embedding with the
// offline embedder, the embedded store's segment file written and synced).
func BenchmarkIngest5MB(b *testing.B) {
	text := fiveMB(b)
	dir := b.TempDir()
	emb := hashembed.New(0)
	vectors, _ := embedded.Open(filepath.Join(dir, "vectors"), emb.ID(), emb.Dimension())
	blobs, _ := localblob.Open(filepath.Join(dir, "blobs"))
	svc, err := rag.New(rag.Config{Documents: &ragtest.Documents{}, Vectors: vectors, Blobs: blobs, Embedder: emb,
		Chunker: sharedChunker(b), MaxDocumentBytes: 8 << 20})
	if err != nil {
		b.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer svc.Close()
	b.SetBytes(int64(len(text)))
	var chunks int
	for i := 0; b.Loop(); i++ {
		data := []byte(text + fmt.Sprintf("\n\nrun %d\n", i)) // new content: no deduplication
		d, _, err := svc.Upload(context.Background(), rag.Upload{TenantID: 1, Name: "big.md", Data: data, ChunkSize: 512, ChunkOverlap: 64})
		if err != nil {
			b.Fatal(err)
		}
		waitIdle(b, svc, 10*time.Minute)
		got, _ := svc.Document(context.Background(), 1, d.ID)
		if got.Status != rag.StatusReady {
			b.Fatalf("status %s: %s", got.Status, got.Error)
		}
		chunks = got.Chunks
	}
	b.ReportMetric(float64(chunks), "chunks")
}

// BenchmarkServiceSearch100k: Service.Search (query embedding, the
// embedded store's vector search and BM25, fusion) over 100,000 chunks of
// one tenant; p50 and p99 latency.
func BenchmarkServiceSearch100k(b *testing.B) {
	if _, err := os.Stat(mancorpus.Dir); err != nil {
		b.Skipf("no manual pages in %s", mancorpus.Dir)
	}
	pages, err := mancorpus.Load(mancorpus.Dir, 3000)
	if err != nil {
		b.Fatal(err)
	}
	texts := mancorpus.Passages(pages, 120, 100000)
	emb := hashembed.New(0)
	vectors, _ := embedded.Open(b.TempDir(), emb.ID(), emb.Dimension())
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
	for i := 0; i < len(texts); i += 1000 {
		recs := make([]rag.Record, 0, 1000)
		for j := i; j < min(i+1000, len(texts)); j++ {
			recs = append(recs, rag.Record{TenantID: 1, DocumentID: int64(i/1000 + 1), Chunk: j - i, Text: texts[j], Vector: vecs[j]})
		}
		if err := vectors.Add(context.Background(), recs); err != nil {
			b.Fatal(err)
		}
	}
	for _, kw := range []struct {
		name string
		w    float64
	}{{"hybrid", 0}, {"vector-only", -1}} {
		b.Run(kw.name, func(b *testing.B) {
			svc, err := rag.New(rag.Config{Documents: &ragtest.Documents{}, Vectors: vectors, Blobs: blobStore(b), Embedder: emb,
				Chunker: sharedChunker(b), KeywordWeight: kw.w})
			if err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			for i := 0; b.Loop(); i++ {
				t0 := time.Now()
				if _, err := svc.Search(context.Background(), rag.Query{TenantID: 1, Text: pages[i%len(pages)].Summary, TopK: 5}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
		})
	}
}

func blobStore(b *testing.B) rag.BlobStore {
	s, err := localblob.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	return s
}

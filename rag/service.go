package rag

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"path"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"go.uber.org/zap"

	"github.com/mtai-dev/mtai/tenancy"
)

// Config builds a Service. Documents, Vectors, Blobs and Embedder are
// required; every other field has a default.
type Config struct {
	Documents DocumentStore
	// Vectors must be the store of Embedder's vector space.
	Vectors  VectorStore
	Blobs    BlobStore
	Embedder Embedder
	// Chunker splits texts; nil: NewChunker().
	Chunker *Chunker
	// Workers is how many documents are ingested at once (MTAI_RAG_WORKERS).
	// Default 2.
	Workers int
	// MaxDocumentBytes caps an uploaded file (MTAI_RAG_MAX_DOCUMENT_BYTES);
	// larger is ErrTooLarge. Default 6 MiB, below the server's 8 MiB body
	// limit so that the answer names this limit.
	MaxDocumentBytes int64
	// EmbedBatch is how many chunks go into one Embed call. Default 64.
	EmbedBatch int
	// KeywordWeight mixes BM25 into the ranking when Vectors can search by
	// keywords (rag.KeywordSearcher): score = (1-w)·cosine + w·BM25/max BM25.
	// 0 means the default, 0.8: on the man-page test (rag/quality_test.go)
	// the offline lexical embedder adds little to BM25, and 0.8 was never
	// below BM25 alone; with a semantic embedder, a lower weight (about
	// 0.3) is the usual choice. A negative value turns keywords off; 1 is
	// BM25 alone.
	KeywordWeight float64
	// OnUsage, when set, is told of every embedding call that billed tokens,
	// so that they are metered to the tenant. It must not block.
	OnUsage func(Usage)
	// Logger: nil means no logs.
	Logger *zap.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Usage is the embedding tokens one call billed to a tenant.
type Usage struct {
	TenantID int64
	Embedder string
	Tokens   int
	// Query: a search's question (false: a document's ingestion).
	Query bool
}

// Upload is a file a tenant sends.
type Upload struct {
	TenantID int64
	// Name of the file; empty: generated from the hash.
	Name string
	// ContentType as declared by the client (may be empty); Sniff decides.
	ContentType string
	Data        []byte
	// ChunkSize and ChunkOverlap in tokens (the tenant's RAG settings);
	// 0: 512 and 64.
	ChunkSize, ChunkOverlap int
}

// Query is a search in a tenant's documents.
type Query struct {
	TenantID int64
	Text     string
	// TopK: how many chunks, 1 to 100; 0 means 4.
	TopK int
	// DocumentIDs, when not empty, restricts the search to these documents.
	DocumentIDs []int64
}

// Source is a retrieved chunk, numbered for citation ([1], [2], ...).
type Source struct {
	N            int     `json:"n"`
	DocumentID   int64   `json:"document_id"`
	DocumentName string  `json:"document_name"`
	Chunk        int     `json:"chunk_index"`
	Heading      string  `json:"heading,omitempty"`
	Text         string  `json:"text"`
	Score        float32 `json:"score"`
}

// Limits of queries.
const (
	DefaultTopK     = 4
	MaxTopK         = 100
	maxQueryBytes   = 16 << 10
	maxNameBytes    = 255
	defaultChunk    = 512
	defaultOverlap  = 64
	keywordPoolMin  = 20
	keywordPoolMult = 4
)

// Service ingests documents in the background and answers searches. It is
// safe for concurrent use. Start it, and Close it to stop its workers.
type Service struct {
	cfg      Config
	docs     DocumentStore
	vectors  VectorStore
	keywords KeywordSearcher // nil: vector search only
	blobs    BlobStore
	emb      Embedder
	chunker  *Chunker
	log      *zap.Logger
	now      func() time.Time
	kw       float64

	ctx    context.Context // cancelled by Close; workers' jobs derive from it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	queue    []job
	queued   map[int64]bool
	inflight map[int64]*running
	started  bool
	closed   bool
	// wake has a buffer of one: a worker that is busy when work arrives
	// must still find the signal when it comes back to wait.
	wake chan struct{}
}

type job struct{ tenantID, id int64 }

type running struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// New builds a Service; it starts nothing (see Start).
func New(cfg Config) (*Service, error) {
	if cfg.Documents == nil || cfg.Vectors == nil || cfg.Blobs == nil || cfg.Embedder == nil {
		return nil, errors.New("rag: Documents, Vectors, Blobs and Embedder are required")
	}
	if cfg.Chunker == nil {
		c, err := NewChunker()
		if err != nil {
			return nil, fmt.Errorf("rag: tokenizer: %w", err)
		}
		cfg.Chunker = c
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 2
	}
	if cfg.MaxDocumentBytes <= 0 {
		cfg.MaxDocumentBytes = 6 << 20
	}
	if cfg.EmbedBatch <= 0 {
		cfg.EmbedBatch = 64
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	kw := cfg.KeywordWeight
	switch {
	case kw == 0:
		kw = 0.8
	case kw < 0:
		kw = 0
	case kw > 1:
		kw = 1
	}
	s := &Service{
		cfg: cfg, docs: cfg.Documents, vectors: cfg.Vectors, blobs: cfg.Blobs, emb: cfg.Embedder,
		chunker: cfg.Chunker, log: cfg.Logger, now: cfg.Now, kw: kw,
		queued: map[int64]bool{}, inflight: map[int64]*running{}, wake: make(chan struct{}, 1),
	}
	if ks, ok := cfg.Vectors.(KeywordSearcher); ok && kw > 0 {
		s.keywords = ks
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	return s, nil
}

// Embedder returns the service's embedder.
func (s *Service) Embedder() Embedder { return s.emb }

// Start starts the workers and queues the work a previous process left:
// documents still processing, and documents indexed by another embedder
// (they are re-indexed into the current vector space).
func (s *Service) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started || s.closed {
		s.mu.Unlock()
		return errors.New("rag: Start called twice or after Close")
	}
	s.started = true
	s.mu.Unlock()
	for range s.cfg.Workers {
		s.wg.Go(s.work)
	}
	var after int64
	for {
		docs, err := s.docs.DocumentsToIndex(ctx, s.emb.ID(), after, 500)
		if err != nil {
			return fmt.Errorf("rag: documents to index: %w", err)
		}
		for _, d := range docs {
			if d.Status != StatusProcessing {
				s.log.Info("rag: re-indexing for a new embedder", zap.Int64("document", d.ID),
					zap.String("from", d.Embedder), zap.String("to", s.emb.ID()))
			}
			s.enqueue(job{tenantID: d.TenantID, id: d.ID})
			after = d.ID
		}
		if len(docs) < 500 {
			return nil
		}
	}
}

// Close stops the workers, cancelling the ingestions under way (their
// documents stay processing and are resumed by the next Start), and waits
// for them.
func (s *Service) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.cancel()
	s.wg.Wait()
	return nil
}

// Idle reports whether no document is queued or being ingested.
func (s *Service) Idle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.queue) == 0 && len(s.inflight) == 0
}

func (s *Service) enqueue(j job) {
	s.mu.Lock()
	if s.closed || s.queued[j.id] {
		s.mu.Unlock()
		return
	}
	s.queued[j.id] = true
	s.queue = append(s.queue, j)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// next pops a job and registers it as running; ok is false when closed.
func (s *Service) next() (job, *running, context.Context, bool) {
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return job{}, nil, nil, false
		}
		if len(s.queue) > 0 {
			j := s.queue[0]
			s.queue = s.queue[1:]
			delete(s.queued, j.id)
			ctx, cancel := context.WithCancel(s.ctx)
			r := &running{cancel: cancel, done: make(chan struct{})}
			s.inflight[j.id] = r
			more := len(s.queue) > 0
			s.mu.Unlock()
			if more { // let another idle worker take the rest
				select {
				case s.wake <- struct{}{}:
				default:
				}
			}
			return j, r, ctx, true
		}
		s.mu.Unlock()
		select {
		case <-s.ctx.Done():
			return job{}, nil, nil, false
		case <-s.wake:
		}
	}
}

func (s *Service) work() {
	for {
		j, r, ctx, ok := s.next()
		if !ok {
			return
		}
		s.ingest(ctx, j)
		r.cancel()
		s.mu.Lock()
		delete(s.inflight, j.id)
		s.mu.Unlock()
		close(r.done)
	}
}

// ingest indexes one document and records the outcome.
func (s *Service) ingest(ctx context.Context, j job) {
	start := s.now()
	d, err := s.docs.Document(ctx, j.tenantID, j.id)
	if err != nil {
		if !errors.Is(err, tenancy.ErrNotFound) && ctx.Err() == nil {
			s.log.Error("rag: load document", zap.Int64("document", j.id), zap.Error(err))
		}
		return
	}
	chunks, tokens, err := s.index(ctx, d)
	if ctx.Err() != nil {
		return // shutting down (resumed at the next Start) or deleted
	}
	d.UpdatedAt = s.now().UTC().Truncate(time.Microsecond)
	if err != nil {
		d.Status, d.Error, d.Chunks, d.Tokens, d.Embedder = StatusFailed, reason(err), 0, 0, ""
		// no half-indexed document stays searchable
		if derr := s.vectors.DeleteDocument(ctx, d.TenantID, d.ID); derr != nil {
			s.log.Error("rag: remove vectors of a failed document", zap.Int64("document", d.ID), zap.Error(derr))
		}
	} else {
		d.Status, d.Error, d.Chunks, d.Tokens, d.Embedder = StatusReady, "", chunks, tokens, s.emb.ID()
	}
	if uerr := s.docs.UpdateDocument(ctx, d); uerr != nil {
		if errors.Is(uerr, tenancy.ErrNotFound) {
			// deleted by another replica meanwhile: take our vectors back
			_ = s.vectors.DeleteDocument(ctx, d.TenantID, d.ID)
			return
		}
		s.log.Error("rag: save document status", zap.Int64("document", d.ID), zap.Error(uerr))
		return
	}
	s.log.Info("rag: document ingested", zap.Int64("tenant", d.TenantID), zap.Int64("document", d.ID),
		zap.String("status", string(d.Status)), zap.String("error", d.Error), zap.Int("chunks", chunks),
		zap.Duration("took", s.now().Sub(start)))
}

// reason turns an ingestion error into the sentence a user reads.
func reason(err error) string {
	switch {
	case errors.Is(err, ErrEmpty):
		return "no text could be extracted from the file (a scanned PDF has no text layer)"
	case errors.Is(err, ErrUnsupportedType):
		return err.Error()
	case errors.Is(err, ErrBlobNotFound):
		return "the stored file is missing; upload it again"
	}
	return "indexing failed: " + err.Error()
}

// index extracts, chunks, embeds and stores d; it returns the counts.
func (s *Service) index(ctx context.Context, d *Document) (int, int, error) {
	rc, err := s.blobs.Get(ctx, d.BlobKey())
	if err != nil {
		return 0, 0, fmt.Errorf("read the stored file: %w", err)
	}
	data, err := io.ReadAll(io.LimitReader(rc, s.cfg.MaxDocumentBytes+1))
	rc.Close()
	if err != nil {
		return 0, 0, fmt.Errorf("read the stored file: %w", err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != d.SHA256 {
		return 0, 0, errors.New("the stored file does not match its hash; upload it again")
	}
	text, err := Extract(d.ContentType, data)
	if err != nil {
		return 0, 0, err
	}
	size, overlap := d.ChunkSize, d.ChunkOverlap
	if size <= 0 {
		size, overlap = defaultChunk, defaultOverlap
	}
	chunks := s.chunker.Chunk(text, size, overlap)
	if len(chunks) == 0 {
		return 0, 0, ErrEmpty
	}
	// Start clean: a retry or a re-index must not leave old vectors.
	if err := s.vectors.DeleteDocument(ctx, d.TenantID, d.ID); err != nil {
		return 0, 0, fmt.Errorf("vector store: %w", err)
	}
	tokens := 0
	inputs := make([]string, 0, s.cfg.EmbedBatch)
	for i := 0; i < len(chunks); i += s.cfg.EmbedBatch {
		batch := chunks[i:min(i+s.cfg.EmbedBatch, len(chunks))]
		inputs = inputs[:0]
		for _, c := range batch {
			tokens += c.Tokens
			inputs = append(inputs, EmbedInput(c))
		}
		vecs, billed, err := s.emb.Embed(ctx, inputs)
		if err != nil {
			return 0, 0, fmt.Errorf("embeddings: %w", err)
		}
		s.usage(Usage{TenantID: d.TenantID, Embedder: s.emb.ID(), Tokens: billed})
		if len(vecs) != len(batch) {
			return 0, 0, fmt.Errorf("embeddings: %d vectors for %d texts", len(vecs), len(batch))
		}
		recs := make([]Record, len(batch))
		for k, c := range batch {
			recs[k] = Record{TenantID: d.TenantID, DocumentID: d.ID, DocumentName: d.Name,
				Chunk: c.Index, Heading: c.Heading, Text: c.Text, Vector: vecs[k]}
		}
		if err := s.vectors.Add(ctx, recs); err != nil {
			return 0, 0, fmt.Errorf("vector store: %w", err)
		}
	}
	return len(chunks), tokens, nil
}

// EmbedInput is the text embedded for a chunk: its heading path, then its
// text (unless the text starts with its own heading line).
func EmbedInput(c Chunk) string {
	if c.Heading == "" || strings.HasPrefix(c.Text, "#") {
		return c.Text
	}
	return c.Heading + "\n\n" + c.Text
}

func (s *Service) usage(u Usage) {
	if u.Tokens > 0 && s.cfg.OnUsage != nil {
		s.cfg.OnUsage(u)
	}
}

// Upload stores a tenant's file and queues its ingestion. A file whose
// content the tenant already has is not stored twice: the existing document
// is returned with created false (a failed one is ingested again). Errors:
// ErrTooLarge, ErrEmpty, ErrUnsupportedType.
func (s *Service) Upload(ctx context.Context, up Upload) (*Document, bool, error) {
	if int64(len(up.Data)) > s.cfg.MaxDocumentBytes {
		return nil, false, fmt.Errorf("%w: %d bytes, the limit is %d (MTAI_RAG_MAX_DOCUMENT_BYTES)",
			ErrTooLarge, len(up.Data), s.cfg.MaxDocumentBytes)
	}
	if len(bytes.TrimSpace(up.Data)) == 0 {
		return nil, false, ErrEmpty
	}
	ctype, err := Sniff(up.Name, up.ContentType, up.Data)
	if err != nil {
		return nil, false, err
	}
	sum := sha256.Sum256(up.Data)
	hash := hex.EncodeToString(sum[:])
	if d, err := s.docs.DocumentByHash(ctx, up.TenantID, hash); err == nil {
		return s.again(ctx, d)
	} else if !errors.Is(err, tenancy.ErrNotFound) {
		return nil, false, err
	}
	size, overlap := up.ChunkSize, up.ChunkOverlap
	if size <= 0 {
		size, overlap = defaultChunk, defaultOverlap
	}
	overlap = max(0, min(overlap, size-1))
	now := s.now().UTC().Truncate(time.Microsecond)
	d := &Document{
		TenantID: up.TenantID, Name: cleanName(up.Name, hash, ctype), ContentType: ctype,
		Size: int64(len(up.Data)), SHA256: hash, Status: StatusProcessing,
		ChunkSize: size, ChunkOverlap: overlap, CreatedAt: now, UpdatedAt: now,
	}
	if err := s.blobs.Put(ctx, d.BlobKey(), bytes.NewReader(up.Data), d.Size); err != nil {
		return nil, false, fmt.Errorf("rag: store the file: %w", err)
	}
	if err := s.docs.CreateDocument(ctx, d); err != nil {
		if errors.Is(err, tenancy.ErrConflict) { // the same file, uploaded at the same time
			if d2, err2 := s.docs.DocumentByHash(ctx, up.TenantID, hash); err2 == nil {
				return d2, false, nil
			}
			return nil, false, err
		}
		_ = s.blobs.Delete(ctx, d.BlobKey()) // no row refers to it
		return nil, false, err
	}
	s.enqueue(job{tenantID: d.TenantID, id: d.ID})
	return d, true, nil
}

// again answers the upload of content the tenant already has.
func (s *Service) again(ctx context.Context, d *Document) (*Document, bool, error) {
	if d.Status != StatusFailed {
		return d, false, nil
	}
	d.Status, d.Error, d.UpdatedAt = StatusProcessing, "", s.now().UTC().Truncate(time.Microsecond)
	if err := s.docs.UpdateDocument(ctx, d); err != nil {
		return nil, false, err
	}
	s.enqueue(job{tenantID: d.TenantID, id: d.ID})
	return d, true, nil
}

// cleanName keeps the base name of a file name, printable, at most 255
// bytes; an empty one becomes document-<hash>.<ext>.
func cleanName(name, hash, ctype string) string {
	name = strings.ReplaceAll(name, "\\", "/")
	name = path.Base(strings.ToValidUTF8(name, ""))
	name = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return -1
		}
		return r
	}, strings.TrimSpace(name))
	if name == "" || name == "." || name == "/" {
		ext := map[string]string{TypeMarkdown: ".md", TypeHTML: ".html", TypePDF: ".pdf"}[ctype]
		if ext == "" {
			ext = ".txt"
		}
		return "document-" + hash[:12] + ext
	}
	for len(name) > maxNameBytes {
		_, n := utf8.DecodeLastRuneInString(name)
		name = name[:len(name)-n]
	}
	return name
}

// Document returns the tenant's document id.
func (s *Service) Document(ctx context.Context, tenantID, id int64) (*Document, error) {
	return s.docs.Document(ctx, tenantID, id)
}

// Documents lists the tenant's documents, with their total count.
func (s *Service) Documents(ctx context.Context, tenantID int64, limit, offset int) ([]*Document, int, error) {
	return s.docs.Documents(ctx, tenantID, limit, offset)
}

// Delete removes the tenant's document: its ingestion if one runs, its
// vectors and chunks, its stored file, and its row.
func (s *Service) Delete(ctx context.Context, tenantID, id int64) error {
	d, err := s.docs.Document(ctx, tenantID, id)
	if err != nil {
		return err
	}
	s.mu.Lock()
	r := s.inflight[id]
	if s.queued[id] {
		delete(s.queued, id)
		s.queue = slices.DeleteFunc(s.queue, func(j job) bool { return j.id == id })
	}
	s.mu.Unlock()
	if r != nil {
		r.cancel()
		select {
		case <-r.done:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := s.vectors.DeleteDocument(ctx, tenantID, id); err != nil {
		return fmt.Errorf("rag: delete vectors: %w", err)
	}
	if err := s.blobs.Delete(ctx, d.BlobKey()); err != nil {
		return fmt.Errorf("rag: delete the stored file: %w", err)
	}
	return s.docs.DeleteDocument(ctx, tenantID, id)
}

// Search returns the tenant's chunks most relevant to q.Text, best first,
// numbered from 1. It never returns another tenant's chunks.
func (s *Service) Search(ctx context.Context, q Query) ([]Source, error) {
	q.Text = strings.TrimSpace(q.Text)
	switch {
	case q.Text == "":
		return nil, fmt.Errorf("%w: the query is empty", ErrInvalid)
	case len(q.Text) > maxQueryBytes:
		return nil, fmt.Errorf("%w: the query is longer than %d bytes", ErrInvalid, maxQueryBytes)
	case q.TopK == 0:
		q.TopK = DefaultTopK
	case q.TopK < 1 || q.TopK > MaxTopK:
		return nil, fmt.Errorf("%w: top_k must be 1 to %d", ErrInvalid, MaxTopK)
	}
	pool := q.TopK
	if s.keywords != nil {
		pool = max(q.TopK*keywordPoolMult, keywordPoolMin)
	}
	// The vector search (after embedding the query) and the keyword search
	// run at once.
	var (
		vec, kw   []Hit
		kwErr     error
		wg        sync.WaitGroup
		useVector = s.keywords == nil || s.kw < 1
	)
	if s.keywords != nil {
		wg.Go(func() { kw, kwErr = s.keywords.SearchText(ctx, q.TenantID, q.Text, pool, q.DocumentIDs) })
	}
	var vecErr error
	if useVector {
		vec, vecErr = s.vectorSearch(ctx, q, pool)
	}
	wg.Wait()
	if vecErr != nil {
		return nil, vecErr
	}
	if kwErr != nil {
		return nil, fmt.Errorf("rag: keyword search: %w", kwErr)
	}
	hits := vec
	if s.keywords != nil {
		hits = Fuse(vec, kw, s.kw)
	}
	if len(hits) > q.TopK {
		hits = hits[:q.TopK]
	}
	out := make([]Source, len(hits))
	for i, h := range hits {
		out[i] = Source{N: i + 1, DocumentID: h.DocumentID, DocumentName: h.DocumentName, Chunk: h.Chunk,
			Heading: h.Heading, Text: h.Text, Score: h.Score}
	}
	return out, nil
}

// vectorSearch embeds the query and searches the vector store.
func (s *Service) vectorSearch(ctx context.Context, q Query, k int) ([]Hit, error) {
	vecs, billed, err := s.emb.Embed(ctx, []string{q.Text})
	if err != nil {
		return nil, fmt.Errorf("rag: embed the query: %w", err)
	}
	s.usage(Usage{TenantID: q.TenantID, Embedder: s.emb.ID(), Tokens: billed, Query: true})
	if len(vecs) != 1 {
		return nil, errors.New("rag: embed the query: no vector")
	}
	hits, err := s.vectors.Search(ctx, SearchRequest{TenantID: q.TenantID, Vector: vecs[0], K: k, DocumentIDs: q.DocumentIDs})
	if err != nil {
		return nil, fmt.Errorf("rag: vector search: %w", err)
	}
	return hits, nil
}

// Retrieve is Search for the chat paths: the tenant's topK chunks (0: the
// default) most relevant to query.
func (s *Service) Retrieve(ctx context.Context, tenantID int64, query string, topK int) ([]Source, error) {
	return s.Search(ctx, Query{TenantID: tenantID, Text: query, TopK: topK})
}

// Fuse merges a vector ranking and a BM25 ranking of the same chunks:
// score = (1-w)·vector score + w·BM25/(best BM25), a chunk missing from a
// ranking scoring 0 there. Best first.
func Fuse(vec, kw []Hit, w float64) []Hit {
	type key struct {
		doc   int64
		chunk int
	}
	byKey := make(map[key]int, len(vec)+len(kw))
	out := make([]Hit, 0, len(vec)+len(kw))
	var best float32
	for _, h := range kw {
		best = max(best, h.Score)
	}
	for _, h := range vec {
		byKey[key{h.DocumentID, h.Chunk}] = len(out)
		h.Score = float32(1-w) * max(h.Score, 0)
		out = append(out, h)
	}
	for _, h := range kw {
		s := float32(0)
		if best > 0 {
			s = float32(w) * h.Score / best
		}
		if i, ok := byKey[key{h.DocumentID, h.Chunk}]; ok {
			out[i].Score += s
			continue
		}
		h.Score = s
		out = append(out, h)
	}
	slices.SortStableFunc(out, func(a, b Hit) int {
		switch {
		case a.Score > b.Score:
			return -1
		case a.Score < b.Score:
			return 1
		}
		return 0
	})
	return out
}

// blobKey is the BlobStore key of a tenant's file: "<tenant>/<sha256>".
func blobKey(tenantID int64, sha string) string {
	return strconv.FormatInt(tenantID, 10) + "/" + sha
}

// Package rag is mtai's retrieval-augmented generation: tenants' documents,
// their extraction to text, chunking by tokens, embedding, vector search,
// and the context injected into chats with numbered sources.
//
// The domain types and the small interfaces the rest of mtai plugs into live
// here; each dependency has its own subpackage:
//
//	rag/hashembed   the offline lexical embedder (feature hashing), the default
//	rag/openaiembed embeddings through mtai's providers (OpenAI, vLLM, Ollama, TEI)
//	rag/embedded    the embedded vector store, persisted in MTAI_DATA_DIR
//	rag/milvus      Milvus (tenant as partition key)
//	rag/localblob   uploaded files on local disk
//	rag/s3blob      uploaded files in S3 (or any S3-compatible store)
//
// The relational part (the documents table) is implemented by store/sqlite
// and store/postgres (DocumentStore). Service ties everything together.
package rag

import (
	"context"
	"errors"
	"io"
	"time"
)

// Status is where a document is in its ingestion.
type Status string

// The statuses of a document.
const (
	// StatusProcessing: accepted; extraction, chunking and embedding run in
	// the background.
	StatusProcessing Status = "processing"
	// StatusReady: every chunk is indexed and searchable.
	StatusReady Status = "ready"
	// StatusFailed: ingestion failed; Document.Error says why.
	StatusFailed Status = "failed"
)

// Document is one uploaded file of a tenant.
type Document struct {
	ID       int64 `json:"id"`
	TenantID int64 `json:"-"`
	// Name is the file name given at upload (or a generated one for JSON text).
	Name string `json:"name"`
	// ContentType is the sniffed type: text/plain, text/markdown, text/html
	// or application/pdf.
	ContentType string `json:"content_type"`
	// Size of the uploaded file in bytes.
	Size int64 `json:"size_bytes"`
	// SHA256 is the hex SHA-256 of the file: a tenant never has two
	// documents with the same content.
	SHA256 string `json:"sha256"`
	Status Status `json:"status"`
	// Error says why ingestion failed; empty unless Status is failed.
	Error string `json:"error,omitempty"`
	// Chunks and Tokens are counted once ingestion is done (0 before).
	Chunks int `json:"chunks"`
	Tokens int `json:"tokens"`
	// ChunkSize and ChunkOverlap (tokens) are the tenant's settings at
	// upload; a re-index uses them again.
	ChunkSize    int `json:"chunk_size"`
	ChunkOverlap int `json:"chunk_overlap"`
	// Embedder is the ID of the embedder (and so the vector space) that
	// indexed the document; empty until ready. When it differs from the
	// service's current embedder, the document is re-indexed.
	Embedder  string    `json:"embedder,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// BlobKey is where the document's file is kept in the BlobStore.
func (d *Document) BlobKey() string {
	return blobKey(d.TenantID, d.SHA256)
}

// Chunk is a piece of a document's text, the unit that is embedded and
// retrieved.
type Chunk struct {
	// Index is the chunk's position in its document, from 0.
	Index int
	// Heading is the path of headings above the chunk ("Install > Linux"),
	// empty when the text has none.
	Heading string
	// Text is the chunk's text (without the heading).
	Text string
	// Tokens is the length of Text in tokens.
	Tokens int
}

// Record is one chunk with its vector, as vector stores keep it.
type Record struct {
	TenantID     int64
	DocumentID   int64
	DocumentName string
	Chunk        int
	Heading      string
	Text         string
	Vector       []float32
}

// Hit is one result of a search, best first.
type Hit struct {
	DocumentID   int64
	DocumentName string
	Chunk        int
	Heading      string
	Text         string
	// Score: higher is better. For vector search it is the inner product
	// of the (unit) vectors, i.e. the cosine similarity.
	Score float32
}

// SearchRequest is a vector search in one tenant's chunks.
type SearchRequest struct {
	// TenantID is required: a search never crosses tenants.
	TenantID int64
	Vector   []float32
	// K is how many hits to return at most.
	K int
	// DocumentIDs, when not empty, restricts the search to these documents.
	DocumentIDs []int64
}

// Embedder turns texts into vectors of one vector space.
// Implementations are safe for concurrent use.
type Embedder interface {
	// ID names the vector space: the embedder, its model and dimension,
	// e.g. "hash-v1-512". Vectors of different IDs are never compared;
	// a new ID re-indexes every document.
	ID() string
	// Dimension is the length of every vector.
	Dimension() int
	// Embed returns one unit-length vector per text, and the tokens it was
	// billed for (0 for an offline embedder).
	Embed(ctx context.Context, texts []string) ([][]float32, int, error)
}

// VectorStore keeps the chunk vectors of one vector space (one embedder),
// for every tenant. Implementations are safe for concurrent use.
type VectorStore interface {
	// Add stores records; each carries its tenant and document, and one
	// call may mix documents and tenants.
	Add(ctx context.Context, recs []Record) error
	// Search returns the K nearest chunks of req.TenantID's, best first.
	Search(ctx context.Context, req SearchRequest) ([]Hit, error)
	// DeleteDocument removes every record of the document. Deleting a
	// document that has none is not an error.
	DeleteDocument(ctx context.Context, tenantID, documentID int64) error
}

// KeywordSearcher is the optional ability of a VectorStore to rank its
// chunks by BM25 against the words of a query. When the store has it, the
// Service fuses both rankings (hybrid search).
type KeywordSearcher interface {
	SearchText(ctx context.Context, tenantID int64, query string, k int, documentIDs []int64) ([]Hit, error)
}

// BlobStore keeps uploaded files. Implementations are safe for concurrent use.
type BlobStore interface {
	// Put stores the size bytes of r under key, replacing what was there.
	Put(ctx context.Context, key string, r io.Reader, size int64) error
	// Get opens the file under key; a missing key is ErrBlobNotFound.
	Get(ctx context.Context, key string) (io.ReadCloser, error)
	// Delete removes key; a missing key is not an error.
	Delete(ctx context.Context, key string) error
}

// DocumentStore persists documents (store/sqlite and store/postgres
// implement it). Lookups are always scoped by tenant: another tenant's
// document is not found. Missing rows are reported with an error wrapping
// tenancy.ErrNotFound, a second document with the same (tenant, SHA256)
// with one wrapping tenancy.ErrConflict.
type DocumentStore interface {
	// CreateDocument stores d and sets d.ID.
	CreateDocument(ctx context.Context, d *Document) error
	// Document returns the tenant's document id.
	Document(ctx context.Context, tenantID, id int64) (*Document, error)
	// DocumentByHash returns the tenant's document with this SHA-256.
	DocumentByHash(ctx context.Context, tenantID int64, sha256 string) (*Document, error)
	// Documents lists the tenant's documents by id, with the total count
	// (limit 0: all).
	Documents(ctx context.Context, tenantID int64, limit, offset int) ([]*Document, int, error)
	// UpdateDocument saves d's status, error, counts, chunk settings,
	// embedder and UpdatedAt.
	UpdateDocument(ctx context.Context, d *Document) error
	// DeleteDocument removes the tenant's document id.
	DeleteDocument(ctx context.Context, tenantID, id int64) error
	// DocumentsToIndex returns up to limit documents of every tenant, by
	// id after afterID, that are processing or whose Embedder is not
	// embedder (failed ones are left alone): the work left after a restart
	// or a change of embedder.
	DocumentsToIndex(ctx context.Context, embedder string, afterID int64, limit int) ([]*Document, error)
}

// Errors of the domain; the gateway turns them into 4xx answers.
var (
	// ErrUnsupportedType: the file is not text, Markdown, HTML or PDF.
	ErrUnsupportedType = errors.New("unsupported document type")
	// ErrTooLarge: the file is larger than Config.MaxDocumentBytes.
	ErrTooLarge = errors.New("document too large")
	// ErrEmpty: the file (or the text extracted from it) is empty.
	ErrEmpty = errors.New("document has no text")
	// ErrBlobNotFound: a BlobStore has no file under the key.
	ErrBlobNotFound = errors.New("blob not found")
	// ErrInvalid: a search or upload parameter is out of range.
	ErrInvalid = errors.New("invalid parameter")
)

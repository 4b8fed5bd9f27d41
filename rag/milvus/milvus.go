// Package milvus is the production rag.VectorStore: Milvus, through the
// official Go SDK (github.com/milvus-io/milvus/client/v2), configured by
// MILVUS_ADDRESS and MILVUS_TOKEN.
//
// One collection per vector space (embedder), named after the embedder's ID;
// the tenant id is the collection's partition key, so each tenant's chunks
// sit in their own partitions and every search, count and delete filters on
// it ("tenant_id == N"): a search never crosses tenants. Documents are
// filtered and deleted by expression on document_id. The chunk's text,
// heading and document name are stored beside the vector, so a search needs
// no other round trip.
//
// No Milvus server runs in this repository's tests: they run the adapter,
// through the real SDK and gRPC, against milvustest.Server, an in-process
// implementation of the MilvusService calls used here with real filter
// semantics.
package milvus

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/milvus-io/milvus/client/v2/entity"
	"github.com/milvus-io/milvus/client/v2/index"
	"github.com/milvus-io/milvus/client/v2/milvusclient"

	"github.com/mtai-dev/mtai/rag"
)

var _ rag.VectorStore = (*Store)(nil)

// Field names of the collections.
const (
	fieldID      = "id"
	fieldTenant  = "tenant_id"
	fieldDoc     = "document_id"
	fieldChunk   = "chunk_index"
	fieldName    = "document_name"
	fieldHeading = "heading"
	fieldText    = "text"
	fieldVector  = "vector"

	maxText    = 65535
	maxName    = 1024
	maxHeading = 2048
)

// Config locates the Milvus server.
type Config struct {
	// Address is host:port or a URL (MILVUS_ADDRESS), e.g. "milvus:19530"
	// or "https://in01-xxx.zillizcloud.com". Required.
	Address string
	// Token authenticates: "user:password" or an API key (MILVUS_TOKEN);
	// empty: no authentication. Secret: never logged.
	Token string
	// Database; empty: the server's default.
	Database string
	// CollectionPrefix starts every collection name. Default "mtai_".
	CollectionPrefix string
}

// Store is the vectors of one vector space in one Milvus collection. It is
// safe for concurrent use; Close it when done.
type Store struct {
	c    *milvusclient.Client
	coll string
	dim  int
}

var notName = regexp.MustCompile(`[^A-Za-z0-9_]+`)

// CollectionName is the collection of vector space space.
func CollectionName(prefix, space string) string {
	if prefix == "" {
		prefix = "mtai_"
	}
	return prefix + strings.Trim(notName.ReplaceAllString(space, "_"), "_")
}

// Open connects to Milvus and makes sure the collection of space (an
// embedder ID) exists with vectors of dim, indexed and loaded.
func Open(ctx context.Context, cfg Config, space string, dim int) (*Store, error) {
	if cfg.Address == "" {
		return nil, errors.New("milvus: MILVUS_ADDRESS is required")
	}
	c, err := milvusclient.New(ctx, &milvusclient.ClientConfig{Address: cfg.Address, APIKey: cfg.Token, DBName: cfg.Database})
	if err != nil {
		return nil, fmt.Errorf("milvus: connect to %s: %w", cfg.Address, err)
	}
	s := &Store{c: c, coll: CollectionName(cfg.CollectionPrefix, space), dim: dim}
	if err := s.ensure(ctx); err != nil {
		c.Close(context.Background())
		return nil, err
	}
	return s, nil
}

// Collection is the store's collection name.
func (s *Store) Collection() string { return s.coll }

// Close closes the connection.
func (s *Store) Close() error { return s.c.Close(context.Background()) }

func (s *Store) ensure(ctx context.Context) error {
	has, err := s.c.HasCollection(ctx, milvusclient.NewHasCollectionOption(s.coll))
	if err != nil {
		return fmt.Errorf("milvus: has collection %s: %w", s.coll, err)
	}
	if has {
		coll, err := s.c.DescribeCollection(ctx, milvusclient.NewDescribeCollectionOption(s.coll))
		if err != nil {
			return fmt.Errorf("milvus: describe %s: %w", s.coll, err)
		}
		for _, f := range coll.Schema.Fields {
			if f.Name == fieldVector {
				if d, _ := f.GetDim(); d != int64(s.dim) {
					return fmt.Errorf("milvus: collection %s has vectors of %d dimensions, want %d", s.coll, d, s.dim)
				}
			}
		}
	} else {
		schema := entity.NewSchema().WithName(s.coll).WithDescription("mtai RAG chunks").
			WithField(entity.NewField().WithName(fieldID).WithDataType(entity.FieldTypeInt64).WithIsPrimaryKey(true).WithIsAutoID(true)).
			WithField(entity.NewField().WithName(fieldTenant).WithDataType(entity.FieldTypeInt64).WithIsPartitionKey(true)).
			WithField(entity.NewField().WithName(fieldDoc).WithDataType(entity.FieldTypeInt64)).
			WithField(entity.NewField().WithName(fieldChunk).WithDataType(entity.FieldTypeInt64)).
			WithField(entity.NewField().WithName(fieldName).WithDataType(entity.FieldTypeVarChar).WithMaxLength(maxName)).
			WithField(entity.NewField().WithName(fieldHeading).WithDataType(entity.FieldTypeVarChar).WithMaxLength(maxHeading)).
			WithField(entity.NewField().WithName(fieldText).WithDataType(entity.FieldTypeVarChar).WithMaxLength(maxText)).
			WithField(entity.NewField().WithName(fieldVector).WithDataType(entity.FieldTypeFloatVector).WithDim(int64(s.dim)))
		opt := milvusclient.NewCreateCollectionOption(s.coll, schema).
			WithIndexOptions(milvusclient.NewCreateIndexOption(s.coll, fieldVector, index.NewAutoIndex(entity.IP)))
		if err := s.c.CreateCollection(ctx, opt); err != nil {
			return fmt.Errorf("milvus: create collection %s: %w", s.coll, err)
		}
	}
	task, err := s.c.LoadCollection(ctx, milvusclient.NewLoadCollectionOption(s.coll))
	if err != nil {
		return fmt.Errorf("milvus: load %s: %w", s.coll, err)
	}
	if err := task.Await(ctx); err != nil {
		return fmt.Errorf("milvus: load %s: %w", s.coll, err)
	}
	return nil
}

// Add implements rag.VectorStore.
func (s *Store) Add(ctx context.Context, recs []rag.Record) error {
	if len(recs) == 0 {
		return nil
	}
	n := len(recs)
	tenants, docs, chunks := make([]int64, n), make([]int64, n), make([]int64, n)
	names, headings, texts := make([]string, n), make([]string, n), make([]string, n)
	vecs := make([][]float32, n)
	for i, r := range recs {
		if len(r.Vector) != s.dim {
			return fmt.Errorf("milvus: vector of %d dimensions, want %d", len(r.Vector), s.dim)
		}
		tenants[i], docs[i], chunks[i] = r.TenantID, r.DocumentID, int64(r.Chunk)
		names[i], headings[i], texts[i] = cut(r.DocumentName, maxName), cut(r.Heading, maxHeading), cut(r.Text, maxText)
		vecs[i] = r.Vector
	}
	opt := milvusclient.NewColumnBasedInsertOption(s.coll).
		WithInt64Column(fieldTenant, tenants).WithInt64Column(fieldDoc, docs).WithInt64Column(fieldChunk, chunks).
		WithVarcharColumn(fieldName, names).WithVarcharColumn(fieldHeading, headings).WithVarcharColumn(fieldText, texts).
		WithFloatVectorColumn(fieldVector, s.dim, vecs)
	if _, err := s.c.Insert(ctx, opt); err != nil {
		return fmt.Errorf("milvus: insert into %s: %w", s.coll, err)
	}
	return nil
}

// cut shortens s to at most n bytes, at a character boundary.
func cut(s string, n int) string {
	for len(s) > n {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}

// filter is the expression of a tenant's rows (and of some of its documents).
func filter(tenantID int64, docs []int64) string {
	var b strings.Builder
	b.WriteString(fieldTenant + " == ")
	b.WriteString(strconv.FormatInt(tenantID, 10))
	if len(docs) > 0 {
		b.WriteString(" && " + fieldDoc + " in [")
		for i, d := range docs {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(d, 10))
		}
		b.WriteByte(']')
	}
	return b.String()
}

// Search implements rag.VectorStore.
func (s *Store) Search(ctx context.Context, req rag.SearchRequest) ([]rag.Hit, error) {
	if req.K <= 0 {
		return nil, nil
	}
	opt := milvusclient.NewSearchOption(s.coll, req.K, []entity.Vector{entity.FloatVector(req.Vector)}).
		WithANNSField(fieldVector).
		WithFilter(filter(req.TenantID, req.DocumentIDs)).
		WithSearchParam("metric_type", string(entity.IP)).
		WithOutputFields(fieldDoc, fieldChunk, fieldName, fieldHeading, fieldText)
	rs, err := s.c.Search(ctx, opt)
	if err != nil {
		return nil, fmt.Errorf("milvus: search %s: %w", s.coll, err)
	}
	if len(rs) != 1 {
		return nil, fmt.Errorf("milvus: search %s: %d result sets for one query", s.coll, len(rs))
	}
	r := rs[0]
	if r.Err != nil {
		return nil, fmt.Errorf("milvus: search %s: %w", s.coll, r.Err)
	}
	cols := map[string]interface {
		GetAsInt64(int) (int64, error)
		GetAsString(int) (string, error)
	}{}
	for _, name := range []string{fieldDoc, fieldChunk, fieldName, fieldHeading, fieldText} {
		c := r.GetColumn(name)
		if c == nil {
			return nil, fmt.Errorf("milvus: search %s: no %s in the results", s.coll, name)
		}
		cols[name] = c
	}
	hits := make([]rag.Hit, r.ResultCount)
	for i := range hits {
		doc, err1 := cols[fieldDoc].GetAsInt64(i)
		chunk, err2 := cols[fieldChunk].GetAsInt64(i)
		name, err3 := cols[fieldName].GetAsString(i)
		heading, err4 := cols[fieldHeading].GetAsString(i)
		text, err5 := cols[fieldText].GetAsString(i)
		if err := errors.Join(err1, err2, err3, err4, err5); err != nil {
			return nil, fmt.Errorf("milvus: search %s: %w", s.coll, err)
		}
		hits[i] = rag.Hit{DocumentID: doc, DocumentName: name, Chunk: int(chunk), Heading: heading, Text: text, Score: r.Scores[i]}
	}
	return hits, nil
}

// DeleteDocument implements rag.VectorStore.
func (s *Store) DeleteDocument(ctx context.Context, tenantID, documentID int64) error {
	opt := milvusclient.NewDeleteOption(s.coll).WithExpr(filter(tenantID, []int64{documentID}))
	if _, err := s.c.Delete(ctx, opt); err != nil {
		return fmt.Errorf("milvus: delete document %d from %s: %w", documentID, s.coll, err)
	}
	return nil
}

// Count returns how many chunks of the tenant's document (all of the
// tenant's for documentID 0) the collection holds, with strong consistency.
func (s *Store) Count(ctx context.Context, tenantID, documentID int64) (int, error) {
	var docs []int64
	if documentID != 0 {
		docs = []int64{documentID}
	}
	opt := milvusclient.NewQueryOption(s.coll).WithFilter(filter(tenantID, docs)).
		WithOutputFields("count(*)").WithConsistencyLevel(entity.ClStrong)
	rs, err := s.c.Query(ctx, opt)
	if err != nil {
		return 0, fmt.Errorf("milvus: count in %s: %w", s.coll, err)
	}
	c := rs.GetColumn("count(*)")
	if c == nil {
		return 0, fmt.Errorf("milvus: count in %s: no count(*) in the answer", s.coll)
	}
	n, err := c.GetAsInt64(0)
	return int(n), err
}

// Package ragtest has fakes for the rag package's tests: an in-memory
// DocumentStore with the real stores' semantics (tenant scoping, unique
// (tenant, sha256), not-found and conflict errors).
package ragtest

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/mtai-dev/mtai/rag"
	"github.com/mtai-dev/mtai/tenancy"
)

var _ rag.DocumentStore = (*Documents)(nil)

// Documents is an in-memory rag.DocumentStore. The zero value is empty and
// ready; it is safe for concurrent use.
type Documents struct {
	mu   sync.Mutex
	next int64
	docs map[int64]rag.Document
}

// CreateDocument implements rag.DocumentStore.
func (s *Documents) CreateDocument(ctx context.Context, d *rag.Document) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, o := range s.docs {
		if o.TenantID == d.TenantID && o.SHA256 == d.SHA256 {
			return fmt.Errorf("create document: %w", tenancy.ErrConflict)
		}
	}
	if s.docs == nil {
		s.docs = map[int64]rag.Document{}
	}
	s.next++
	d.ID = s.next
	s.docs[d.ID] = *d
	return nil
}

// Document implements rag.DocumentStore.
func (s *Documents) Document(ctx context.Context, tenantID, id int64) (*rag.Document, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[id]
	if !ok || d.TenantID != tenantID {
		return nil, fmt.Errorf("document %d: %w", id, tenancy.ErrNotFound)
	}
	return &d, nil
}

// DocumentByHash implements rag.DocumentStore.
func (s *Documents) DocumentByHash(ctx context.Context, tenantID int64, sha string) (*rag.Document, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, d := range s.docs {
		if d.TenantID == tenantID && d.SHA256 == sha {
			return &d, nil
		}
	}
	return nil, fmt.Errorf("document: %w", tenancy.ErrNotFound)
}

// Documents implements rag.DocumentStore.
func (s *Documents) Documents(ctx context.Context, tenantID int64, limit, offset int) ([]*rag.Document, int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var all []*rag.Document
	for _, d := range s.docs {
		if d.TenantID == tenantID {
			all = append(all, &d)
		}
	}
	slices.SortFunc(all, func(a, b *rag.Document) int { return int(a.ID - b.ID) })
	total := len(all)
	all = all[min(offset, total):]
	if limit > 0 {
		all = all[:min(limit, len(all))]
	}
	return all, total, nil
}

// UpdateDocument implements rag.DocumentStore.
func (s *Documents) UpdateDocument(ctx context.Context, d *rag.Document) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.docs[d.ID]
	if !ok || o.TenantID != d.TenantID {
		return fmt.Errorf("document %d: %w", d.ID, tenancy.ErrNotFound)
	}
	o.Status, o.Error, o.Chunks, o.Tokens = d.Status, d.Error, d.Chunks, d.Tokens
	o.ChunkSize, o.ChunkOverlap, o.Embedder, o.UpdatedAt = d.ChunkSize, d.ChunkOverlap, d.Embedder, d.UpdatedAt
	s.docs[d.ID] = o
	return nil
}

// DeleteDocument implements rag.DocumentStore.
func (s *Documents) DeleteDocument(ctx context.Context, tenantID, id int64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.docs[id]
	if !ok || d.TenantID != tenantID {
		return fmt.Errorf("document %d: %w", id, tenancy.ErrNotFound)
	}
	delete(s.docs, id)
	return nil
}

// DocumentsToIndex implements rag.DocumentStore.
func (s *Documents) DocumentsToIndex(ctx context.Context, embedder string, afterID int64, limit int) ([]*rag.Document, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*rag.Document
	for _, d := range s.docs {
		if d.ID > afterID && (d.Status == rag.StatusProcessing || (d.Status == rag.StatusReady && d.Embedder != embedder)) {
			out = append(out, &d)
		}
	}
	slices.SortFunc(out, func(a, b *rag.Document) int { return int(a.ID - b.ID) })
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

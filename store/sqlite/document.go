package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/mtai-dev/mtai/rag"
)

var _ rag.DocumentStore = (*DB)(nil)

const documentColumns = `id, tenant_id, name, content_type, size_bytes, sha256, status, error,
	chunks, tokens, chunk_size, chunk_overlap, embedder, created_at, updated_at`

func scanDocument(s scanner) (*rag.Document, error) {
	var (
		d                rag.Document
		status           string
		created, updated string
	)
	if err := s.Scan(&d.ID, &d.TenantID, &d.Name, &d.ContentType, &d.Size, &d.SHA256, &status, &d.Error,
		&d.Chunks, &d.Tokens, &d.ChunkSize, &d.ChunkOverlap, &d.Embedder, &created, &updated); err != nil {
		return nil, err
	}
	d.Status = rag.Status(status)
	var err error
	if d.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if d.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &d, nil
}

// CreateDocument implements rag.DocumentStore.
func (db *DB) CreateDocument(ctx context.Context, d *rag.Document) error {
	err := db.write.QueryRowContext(ctx, `
		INSERT INTO documents (tenant_id, name, content_type, size_bytes, sha256, status, error,
			chunks, tokens, chunk_size, chunk_overlap, embedder, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		RETURNING id`,
		d.TenantID, d.Name, d.ContentType, d.Size, d.SHA256, string(d.Status), d.Error,
		d.Chunks, d.Tokens, d.ChunkSize, d.ChunkOverlap, d.Embedder, formatTime(d.CreatedAt), formatTime(d.UpdatedAt),
	).Scan(&d.ID)
	return mapErr("create document", err)
}

// Document implements rag.DocumentStore.
func (db *DB) Document(ctx context.Context, tenantID, id int64) (*rag.Document, error) {
	d, err := scanDocument(db.read.QueryRowContext(ctx,
		`SELECT `+documentColumns+` FROM documents WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return d, mapErr(fmt.Sprintf("document %d", id), err)
}

// DocumentByHash implements rag.DocumentStore.
func (db *DB) DocumentByHash(ctx context.Context, tenantID int64, sha256 string) (*rag.Document, error) {
	d, err := scanDocument(db.read.QueryRowContext(ctx,
		`SELECT `+documentColumns+` FROM documents WHERE tenant_id = ? AND sha256 = ?`, tenantID, sha256))
	return d, mapErr("document by hash", err)
}

// Documents implements rag.DocumentStore.
func (db *DB) Documents(ctx context.Context, tenantID int64, limit, offset int) ([]*rag.Document, int, error) {
	var n int
	if err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM documents WHERE tenant_id = ?`, tenantID).Scan(&n); err != nil {
		return nil, 0, mapErr("count documents", err)
	}
	ds, err := db.documents(ctx, `SELECT `+documentColumns+` FROM documents WHERE tenant_id = ? ORDER BY id LIMIT ? OFFSET ?`,
		tenantID, sqlLimit(limit), offset)
	return ds, n, err
}

func (db *DB) documents(ctx context.Context, query string, args ...any) ([]*rag.Document, error) {
	rows, err := db.read.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, mapErr("find documents", err)
	}
	defer rows.Close()
	ds := []*rag.Document{}
	for rows.Next() {
		d, err := scanDocument(rows)
		if err != nil {
			return nil, mapErr("find documents", err)
		}
		ds = append(ds, d)
	}
	return ds, mapErr("find documents", rows.Err())
}

// UpdateDocument implements rag.DocumentStore.
func (db *DB) UpdateDocument(ctx context.Context, d *rag.Document) error {
	res, err := db.write.ExecContext(ctx, `
		UPDATE documents SET status = ?, error = ?, chunks = ?, tokens = ?, chunk_size = ?,
			chunk_overlap = ?, embedder = ?, updated_at = ?
		WHERE tenant_id = ? AND id = ?`,
		string(d.Status), d.Error, d.Chunks, d.Tokens, d.ChunkSize, d.ChunkOverlap, d.Embedder,
		formatTime(d.UpdatedAt), d.TenantID, d.ID)
	return documentChanged(fmt.Sprintf("update document %d", d.ID), res, err)
}

// DeleteDocument implements rag.DocumentStore.
func (db *DB) DeleteDocument(ctx context.Context, tenantID, id int64) error {
	res, err := db.write.ExecContext(ctx, `DELETE FROM documents WHERE tenant_id = ? AND id = ?`, tenantID, id)
	return documentChanged(fmt.Sprintf("delete document %d", id), res, err)
}

// DocumentsToIndex implements rag.DocumentStore.
func (db *DB) DocumentsToIndex(ctx context.Context, embedder string, afterID int64, limit int) ([]*rag.Document, error) {
	return db.documents(ctx, `SELECT `+documentColumns+` FROM documents
		WHERE id > ? AND (status = 'processing' OR (status = 'ready' AND embedder != ?))
		ORDER BY id LIMIT ?`, afterID, embedder, sqlLimit(limit))
}

// documentChanged maps "no row changed" to not found.
func documentChanged(what string, res sql.Result, err error) error {
	if err != nil {
		return mapErr(what, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return mapErr(what, err)
	} else if n == 0 {
		return mapErr(what, sql.ErrNoRows)
	}
	return nil
}

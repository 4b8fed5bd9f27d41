package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/mtai-dev/mtai/rag"
)

var _ rag.DocumentStore = (*DB)(nil)

const documentColumns = `id, tenant_id, name, content_type, size_bytes, sha256, status, error,
	chunks, tokens, chunk_size, chunk_overlap, embedder, created_at, updated_at`

func scanDocument(row pgx.Row) (*rag.Document, error) {
	var (
		d      rag.Document
		status string
	)
	if err := row.Scan(&d.ID, &d.TenantID, &d.Name, &d.ContentType, &d.Size, &d.SHA256, &status, &d.Error,
		&d.Chunks, &d.Tokens, &d.ChunkSize, &d.ChunkOverlap, &d.Embedder, &d.CreatedAt, &d.UpdatedAt); err != nil {
		return nil, err
	}
	d.Status = rag.Status(status)
	d.CreatedAt, d.UpdatedAt = d.CreatedAt.UTC(), d.UpdatedAt.UTC()
	return &d, nil
}

// CreateDocument implements rag.DocumentStore.
func (db *DB) CreateDocument(ctx context.Context, d *rag.Document) error {
	err := db.pool.QueryRow(ctx, `
		INSERT INTO documents (tenant_id, name, content_type, size_bytes, sha256, status, error,
			chunks, tokens, chunk_size, chunk_overlap, embedder, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
		RETURNING id`,
		d.TenantID, d.Name, d.ContentType, d.Size, d.SHA256, string(d.Status), d.Error,
		d.Chunks, d.Tokens, d.ChunkSize, d.ChunkOverlap, d.Embedder, d.CreatedAt, d.UpdatedAt,
	).Scan(&d.ID)
	return mapErr("create document", err)
}

// Document implements rag.DocumentStore.
func (db *DB) Document(ctx context.Context, tenantID, id int64) (*rag.Document, error) {
	d, err := scanDocument(db.pool.QueryRow(ctx,
		`SELECT `+documentColumns+` FROM documents WHERE tenant_id = $1 AND id = $2`, tenantID, id))
	return d, mapErr(fmt.Sprintf("document %d", id), err)
}

// DocumentByHash implements rag.DocumentStore.
func (db *DB) DocumentByHash(ctx context.Context, tenantID int64, sha256 string) (*rag.Document, error) {
	d, err := scanDocument(db.pool.QueryRow(ctx,
		`SELECT `+documentColumns+` FROM documents WHERE tenant_id = $1 AND sha256 = $2`, tenantID, sha256))
	return d, mapErr("document by hash", err)
}

// Documents implements rag.DocumentStore.
func (db *DB) Documents(ctx context.Context, tenantID int64, limit, offset int) ([]*rag.Document, int, error) {
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM documents WHERE tenant_id = $1`, tenantID).Scan(&n); err != nil {
		return nil, 0, mapErr("count documents", err)
	}
	ds, err := db.documents(ctx, `SELECT `+documentColumns+` FROM documents WHERE tenant_id = $1 ORDER BY id LIMIT $2 OFFSET $3`,
		tenantID, sqlLimit(limit), offset)
	return ds, n, err
}

func (db *DB) documents(ctx context.Context, query string, args ...any) ([]*rag.Document, error) {
	rows, err := db.pool.Query(ctx, query, args...)
	if err != nil {
		return nil, mapErr("find documents", err)
	}
	ds, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*rag.Document, error) { return scanDocument(r) })
	if err != nil {
		return nil, mapErr("find documents", err)
	}
	if ds == nil {
		ds = []*rag.Document{}
	}
	return ds, nil
}

// UpdateDocument implements rag.DocumentStore.
func (db *DB) UpdateDocument(ctx context.Context, d *rag.Document) error {
	tag, err := db.pool.Exec(ctx, `
		UPDATE documents SET status = $1, error = $2, chunks = $3, tokens = $4, chunk_size = $5,
			chunk_overlap = $6, embedder = $7, updated_at = $8
		WHERE tenant_id = $9 AND id = $10`,
		string(d.Status), d.Error, d.Chunks, d.Tokens, d.ChunkSize, d.ChunkOverlap, d.Embedder,
		d.UpdatedAt, d.TenantID, d.ID)
	return documentChanged(fmt.Sprintf("update document %d", d.ID), tag, err)
}

// DeleteDocument implements rag.DocumentStore.
func (db *DB) DeleteDocument(ctx context.Context, tenantID, id int64) error {
	tag, err := db.pool.Exec(ctx, `DELETE FROM documents WHERE tenant_id = $1 AND id = $2`, tenantID, id)
	return documentChanged(fmt.Sprintf("delete document %d", id), tag, err)
}

// DocumentsToIndex implements rag.DocumentStore.
func (db *DB) DocumentsToIndex(ctx context.Context, embedder string, afterID int64, limit int) ([]*rag.Document, error) {
	return db.documents(ctx, `SELECT `+documentColumns+` FROM documents
		WHERE id > $1 AND (status = 'processing' OR (status = 'ready' AND embedder <> $2))
		ORDER BY id LIMIT $3`, afterID, embedder, sqlLimit(limit))
}

// documentChanged maps "no row changed" to not found.
func documentChanged(what string, tag pgconn.CommandTag, err error) error {
	if err != nil {
		return mapErr(what, err)
	}
	if tag.RowsAffected() == 0 {
		return mapErr(what, pgx.ErrNoRows)
	}
	return nil
}

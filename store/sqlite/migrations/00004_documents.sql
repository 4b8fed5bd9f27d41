-- RAG documents: one row per uploaded file of a tenant. The chunks and
-- their vectors live in the vector store (embedded or Milvus) and the file
-- in the blob store; this row is the document's identity, status and counts.
-- Kept equivalent to store/postgres/migrations/00004_documents.sql: same
-- table, columns, constraints and indexes; SQLite types (STRICT, times as
-- fixed-width UTC text with microseconds so that text order is time order).

-- +goose Up
CREATE TABLE documents (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id),
    name          TEXT    NOT NULL,
    content_type  TEXT    NOT NULL,
    size_bytes    INTEGER NOT NULL CHECK (size_bytes >= 0),
    sha256        TEXT    NOT NULL CHECK (length(sha256) = 64),
    status        TEXT    NOT NULL CHECK (status IN ('processing', 'ready', 'failed')),
    error         TEXT    NOT NULL DEFAULT '',
    chunks        INTEGER NOT NULL DEFAULT 0 CHECK (chunks >= 0),
    tokens        INTEGER NOT NULL DEFAULT 0 CHECK (tokens >= 0),
    chunk_size    INTEGER NOT NULL CHECK (chunk_size > 0),
    chunk_overlap INTEGER NOT NULL CHECK (chunk_overlap >= 0),
    embedder      TEXT    NOT NULL DEFAULT '',
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    -- the same content is indexed once per tenant
    UNIQUE (tenant_id, sha256)
) STRICT;

-- the work left after a restart or a change of embedder (DocumentsToIndex)
CREATE INDEX documents_status ON documents (status, embedder);

-- +goose Down
DROP TABLE documents;

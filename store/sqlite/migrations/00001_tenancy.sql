-- Tenancy: tenants, their users and API keys.
-- Kept equivalent to store/postgres/migrations/00001_tenancy.sql: same tables,
-- columns, constraints and indexes; SQLite types (STRICT tables, booleans as
-- 0/1, times as fixed-width RFC 3339 UTC text with microseconds so that text
-- order is time order, allowed_models as a JSON array).

-- +goose Up
CREATE TABLE tenants (
    id                       INTEGER PRIMARY KEY AUTOINCREMENT,
    name                     TEXT    NOT NULL UNIQUE,
    display_name             TEXT    NOT NULL DEFAULT '',
    default_model            TEXT    NOT NULL DEFAULT '',
    allowed_models           TEXT    NOT NULL DEFAULT '[]' CHECK (json_valid(allowed_models)),
    requests_per_minute      INTEGER NOT NULL DEFAULT 0 CHECK (requests_per_minute >= 0),
    requests_per_hour        INTEGER NOT NULL DEFAULT 0 CHECK (requests_per_hour >= 0),
    tokens_per_minute        INTEGER NOT NULL DEFAULT 0 CHECK (tokens_per_minute >= 0),
    monthly_budget_micro_usd INTEGER NOT NULL DEFAULT 0 CHECK (monthly_budget_micro_usd >= 0),
    system_prompt            TEXT    NOT NULL DEFAULT '',
    rag_enabled              INTEGER NOT NULL DEFAULT 0 CHECK (rag_enabled IN (0, 1)),
    rag_top_k                INTEGER NOT NULL DEFAULT 4,
    rag_chunk_size           INTEGER NOT NULL DEFAULT 512,
    rag_chunk_overlap        INTEGER NOT NULL DEFAULT 64,
    disabled                 INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at               TEXT    NOT NULL,
    updated_at               TEXT    NOT NULL
) STRICT;

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id),
    username      TEXT    NOT NULL,
    password_hash TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('member', 'tenant_admin', 'platform_admin')),
    disabled      INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    UNIQUE (tenant_id, username),
    UNIQUE (tenant_id, id) -- target of api_keys' (tenant_id, user_id)
) STRICT;

CREATE TABLE api_keys (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id    INTEGER NOT NULL REFERENCES tenants (id),
    user_id      INTEGER,
    name         TEXT    NOT NULL,
    prefix       TEXT    NOT NULL,
    hash         TEXT    NOT NULL UNIQUE,
    created_at   TEXT    NOT NULL,
    last_used_at TEXT,
    expires_at   TEXT,
    revoked_at   TEXT,
    -- A key's user belongs to the key's tenant.
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id)
) STRICT;

CREATE INDEX api_keys_tenant_id ON api_keys (tenant_id);

-- +goose Down
DROP TABLE api_keys;
DROP TABLE users;
DROP TABLE tenants;

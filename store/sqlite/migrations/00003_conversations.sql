-- Chat conversations of the platform API (/api/v1/chat) and their messages.
-- Kept equivalent to store/postgres/migrations/00003_conversations.sql:
-- same tables, columns, constraints and indexes; SQLite types (STRICT
-- tables, times as fixed-width UTC text with microseconds so that text
-- order is time order).
--
-- A conversation belongs to a user of its tenant, or, when an API key
-- issued to no user created it, to that key: exactly one of user_id and
-- key_id is set.

-- +goose Up
CREATE TABLE conversations (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id     INTEGER NOT NULL REFERENCES tenants (id),
    user_id       INTEGER,
    key_id        INTEGER REFERENCES api_keys (id),
    title         TEXT    NOT NULL DEFAULT '',
    model         TEXT    NOT NULL DEFAULT '',
    message_count INTEGER NOT NULL DEFAULT 0 CHECK (message_count >= 0),
    created_at    TEXT    NOT NULL,
    updated_at    TEXT    NOT NULL,
    -- A conversation's user belongs to the conversation's tenant.
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id),
    CHECK ((user_id IS NULL) <> (key_id IS NULL))
) STRICT;

-- The listings: an owner's conversations, the tenant's (admins), newest first.
CREATE INDEX conversations_user ON conversations (tenant_id, user_id, updated_at);
CREATE INDEX conversations_key ON conversations (tenant_id, key_id, updated_at);
CREATE INDEX conversations_tenant ON conversations (tenant_id, updated_at);

CREATE TABLE conversation_messages (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation_id INTEGER NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
    role            TEXT    NOT NULL CHECK (role IN ('system', 'user', 'assistant')),
    content         TEXT    NOT NULL,
    model           TEXT    NOT NULL DEFAULT '',
    tokens_used     INTEGER NOT NULL DEFAULT 0 CHECK (tokens_used >= 0),
    cost_micro_usd  INTEGER NOT NULL DEFAULT 0 CHECK (cost_micro_usd >= 0),
    latency_ms      INTEGER NOT NULL DEFAULT 0 CHECK (latency_ms >= 0),
    request_id      TEXT    NOT NULL DEFAULT '',
    created_at      TEXT    NOT NULL
) STRICT;

CREATE INDEX conversation_messages_conversation ON conversation_messages (conversation_id, id);

-- +goose Down
DROP TABLE conversation_messages;
DROP TABLE conversations;

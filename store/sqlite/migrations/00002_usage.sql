-- Usage metering: one row per request (usage_events) and hourly rollups per
-- tenant and model (usage_hourly), which the dashboard and the budgets
-- (MonthSpend) read.
-- Kept equivalent to store/postgres/migrations/00002_usage.sql: same tables
-- and columns (PostgreSQL partitions usage_events by month; here it is one
-- table and retention deletes rows). Times are fixed-width UTC text
-- (2006-01-02T15:04:05.000000Z), so that comparing the text compares them.

-- +goose Up
CREATE TABLE usage_events (
    id                TEXT    NOT NULL PRIMARY KEY, -- the meter's event id, as a UUID
    created_at        TEXT    NOT NULL,
    request_id        TEXT    NOT NULL,
    tenant_id         INTEGER NOT NULL,
    tenant            TEXT    NOT NULL,
    user_id           INTEGER,
    key_id            INTEGER,
    endpoint          TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    upstream_model    TEXT    NOT NULL,
    deployment        TEXT    NOT NULL,
    provider          TEXT    NOT NULL,
    stream            INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    reasoning_tokens  INTEGER NOT NULL,
    cost_micro_usd    INTEGER NOT NULL,
    priced            INTEGER NOT NULL,
    estimated         INTEGER NOT NULL,
    latency_us        INTEGER NOT NULL,
    ttft_us           INTEGER NOT NULL,
    status            INTEGER NOT NULL,
    error_code        TEXT    NOT NULL
);

CREATE INDEX usage_events_tenant_time ON usage_events (tenant_id, created_at);
CREATE INDEX usage_events_time ON usage_events (created_at);

CREATE TABLE usage_hourly (
    hour              TEXT    NOT NULL,
    tenant_id         INTEGER NOT NULL,
    tenant            TEXT    NOT NULL,
    model             TEXT    NOT NULL,
    requests          INTEGER NOT NULL,
    errors            INTEGER NOT NULL,
    streams           INTEGER NOT NULL,
    estimated         INTEGER NOT NULL,
    unpriced          INTEGER NOT NULL,
    prompt_tokens     INTEGER NOT NULL,
    completion_tokens INTEGER NOT NULL,
    cached_tokens     INTEGER NOT NULL,
    reasoning_tokens  INTEGER NOT NULL,
    cost_micro_usd    INTEGER NOT NULL,
    latency_us_sum    INTEGER NOT NULL,
    ttft_us_sum       INTEGER NOT NULL,
    latency_le_100ms  INTEGER NOT NULL,
    latency_le_250ms  INTEGER NOT NULL,
    latency_le_500ms  INTEGER NOT NULL,
    latency_le_1s     INTEGER NOT NULL,
    latency_le_2s     INTEGER NOT NULL,
    latency_le_5s     INTEGER NOT NULL,
    latency_le_10s    INTEGER NOT NULL,
    latency_le_20s    INTEGER NOT NULL,
    latency_le_30s    INTEGER NOT NULL,
    latency_le_60s    INTEGER NOT NULL,
    latency_le_120s   INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, tenant, model, hour)
);

CREATE INDEX usage_hourly_hour ON usage_hourly (hour);

-- +goose Down
DROP TABLE usage_hourly;
DROP TABLE usage_events;

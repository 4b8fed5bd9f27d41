-- Usage metering: one row per request (usage_events, partitioned by month)
-- and hourly rollups per tenant and model (usage_hourly), which the
-- dashboard and the budgets (MonthSpend) read.
-- Kept equivalent to store/sqlite/migrations/00002_usage.sql: same tables
-- and columns; PostgreSQL types.
--
-- The monthly partitions are created by the application (MaintainUsage, on
-- start and every hour, and by WriteUsage for a month it meets first), in
-- the schema usage_partitions, named usage_events_pYYYYMM; retention drops
-- whole partitions. They live in their own schema so that the public
-- schema shows the one logical table.

-- +goose Up
CREATE SCHEMA IF NOT EXISTS usage_partitions;

CREATE TABLE usage_events (
    id                UUID        NOT NULL, -- the meter's event id (time-ordered)
    created_at        TIMESTAMPTZ NOT NULL, -- when the request started
    request_id        TEXT        NOT NULL,
    tenant_id         BIGINT      NOT NULL, -- 0: a tenant from static configuration
    tenant            TEXT        NOT NULL,
    user_id           BIGINT,
    key_id            BIGINT,
    endpoint          TEXT        NOT NULL,
    model             TEXT        NOT NULL, -- as asked by the client
    upstream_model    TEXT        NOT NULL, -- as sent to the deployment
    deployment        TEXT        NOT NULL,
    provider          TEXT        NOT NULL,
    stream            BOOLEAN     NOT NULL,
    prompt_tokens     BIGINT      NOT NULL,
    completion_tokens BIGINT      NOT NULL,
    cached_tokens     BIGINT      NOT NULL,
    reasoning_tokens  BIGINT      NOT NULL,
    cost_micro_usd    BIGINT      NOT NULL,
    priced            BOOLEAN     NOT NULL,
    estimated         BOOLEAN     NOT NULL,
    latency_us        BIGINT      NOT NULL,
    ttft_us           BIGINT      NOT NULL, -- 0 for an answer not streamed
    status            INTEGER     NOT NULL,
    error_code        TEXT        NOT NULL,
    PRIMARY KEY (id, created_at)
) PARTITION BY RANGE (created_at);

-- The dashboard's queries: a tenant's events over time; everything over time.
CREATE INDEX usage_events_tenant_time ON usage_events (tenant_id, created_at);
CREATE INDEX usage_events_time ON usage_events USING BRIN (created_at);

CREATE TABLE usage_hourly (
    hour              TIMESTAMPTZ NOT NULL, -- start of the hour, UTC
    tenant_id         BIGINT      NOT NULL,
    tenant            TEXT        NOT NULL,
    model             TEXT        NOT NULL, -- as asked by the client
    requests          BIGINT      NOT NULL,
    errors            BIGINT      NOT NULL, -- status >= 400
    streams           BIGINT      NOT NULL,
    estimated         BIGINT      NOT NULL,
    unpriced          BIGINT      NOT NULL,
    prompt_tokens     BIGINT      NOT NULL,
    completion_tokens BIGINT      NOT NULL,
    cached_tokens     BIGINT      NOT NULL,
    reasoning_tokens  BIGINT      NOT NULL,
    cost_micro_usd    BIGINT      NOT NULL,
    latency_us_sum    BIGINT      NOT NULL,
    ttft_us_sum       BIGINT      NOT NULL, -- over streams
    -- Cumulative latency histogram (requests at most this slow), for
    -- percentiles; requests - latency_le_120s were slower.
    latency_le_100ms  BIGINT      NOT NULL,
    latency_le_250ms  BIGINT      NOT NULL,
    latency_le_500ms  BIGINT      NOT NULL,
    latency_le_1s     BIGINT      NOT NULL,
    latency_le_2s     BIGINT      NOT NULL,
    latency_le_5s     BIGINT      NOT NULL,
    latency_le_10s    BIGINT      NOT NULL,
    latency_le_20s    BIGINT      NOT NULL,
    latency_le_30s    BIGINT      NOT NULL,
    latency_le_60s    BIGINT      NOT NULL,
    latency_le_120s   BIGINT      NOT NULL,
    PRIMARY KEY (tenant_id, tenant, model, hour)
);

CREATE INDEX usage_hourly_hour ON usage_hourly (hour);

-- +goose Down
DROP TABLE usage_hourly;
DROP TABLE usage_events;
DROP SCHEMA usage_partitions CASCADE;

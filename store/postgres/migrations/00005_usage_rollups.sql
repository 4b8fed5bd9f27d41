-- Rollups for long periods and for keys and users, so that the admin
-- API answers a month of traffic from a few thousand rows:
--
--   - usage_daily: usage_hourly by UTC day (tenant and model);
--   - usage_party_hourly, usage_party_daily: the usage of each API key and
--     user of a tenant, and model, by hour and by day (a key uses one model
--     or a few: the model multiplies the rows by little, and a query by key
--     filtered by model reads rollups too).
--
-- A period is read from the daily rows of its whole days plus the hourly
-- rows of its partial days at either end (store/internal/usagesql); the
-- daily rows have tables of their own so that a day's rows are dense, not
-- scattered among the hours'. The meter's writers fill these tables in the
-- same transaction as usage_events and usage_hourly (store/*/usage.go);
-- retention deletes their rows with usage_hourly's, by whole days.
-- Kept equivalent to store/sqlite/migrations/00005_usage_rollups.sql.

-- +goose Up
CREATE TABLE usage_daily (
    day               TIMESTAMPTZ  NOT NULL, -- start of the day, UTC
    tenant_id         BIGINT       NOT NULL,
    tenant            TEXT         NOT NULL,
    model             TEXT         NOT NULL,
    requests          BIGINT       NOT NULL,
    errors            BIGINT       NOT NULL,
    streams           BIGINT       NOT NULL,
    estimated         BIGINT       NOT NULL,
    unpriced          BIGINT       NOT NULL,
    prompt_tokens     BIGINT       NOT NULL,
    completion_tokens BIGINT       NOT NULL,
    cached_tokens     BIGINT       NOT NULL,
    reasoning_tokens  BIGINT       NOT NULL,
    cost_micro_usd    BIGINT       NOT NULL,
    latency_us_sum    BIGINT       NOT NULL,
    ttft_us_sum       BIGINT       NOT NULL,
    latency_le_100ms  BIGINT       NOT NULL,
    latency_le_250ms  BIGINT       NOT NULL,
    latency_le_500ms  BIGINT       NOT NULL,
    latency_le_1s     BIGINT       NOT NULL,
    latency_le_2s     BIGINT       NOT NULL,
    latency_le_5s     BIGINT       NOT NULL,
    latency_le_10s    BIGINT       NOT NULL,
    latency_le_20s    BIGINT       NOT NULL,
    latency_le_30s    BIGINT       NOT NULL,
    latency_le_60s    BIGINT       NOT NULL,
    latency_le_120s   BIGINT       NOT NULL,
    PRIMARY KEY (tenant_id, tenant, model, day)
);

CREATE INDEX usage_daily_day ON usage_daily (day);

CREATE TABLE usage_party_hourly (
    hour              TIMESTAMPTZ  NOT NULL, -- start of the hour, UTC
    tenant_id         BIGINT       NOT NULL,
    tenant            TEXT         NOT NULL,
    key_id            BIGINT       NOT NULL, -- 0: none (a JWT, or a key from static configuration)
    user_id           BIGINT       NOT NULL, -- 0: none
    model             TEXT         NOT NULL,
    requests          BIGINT       NOT NULL,
    errors            BIGINT       NOT NULL,
    streams           BIGINT       NOT NULL,
    estimated         BIGINT       NOT NULL,
    unpriced          BIGINT       NOT NULL,
    prompt_tokens     BIGINT       NOT NULL,
    completion_tokens BIGINT       NOT NULL,
    cached_tokens     BIGINT       NOT NULL,
    reasoning_tokens  BIGINT       NOT NULL,
    cost_micro_usd    BIGINT       NOT NULL,
    latency_us_sum    BIGINT       NOT NULL,
    ttft_us_sum       BIGINT       NOT NULL,
    latency_le_100ms  BIGINT       NOT NULL,
    latency_le_250ms  BIGINT       NOT NULL,
    latency_le_500ms  BIGINT       NOT NULL,
    latency_le_1s     BIGINT       NOT NULL,
    latency_le_2s     BIGINT       NOT NULL,
    latency_le_5s     BIGINT       NOT NULL,
    latency_le_10s    BIGINT       NOT NULL,
    latency_le_20s    BIGINT       NOT NULL,
    latency_le_30s    BIGINT       NOT NULL,
    latency_le_60s    BIGINT       NOT NULL,
    latency_le_120s   BIGINT       NOT NULL,
    PRIMARY KEY (tenant_id, hour, tenant, key_id, user_id, model)
);

CREATE INDEX usage_party_hourly_hour ON usage_party_hourly (hour);

CREATE TABLE usage_party_daily (
    day               TIMESTAMPTZ  NOT NULL, -- start of the day, UTC
    tenant_id         BIGINT       NOT NULL,
    tenant            TEXT         NOT NULL,
    key_id            BIGINT       NOT NULL, -- 0: none (a JWT, or a key from static configuration)
    user_id           BIGINT       NOT NULL, -- 0: none
    model             TEXT         NOT NULL,
    requests          BIGINT       NOT NULL,
    errors            BIGINT       NOT NULL,
    streams           BIGINT       NOT NULL,
    estimated         BIGINT       NOT NULL,
    unpriced          BIGINT       NOT NULL,
    prompt_tokens     BIGINT       NOT NULL,
    completion_tokens BIGINT       NOT NULL,
    cached_tokens     BIGINT       NOT NULL,
    reasoning_tokens  BIGINT       NOT NULL,
    cost_micro_usd    BIGINT       NOT NULL,
    latency_us_sum    BIGINT       NOT NULL,
    ttft_us_sum       BIGINT       NOT NULL,
    latency_le_100ms  BIGINT       NOT NULL,
    latency_le_250ms  BIGINT       NOT NULL,
    latency_le_500ms  BIGINT       NOT NULL,
    latency_le_1s     BIGINT       NOT NULL,
    latency_le_2s     BIGINT       NOT NULL,
    latency_le_5s     BIGINT       NOT NULL,
    latency_le_10s    BIGINT       NOT NULL,
    latency_le_20s    BIGINT       NOT NULL,
    latency_le_30s    BIGINT       NOT NULL,
    latency_le_60s    BIGINT       NOT NULL,
    latency_le_120s   BIGINT       NOT NULL,
    PRIMARY KEY (tenant_id, day, tenant, key_id, user_id, model)
);

CREATE INDEX usage_party_daily_day ON usage_party_daily (day);

-- Fill usage_daily from usage_hourly (all of the rollups kept).
INSERT INTO usage_daily (day, tenant_id, tenant, model,
    requests,
    errors,
    streams,
    estimated,
    unpriced,
    prompt_tokens,
    completion_tokens,
    cached_tokens,
    reasoning_tokens,
    cost_micro_usd,
    latency_us_sum,
    ttft_us_sum,
    latency_le_100ms,
    latency_le_250ms,
    latency_le_500ms,
    latency_le_1s,
    latency_le_2s,
    latency_le_5s,
    latency_le_10s,
    latency_le_20s,
    latency_le_30s,
    latency_le_60s,
    latency_le_120s)
SELECT date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', tenant_id, tenant, model,
    sum(requests),
    sum(errors),
    sum(streams),
    sum(estimated),
    sum(unpriced),
    sum(prompt_tokens),
    sum(completion_tokens),
    sum(cached_tokens),
    sum(reasoning_tokens),
    sum(cost_micro_usd),
    sum(latency_us_sum),
    sum(ttft_us_sum),
    sum(latency_le_100ms),
    sum(latency_le_250ms),
    sum(latency_le_500ms),
    sum(latency_le_1s),
    sum(latency_le_2s),
    sum(latency_le_5s),
    sum(latency_le_10s),
    sum(latency_le_20s),
    sum(latency_le_30s),
    sum(latency_le_60s),
    sum(latency_le_120s)
FROM usage_hourly GROUP BY 1, 2, 3, 4;

-- Fill the party rollups from the events still kept (older usage has no
-- party rollups: its events are gone).
INSERT INTO usage_party_hourly (hour, tenant_id, tenant, key_id, user_id, model,
    requests,
    errors,
    streams,
    estimated,
    unpriced,
    prompt_tokens,
    completion_tokens,
    cached_tokens,
    reasoning_tokens,
    cost_micro_usd,
    latency_us_sum,
    ttft_us_sum,
    latency_le_100ms,
    latency_le_250ms,
    latency_le_500ms,
    latency_le_1s,
    latency_le_2s,
    latency_le_5s,
    latency_le_10s,
    latency_le_20s,
    latency_le_30s,
    latency_le_60s,
    latency_le_120s)
SELECT date_trunc('hour', created_at AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', tenant_id, tenant, COALESCE(key_id, 0), COALESCE(user_id, 0), model,
    count(*),
    count(*) FILTER (WHERE status >= 400 OR error_code <> ''),
    count(*) FILTER (WHERE stream),
    count(*) FILTER (WHERE estimated),
    count(*) FILTER (WHERE NOT priced),
    sum(prompt_tokens),
    sum(completion_tokens),
    sum(cached_tokens),
    sum(reasoning_tokens),
    sum(cost_micro_usd),
    sum(latency_us),
    COALESCE(sum(ttft_us) FILTER (WHERE stream), 0),
    count(*) FILTER (WHERE latency_us <= 100000),
    count(*) FILTER (WHERE latency_us <= 250000),
    count(*) FILTER (WHERE latency_us <= 500000),
    count(*) FILTER (WHERE latency_us <= 1000000),
    count(*) FILTER (WHERE latency_us <= 2000000),
    count(*) FILTER (WHERE latency_us <= 5000000),
    count(*) FILTER (WHERE latency_us <= 10000000),
    count(*) FILTER (WHERE latency_us <= 20000000),
    count(*) FILTER (WHERE latency_us <= 30000000),
    count(*) FILTER (WHERE latency_us <= 60000000),
    count(*) FILTER (WHERE latency_us <= 120000000)
FROM usage_events GROUP BY 1, 2, 3, 4, 5, 6;

INSERT INTO usage_party_daily (day, tenant_id, tenant, key_id, user_id, model,
    requests,
    errors,
    streams,
    estimated,
    unpriced,
    prompt_tokens,
    completion_tokens,
    cached_tokens,
    reasoning_tokens,
    cost_micro_usd,
    latency_us_sum,
    ttft_us_sum,
    latency_le_100ms,
    latency_le_250ms,
    latency_le_500ms,
    latency_le_1s,
    latency_le_2s,
    latency_le_5s,
    latency_le_10s,
    latency_le_20s,
    latency_le_30s,
    latency_le_60s,
    latency_le_120s)
SELECT date_trunc('day', hour AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', tenant_id, tenant, key_id, user_id, model,
    sum(requests),
    sum(errors),
    sum(streams),
    sum(estimated),
    sum(unpriced),
    sum(prompt_tokens),
    sum(completion_tokens),
    sum(cached_tokens),
    sum(reasoning_tokens),
    sum(cost_micro_usd),
    sum(latency_us_sum),
    sum(ttft_us_sum),
    sum(latency_le_100ms),
    sum(latency_le_250ms),
    sum(latency_le_500ms),
    sum(latency_le_1s),
    sum(latency_le_2s),
    sum(latency_le_5s),
    sum(latency_le_10s),
    sum(latency_le_20s),
    sum(latency_le_30s),
    sum(latency_le_60s),
    sum(latency_le_120s)
FROM usage_party_hourly GROUP BY 1, 2, 3, 4, 5, 6;

-- +goose Down
DROP TABLE usage_party_daily;
DROP TABLE usage_party_hourly;
DROP TABLE usage_daily;

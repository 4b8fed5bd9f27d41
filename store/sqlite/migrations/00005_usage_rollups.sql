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
-- Kept equivalent to store/postgres/migrations/00005_usage_rollups.sql.
-- Times are fixed-width UTC text, like usage_hourly's.

-- +goose Up
CREATE TABLE usage_daily (
    day               TEXT     NOT NULL, -- start of the day, UTC
    tenant_id         INTEGER  NOT NULL,
    tenant            TEXT     NOT NULL,
    model             TEXT     NOT NULL,
    requests          INTEGER  NOT NULL,
    errors            INTEGER  NOT NULL,
    streams           INTEGER  NOT NULL,
    estimated         INTEGER  NOT NULL,
    unpriced          INTEGER  NOT NULL,
    prompt_tokens     INTEGER  NOT NULL,
    completion_tokens INTEGER  NOT NULL,
    cached_tokens     INTEGER  NOT NULL,
    reasoning_tokens  INTEGER  NOT NULL,
    cost_micro_usd    INTEGER  NOT NULL,
    latency_us_sum    INTEGER  NOT NULL,
    ttft_us_sum       INTEGER  NOT NULL,
    latency_le_100ms  INTEGER  NOT NULL,
    latency_le_250ms  INTEGER  NOT NULL,
    latency_le_500ms  INTEGER  NOT NULL,
    latency_le_1s     INTEGER  NOT NULL,
    latency_le_2s     INTEGER  NOT NULL,
    latency_le_5s     INTEGER  NOT NULL,
    latency_le_10s    INTEGER  NOT NULL,
    latency_le_20s    INTEGER  NOT NULL,
    latency_le_30s    INTEGER  NOT NULL,
    latency_le_60s    INTEGER  NOT NULL,
    latency_le_120s   INTEGER  NOT NULL,
    PRIMARY KEY (tenant_id, tenant, model, day)
);

CREATE INDEX usage_daily_day ON usage_daily (day);

CREATE TABLE usage_party_hourly (
    hour              TEXT     NOT NULL, -- start of the hour, UTC
    tenant_id         INTEGER  NOT NULL,
    tenant            TEXT     NOT NULL,
    key_id            INTEGER  NOT NULL, -- 0: none (a JWT, or a key from static configuration)
    user_id           INTEGER  NOT NULL, -- 0: none
    model             TEXT     NOT NULL,
    requests          INTEGER  NOT NULL,
    errors            INTEGER  NOT NULL,
    streams           INTEGER  NOT NULL,
    estimated         INTEGER  NOT NULL,
    unpriced          INTEGER  NOT NULL,
    prompt_tokens     INTEGER  NOT NULL,
    completion_tokens INTEGER  NOT NULL,
    cached_tokens     INTEGER  NOT NULL,
    reasoning_tokens  INTEGER  NOT NULL,
    cost_micro_usd    INTEGER  NOT NULL,
    latency_us_sum    INTEGER  NOT NULL,
    ttft_us_sum       INTEGER  NOT NULL,
    latency_le_100ms  INTEGER  NOT NULL,
    latency_le_250ms  INTEGER  NOT NULL,
    latency_le_500ms  INTEGER  NOT NULL,
    latency_le_1s     INTEGER  NOT NULL,
    latency_le_2s     INTEGER  NOT NULL,
    latency_le_5s     INTEGER  NOT NULL,
    latency_le_10s    INTEGER  NOT NULL,
    latency_le_20s    INTEGER  NOT NULL,
    latency_le_30s    INTEGER  NOT NULL,
    latency_le_60s    INTEGER  NOT NULL,
    latency_le_120s   INTEGER  NOT NULL,
    PRIMARY KEY (tenant_id, hour, tenant, key_id, user_id, model)
);

CREATE INDEX usage_party_hourly_hour ON usage_party_hourly (hour);

CREATE TABLE usage_party_daily (
    day               TEXT     NOT NULL, -- start of the day, UTC
    tenant_id         INTEGER  NOT NULL,
    tenant            TEXT     NOT NULL,
    key_id            INTEGER  NOT NULL, -- 0: none (a JWT, or a key from static configuration)
    user_id           INTEGER  NOT NULL, -- 0: none
    model             TEXT     NOT NULL,
    requests          INTEGER  NOT NULL,
    errors            INTEGER  NOT NULL,
    streams           INTEGER  NOT NULL,
    estimated         INTEGER  NOT NULL,
    unpriced          INTEGER  NOT NULL,
    prompt_tokens     INTEGER  NOT NULL,
    completion_tokens INTEGER  NOT NULL,
    cached_tokens     INTEGER  NOT NULL,
    reasoning_tokens  INTEGER  NOT NULL,
    cost_micro_usd    INTEGER  NOT NULL,
    latency_us_sum    INTEGER  NOT NULL,
    ttft_us_sum       INTEGER  NOT NULL,
    latency_le_100ms  INTEGER  NOT NULL,
    latency_le_250ms  INTEGER  NOT NULL,
    latency_le_500ms  INTEGER  NOT NULL,
    latency_le_1s     INTEGER  NOT NULL,
    latency_le_2s     INTEGER  NOT NULL,
    latency_le_5s     INTEGER  NOT NULL,
    latency_le_10s    INTEGER  NOT NULL,
    latency_le_20s    INTEGER  NOT NULL,
    latency_le_30s    INTEGER  NOT NULL,
    latency_le_60s    INTEGER  NOT NULL,
    latency_le_120s   INTEGER  NOT NULL,
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
SELECT substr(hour, 1, 10) || 'T00:00:00.000000Z', tenant_id, tenant, model,
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
SELECT substr(created_at, 1, 13) || ':00:00.000000Z', tenant_id, tenant, COALESCE(key_id, 0), COALESCE(user_id, 0), model,
    count(*),
    count(*) FILTER (WHERE status >= 400 OR error_code <> ''),
    count(*) FILTER (WHERE stream = 1),
    count(*) FILTER (WHERE estimated = 1),
    count(*) FILTER (WHERE priced = 0),
    sum(prompt_tokens),
    sum(completion_tokens),
    sum(cached_tokens),
    sum(reasoning_tokens),
    sum(cost_micro_usd),
    sum(latency_us),
    COALESCE(sum(ttft_us) FILTER (WHERE stream = 1), 0),
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
SELECT substr(hour, 1, 10) || 'T00:00:00.000000Z', tenant_id, tenant, key_id, user_id, model,
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

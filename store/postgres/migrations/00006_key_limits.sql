-- API keys' own rate limits, applied together with their tenant's: a
-- request made with a key must pass both (0 = no limit, as for tenants).
-- Kept equivalent to store/sqlite/migrations/00006_key_limits.sql: same
-- columns and constraints; PostgreSQL types. Adding a column with a
-- constant default rewrites nothing; the checks scan api_keys once.

-- +goose Up
ALTER TABLE api_keys
    ADD COLUMN requests_per_minute BIGINT NOT NULL DEFAULT 0 CHECK (requests_per_minute >= 0),
    ADD COLUMN requests_per_hour   BIGINT NOT NULL DEFAULT 0 CHECK (requests_per_hour >= 0),
    ADD COLUMN tokens_per_minute   BIGINT NOT NULL DEFAULT 0 CHECK (tokens_per_minute >= 0);

-- +goose Down
ALTER TABLE api_keys
    DROP COLUMN requests_per_minute,
    DROP COLUMN requests_per_hour,
    DROP COLUMN tokens_per_minute;

-- API keys' own rate limits, applied together with their tenant's: a
-- request made with a key must pass both (0 = no limit, as for tenants).
-- Kept equivalent to store/postgres/migrations/00006_key_limits.sql: same
-- columns and constraints; SQLite types (api_keys is STRICT). SQLite adds
-- one column per statement; a NOT NULL column needs its default.

-- +goose Up
ALTER TABLE api_keys ADD COLUMN requests_per_minute INTEGER NOT NULL DEFAULT 0 CHECK (requests_per_minute >= 0);
ALTER TABLE api_keys ADD COLUMN requests_per_hour   INTEGER NOT NULL DEFAULT 0 CHECK (requests_per_hour >= 0);
ALTER TABLE api_keys ADD COLUMN tokens_per_minute   INTEGER NOT NULL DEFAULT 0 CHECK (tokens_per_minute >= 0);

-- +goose Down
ALTER TABLE api_keys DROP COLUMN tokens_per_minute;
ALTER TABLE api_keys DROP COLUMN requests_per_hour;
ALTER TABLE api_keys DROP COLUMN requests_per_minute;

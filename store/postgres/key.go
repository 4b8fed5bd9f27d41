package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/mtai-dev/mtai/tenancy"
)

var _ tenancy.KeyStore = (*DB)(nil)

const keyColumns = `id, tenant_id, user_id, name, prefix, hash, created_at, last_used_at, expires_at, revoked_at,
	requests_per_minute, requests_per_hour, tokens_per_minute`

func scanKey(row pgx.Row) (*tenancy.APIKey, error) {
	var (
		k      tenancy.APIKey
		userID *int64
	)
	if err := row.Scan(&k.ID, &k.TenantID, &userID, &k.Name, &k.Prefix, &k.Hash,
		&k.CreatedAt, &k.LastUsedAt, &k.ExpiresAt, &k.RevokedAt,
		&k.RequestsPerMinute, &k.RequestsPerHour, &k.TokensPerMinute); err != nil {
		return nil, err
	}
	if userID != nil {
		k.UserID = *userID
	}
	k.CreatedAt = k.CreatedAt.UTC()
	k.LastUsedAt, k.ExpiresAt, k.RevokedAt = utc(k.LastUsedAt), utc(k.ExpiresAt), utc(k.RevokedAt)
	k.Revoked = k.RevokedAt != nil
	return &k, nil
}

// CreateKey implements tenancy.KeyStore. The key is stored revoked when
// k.Revoked is set (RevokedAt, or CreatedAt when nil).
func (db *DB) CreateKey(ctx context.Context, k *tenancy.APIKey) error {
	var revokedAt *time.Time
	if k.Revoked {
		revokedAt = k.RevokedAt
		if revokedAt == nil {
			revokedAt = &k.CreatedAt
		}
	}
	err := db.pool.QueryRow(ctx, `
		INSERT INTO api_keys (tenant_id, user_id, name, prefix, hash, created_at, last_used_at, expires_at, revoked_at,
			requests_per_minute, requests_per_hour, tokens_per_minute)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
		RETURNING id`,
		k.TenantID, nullID(k.UserID), k.Name, k.Prefix, k.Hash, k.CreatedAt,
		k.LastUsedAt, k.ExpiresAt, revokedAt,
		k.RequestsPerMinute, k.RequestsPerHour, k.TokensPerMinute,
	).Scan(&k.ID)
	if err == nil && k.Revoked {
		k.RevokedAt = revokedAt
	}
	return mapErr("create key", err)
}

// FindKeyByHash implements tenancy.KeyStore.
func (db *DB) FindKeyByHash(ctx context.Context, hash string) (*tenancy.APIKey, error) {
	k, err := scanKey(db.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE hash = $1`, hash))
	return k, mapErr("key", err)
}

// FindKeyByID implements tenancy.KeyStore.
func (db *DB) FindKeyByID(ctx context.Context, tenantID, id int64) (*tenancy.APIKey, error) {
	k, err := scanKey(db.pool.QueryRow(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE tenant_id = $1 AND id = $2`, tenantID, id))
	return k, mapErr(fmt.Sprintf("key %d", id), err)
}

// UpdateKey implements tenancy.KeyStore: the row is locked from the read
// to the write.
func (db *DB) UpdateKey(ctx context.Context, tenantID, id int64, fn func(*tenancy.APIKey) error) (*tenancy.APIKey, error) {
	var k *tenancy.APIKey
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		k, err = scanKey(tx.QueryRow(ctx,
			`SELECT `+keyColumns+` FROM api_keys WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, tenantID, id))
		if err != nil {
			return mapErr(fmt.Sprintf("key %d", id), err)
		}
		if err := fn(k); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			UPDATE api_keys SET name = $1, requests_per_minute = $2, requests_per_hour = $3, tokens_per_minute = $4
			WHERE tenant_id = $5 AND id = $6`,
			k.Name, k.RequestsPerMinute, k.RequestsPerHour, k.TokensPerMinute, tenantID, id)
		return mapErr(fmt.Sprintf("update key %d", id), err)
	})
	if err != nil {
		return nil, err
	}
	return k, nil
}

// FindKeys implements tenancy.KeyStore.
func (db *DB) FindKeys(ctx context.Context, tenantID int64, limit, offset int) ([]*tenancy.APIKey, int, error) {
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM api_keys WHERE tenant_id = $1`, tenantID).Scan(&n); err != nil {
		return nil, 0, mapErr("count keys", err)
	}
	rows, err := db.pool.Query(ctx,
		`SELECT `+keyColumns+` FROM api_keys WHERE tenant_id = $1 ORDER BY id LIMIT $2 OFFSET $3`,
		tenantID, sqlLimit(limit), offset)
	if err != nil {
		return nil, 0, mapErr("find keys", err)
	}
	ks, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*tenancy.APIKey, error) { return scanKey(r) })
	if err != nil {
		return nil, 0, mapErr("find keys", err)
	}
	return ks, n, nil
}

// RevokeKey implements tenancy.KeyStore.
func (db *DB) RevokeKey(ctx context.Context, tenantID, id int64, at time.Time) (*tenancy.APIKey, error) {
	k, err := scanKey(db.pool.QueryRow(ctx, `
		UPDATE api_keys SET revoked_at = coalesce(revoked_at, $1)
		WHERE tenant_id = $2 AND id = $3
		RETURNING `+keyColumns, at, tenantID, id))
	return k, mapErr(fmt.Sprintf("key %d", id), err)
}

// MarkKeysUsed implements tenancy.KeyStore, in one statement.
func (db *DB) MarkKeysUsed(ctx context.Context, used map[int64]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	ids := make([]int64, 0, len(used))
	ats := make([]time.Time, 0, len(used))
	for id, at := range used {
		ids = append(ids, id)
		ats = append(ats, at)
	}
	_, err := db.pool.Exec(ctx, `
		UPDATE api_keys AS k SET last_used_at = u.at
		FROM unnest($1::bigint[], $2::timestamptz[]) AS u(id, at)
		WHERE k.id = u.id AND (k.last_used_at IS NULL OR k.last_used_at < u.at)`, ids, ats)
	return mapErr("mark keys used", err)
}

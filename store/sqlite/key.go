package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/mtai-dev/mtai/tenancy"
)

var _ tenancy.KeyStore = (*DB)(nil)

const keyColumns = `id, tenant_id, user_id, name, prefix, hash, created_at, last_used_at, expires_at, revoked_at,
	requests_per_minute, requests_per_hour, tokens_per_minute`

func scanKey(s scanner) (*tenancy.APIKey, error) {
	var (
		k                          tenancy.APIKey
		userID                     sql.NullInt64
		created                    string
		lastUsed, expires, revoked sql.NullString
	)
	if err := s.Scan(&k.ID, &k.TenantID, &userID, &k.Name, &k.Prefix, &k.Hash,
		&created, &lastUsed, &expires, &revoked,
		&k.RequestsPerMinute, &k.RequestsPerHour, &k.TokensPerMinute); err != nil {
		return nil, err
	}
	k.UserID = userID.Int64
	var err error
	if k.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if k.LastUsedAt, err = parseNullTime(lastUsed); err != nil {
		return nil, err
	}
	if k.ExpiresAt, err = parseNullTime(expires); err != nil {
		return nil, err
	}
	if k.RevokedAt, err = parseNullTime(revoked); err != nil {
		return nil, err
	}
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
	err := db.write.QueryRowContext(ctx, `
		INSERT INTO api_keys (tenant_id, user_id, name, prefix, hash, created_at, last_used_at, expires_at, revoked_at,
			requests_per_minute, requests_per_hour, tokens_per_minute)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		RETURNING id`,
		k.TenantID, nullID(k.UserID), k.Name, k.Prefix, k.Hash, formatTime(k.CreatedAt),
		nullTime(k.LastUsedAt), nullTime(k.ExpiresAt), nullTime(revokedAt),
		k.RequestsPerMinute, k.RequestsPerHour, k.TokensPerMinute,
	).Scan(&k.ID)
	if err == nil && k.Revoked {
		k.RevokedAt = revokedAt
	}
	return mapErr("create key", err)
}

// FindKeyByHash implements tenancy.KeyStore.
func (db *DB) FindKeyByHash(ctx context.Context, hash string) (*tenancy.APIKey, error) {
	k, err := scanKey(db.read.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE hash = ?`, hash))
	return k, mapErr("key", err)
}

// FindKeyByID implements tenancy.KeyStore.
func (db *DB) FindKeyByID(ctx context.Context, tenantID, id int64) (*tenancy.APIKey, error) {
	k, err := scanKey(db.read.QueryRowContext(ctx, `SELECT `+keyColumns+` FROM api_keys WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return k, mapErr(fmt.Sprintf("key %d", id), err)
}

// UpdateKey implements tenancy.KeyStore, in one transaction on the single
// write connection.
func (db *DB) UpdateKey(ctx context.Context, tenantID, id int64, fn func(*tenancy.APIKey) error) (*tenancy.APIKey, error) {
	var k *tenancy.APIKey
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		k, err = scanKey(tx.QueryRowContext(ctx,
			`SELECT `+keyColumns+` FROM api_keys WHERE tenant_id = ? AND id = ?`, tenantID, id))
		if err != nil {
			return mapErr(fmt.Sprintf("key %d", id), err)
		}
		if err := fn(k); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `
			UPDATE api_keys SET name = ?, requests_per_minute = ?, requests_per_hour = ?, tokens_per_minute = ?
			WHERE tenant_id = ? AND id = ?`,
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
	if err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM api_keys WHERE tenant_id = ?`, tenantID).Scan(&n); err != nil {
		return nil, 0, mapErr("count keys", err)
	}
	rows, err := db.read.QueryContext(ctx,
		`SELECT `+keyColumns+` FROM api_keys WHERE tenant_id = ? ORDER BY id LIMIT ? OFFSET ?`,
		tenantID, sqlLimit(limit), offset)
	if err != nil {
		return nil, 0, mapErr("find keys", err)
	}
	defer rows.Close()
	ks := []*tenancy.APIKey{}
	for rows.Next() {
		k, err := scanKey(rows)
		if err != nil {
			return nil, 0, mapErr("find keys", err)
		}
		ks = append(ks, k)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, mapErr("find keys", err)
	}
	return ks, n, nil
}

// RevokeKey implements tenancy.KeyStore.
func (db *DB) RevokeKey(ctx context.Context, tenantID, id int64, at time.Time) (*tenancy.APIKey, error) {
	k, err := scanKey(db.write.QueryRowContext(ctx, `
		UPDATE api_keys SET revoked_at = coalesce(revoked_at, ?)
		WHERE tenant_id = ? AND id = ?
		RETURNING `+keyColumns, formatTime(at), tenantID, id))
	return k, mapErr(fmt.Sprintf("key %d", id), err)
}

// MarkKeysUsed implements tenancy.KeyStore, in one transaction.
func (db *DB) MarkKeysUsed(ctx context.Context, used map[int64]time.Time) error {
	if len(used) == 0 {
		return nil
	}
	return db.inTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `
			UPDATE api_keys SET last_used_at = ?1
			WHERE id = ?2 AND (last_used_at IS NULL OR last_used_at < ?1)`)
		if err != nil {
			return mapErr("mark keys used", err)
		}
		defer stmt.Close()
		for id, at := range used {
			if _, err := stmt.ExecContext(ctx, formatTime(at), id); err != nil {
				return mapErr("mark keys used", err)
			}
		}
		return nil
	})
}

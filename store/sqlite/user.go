package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/mtai-dev/mtai/tenancy"
)

var _ tenancy.UserStore = (*DB)(nil)

const userColumns = `id, tenant_id, username, password_hash, role, disabled, created_at, updated_at`

func scanUser(s scanner) (*tenancy.User, error) {
	var (
		u                tenancy.User
		created, updated string
	)
	if err := s.Scan(&u.ID, &u.TenantID, &u.Username, &u.PasswordHash, &u.Role, &u.Disabled, &created, &updated); err != nil {
		return nil, err
	}
	var err error
	if u.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if u.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &u, nil
}

// CreateUser implements tenancy.UserStore.
func (db *DB) CreateUser(ctx context.Context, u *tenancy.User) error {
	err := db.write.QueryRowContext(ctx, `
		INSERT INTO users (tenant_id, username, password_hash, role, disabled, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?)
		RETURNING id`,
		u.TenantID, u.Username, u.PasswordHash, string(u.Role), u.Disabled,
		formatTime(u.CreatedAt), formatTime(u.UpdatedAt),
	).Scan(&u.ID)
	return mapErr("create user", err)
}

// FindUserByID implements tenancy.UserStore.
func (db *DB) FindUserByID(ctx context.Context, tenantID, id int64) (*tenancy.User, error) {
	u, err := scanUser(db.read.QueryRowContext(ctx,
		`SELECT `+userColumns+` FROM users WHERE tenant_id = ? AND id = ?`, tenantID, id))
	return u, mapErr(fmt.Sprintf("user %d", id), err)
}

// FindUserByName implements tenancy.UserStore.
func (db *DB) FindUserByName(ctx context.Context, tenantID int64, username string) (*tenancy.User, error) {
	u, err := scanUser(db.read.QueryRowContext(ctx,
		`SELECT `+userColumns+` FROM users WHERE tenant_id = ? AND username = ?`, tenantID, username))
	return u, mapErr(fmt.Sprintf("user %q", username), err)
}

// FindUsers implements tenancy.UserStore.
func (db *DB) FindUsers(ctx context.Context, f tenancy.UserFilter) ([]*tenancy.User, int, error) {
	if f.TenantID == 0 && !f.AllTenants {
		return nil, 0, errors.New("sqlite: find users: no tenant given")
	}
	const where = ` FROM users WHERE (? OR tenant_id = ?)`
	var n int
	if err := db.read.QueryRowContext(ctx, `SELECT count(*)`+where, f.AllTenants, f.TenantID).Scan(&n); err != nil {
		return nil, 0, mapErr("count users", err)
	}
	rows, err := db.read.QueryContext(ctx, `SELECT `+userColumns+where+` ORDER BY id LIMIT ? OFFSET ?`,
		f.AllTenants, f.TenantID, sqlLimit(f.Limit), f.Offset)
	if err != nil {
		return nil, 0, mapErr("find users", err)
	}
	defer rows.Close()
	us := []*tenancy.User{}
	for rows.Next() {
		u, err := scanUser(rows)
		if err != nil {
			return nil, 0, mapErr("find users", err)
		}
		us = append(us, u)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, mapErr("find users", err)
	}
	return us, n, nil
}

// UpdateUser implements tenancy.UserStore.
func (db *DB) UpdateUser(ctx context.Context, tenantID, id int64, fn func(*tenancy.User) error) (*tenancy.User, error) {
	var u *tenancy.User
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRowContext(ctx,
			`SELECT `+userColumns+` FROM users WHERE tenant_id = ? AND id = ?`, tenantID, id))
		if err != nil {
			return mapErr(fmt.Sprintf("user %d", id), err)
		}
		if err := fn(u); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `
			UPDATE users SET role = ?, disabled = ?, password_hash = ?, updated_at = ?
			WHERE tenant_id = ? AND id = ?`,
			string(u.Role), u.Disabled, u.PasswordHash, formatTime(u.UpdatedAt), tenantID, id)
		return mapErr(fmt.Sprintf("update user %d", id), err)
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mtai-dev/mtai/tenancy"
)

var _ tenancy.UserStore = (*DB)(nil)

const userColumns = `id, tenant_id, username, password_hash, role, disabled, created_at, updated_at`

func scanUser(row pgx.Row) (*tenancy.User, error) {
	var (
		u    tenancy.User
		role string
	)
	if err := row.Scan(&u.ID, &u.TenantID, &u.Username, &u.PasswordHash, &role, &u.Disabled, &u.CreatedAt, &u.UpdatedAt); err != nil {
		return nil, err
	}
	u.Role = tenancy.Role(role)
	u.CreatedAt, u.UpdatedAt = u.CreatedAt.UTC(), u.UpdatedAt.UTC()
	return &u, nil
}

// CreateUser implements tenancy.UserStore.
func (db *DB) CreateUser(ctx context.Context, u *tenancy.User) error {
	err := db.pool.QueryRow(ctx, `
		INSERT INTO users (tenant_id, username, password_hash, role, disabled, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7)
		RETURNING id`,
		u.TenantID, u.Username, u.PasswordHash, string(u.Role), u.Disabled, u.CreatedAt, u.UpdatedAt,
	).Scan(&u.ID)
	return mapErr("create user", err)
}

// FindUserByID implements tenancy.UserStore.
func (db *DB) FindUserByID(ctx context.Context, tenantID, id int64) (*tenancy.User, error) {
	u, err := scanUser(db.pool.QueryRow(ctx,
		`SELECT `+userColumns+` FROM users WHERE tenant_id = $1 AND id = $2`, tenantID, id))
	return u, mapErr(fmt.Sprintf("user %d", id), err)
}

// FindUserByName implements tenancy.UserStore.
func (db *DB) FindUserByName(ctx context.Context, tenantID int64, username string) (*tenancy.User, error) {
	u, err := scanUser(db.pool.QueryRow(ctx,
		`SELECT `+userColumns+` FROM users WHERE tenant_id = $1 AND username = $2`, tenantID, username))
	return u, mapErr(fmt.Sprintf("user %q", username), err)
}

// FindUsers implements tenancy.UserStore.
func (db *DB) FindUsers(ctx context.Context, f tenancy.UserFilter) ([]*tenancy.User, int, error) {
	if f.TenantID == 0 && !f.AllTenants {
		return nil, 0, errors.New("postgres: find users: no tenant given")
	}
	const where = ` FROM users WHERE ($1 OR tenant_id = $2)`
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*)`+where, f.AllTenants, f.TenantID).Scan(&n); err != nil {
		return nil, 0, mapErr("count users", err)
	}
	rows, err := db.pool.Query(ctx, `SELECT `+userColumns+where+` ORDER BY id LIMIT $3 OFFSET $4`,
		f.AllTenants, f.TenantID, sqlLimit(f.Limit), f.Offset)
	if err != nil {
		return nil, 0, mapErr("find users", err)
	}
	us, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*tenancy.User, error) { return scanUser(r) })
	if err != nil {
		return nil, 0, mapErr("find users", err)
	}
	return us, n, nil
}

// UpdateUser implements tenancy.UserStore. The row is locked from the read
// to the write.
func (db *DB) UpdateUser(ctx context.Context, tenantID, id int64, fn func(*tenancy.User) error) (*tenancy.User, error) {
	var u *tenancy.User
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		u, err = scanUser(tx.QueryRow(ctx,
			`SELECT `+userColumns+` FROM users WHERE tenant_id = $1 AND id = $2 FOR UPDATE`, tenantID, id))
		if err != nil {
			return mapErr(fmt.Sprintf("user %d", id), err)
		}
		if err := fn(u); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			UPDATE users SET role = $1, disabled = $2, password_hash = $3, updated_at = $4
			WHERE tenant_id = $5 AND id = $6`,
			string(u.Role), u.Disabled, u.PasswordHash, u.UpdatedAt, tenantID, id)
		return mapErr(fmt.Sprintf("update user %d", id), err)
	})
	if err != nil {
		return nil, err
	}
	return u, nil
}

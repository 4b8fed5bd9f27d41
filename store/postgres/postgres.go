// Package postgres is mtai's production relational store: PostgreSQL through
// pgx/v5's connection pool, used when DATABASE_URL is set (AWS RDS in
// production). It owns the PostgreSQL schema (versioned goose migrations
// embedded in the binary, kept equivalent to store/sqlite's) and implements
// the store interfaces the domain packages declare (tenancy.TenantStore,
// tenancy.UserStore, tenancy.KeyStore, ...).
package postgres

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/jackc/pgx/v5/stdlib"
	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"

	"github.com/mtai-dev/mtai/tenancy"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// DB is a pool of connections to one PostgreSQL database. It is safe for
// concurrent use; Close it when done.
type DB struct {
	pool *pgxpool.Pool
}

// Open connects to the database named by dsn (a postgres:// URL or a
// key=value string, as DATABASE_URL) and checks that it answers. It does not
// migrate: call Migrate.
func Open(ctx context.Context, dsn string) (*DB, error) {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres: parse DATABASE_URL: %w", err) // pgx redacts the password
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: connect: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres: connect to %s:%d: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Port, err)
	}
	return &DB{pool: pool}, nil
}

// Close closes every connection, waiting for those in use to be returned.
func (db *DB) Close() error {
	db.pool.Close()
	return nil
}

// Ping checks that the database answers (for /health).
func (db *DB) Ping(ctx context.Context) error {
	return db.pool.Ping(ctx)
}

// Pool returns the underlying pool, for packages of this adapter's later
// capabilities (usage events, conversations, ...) that need COPY or batches.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Migrate applies the migrations not yet applied, in order. Replicas that
// start together take turns through an advisory lock, so it is safe to call
// on every start.
func (db *DB) Migrate(ctx context.Context) error {
	return db.migrate(ctx, func(p *goose.Provider) error {
		_, err := p.Up(ctx)
		return err
	})
}

// MigrateDown rolls back the migrations above version (0: all of them),
// newest first. For operators and tests; it destroys data.
func (db *DB) MigrateDown(ctx context.Context, version int64) error {
	return db.migrate(ctx, func(p *goose.Provider) error {
		_, err := p.DownTo(ctx, version)
		return err
	})
}

func (db *DB) migrate(ctx context.Context, run func(*goose.Provider) error) error {
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockTimeout(1, 300))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	sqlDB := stdlib.OpenDBFromPool(db.pool) // closing it leaves the pool open
	defer sqlDB.Close()
	p, err := goose.NewProvider(goose.DialectPostgres, sqlDB, fsys, goose.WithSessionLocker(locker))
	if err != nil {
		return fmt.Errorf("postgres: migrations: %w", err)
	}
	if err := run(p); err != nil {
		return fmt.Errorf("postgres: migrate: %w", err)
	}
	return nil
}

// mapErr turns driver errors into the domain's sentinels, wrapped with what.
func mapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, tenancy.ErrNotFound)
	}
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "23505": // unique_violation
			return fmt.Errorf("%s: %w", what, tenancy.ErrConflict)
		case "23503": // foreign_key_violation
			return fmt.Errorf("%s: a referenced row does not exist: %w", what, tenancy.ErrNotFound)
		}
	}
	return fmt.Errorf("postgres: %s: %w", what, err)
}

// utc returns t in UTC (pgx returns timestamptz in the local zone).
func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}

// nullID maps id 0 to SQL NULL.
func nullID(id int64) *int64 {
	if id == 0 {
		return nil
	}
	return &id
}

// sqlLimit maps limit 0 (no limit) to NULL (LIMIT NULL is no limit).
func sqlLimit(limit int) *int {
	if limit <= 0 {
		return nil
	}
	return &limit
}

// inTx runs fn in a transaction, committing when it returns nil.
func (db *DB) inTx(ctx context.Context, fn func(pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, db.pool, fn)
}

// Package sqlite is mtai's embedded relational store: one SQLite file in the
// data dir (modernc.org/sqlite, no cgo), used when DATABASE_URL is unset. It
// owns the SQLite schema (versioned goose migrations embedded in the binary,
// kept equivalent to store/postgres's) and implements the store interfaces
// the domain packages declare (tenancy.TenantStore, tenancy.UserStore,
// tenancy.KeyStore, ...).
//
// The file runs in WAL mode with foreign keys on and a busy timeout. Writes
// go through one connection, so they never fight over the write lock; reads
// use a small pool of read-only connections and do not wait for writes.
package sqlite

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/pressly/goose/v3"
	msqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"github.com/mtai-dev/mtai/tenancy"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// busyTimeout is how long a statement waits for a lock before failing.
const busyTimeout = 5 * time.Second

// DB is an open SQLite database. It is safe for concurrent use; Close it
// when done.
type DB struct {
	path  string
	write *sql.DB // one connection: every write and every transaction
	read  *sql.DB // read-only connections
}

// Open opens the SQLite database file at path, creating it (mode 0600, and
// its directory, 0700) if needed. It does not migrate: call Migrate. An
// in-memory database is not supported: the read and write connections must
// share the file.
func Open(ctx context.Context, path string) (*DB, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("sqlite: %q: want a plain file path", path)
	}
	// The file holds password and key hashes: readable by its owner only
	// (SQLite gives the -wal and -shm files the same mode).
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("sqlite: %w", err)
	}
	f.Close()
	params := url.Values{}
	params.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	params.Add("_pragma", "foreign_keys(1)")
	params.Add("_pragma", "journal_mode(WAL)")
	params.Add("_pragma", "synchronous(NORMAL)")
	params.Set("_txlock", "immediate") // a transaction takes the write lock at BEGIN
	write, err := sql.Open("sqlite", "file:"+path+"?"+params.Encode())
	if err != nil {
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	write.SetMaxOpenConns(1)
	write.SetConnMaxIdleTime(0)
	if err := write.PingContext(ctx); err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}

	params = url.Values{}
	params.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	params.Add("_pragma", "foreign_keys(1)")
	params.Set("_query_only", "1")
	read, err := sql.Open("sqlite", "file:"+path+"?"+params.Encode())
	if err != nil {
		write.Close()
		return nil, fmt.Errorf("sqlite: open %s: %w", path, err)
	}
	read.SetMaxOpenConns(max(4, runtime.GOMAXPROCS(0)))
	return &DB{path: path, write: write, read: read}, nil
}

// Close closes every connection.
func (db *DB) Close() error {
	return errors.Join(db.read.Close(), db.write.Close())
}

// Migrate applies the migrations not yet applied, in order. It is safe to
// call on every start.
func (db *DB) Migrate(ctx context.Context) error {
	return db.migrate(func(p *goose.Provider) error {
		_, err := p.Up(ctx)
		return err
	})
}

// MigrateDown rolls back the migrations above version (0: all of them),
// newest first. For operators and tests; it destroys data.
func (db *DB) MigrateDown(ctx context.Context, version int64) error {
	return db.migrate(func(p *goose.Provider) error {
		_, err := p.DownTo(ctx, version)
		return err
	})
}

// migrate runs goose on the write connection. The provider is not closed:
// that would close db.write.
func (db *DB) migrate(run func(*goose.Provider) error) error {
	fsys, err := fs.Sub(migrationFiles, "migrations")
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	p, err := goose.NewProvider(goose.DialectSQLite3, db.write, fsys)
	if err != nil {
		return fmt.Errorf("sqlite: migrations: %w", err)
	}
	if err := run(p); err != nil {
		return fmt.Errorf("sqlite: migrate: %w", err)
	}
	return nil
}

// Ping checks that the database answers (for /health).
func (db *DB) Ping(ctx context.Context) error {
	return db.read.PingContext(ctx)
}

// timeLayout stores times as fixed-width UTC text, so that comparing the
// text compares the times.
const timeLayout = "2006-01-02T15:04:05.000000Z"

func formatTime(t time.Time) string {
	return t.UTC().Format(timeLayout)
}

// nullTime formats t, or returns nil (SQL NULL) for a nil t.
func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return formatTime(*t)
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("sqlite: stored time %q: %w", s, err)
	}
	return t, nil
}

func parseNullTime(s sql.NullString) (*time.Time, error) {
	if !s.Valid {
		return nil, nil
	}
	t, err := parseTime(s.String)
	return &t, err
}

// nullID maps id 0 to SQL NULL.
func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

// sqlLimit maps limit 0 (no limit) to SQLite's -1.
func sqlLimit(limit int) int {
	if limit <= 0 {
		return -1
	}
	return limit
}

// mapErr turns driver errors into the domain's sentinels, wrapped with what.
func mapErr(what string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("%s: %w", what, tenancy.ErrNotFound)
	}
	var se *msqlite.Error
	if errors.As(err, &se) {
		switch se.Code() {
		case sqlite3.SQLITE_CONSTRAINT_UNIQUE, sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY:
			return fmt.Errorf("%s: %w", what, tenancy.ErrConflict)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%s: a referenced row does not exist: %w", what, tenancy.ErrNotFound)
		}
	}
	return fmt.Errorf("sqlite: %s: %w", what, err)
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// inTx runs fn in a write transaction, committing when it returns nil.
func (db *DB) inTx(ctx context.Context, fn func(*sql.Tx) error) error {
	tx, err := db.write.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("sqlite: begin: %w", err)
	}
	if err := fn(tx); err != nil {
		tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("sqlite: commit: %w", err)
	}
	return nil
}

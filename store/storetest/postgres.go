package storetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// DefaultPostgresURL is the server tests use unless MTAI_TEST_DATABASE_URL
// names another (it must let its user create databases).
const DefaultPostgresURL = "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"

// NewPostgresDatabase creates an empty database mtai_test_<random> on the
// test server and returns its connection string; it drops the database when
// t ends. An unreachable server fails t with how to start one: store tests
// never skip silently.
func NewPostgresDatabase(t *testing.T) string {
	t.Helper()
	admin := os.Getenv("MTAI_TEST_DATABASE_URL")
	if admin == "" {
		admin = DefaultPostgresURL
	}
	var b [6]byte
	rand.Read(b[:])
	name := "mtai_test_" + hex.EncodeToString(b[:])

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("PostgreSQL unreachable (%v).\n"+
			"Start the test services with scripts/services.sh, or point MTAI_TEST_DATABASE_URL "+
			"at a server whose user may create databases (default %s).", err, DefaultPostgresURL)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			t.Errorf("drop test database %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Errorf("drop test database %s: %v", name, err)
		}
	})
	return withDatabase(t, admin, name)
}

// withDatabase returns dsn (a URL or key=value string) naming database name.
func withDatabase(t *testing.T, dsn, name string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			t.Fatalf("MTAI_TEST_DATABASE_URL: %v", err)
		}
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name // a later key wins
}

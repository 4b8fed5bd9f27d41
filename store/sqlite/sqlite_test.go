package sqlite_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/mtai-dev/mtai/store/sqlite"
	"github.com/mtai-dev/mtai/store/storetest"
)

// open returns a migrated database in a new temporary directory, closed when
// t ends.
func open(t *testing.T) *sqlite.DB {
	t.Helper()
	db, err := sqlite.Open(t.Context(), filepath.Join(t.TempDir(), "mtai.db"))
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	t.Cleanup(func() {
		if err := db.Close(); err != nil {
			t.Errorf("Close = %v", err)
		}
	})
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate = %v", err)
	}
	return db
}

func TestConformance(t *testing.T) {
	t.Parallel()
	storetest.Run(t, func(t *testing.T) storetest.Stores {
		db := open(t)
		return storetest.Stores{Tenants: db, Users: db, Keys: db, Usage: db, Conversations: db, Stats: db}
	})
}

func TestMigrate(t *testing.T) {
	t.Parallel()
	db := open(t)
	// Again: nothing to do.
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate twice = %v", err)
	}
	// Down to nothing and up again.
	if err := db.MigrateDown(t.Context(), 0); err != nil {
		t.Fatalf("MigrateDown(0) = %v", err)
	}
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate after down = %v", err)
	}
}

func TestOpenRefusesNonFiles(t *testing.T) {
	t.Parallel()
	for _, path := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if db, err := sqlite.Open(t.Context(), path); err == nil {
			db.Close()
			t.Errorf("Open(%q) = nil error, want a refusal", path)
		}
	}
}

func TestPragmas(t *testing.T) {
	t.Parallel()
	db := open(t)
	got, err := db.Pragmas(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"journal_mode": "wal", "foreign_keys": "1", "busy_timeout": "5000", "query_only": "0",
		"read.journal_mode": "wal", "read.foreign_keys": "1", "read.busy_timeout": "5000", "read.query_only": "1",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("pragma %s = %q, want %q", k, got[k], v)
		}
	}
}

func TestOpenCreatesPrivateFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "sub", "dir", "mtai.db")
	db, err := sqlite.Open(t.Context(), path)
	if err != nil {
		t.Fatalf("Open(in a missing directory) = %v", err)
	}
	defer db.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("database file mode = %v, want 0600", st.Mode().Perm())
	}
}

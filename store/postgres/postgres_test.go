package postgres_test

import (
	"sync"
	"testing"

	"github.com/mtai-dev/mtai/store/postgres"
	"github.com/mtai-dev/mtai/store/storetest"
)

// open returns a migrated connection to a new database, dropped when t
// ends. It fails (never skips) when PostgreSQL is unreachable.
func open(t *testing.T) *postgres.DB {
	t.Helper()
	db, err := postgres.Open(t.Context(), storetest.NewPostgresDatabase(t))
	if err != nil {
		t.Fatalf("Open = %v", err)
	}
	t.Cleanup(func() { db.Close() }) // runs before the database is dropped
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
	dsn := storetest.NewPostgresDatabase(t)
	// Replicas starting together: the advisory lock makes them take turns.
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			db, err := postgres.Open(t.Context(), dsn)
			if err != nil {
				t.Errorf("Open = %v", err)
				return
			}
			defer db.Close()
			if err := db.Migrate(t.Context()); err != nil {
				t.Errorf("concurrent Migrate = %v", err)
			}
		})
	}
	wg.Wait()
	db, err := postgres.Open(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.MigrateDown(t.Context(), 0); err != nil {
		t.Fatalf("MigrateDown(0) = %v", err)
	}
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatalf("Migrate after down = %v", err)
	}
}

package billing_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/store/sqlite"
)

// TestMeterSQLite runs the meter into the embedded store: every event
// recorded lands once, and it reports the rate (batched INSERTs in one
// transaction per batch).
func TestMeterSQLite(t *testing.T) {
	dir := t.TempDir()
	db, err := sqlite.Open(t.Context(), filepath.Join(dir, "mtai.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Migrate(t.Context()); err != nil {
		t.Fatal(err)
	}
	m, err := billing.NewMeter(db, billing.MeterConfig{Dir: filepath.Join(dir, "usage")})
	if err != nil {
		t.Fatal(err)
	}
	n := 50_000
	if testing.Short() || billing.RaceEnabled { // SQLite (C translated to Go) is slow under the race detector
		n = 5_000
	}
	start := time.Now()
	for i := range n {
		record(m, i)
	}
	flushWithin(t, m, time.Minute)
	elapsed := time.Since(start)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := m.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := db.UsageEvents(t.Context(), billing.UsageQuery{AllTenants: true})
	if err != nil {
		t.Fatal(err)
	}
	rs, err := db.UsageRollups(t.Context(), billing.UsageQuery{AllTenants: true})
	if err != nil {
		t.Fatal(err)
	}
	var rolled int64
	for _, r := range rs {
		rolled += r.Requests
	}
	t.Logf("%d events into SQLite in %v: %.0f events/s", n, elapsed.Round(time.Millisecond), float64(n)/elapsed.Seconds())
	if len(rows) != n || rolled != int64(n) {
		t.Errorf("%d rows, rollups count %d; want %d", len(rows), rolled, n)
	}
}

// Command seedusage seeds an mtai store with admintest's tenants, keys and
// usage events, for the dashboard's browser test (scripts/test-browser.sh):
//
//	seedusage -db DATA_DIR/mtai.db      # the embedded SQLite store
//	seedusage -database-url postgres://...
//
// The store must be migrated already (a gateway started on it once).
package main

import (
	"context"
	"crypto/rand"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/mtai-dev/mtai/admin/admintest"
	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/store/postgres"
	"github.com/mtai-dev/mtai/store/sqlite"
	"github.com/mtai-dev/mtai/tenancy"
)

func main() {
	dbPath := flag.String("db", "", "SQLite database file")
	dbURL := flag.String("database-url", "", "PostgreSQL connection string")
	flag.Parse()
	if err := run(*dbPath, *dbURL); err != nil {
		fmt.Fprintln(os.Stderr, "seedusage:", err)
		os.Exit(1)
	}
}

func run(dbPath, dbURL string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var stores tenancy.Stores
	var w billing.UsageWriter
	switch {
	case dbURL != "":
		db, err := postgres.Open(ctx, dbURL)
		if err != nil {
			return err
		}
		defer db.Close()
		stores, w = tenancy.Stores{Tenants: db, Users: db, Keys: db}, db
	case dbPath != "":
		db, err := sqlite.Open(ctx, dbPath)
		if err != nil {
			return err
		}
		defer db.Close()
		stores, w = tenancy.Stores{Tenants: db, Users: db, Keys: db}, db
	default:
		return fmt.Errorf("-db or -database-url is required")
	}
	secret := make([]byte, 32)
	rand.Read(secret)
	issuer, err := tenancy.NewIssuer(secret, 0, nil)
	if err != nil {
		return err
	}
	svc, err := tenancy.NewService(tenancy.ServiceConfig{Stores: stores, Issuer: issuer})
	if err != nil {
		return err
	}
	f, err := admintest.Seed(ctx, svc, w, time.Now())
	if err != nil {
		return err
	}
	fmt.Printf("seeded tenants %s (%d) and %s (%d), 6 usage events\n", f.Acme.Name, f.Acme.ID, f.Globex.Name, f.Globex.ID)
	return nil
}

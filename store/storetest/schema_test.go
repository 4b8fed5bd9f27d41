package storetest_test

import (
	"database/sql"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/mtai-dev/mtai/store/postgres"
	"github.com/mtai-dev/mtai/store/sqlite"
	"github.com/mtai-dev/mtai/store/storetest"
)

// column is what must match between the dialects.
type column struct {
	table, name string
	notNull     bool
}

// TestSchemasEquivalent migrates both dialects and checks that they have the
// same tables, with the same columns and nullability, so that a migration
// added to one folder and forgotten in the other fails here.
func TestSchemasEquivalent(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	path := filepath.Join(t.TempDir(), "mtai.db")
	sdb, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer sdb.Close()
	if err := sdb.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	raw, err := sql.Open("sqlite", "file:"+path+"?_query_only=1")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	rows, err := raw.QueryContext(ctx, `
		SELECT m.name, p.name, p."notnull" OR p.pk
		FROM sqlite_schema AS m, pragma_table_info(m.name) AS p
		WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite_%' AND m.name != 'goose_db_version'`)
	if err != nil {
		t.Fatal(err)
	}
	var lite []column
	for rows.Next() {
		var c column
		if err := rows.Scan(&c.table, &c.name, &c.notNull); err != nil {
			t.Fatal(err)
		}
		lite = append(lite, c)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}

	dsn := storetest.NewPostgresDatabase(t)
	pdb, err := postgres.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer pdb.Close()
	if err := pdb.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	prows, err := pdb.Pool().Query(ctx, `
		SELECT table_name, column_name, is_nullable = 'NO'
		FROM information_schema.columns
		WHERE table_schema = 'public' AND table_name != 'goose_db_version'`)
	if err != nil {
		t.Fatal(err)
	}
	pg, err := pgx.CollectRows(prows, func(r pgx.CollectableRow) (column, error) {
		var c column
		err := r.Scan(&c.table, &c.name, &c.notNull)
		return c, err
	})
	if err != nil {
		t.Fatal(err)
	}

	less := func(a, b column) int {
		if a.table != b.table {
			return strings.Compare(a.table, b.table)
		}
		return strings.Compare(a.name, b.name)
	}
	slices.SortFunc(lite, less)
	slices.SortFunc(pg, less)
	if len(lite) == 0 {
		t.Fatal("sqlite schema has no columns")
	}
	if !slices.Equal(lite, pg) {
		t.Errorf("schemas differ:\n sqlite:   %v\n postgres: %v", lite, pg)
	}
}

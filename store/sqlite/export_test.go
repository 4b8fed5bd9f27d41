package sqlite

import "context"

// Pragmas returns the settings that Open promises, as seen by the write
// connection, and by the read connections with a "read." prefix.
func (db *DB) Pragmas(ctx context.Context) (map[string]string, error) {
	out := map[string]string{}
	for _, p := range []string{"journal_mode", "foreign_keys", "busy_timeout", "query_only"} {
		var v string
		if err := db.write.QueryRowContext(ctx, "PRAGMA "+p).Scan(&v); err != nil {
			return nil, err
		}
		out[p] = v
		if err := db.read.QueryRowContext(ctx, "PRAGMA "+p).Scan(&v); err != nil {
			return nil, err
		}
		out["read."+p] = v
	}
	return out, nil
}

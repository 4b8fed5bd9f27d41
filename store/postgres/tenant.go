package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/mtai-dev/mtai/tenancy"
)

var _ tenancy.TenantStore = (*DB)(nil)

const tenantColumns = `id, name, display_name, default_model, allowed_models,
	requests_per_minute, requests_per_hour, tokens_per_minute, monthly_budget_micro_usd,
	system_prompt, rag_enabled, rag_top_k, rag_chunk_size, rag_chunk_overlap,
	disabled, created_at, updated_at`

func scanTenant(row pgx.Row) (*tenancy.Tenant, error) {
	var (
		t      tenancy.Tenant
		budget int64
	)
	err := row.Scan(&t.ID, &t.Name, &t.DisplayName, &t.DefaultModel, &t.AllowedModels,
		&t.RequestsPerMinute, &t.RequestsPerHour, &t.TokensPerMinute, &budget,
		&t.SystemPrompt, &t.RAG.Enabled, &t.RAG.TopK, &t.RAG.ChunkSize, &t.RAG.ChunkOverlap,
		&t.Disabled, &t.CreatedAt, &t.UpdatedAt)
	if err != nil {
		return nil, err
	}
	t.MonthlyBudget = tenancy.MicroUSD(budget)
	if t.AllowedModels == nil {
		t.AllowedModels = []string{}
	}
	t.CreatedAt, t.UpdatedAt = t.CreatedAt.UTC(), t.UpdatedAt.UTC()
	return &t, nil
}

func models(m []string) []string {
	if m == nil {
		return []string{}
	}
	return m
}

// CreateTenant implements tenancy.TenantStore.
func (db *DB) CreateTenant(ctx context.Context, t *tenancy.Tenant) error {
	err := db.pool.QueryRow(ctx, `
		INSERT INTO tenants (name, display_name, default_model, allowed_models,
			requests_per_minute, requests_per_hour, tokens_per_minute, monthly_budget_micro_usd,
			system_prompt, rag_enabled, rag_top_k, rag_chunk_size, rag_chunk_overlap,
			disabled, created_at, updated_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
		RETURNING id`,
		t.Name, t.DisplayName, t.DefaultModel, models(t.AllowedModels),
		t.RequestsPerMinute, t.RequestsPerHour, t.TokensPerMinute, int64(t.MonthlyBudget),
		t.SystemPrompt, t.RAG.Enabled, t.RAG.TopK, t.RAG.ChunkSize, t.RAG.ChunkOverlap,
		t.Disabled, t.CreatedAt, t.UpdatedAt,
	).Scan(&t.ID)
	return mapErr("create tenant", err)
}

// FindTenantByID implements tenancy.TenantStore.
func (db *DB) FindTenantByID(ctx context.Context, id int64) (*tenancy.Tenant, error) {
	t, err := scanTenant(db.pool.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = $1`, id))
	return t, mapErr(fmt.Sprintf("tenant %d", id), err)
}

// FindTenantByName implements tenancy.TenantStore.
func (db *DB) FindTenantByName(ctx context.Context, name string) (*tenancy.Tenant, error) {
	t, err := scanTenant(db.pool.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE name = $1`, name))
	return t, mapErr(fmt.Sprintf("tenant %q", name), err)
}

// FindTenants implements tenancy.TenantStore.
func (db *DB) FindTenants(ctx context.Context, f tenancy.TenantFilter) ([]*tenancy.Tenant, int, error) {
	var n int
	if err := db.pool.QueryRow(ctx, `SELECT count(*) FROM tenants`).Scan(&n); err != nil {
		return nil, 0, mapErr("count tenants", err)
	}
	rows, err := db.pool.Query(ctx, `SELECT `+tenantColumns+` FROM tenants ORDER BY id LIMIT $1 OFFSET $2`,
		sqlLimit(f.Limit), f.Offset)
	if err != nil {
		return nil, 0, mapErr("find tenants", err)
	}
	ts, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (*tenancy.Tenant, error) { return scanTenant(r) })
	if err != nil {
		return nil, 0, mapErr("find tenants", err)
	}
	return ts, n, nil
}

// UpdateTenant implements tenancy.TenantStore. The row is locked (SELECT
// ... FOR UPDATE) from the read to the write.
func (db *DB) UpdateTenant(ctx context.Context, id int64, fn func(*tenancy.Tenant) error) (*tenancy.Tenant, error) {
	var t *tenancy.Tenant
	err := db.inTx(ctx, func(tx pgx.Tx) error {
		var err error
		t, err = scanTenant(tx.QueryRow(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = $1 FOR UPDATE`, id))
		if err != nil {
			return mapErr(fmt.Sprintf("tenant %d", id), err)
		}
		if err := fn(t); err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `
			UPDATE tenants SET display_name = $1, default_model = $2, allowed_models = $3,
				requests_per_minute = $4, requests_per_hour = $5, tokens_per_minute = $6,
				monthly_budget_micro_usd = $7, system_prompt = $8, rag_enabled = $9, rag_top_k = $10,
				rag_chunk_size = $11, rag_chunk_overlap = $12, disabled = $13, updated_at = $14
			WHERE id = $15`,
			t.DisplayName, t.DefaultModel, models(t.AllowedModels),
			t.RequestsPerMinute, t.RequestsPerHour, t.TokensPerMinute,
			int64(t.MonthlyBudget), t.SystemPrompt, t.RAG.Enabled, t.RAG.TopK,
			t.RAG.ChunkSize, t.RAG.ChunkOverlap, t.Disabled, t.UpdatedAt, id)
		return mapErr(fmt.Sprintf("update tenant %d", id), err)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/mtai-dev/mtai/tenancy"
)

var _ tenancy.TenantStore = (*DB)(nil)

const tenantColumns = `id, name, display_name, default_model, allowed_models,
	requests_per_minute, requests_per_hour, tokens_per_minute, monthly_budget_micro_usd,
	system_prompt, rag_enabled, rag_top_k, rag_chunk_size, rag_chunk_overlap,
	disabled, created_at, updated_at`

func scanTenant(s scanner) (*tenancy.Tenant, error) {
	var (
		t                tenancy.Tenant
		models           string
		created, updated string
	)
	err := s.Scan(&t.ID, &t.Name, &t.DisplayName, &t.DefaultModel, &models,
		&t.RequestsPerMinute, &t.RequestsPerHour, &t.TokensPerMinute, &t.MonthlyBudget,
		&t.SystemPrompt, &t.RAG.Enabled, &t.RAG.TopK, &t.RAG.ChunkSize, &t.RAG.ChunkOverlap,
		&t.Disabled, &created, &updated)
	if err != nil {
		return nil, err
	}
	t.AllowedModels = []string{}
	if err := json.Unmarshal([]byte(models), &t.AllowedModels); err != nil {
		return nil, fmt.Errorf("tenant %d: allowed_models: %w", t.ID, err)
	}
	if t.AllowedModels == nil {
		t.AllowedModels = []string{}
	}
	if t.CreatedAt, err = parseTime(created); err != nil {
		return nil, err
	}
	if t.UpdatedAt, err = parseTime(updated); err != nil {
		return nil, err
	}
	return &t, nil
}

func modelsJSON(models []string) string {
	if len(models) == 0 {
		return "[]"
	}
	b, _ := json.Marshal(models) // []string always marshals
	return string(b)
}

// CreateTenant implements tenancy.TenantStore.
func (db *DB) CreateTenant(ctx context.Context, t *tenancy.Tenant) error {
	err := db.write.QueryRowContext(ctx, `
		INSERT INTO tenants (name, display_name, default_model, allowed_models,
			requests_per_minute, requests_per_hour, tokens_per_minute, monthly_budget_micro_usd,
			system_prompt, rag_enabled, rag_top_k, rag_chunk_size, rag_chunk_overlap,
			disabled, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
		RETURNING id`,
		t.Name, t.DisplayName, t.DefaultModel, modelsJSON(t.AllowedModels),
		t.RequestsPerMinute, t.RequestsPerHour, t.TokensPerMinute, int64(t.MonthlyBudget),
		t.SystemPrompt, t.RAG.Enabled, t.RAG.TopK, t.RAG.ChunkSize, t.RAG.ChunkOverlap,
		t.Disabled, formatTime(t.CreatedAt), formatTime(t.UpdatedAt),
	).Scan(&t.ID)
	return mapErr("create tenant", err)
}

// FindTenantByID implements tenancy.TenantStore.
func (db *DB) FindTenantByID(ctx context.Context, id int64) (*tenancy.Tenant, error) {
	t, err := scanTenant(db.read.QueryRowContext(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = ?`, id))
	return t, mapErr(fmt.Sprintf("tenant %d", id), err)
}

// FindTenantByName implements tenancy.TenantStore.
func (db *DB) FindTenantByName(ctx context.Context, name string) (*tenancy.Tenant, error) {
	t, err := scanTenant(db.read.QueryRowContext(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE name = ?`, name))
	return t, mapErr(fmt.Sprintf("tenant %q", name), err)
}

// FindTenants implements tenancy.TenantStore.
func (db *DB) FindTenants(ctx context.Context, f tenancy.TenantFilter) ([]*tenancy.Tenant, int, error) {
	var n int
	if err := db.read.QueryRowContext(ctx, `SELECT count(*) FROM tenants`).Scan(&n); err != nil {
		return nil, 0, mapErr("count tenants", err)
	}
	rows, err := db.read.QueryContext(ctx, `SELECT `+tenantColumns+` FROM tenants ORDER BY id LIMIT ? OFFSET ?`,
		sqlLimit(f.Limit), f.Offset)
	if err != nil {
		return nil, 0, mapErr("find tenants", err)
	}
	defer rows.Close()
	ts := []*tenancy.Tenant{}
	for rows.Next() {
		t, err := scanTenant(rows)
		if err != nil {
			return nil, 0, mapErr("find tenants", err)
		}
		ts = append(ts, t)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, mapErr("find tenants", err)
	}
	return ts, n, nil
}

// UpdateTenant implements tenancy.TenantStore.
func (db *DB) UpdateTenant(ctx context.Context, id int64, fn func(*tenancy.Tenant) error) (*tenancy.Tenant, error) {
	var t *tenancy.Tenant
	err := db.inTx(ctx, func(tx *sql.Tx) error {
		var err error
		t, err = scanTenant(tx.QueryRowContext(ctx, `SELECT `+tenantColumns+` FROM tenants WHERE id = ?`, id))
		if err != nil {
			return mapErr(fmt.Sprintf("tenant %d", id), err)
		}
		if err := fn(t); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, `
			UPDATE tenants SET display_name = ?, default_model = ?, allowed_models = ?,
				requests_per_minute = ?, requests_per_hour = ?, tokens_per_minute = ?,
				monthly_budget_micro_usd = ?, system_prompt = ?, rag_enabled = ?, rag_top_k = ?,
				rag_chunk_size = ?, rag_chunk_overlap = ?, disabled = ?, updated_at = ?
			WHERE id = ?`,
			t.DisplayName, t.DefaultModel, modelsJSON(t.AllowedModels),
			t.RequestsPerMinute, t.RequestsPerHour, t.TokensPerMinute,
			int64(t.MonthlyBudget), t.SystemPrompt, t.RAG.Enabled, t.RAG.TopK,
			t.RAG.ChunkSize, t.RAG.ChunkOverlap, t.Disabled, formatTime(t.UpdatedAt), id)
		return mapErr(fmt.Sprintf("update tenant %d", id), err)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

package tenancy

import (
	"context"
	"fmt"
	"time"
	"unicode/utf8"
)

// Tenant is an organisation using the gateway: its name (the X-Tenant-ID
// value) and its configuration. JSON field names are those of api-v1.md.
// A Tenant returned by a store or the Service belongs to the caller, who may
// change it; the store keeps no reference to it.
type Tenant struct {
	// ID is assigned by the store; 0 before creation.
	ID int64 `json:"id"`
	// Name identifies the tenant in X-Tenant-ID and JWTs: 1 to 63 lowercase
	// letters, digits, '-' or '_'. Unique, and never changes once created.
	Name string `json:"name"`
	// DisplayName is for humans; may be empty.
	DisplayName string `json:"display_name"`
	// DefaultModel is used when a request names no model; empty: requests
	// must name one.
	DefaultModel string `json:"default_model"`
	// AllowedModels lists the models the tenant may use; empty means every
	// routed model. Stores and the Service return a non-nil slice, so that
	// JSON shows [] rather than null.
	AllowedModels []string `json:"allowed_models"`
	// RequestsPerMinute, RequestsPerHour and TokensPerMinute are rate limits;
	// 0 means no limit.
	RequestsPerMinute int64 `json:"requests_per_minute"`
	RequestsPerHour   int64 `json:"requests_per_hour"`
	TokensPerMinute   int64 `json:"tokens_per_minute"`
	// MonthlyBudget caps the spend per calendar month; 0 means no budget.
	// Stored as integer micro-dollars, shown in JSON as dollars.
	MonthlyBudget MicroUSD `json:"monthly_budget_usd"`
	// SystemPrompt, when set, is placed first in every chat request.
	SystemPrompt string `json:"system_prompt"`
	// RAG configures retrieval; see DefaultRAG for the defaults.
	RAG RAGConfig `json:"rag"`
	// Disabled tenants are deleted as far as clients can tell: their keys and
	// tokens stop working. The row stays so that usage history keeps its
	// tenant and the name is never reused.
	Disabled bool `json:"disabled"`
	// CreatedAt and UpdatedAt are set by the Service (UTC, microseconds).
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// RAGConfig is a tenant's retrieval-augmented generation settings.
type RAGConfig struct {
	// Enabled turns retrieval on for every chat request of the tenant (a
	// request can still ask for it with use_rag when off).
	Enabled bool `json:"enabled"`
	// TopK is how many chunks are injected; 1 to 100.
	TopK int `json:"top_k"`
	// ChunkSize is the size of a chunk, in tokens; 16 to 32768.
	ChunkSize int `json:"chunk_size"`
	// ChunkOverlap is how many tokens two neighbouring chunks share; 0 to
	// ChunkSize-1.
	ChunkOverlap int `json:"chunk_overlap"`
}

// DefaultRAG returns the RAG settings of a new tenant: off, 4 chunks of 512
// tokens overlapping by 64.
func DefaultRAG() RAGConfig {
	return RAGConfig{Enabled: false, TopK: 4, ChunkSize: 512, ChunkOverlap: 64}
}

// Limits on tenant fields, checked by Validate.
const (
	maxNameLen         = 63
	maxDisplayNameLen  = 200
	maxModelLen        = 200
	maxAllowedModels   = 1000
	maxSystemPromptLen = 64 << 10
	maxTopK            = 100
	minChunkSize       = 16
	maxChunkSize       = 32768
)

// ValidateTenantName reports whether name is a valid tenant name: 1 to 63
// characters among lowercase ASCII letters, digits, '-' and '_'.
func ValidateTenantName(name string) error {
	if name == "" || len(name) > maxNameLen {
		return invalid("name", "must be 1 to 63 characters")
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return invalid("name", "may contain only lowercase letters, digits, '-' and '_'")
		}
	}
	return nil
}

// Validate checks every field of t and returns a *ValidationError naming the
// first one at fault.
func (t *Tenant) Validate() error {
	if err := ValidateTenantName(t.Name); err != nil {
		return err
	}
	if err := checkText("display_name", t.DisplayName, maxDisplayNameLen); err != nil {
		return err
	}
	if err := checkText("default_model", t.DefaultModel, maxModelLen); err != nil {
		return err
	}
	if len(t.AllowedModels) > maxAllowedModels {
		return invalid("allowed_models", fmt.Sprintf("at most %d models", maxAllowedModels))
	}
	seen := make(map[string]struct{}, len(t.AllowedModels))
	for _, m := range t.AllowedModels {
		if m == "" {
			return invalid("allowed_models", "model names must not be empty")
		}
		if err := checkText("allowed_models", m, maxModelLen); err != nil {
			return err
		}
		if _, dup := seen[m]; dup {
			return invalid("allowed_models", fmt.Sprintf("%q is listed twice", m))
		}
		seen[m] = struct{}{}
	}
	if t.DefaultModel != "" && len(t.AllowedModels) > 0 {
		if _, ok := seen[t.DefaultModel]; !ok {
			return invalid("default_model", "must be one of allowed_models")
		}
	}
	switch {
	case t.RequestsPerMinute < 0:
		return invalid("requests_per_minute", "must not be negative")
	case t.RequestsPerHour < 0:
		return invalid("requests_per_hour", "must not be negative")
	case t.TokensPerMinute < 0:
		return invalid("tokens_per_minute", "must not be negative")
	case t.MonthlyBudget < 0:
		return invalid("monthly_budget_usd", "must not be negative")
	}
	if err := checkText("system_prompt", t.SystemPrompt, maxSystemPromptLen); err != nil {
		return err
	}
	return t.RAG.Validate()
}

// Validate checks the RAG settings; fields are reported as "rag.top_k", ...
func (r RAGConfig) Validate() error {
	switch {
	case r.TopK < 1 || r.TopK > maxTopK:
		return invalid("rag.top_k", fmt.Sprintf("must be 1 to %d", maxTopK))
	case r.ChunkSize < minChunkSize || r.ChunkSize > maxChunkSize:
		return invalid("rag.chunk_size", fmt.Sprintf("must be %d to %d", minChunkSize, maxChunkSize))
	case r.ChunkOverlap < 0 || r.ChunkOverlap >= r.ChunkSize:
		return invalid("rag.chunk_overlap", "must be 0 to chunk_size-1")
	}
	return nil
}

// checkText refuses invalid UTF-8 and strings longer than max bytes.
func checkText(field, s string, max int) error {
	if len(s) > max {
		return invalid(field, fmt.Sprintf("must be at most %d bytes", max))
	}
	if !utf8.ValidString(s) {
		return invalid(field, "must be valid UTF-8")
	}
	return nil
}

// Policy returns what the tenant allows and adds to every request, for a
// Principal. The result shares nothing with t.
func (t *Tenant) Policy() *Policy {
	return &Policy{
		DefaultModel:      t.DefaultModel,
		AllowedModels:     append([]string(nil), t.AllowedModels...),
		SystemPrompt:      t.SystemPrompt,
		RequestsPerMinute: t.RequestsPerMinute,
		RequestsPerHour:   t.RequestsPerHour,
		TokensPerMinute:   t.TokensPerMinute,
		MonthlyBudget:     t.MonthlyBudget,
		RAG:               t.RAG,
	}
}

// TenantUpdate is the body of POST and PUT /api/v1/tenants: a nil field is
// left as it is (on creation: takes its default), a non-nil one is set. It
// decodes from the same JSON as Tenant; fields that cannot be set (id,
// created_at, ...) are ignored.
type TenantUpdate struct {
	// Name is required on creation; on update it may only repeat the current
	// name (names never change).
	Name *string `json:"name"`
	// The others set the Tenant field of the same JSON name.
	DisplayName       *string    `json:"display_name"`
	DefaultModel      *string    `json:"default_model"`
	AllowedModels     *[]string  `json:"allowed_models"`
	RequestsPerMinute *int64     `json:"requests_per_minute"`
	RequestsPerHour   *int64     `json:"requests_per_hour"`
	TokensPerMinute   *int64     `json:"tokens_per_minute"`
	MonthlyBudget     *MicroUSD  `json:"monthly_budget_usd"`
	SystemPrompt      *string    `json:"system_prompt"`
	RAG               *RAGUpdate `json:"rag"`
	// Disabled re-enables (false) or disables (true) the tenant.
	Disabled *bool `json:"disabled"`
}

// RAGUpdate changes some of a tenant's RAG settings; nil fields stay.
type RAGUpdate struct {
	// Each sets the RAGConfig field of the same JSON name.
	Enabled      *bool `json:"enabled"`
	TopK         *int  `json:"top_k"`
	ChunkSize    *int  `json:"chunk_size"`
	ChunkOverlap *int  `json:"chunk_overlap"`
}

// Apply copies the non-nil fields of u into t, except Name (see TenantUpdate),
// and does not validate: call t.Validate after.
func (u *TenantUpdate) Apply(t *Tenant) {
	setIf(&t.DisplayName, u.DisplayName)
	setIf(&t.DefaultModel, u.DefaultModel)
	if u.AllowedModels != nil {
		t.AllowedModels = append([]string{}, (*u.AllowedModels)...)
	}
	setIf(&t.RequestsPerMinute, u.RequestsPerMinute)
	setIf(&t.RequestsPerHour, u.RequestsPerHour)
	setIf(&t.TokensPerMinute, u.TokensPerMinute)
	setIf(&t.MonthlyBudget, u.MonthlyBudget)
	setIf(&t.SystemPrompt, u.SystemPrompt)
	if r := u.RAG; r != nil {
		setIf(&t.RAG.Enabled, r.Enabled)
		setIf(&t.RAG.TopK, r.TopK)
		setIf(&t.RAG.ChunkSize, r.ChunkSize)
		setIf(&t.RAG.ChunkOverlap, r.ChunkOverlap)
	}
	setIf(&t.Disabled, u.Disabled)
}

func setIf[T any](dst *T, src *T) {
	if src != nil {
		*dst = *src
	}
}

// TenantFilter selects a page of tenants, ordered by id.
type TenantFilter struct {
	// Limit is the page size; the store returns every row when 0.
	Limit int
	// Offset skips that many rows.
	Offset int
}

// TenantStore persists tenants. Implementations (store/sqlite,
// store/postgres) are safe for concurrent use and return ErrNotFound for a
// missing tenant and ErrConflict for a taken name.
type TenantStore interface {
	// CreateTenant inserts t and sets t.ID.
	CreateTenant(ctx context.Context, t *Tenant) error
	// FindTenantByID returns the tenant with that id, disabled or not.
	FindTenantByID(ctx context.Context, id int64) (*Tenant, error)
	// FindTenantByName returns the tenant with that name, disabled or not.
	FindTenantByName(ctx context.Context, name string) (*Tenant, error)
	// FindTenants returns a page of tenants, ordered by id, and the number of
	// tenants in all.
	FindTenants(ctx context.Context, f TenantFilter) ([]*Tenant, int, error)
	// UpdateTenant loads tenant id, lets fn change it and saves every field
	// but ID, Name and CreatedAt, atomically: no other update of that tenant
	// interleaves. An error from fn aborts and is returned as is.
	UpdateTenant(ctx context.Context, id int64, fn func(*Tenant) error) (*Tenant, error)
}

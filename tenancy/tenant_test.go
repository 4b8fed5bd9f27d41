package tenancy_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/mtai-dev/mtai/tenancy"
)

// apiExample is the tenant of api-v1.md.
const apiExample = `{
  "id": 1,
  "name": "demo",
  "display_name": "Demo Inc.",
  "default_model": "mock-gpt",
  "allowed_models": ["mock-gpt", "gpt-4o-mini"],
  "requests_per_minute": 60,
  "requests_per_hour": 1000,
  "tokens_per_minute": 100000,
  "monthly_budget_usd": 50.0,
  "system_prompt": "You are the assistant of Demo Inc.",
  "rag": {"enabled": false, "top_k": 4, "chunk_size": 512, "chunk_overlap": 64},
  "created_at": "2026-01-01T00:00:00Z"
}`

func TestTenantJSONMatchesAPI(t *testing.T) {
	t.Parallel()
	var tn tenancy.Tenant
	if err := json.Unmarshal([]byte(apiExample), &tn); err != nil {
		t.Fatal(err)
	}
	if err := tn.Validate(); err != nil {
		t.Errorf("Validate(api example) = %v", err)
	}
	out, err := json.Marshal(&tn)
	if err != nil {
		t.Fatal(err)
	}
	var got, want map[string]any
	json.Unmarshal(out, &got)
	json.Unmarshal([]byte(apiExample), &want)
	for k, v := range want {
		if !reflect.DeepEqual(got[k], v) {
			t.Errorf("field %q = %v, want %v", k, got[k], v)
		}
	}

	// The same body decodes as an update (and a creation), naming every field.
	var upd tenancy.TenantUpdate
	if err := json.Unmarshal([]byte(apiExample), &upd); err != nil {
		t.Fatal(err)
	}
	if upd.Name == nil || *upd.Name != "demo" || upd.MonthlyBudget == nil || *upd.MonthlyBudget != 50_000_000 ||
		upd.RAG == nil || upd.RAG.TopK == nil || *upd.RAG.TopK != 4 || upd.Disabled != nil {
		t.Errorf("TenantUpdate from the api example = %+v", upd)
	}
}

func TestTenantUpdateApplyPartial(t *testing.T) {
	t.Parallel()
	var upd tenancy.TenantUpdate
	if err := json.Unmarshal([]byte(`{"requests_per_minute": 5, "rag": {"top_k": 9}}`), &upd); err != nil {
		t.Fatal(err)
	}
	tn := tenancy.Tenant{Name: "x", DisplayName: "X", RequestsPerHour: 7, RAG: tenancy.DefaultRAG()}
	upd.Apply(&tn)
	want := tenancy.Tenant{Name: "x", DisplayName: "X", RequestsPerMinute: 5, RequestsPerHour: 7,
		RAG: tenancy.RAGConfig{TopK: 9, ChunkSize: 512, ChunkOverlap: 64}}
	if !reflect.DeepEqual(tn, want) {
		t.Errorf("Apply = %+v, want %+v", tn, want)
	}
}

func TestValidateTenantName(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ok   bool
	}{
		{"demo", true},
		{"a", true},
		{"acme-corp_2", true},
		{"-", true},
		{"0123456789012345678901234567890123456789012345678901234567890ab", true}, // 63
		{"0123456789012345678901234567890123456789012345678901234567890abc", false},
		{"", false},
		{"Demo", false},
		{"dé", false},
		{"a.b", false},
		{"a b", false},
	}
	for _, tc := range tests {
		if err := tenancy.ValidateTenantName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidateTenantName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestTenantPolicy(t *testing.T) {
	t.Parallel()
	tn := tenancy.Tenant{DefaultModel: "m", AllowedModels: []string{"m"}, SystemPrompt: "hi",
		RequestsPerMinute: 1, RequestsPerHour: 2, TokensPerMinute: 3, MonthlyBudget: 4, RAG: tenancy.DefaultRAG()}
	p := tn.Policy()
	want := &tenancy.Policy{DefaultModel: "m", AllowedModels: []string{"m"}, SystemPrompt: "hi",
		RequestsPerMinute: 1, RequestsPerHour: 2, TokensPerMinute: 3, MonthlyBudget: 4, RAG: tenancy.DefaultRAG()}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("Policy = %+v, want %+v", p, want)
	}
	tn.AllowedModels[0] = "changed"
	if p.AllowedModels[0] != "m" {
		t.Errorf("Policy shares AllowedModels with the tenant")
	}
	if !p.Allows("m") || p.Allows("other") {
		t.Errorf("Allows: m=%v other=%v, want true, false", p.Allows("m"), p.Allows("other"))
	}
}

func TestRoleAtLeast(t *testing.T) {
	t.Parallel()
	tests := []struct {
		r, min tenancy.Role
		want   bool
	}{
		{tenancy.RolePlatformAdmin, tenancy.RoleTenantAdmin, true},
		{tenancy.RoleTenantAdmin, tenancy.RoleTenantAdmin, true},
		{tenancy.RoleMember, tenancy.RoleTenantAdmin, false},
		{"", tenancy.RoleMember, false},
		{"root", tenancy.RoleMember, false},
	}
	for _, tc := range tests {
		if got := tc.r.AtLeast(tc.min); got != tc.want {
			t.Errorf("Role(%q).AtLeast(%q) = %v, want %v", tc.r, tc.min, got, tc.want)
		}
	}
}

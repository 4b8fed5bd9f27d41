package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/tenancy"
)

func testTenantCreateFind(t *testing.T, s Stores) {
	want := newTenant(uniq("acme"))
	want.DisplayName = "Acme Inc. — ünïcode"
	want.DefaultModel = "gpt-4o-mini"
	want.AllowedModels = []string{"gpt-4o-mini", "mock-gpt"}
	want.RequestsPerMinute, want.RequestsPerHour, want.TokensPerMinute = 60, 1000, 100000
	want.MonthlyBudget = tenancy.USD(50.25)
	want.SystemPrompt = "You are the assistant of Acme.\nBe brief."
	want.RAG = tenancy.RAGConfig{Enabled: true, TopK: 8, ChunkSize: 256, ChunkOverlap: 32}
	if err := s.Tenants.CreateTenant(ctx(t), want); err != nil {
		t.Fatalf("CreateTenant = %v", err)
	}
	if want.ID <= 0 {
		t.Fatalf("CreateTenant set ID %d, want > 0", want.ID)
	}
	got, err := s.Tenants.FindTenantByID(ctx(t), want.ID)
	if err != nil {
		t.Fatalf("FindTenantByID(%d) = %v", want.ID, err)
	}
	sameJSON(t, "FindTenantByID", got, want)
	if !got.CreatedAt.Equal(want.CreatedAt) || got.CreatedAt.Location() != time.UTC {
		t.Errorf("CreatedAt = %v, want %v in UTC", got.CreatedAt, want.CreatedAt)
	}
	got, err = s.Tenants.FindTenantByName(ctx(t), want.Name)
	if err != nil {
		t.Fatalf("FindTenantByName(%q) = %v", want.Name, err)
	}
	sameJSON(t, "FindTenantByName", got, want)

	// A tenant without allowed models reads back as [] (not null).
	bare := mustTenant(t, s, uniq("bare"))
	got, err = s.Tenants.FindTenantByID(ctx(t), bare.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.AllowedModels == nil || len(got.AllowedModels) != 0 {
		t.Errorf("AllowedModels = %#v, want empty non-nil", got.AllowedModels)
	}

	for _, tc := range []struct {
		name string
		find func() error
	}{
		{"unknown id", func() error { _, err := s.Tenants.FindTenantByID(ctx(t), want.ID+1000); return err }},
		{"unknown name", func() error { _, err := s.Tenants.FindTenantByName(ctx(t), "nobody"); return err }},
	} {
		if err := tc.find(); !errors.Is(err, tenancy.ErrNotFound) {
			t.Errorf("%s: err = %v, want ErrNotFound", tc.name, err)
		}
	}
}

func testTenantNameUnique(t *testing.T, s Stores) {
	name := uniq("dup")
	mustTenant(t, s, name)
	err := s.Tenants.CreateTenant(ctx(t), newTenant(name))
	if !errors.Is(err, tenancy.ErrConflict) {
		t.Errorf("CreateTenant(%q) twice = %v, want ErrConflict", name, err)
	}
}

func testTenantList(t *testing.T, s Stores) {
	var ids []int64
	for range 5 {
		ids = append(ids, mustTenant(t, s, uniq("list")).ID)
	}
	tests := []struct {
		name          string
		limit, offset int
		want          []int64
	}{
		{"all", 0, 0, ids},
		{"first page", 2, 0, ids[:2]},
		{"middle page", 2, 2, ids[2:4]},
		{"last page", 2, 4, ids[4:]},
		{"past the end", 2, 10, nil},
	}
	for _, tc := range tests {
		got, n, err := s.Tenants.FindTenants(ctx(t), tenancy.TenantFilter{Limit: tc.limit, Offset: tc.offset})
		if err != nil {
			t.Fatalf("%s: FindTenants = %v", tc.name, err)
		}
		if n != 5 {
			t.Errorf("%s: total = %d, want 5", tc.name, n)
		}
		var gotIDs []int64
		for _, tn := range got {
			gotIDs = append(gotIDs, tn.ID)
		}
		if !equalIDs(gotIDs, tc.want) {
			t.Errorf("%s: FindTenants(limit %d, offset %d) ids = %v, want %v", tc.name, tc.limit, tc.offset, gotIDs, tc.want)
		}
	}
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func testTenantUpdate(t *testing.T, s Stores) {
	orig := mustTenant(t, s, uniq("upd"))
	other := mustTenant(t, s, uniq("other"))
	later := orig.UpdatedAt.Add(time.Minute)
	got, err := s.Tenants.UpdateTenant(ctx(t), orig.ID, func(tn *tenancy.Tenant) error {
		tn.DisplayName = "Renamed"
		tn.AllowedModels = []string{"a", "b"}
		tn.DefaultModel = "b"
		tn.TokensPerMinute = 42
		tn.MonthlyBudget = tenancy.USD(0.000001)
		tn.RAG.Enabled = true
		tn.UpdatedAt = later
		// Immutable fields: the store must ignore these.
		tn.Name = "hijack"
		tn.CreatedAt = later
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateTenant = %v", err)
	}
	if got.DisplayName != "Renamed" {
		t.Errorf("UpdateTenant returned DisplayName %q, want Renamed", got.DisplayName)
	}
	want := *orig
	want.DisplayName = "Renamed"
	want.AllowedModels = []string{"a", "b"}
	want.DefaultModel = "b"
	want.TokensPerMinute = 42
	want.MonthlyBudget = 1
	want.RAG.Enabled = true
	want.UpdatedAt = later
	stored, err := s.Tenants.FindTenantByID(ctx(t), orig.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "tenant after update", stored, &want)

	untouched, err := s.Tenants.FindTenantByID(ctx(t), other.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "other tenant after update", untouched, other)

	_, err = s.Tenants.UpdateTenant(ctx(t), other.ID+1000, func(*tenancy.Tenant) error { return nil })
	if !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("UpdateTenant(unknown) = %v, want ErrNotFound", err)
	}
}

func testTenantUpdateAbort(t *testing.T, s Stores) {
	orig := mustTenant(t, s, uniq("abort"))
	boom := errors.New("boom")
	_, err := s.Tenants.UpdateTenant(ctx(t), orig.ID, func(tn *tenancy.Tenant) error {
		tn.DisplayName = "should not stick"
		return boom
	})
	if err != boom {
		t.Errorf("UpdateTenant with failing fn = %v, want the fn's error as is", err)
	}
	got, err := s.Tenants.FindTenantByID(ctx(t), orig.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "tenant after aborted update", got, orig)
}

func testTenantDisable(t *testing.T, s Stores) {
	tn := mustTenant(t, s, uniq("gone"))
	if _, err := s.Tenants.UpdateTenant(ctx(t), tn.ID, func(tn *tenancy.Tenant) error {
		tn.Disabled = true
		return nil
	}); err != nil {
		t.Fatalf("UpdateTenant(disable) = %v", err)
	}
	for _, find := range []func() (*tenancy.Tenant, error){
		func() (*tenancy.Tenant, error) { return s.Tenants.FindTenantByID(ctx(t), tn.ID) },
		func() (*tenancy.Tenant, error) { return s.Tenants.FindTenantByName(ctx(t), tn.Name) },
	} {
		got, err := find()
		if err != nil {
			t.Fatalf("find disabled tenant = %v, want it (disabled)", err)
		}
		if !got.Disabled {
			t.Errorf("Disabled = false after disabling")
		}
	}
	// The name stays taken.
	if err := s.Tenants.CreateTenant(ctx(t), newTenant(tn.Name)); !errors.Is(err, tenancy.ErrConflict) {
		t.Errorf("CreateTenant(name of a disabled tenant) = %v, want ErrConflict", err)
	}
}

func testTenantBudgetExact(t *testing.T, s Stores) {
	for _, budget := range []tenancy.MicroUSD{0, 1, 999_999, 50_000_000, 123_456_789_012_345_678} {
		tn := newTenant(uniq("budget"))
		tn.MonthlyBudget = budget
		if err := s.Tenants.CreateTenant(ctx(t), tn); err != nil {
			t.Fatal(err)
		}
		got, err := s.Tenants.FindTenantByID(ctx(t), tn.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.MonthlyBudget != budget {
			t.Errorf("MonthlyBudget = %d, want %d", got.MonthlyBudget, budget)
		}
	}
}

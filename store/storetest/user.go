package storetest

import (
	"errors"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/tenancy"
)

func testUserCreateFind(t *testing.T, s Stores) {
	tn := mustTenant(t, s, uniq("users"))
	want := mustUser(t, s, tn.ID, "alice", tenancy.RoleTenantAdmin)
	if want.ID <= 0 {
		t.Fatalf("CreateUser set ID %d, want > 0", want.ID)
	}
	for _, tc := range []struct {
		name string
		find func() (*tenancy.User, error)
	}{
		{"by id", func() (*tenancy.User, error) { return s.Users.FindUserByID(ctx(t), tn.ID, want.ID) }},
		{"by name", func() (*tenancy.User, error) { return s.Users.FindUserByName(ctx(t), tn.ID, "alice") }},
	} {
		got, err := tc.find()
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		sameJSON(t, tc.name, got, want)
		if got.PasswordHash != want.PasswordHash {
			t.Errorf("%s: PasswordHash = %q, want %q", tc.name, got.PasswordHash, want.PasswordHash)
		}
	}
	if _, err := s.Users.FindUserByName(ctx(t), tn.ID, "bob"); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("FindUserByName(unknown) = %v, want ErrNotFound", err)
	}
	u := &tenancy.User{TenantID: tn.ID + 1000, Username: "ghost", Role: tenancy.RoleMember,
		PasswordHash: "x", CreatedAt: now(), UpdatedAt: now()}
	if err := s.Users.CreateUser(ctx(t), u); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("CreateUser(unknown tenant) = %v, want ErrNotFound", err)
	}
}

func testUserUniquePerTenant(t *testing.T, s Stores) {
	a := mustTenant(t, s, uniq("ua"))
	b := mustTenant(t, s, uniq("ub"))
	mustUser(t, s, a.ID, "alice", tenancy.RoleMember)
	mustUser(t, s, b.ID, "alice", tenancy.RoleMember) // same name, other tenant: fine
	dup := &tenancy.User{TenantID: a.ID, Username: "alice", Role: tenancy.RoleMember,
		PasswordHash: "x", CreatedAt: now(), UpdatedAt: now()}
	if err := s.Users.CreateUser(ctx(t), dup); !errors.Is(err, tenancy.ErrConflict) {
		t.Errorf("CreateUser(alice twice in a tenant) = %v, want ErrConflict", err)
	}
}

func testUserUpdate(t *testing.T, s Stores) {
	tn := mustTenant(t, s, uniq("uupd"))
	u := mustUser(t, s, tn.ID, "carol", tenancy.RoleMember)
	later := u.UpdatedAt.Add(time.Second)
	got, err := s.Users.UpdateUser(ctx(t), tn.ID, u.ID, func(u *tenancy.User) error {
		u.Role = tenancy.RoleTenantAdmin
		u.Disabled = true
		u.PasswordHash = "new-hash"
		u.UpdatedAt = later
		u.Username = "hijack" // immutable: ignored
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateUser = %v", err)
	}
	if got.Role != tenancy.RoleTenantAdmin {
		t.Errorf("UpdateUser returned role %q", got.Role)
	}
	stored, err := s.Users.FindUserByID(ctx(t), tn.ID, u.ID)
	if err != nil {
		t.Fatal(err)
	}
	want := *u
	want.Role, want.Disabled, want.PasswordHash, want.UpdatedAt = tenancy.RoleTenantAdmin, true, "new-hash", later
	sameJSON(t, "user after update", stored, &want)
	if stored.PasswordHash != "new-hash" {
		t.Errorf("PasswordHash = %q, want new-hash", stored.PasswordHash)
	}

	boom := errors.New("boom")
	if _, err := s.Users.UpdateUser(ctx(t), tn.ID, u.ID, func(u *tenancy.User) error {
		u.Disabled = false
		return boom
	}); err != boom {
		t.Errorf("UpdateUser with failing fn = %v, want the fn's error", err)
	}
	if stored, _ := s.Users.FindUserByID(ctx(t), tn.ID, u.ID); stored == nil || !stored.Disabled {
		t.Errorf("aborted update changed the user: %+v", stored)
	}
}

func testUserList(t *testing.T, s Stores) {
	a := mustTenant(t, s, uniq("la"))
	b := mustTenant(t, s, uniq("lb"))
	var aIDs []int64
	for _, name := range []string{"u1", "u2", "u3"} {
		aIDs = append(aIDs, mustUser(t, s, a.ID, name, tenancy.RoleMember).ID)
	}
	bUser := mustUser(t, s, b.ID, "u1", tenancy.RoleMember)

	tests := []struct {
		name      string
		filter    tenancy.UserFilter
		want      []int64
		wantTotal int
	}{
		{"tenant a", tenancy.UserFilter{TenantID: a.ID}, aIDs, 3},
		{"tenant a, page", tenancy.UserFilter{TenantID: a.ID, Limit: 1, Offset: 1}, aIDs[1:2], 3},
		{"tenant b", tenancy.UserFilter{TenantID: b.ID}, []int64{bUser.ID}, 1},
		{"all tenants", tenancy.UserFilter{AllTenants: true}, append(append([]int64{}, aIDs...), bUser.ID), 4},
	}
	for _, tc := range tests {
		got, n, err := s.Users.FindUsers(ctx(t), tc.filter)
		if err != nil {
			t.Fatalf("%s: FindUsers = %v", tc.name, err)
		}
		var ids []int64
		for _, u := range got {
			ids = append(ids, u.ID)
		}
		if !equalIDs(ids, tc.want) || n != tc.wantTotal {
			t.Errorf("%s: FindUsers(%+v) = %v (total %d), want %v (total %d)", tc.name, tc.filter, ids, n, tc.want, tc.wantTotal)
		}
	}
	if _, _, err := s.Users.FindUsers(ctx(t), tenancy.UserFilter{}); err == nil {
		t.Errorf("FindUsers(no tenant, not AllTenants) = nil error, want a refusal")
	}
}

// testUserIsolation: tenant A's id never returns tenant B's rows.
func testUserIsolation(t *testing.T, s Stores) {
	a := mustTenant(t, s, uniq("ia"))
	b := mustTenant(t, s, uniq("ib"))
	ua := mustUser(t, s, a.ID, "alice", tenancy.RoleTenantAdmin)
	tests := []struct {
		name string
		try  func() error
	}{
		{"FindUserByID", func() error { _, err := s.Users.FindUserByID(ctx(t), b.ID, ua.ID); return err }},
		{"FindUserByName", func() error { _, err := s.Users.FindUserByName(ctx(t), b.ID, "alice"); return err }},
		{"UpdateUser", func() error {
			_, err := s.Users.UpdateUser(ctx(t), b.ID, ua.ID, func(u *tenancy.User) error {
				u.Role = tenancy.RolePlatformAdmin
				return nil
			})
			return err
		}},
	}
	for _, tc := range tests {
		if err := tc.try(); !errors.Is(err, tenancy.ErrNotFound) {
			t.Errorf("%s(tenant B, user of A) = %v, want ErrNotFound", tc.name, err)
		}
	}
	got, err := s.Users.FindUserByID(ctx(t), a.ID, ua.ID)
	if err != nil || got.Role != tenancy.RoleTenantAdmin {
		t.Errorf("user of A after B's attempts = %+v, %v; want unchanged", got, err)
	}
}

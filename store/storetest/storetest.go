// Package storetest is the conformance suite of mtai's SQL stores: one set
// of tests that every adapter (store/sqlite, store/postgres) passes, so that
// the two dialects behave the same. It also creates throw-away PostgreSQL
// databases for tests (NewPostgresDatabase).
package storetest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/admin"
	"github.com/mtai-dev/mtai/chat"
	"github.com/mtai-dev/mtai/tenancy"
)

// Stores are the stores under test. An adapter's *DB fills every field.
type Stores struct {
	// Tenants, Users and Keys are all required.
	Tenants tenancy.TenantStore
	Users   tenancy.UserStore
	Keys    tenancy.KeyStore
	// Usage is required by the usage cases (usage.go).
	Usage UsageStore
	// Conversations is required by the chat cases (conversation.go).
	Conversations chat.Store
	// Stats is required by the admin statistics cases (stats.go).
	Stats admin.Store
}

// Run runs the suite. open must return stores over a new, migrated, empty
// database that it closes (and drops) when t ends; it is called once per
// subtest, from parallel subtests.
func Run(t *testing.T, open func(t *testing.T) Stores) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s Stores)
	}{
		{"TenantCreateFind", testTenantCreateFind},
		{"TenantNameUnique", testTenantNameUnique},
		{"TenantList", testTenantList},
		{"TenantUpdate", testTenantUpdate},
		{"TenantUpdateAbort", testTenantUpdateAbort},
		{"TenantDisable", testTenantDisable},
		{"TenantBudgetExact", testTenantBudgetExact},
		{"UserCreateFind", testUserCreateFind},
		{"UserUniquePerTenant", testUserUniquePerTenant},
		{"UserUpdate", testUserUpdate},
		{"UserList", testUserList},
		{"UserIsolation", testUserIsolation},
		{"KeyCreateFind", testKeyCreateFind},
		{"KeyListOwnTenant", testKeyListOwnTenant},
		{"KeyRevoke", testKeyRevoke},
		{"KeyExpiry", testKeyExpiry},
		{"KeyMarkUsed", testKeyMarkUsed},
		{"KeyUserOfOtherTenant", testKeyUserOfOtherTenant},
		{"KeyLimits", testKeyLimits},
		{"KeyUpdate", testKeyUpdate},
		{"ConcurrentCreates", testConcurrentCreates},
		{"ConcurrentUpdates", testConcurrentUpdates},
	}
	tests = append(tests, usageTests...)
	tests = append(tests, statsTests...)
	tests = append(tests, documentTests...)
	tests = append(tests, conversationTests...)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// now returns the current time as the Service stores it: UTC, microseconds.
func now() time.Time {
	return time.Now().UTC().Truncate(time.Microsecond)
}

func ctx(t *testing.T) context.Context {
	c, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return c
}

var seq atomic.Int64 // makes names unique within a process

func uniq(prefix string) string {
	return fmt.Sprintf("%s-%d", prefix, seq.Add(1))
}

// newTenant returns a valid tenant that is not yet stored.
func newTenant(name string) *tenancy.Tenant {
	n := now()
	return &tenancy.Tenant{
		Name:          name,
		AllowedModels: []string{},
		RAG:           tenancy.DefaultRAG(),
		CreatedAt:     n,
		UpdatedAt:     n,
	}
}

func mustTenant(t *testing.T, s Stores, name string) *tenancy.Tenant {
	t.Helper()
	tn := newTenant(name)
	if err := s.Tenants.CreateTenant(ctx(t), tn); err != nil {
		t.Fatalf("CreateTenant(%q) = %v", name, err)
	}
	return tn
}

func mustUser(t *testing.T, s Stores, tenantID int64, username string, role tenancy.Role) *tenancy.User {
	t.Helper()
	n := now()
	u := &tenancy.User{TenantID: tenantID, Username: username, Role: role,
		PasswordHash: "$argon2id$hash-of-" + username, CreatedAt: n, UpdatedAt: n}
	if err := s.Users.CreateUser(ctx(t), u); err != nil {
		t.Fatalf("CreateUser(%q) = %v", username, err)
	}
	return u
}

func mustKey(t *testing.T, s Stores, tenantID, userID int64, name string) *tenancy.APIKey {
	t.Helper()
	secret := tenancy.NewKeySecret()
	k := &tenancy.APIKey{TenantID: tenantID, UserID: userID, Name: name, Prefix: secret[:12],
		Hash: tenancy.HashKey([]byte(secret)), CreatedAt: now()}
	if err := s.Keys.CreateKey(ctx(t), k); err != nil {
		t.Fatalf("CreateKey(%q) = %v", name, err)
	}
	return k
}

// sameJSON fails t unless got and want encode to the same JSON (times are
// compared as instants in UTC, secrets are not encoded: compare them apart).
func sameJSON(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(g) != string(w) {
		t.Errorf("%s =\n  %s\nwant\n  %s", what, g, w)
	}
}

package storetest

import (
	"errors"
	"sync"
	"testing"

	"github.com/mtai-dev/mtai/tenancy"
)

func testConcurrentCreates(t *testing.T, s Stores) {
	const n = 16
	var wg sync.WaitGroup
	ids := make([]int64, n)
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			tn := newTenant(uniq("par"))
			errs[i] = s.Tenants.CreateTenant(ctx(t), tn)
			ids[i] = tn.ID
		})
	}
	wg.Wait()
	seen := map[int64]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("parallel CreateTenant %d = %v", i, err)
		}
		if seen[ids[i]] {
			t.Errorf("id %d given twice", ids[i])
		}
		seen[ids[i]] = true
	}

	// Racing for one name: exactly one wins, the others get ErrConflict.
	name := uniq("race")
	var ok, conflict int
	var mu sync.Mutex
	for range n {
		wg.Go(func() {
			err := s.Tenants.CreateTenant(ctx(t), newTenant(name))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, tenancy.ErrConflict):
				conflict++
			default:
				t.Errorf("CreateTenant(%q) racing = %v", name, err)
			}
		})
	}
	wg.Wait()
	if ok != 1 || conflict != n-1 {
		t.Errorf("racing creates of one name: %d succeeded, %d conflicted; want 1 and %d", ok, conflict, n-1)
	}

	// Users and keys of one tenant, in parallel.
	tn := mustTenant(t, s, uniq("parent"))
	for i := range n {
		wg.Go(func() {
			u := mustUserNoFatal(t, s, tn.ID, uniq("user"))
			if u == nil {
				return
			}
			secret := tenancy.NewKeySecret()
			k := &tenancy.APIKey{TenantID: tn.ID, UserID: u.ID, Name: "k", Prefix: secret[:12],
				Hash: tenancy.HashKey([]byte(secret)), CreatedAt: now()}
			if err := s.Keys.CreateKey(ctx(t), k); err != nil {
				t.Errorf("parallel CreateKey %d = %v", i, err)
			}
		})
	}
	wg.Wait()
	if _, total, err := s.Keys.FindKeys(ctx(t), tn.ID, 0, 0); err != nil || total != n {
		t.Errorf("FindKeys after parallel creates: total %d, %v; want %d", total, err, n)
	}
}

// mustUserNoFatal is mustUser for goroutines other than the test's.
func mustUserNoFatal(t *testing.T, s Stores, tenantID int64, username string) *tenancy.User {
	u := &tenancy.User{TenantID: tenantID, Username: username, Role: tenancy.RoleMember,
		PasswordHash: "x", CreatedAt: now(), UpdatedAt: now()}
	if err := s.Users.CreateUser(ctx(t), u); err != nil {
		t.Errorf("CreateUser(%q) = %v", username, err)
		return nil
	}
	return u
}

// testConcurrentUpdates: UpdateTenant is an atomic read-modify-write, so
// parallel increments are not lost.
func testConcurrentUpdates(t *testing.T, s Stores) {
	tn := mustTenant(t, s, uniq("incr"))
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := s.Tenants.UpdateTenant(ctx(t), tn.ID, func(tn *tenancy.Tenant) error {
				tn.RequestsPerMinute++
				return nil
			}); err != nil {
				t.Errorf("UpdateTenant = %v", err)
			}
		})
	}
	wg.Wait()
	got, err := s.Tenants.FindTenantByID(ctx(t), tn.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.RequestsPerMinute != n {
		t.Errorf("after %d parallel increments RequestsPerMinute = %d, want %d", n, got.RequestsPerMinute, n)
	}
}

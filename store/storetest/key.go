package storetest

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/tenancy"
)

func testKeyCreateFind(t *testing.T, s Stores) {
	tn := mustTenant(t, s, uniq("keys"))
	u := mustUser(t, s, tn.ID, "dev", tenancy.RoleMember)
	for _, tc := range []struct {
		name   string
		userID int64
	}{
		{"without user", 0},
		{"with user", u.ID},
	} {
		want := mustKey(t, s, tn.ID, tc.userID, tc.name)
		if want.ID <= 0 {
			t.Fatalf("%s: CreateKey set ID %d", tc.name, want.ID)
		}
		got, err := s.Keys.FindKeyByHash(ctx(t), want.Hash)
		if err != nil {
			t.Fatalf("%s: FindKeyByHash = %v", tc.name, err)
		}
		sameJSON(t, tc.name, got, want)
		if got.Hash != want.Hash || got.Revoked || got.LastUsedAt != nil || got.ExpiresAt != nil {
			t.Errorf("%s: FindKeyByHash = %+v, want %+v", tc.name, got, want)
		}
	}
	if _, err := s.Keys.FindKeyByHash(ctx(t), tenancy.HashKey([]byte("nope"))); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("FindKeyByHash(unknown) = %v, want ErrNotFound", err)
	}
	k := mustKey(t, s, tn.ID, 0, "first")
	dup := &tenancy.APIKey{TenantID: tn.ID, Name: "dup", Prefix: k.Prefix, Hash: k.Hash, CreatedAt: now()}
	if err := s.Keys.CreateKey(ctx(t), dup); !errors.Is(err, tenancy.ErrConflict) {
		t.Errorf("CreateKey(same hash) = %v, want ErrConflict", err)
	}
	orphan := &tenancy.APIKey{TenantID: tn.ID + 1000, Name: "orphan", Prefix: "sk-mtai-xxxx", Hash: "00", CreatedAt: now()}
	if err := s.Keys.CreateKey(ctx(t), orphan); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("CreateKey(unknown tenant) = %v, want ErrNotFound", err)
	}
}

func testKeyListOwnTenant(t *testing.T, s Stores) {
	a := mustTenant(t, s, uniq("ka"))
	b := mustTenant(t, s, uniq("kb"))
	var aIDs []int64
	for _, name := range []string{"k1", "k2", "k3"} {
		aIDs = append(aIDs, mustKey(t, s, a.ID, 0, name).ID)
	}
	bKey := mustKey(t, s, b.ID, 0, "k1")
	tests := []struct {
		name          string
		tenantID      int64
		limit, offset int
		want          []int64
		wantTotal     int
	}{
		{"tenant a", a.ID, 0, 0, aIDs, 3},
		{"tenant a, page", a.ID, 2, 1, aIDs[1:], 3},
		{"tenant b", b.ID, 0, 0, []int64{bKey.ID}, 1},
		{"unknown tenant", b.ID + 1000, 0, 0, nil, 0},
	}
	for _, tc := range tests {
		got, n, err := s.Keys.FindKeys(ctx(t), tc.tenantID, tc.limit, tc.offset)
		if err != nil {
			t.Fatalf("%s: FindKeys = %v", tc.name, err)
		}
		var ids []int64
		for _, k := range got {
			ids = append(ids, k.ID)
			if k.TenantID != tc.tenantID {
				t.Errorf("%s: FindKeys returned key %d of tenant %d", tc.name, k.ID, k.TenantID)
			}
		}
		if !equalIDs(ids, tc.want) || n != tc.wantTotal {
			t.Errorf("%s: FindKeys = %v (total %d), want %v (total %d)", tc.name, ids, n, tc.want, tc.wantTotal)
		}
	}
}

func testKeyRevoke(t *testing.T, s Stores) {
	a := mustTenant(t, s, uniq("ra"))
	b := mustTenant(t, s, uniq("rb"))
	k := mustKey(t, s, a.ID, 0, "to revoke")

	// Another tenant cannot revoke it, nor learn that it exists.
	if _, err := s.Keys.RevokeKey(ctx(t), b.ID, k.ID, now()); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("RevokeKey(tenant B, key of A) = %v, want ErrNotFound", err)
	}
	if got, _ := s.Keys.FindKeyByHash(ctx(t), k.Hash); got == nil || got.Revoked {
		t.Fatalf("key after B's attempt = %+v, want not revoked", got)
	}

	at := now()
	got, err := s.Keys.RevokeKey(ctx(t), a.ID, k.ID, at)
	if err != nil {
		t.Fatalf("RevokeKey = %v", err)
	}
	if !got.Revoked || got.RevokedAt == nil || !got.RevokedAt.Equal(at) || got.Hash != k.Hash {
		t.Errorf("RevokeKey = %+v, want revoked at %v with its hash", got, at)
	}
	again, err := s.Keys.RevokeKey(ctx(t), a.ID, k.ID, at.Add(time.Hour))
	if err != nil {
		t.Fatalf("RevokeKey twice = %v", err)
	}
	if again.RevokedAt == nil || !again.RevokedAt.Equal(at) {
		t.Errorf("RevokeKey twice: RevokedAt = %v, want the first %v", again.RevokedAt, at)
	}
	stored, err := s.Keys.FindKeyByHash(ctx(t), k.Hash)
	if err != nil || !stored.Revoked {
		t.Errorf("FindKeyByHash after revoke = %+v, %v; want revoked", stored, err)
	}
	if _, err := s.Keys.RevokeKey(ctx(t), a.ID, k.ID+1000, now()); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("RevokeKey(unknown) = %v, want ErrNotFound", err)
	}
}

func testKeyExpiry(t *testing.T, s Stores) {
	tn := mustTenant(t, s, uniq("exp"))
	exp := now().Add(-time.Minute)
	secret := tenancy.NewKeySecret()
	k := &tenancy.APIKey{TenantID: tn.ID, Name: "old", Prefix: secret[:12], Hash: tenancy.HashKey([]byte(secret)),
		CreatedAt: now().Add(-time.Hour), ExpiresAt: &exp}
	if err := s.Keys.CreateKey(ctx(t), k); err != nil {
		t.Fatal(err)
	}
	got, err := s.Keys.FindKeyByHash(ctx(t), k.Hash)
	if err != nil {
		t.Fatal(err)
	}
	if got.ExpiresAt == nil || !got.ExpiresAt.Equal(exp) {
		t.Fatalf("ExpiresAt = %v, want %v", got.ExpiresAt, exp)
	}
	if got.Usable(now()) {
		t.Errorf("Usable(now) = true for a key expired at %v", exp)
	}
	if !got.Usable(exp.Add(-time.Second)) {
		t.Errorf("Usable(before expiry) = false")
	}
}

func testKeyMarkUsed(t *testing.T, s Stores) {
	tn := mustTenant(t, s, uniq("used"))
	k1 := mustKey(t, s, tn.ID, 0, "k1")
	k2 := mustKey(t, s, tn.ID, 0, "k2")
	t1 := now()
	t0 := t1.Add(-time.Minute)
	steps := []struct {
		name  string
		used  map[int64]time.Time
		want1 *time.Time
		want2 *time.Time
	}{
		{"first use", map[int64]time.Time{k1.ID: t1, k2.ID: t0, k2.ID + 1000: t1}, &t1, &t0},
		{"older use is ignored", map[int64]time.Time{k1.ID: t0}, &t1, &t0},
		{"newer use wins", map[int64]time.Time{k2.ID: t1}, &t1, &t1},
		{"nothing", map[int64]time.Time{}, &t1, &t1},
	}
	for _, st := range steps {
		if err := s.Keys.MarkKeysUsed(ctx(t), st.used); err != nil {
			t.Fatalf("%s: MarkKeysUsed = %v", st.name, err)
		}
		for _, c := range []struct {
			k    *tenancy.APIKey
			want *time.Time
		}{{k1, st.want1}, {k2, st.want2}} {
			got, err := s.Keys.FindKeyByHash(ctx(t), c.k.Hash)
			if err != nil {
				t.Fatal(err)
			}
			if got.LastUsedAt == nil || !got.LastUsedAt.Equal(*c.want) {
				t.Errorf("%s: key %s LastUsedAt = %v, want %v", st.name, c.k.Name, got.LastUsedAt, *c.want)
			}
		}
	}
}

// testKeyUserOfOtherTenant: a key cannot be issued to a user of another tenant.
func testKeyUserOfOtherTenant(t *testing.T, s Stores) {
	a := mustTenant(t, s, uniq("xa"))
	b := mustTenant(t, s, uniq("xb"))
	ub := mustUser(t, s, b.ID, "bob", tenancy.RolePlatformAdmin)
	secret := tenancy.NewKeySecret()
	k := &tenancy.APIKey{TenantID: a.ID, UserID: ub.ID, Name: "cross", Prefix: secret[:12],
		Hash: tenancy.HashKey([]byte(secret)), CreatedAt: now()}
	if err := s.Keys.CreateKey(ctx(t), k); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("CreateKey(tenant A, user of B) = %v, want ErrNotFound", err)
	}
}

// testKeyLimits: a key's own rate limits are stored and read back by every
// finder; a key without limits reads zeros; the schema refuses a negative
// limit.
func testKeyLimits(t *testing.T, s Stores) {
	tn := mustTenant(t, s, uniq("klim"))
	plain := mustKey(t, s, tn.ID, 0, "plain")
	secret := tenancy.NewKeySecret()
	limited := &tenancy.APIKey{TenantID: tn.ID, Name: "limited", Prefix: secret[:12], Hash: tenancy.HashKey([]byte(secret)),
		CreatedAt: now(), RateLimits: tenancy.RateLimits{RequestsPerMinute: 60, RequestsPerHour: 1000, TokensPerMinute: 1 << 40}}
	if err := s.Keys.CreateKey(ctx(t), limited); err != nil {
		t.Fatalf("CreateKey(with limits) = %v", err)
	}
	for _, want := range []*tenancy.APIKey{plain, limited} {
		byHash, err := s.Keys.FindKeyByHash(ctx(t), want.Hash)
		if err != nil {
			t.Fatalf("FindKeyByHash(%s) = %v", want.Name, err)
		}
		sameJSON(t, "FindKeyByHash("+want.Name+")", byHash, want)
		byID, err := s.Keys.FindKeyByID(ctx(t), tn.ID, want.ID)
		if err != nil {
			t.Fatalf("FindKeyByID(%s) = %v", want.Name, err)
		}
		sameJSON(t, "FindKeyByID("+want.Name+")", byID, want)
		if byID.Hash != want.Hash || byID.RateLimits != want.RateLimits {
			t.Errorf("FindKeyByID(%s) = %+v, want %+v", want.Name, byID, want)
		}
	}
	if plain.RateLimits != (tenancy.RateLimits{}) {
		t.Errorf("a key created without limits has %+v", plain.RateLimits)
	}
	list, _, err := s.Keys.FindKeys(ctx(t), tn.ID, 0, 0)
	if err != nil || len(list) != 2 {
		t.Fatalf("FindKeys = %d keys, %v; want 2", len(list), err)
	}
	sameJSON(t, "FindKeys", list, []*tenancy.APIKey{plain, limited})

	other := mustTenant(t, s, uniq("klim-other"))
	if _, err := s.Keys.FindKeyByID(ctx(t), other.ID, limited.ID); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("FindKeyByID(another tenant) = %v, want ErrNotFound", err)
	}
	if _, err := s.Keys.FindKeyByID(ctx(t), tn.ID, limited.ID+1000); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("FindKeyByID(unknown) = %v, want ErrNotFound", err)
	}
	secret = tenancy.NewKeySecret()
	negative := &tenancy.APIKey{TenantID: tn.ID, Name: "negative", Prefix: secret[:12], Hash: tenancy.HashKey([]byte(secret)),
		CreatedAt: now(), RateLimits: tenancy.RateLimits{TokensPerMinute: -1}}
	if err := s.Keys.CreateKey(ctx(t), negative); err == nil {
		t.Error("CreateKey(tokens_per_minute -1) = nil, want the schema's refusal")
	}
}

// testKeyUpdate: UpdateKey saves the name and the limits, nothing else,
// only within the key's tenant, and not when fn fails.
func testKeyUpdate(t *testing.T, s Stores) {
	a := mustTenant(t, s, uniq("kua"))
	b := mustTenant(t, s, uniq("kub"))
	k := mustKey(t, s, a.ID, 0, "before")
	limits := tenancy.RateLimits{RequestsPerMinute: 5, TokensPerMinute: 700}
	got, err := s.Keys.UpdateKey(ctx(t), a.ID, k.ID, func(k *tenancy.APIKey) error {
		k.Name = "after"
		k.RateLimits = limits
		// Not saved: UpdateKey writes the name and the limits only.
		k.Prefix, k.Revoked, k.TenantID = "sk-mtai-XXXX", true, b.ID
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateKey = %v", err)
	}
	if got.Name != "after" || got.RateLimits != limits {
		t.Errorf("UpdateKey returned %+v", got)
	}
	want := *k
	want.Name, want.RateLimits = "after", limits
	stored, err := s.Keys.FindKeyByHash(ctx(t), k.Hash)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "key after UpdateKey", stored, &want)

	// Another tenant can neither change it nor learn that it exists.
	if _, err := s.Keys.UpdateKey(ctx(t), b.ID, k.ID, func(k *tenancy.APIKey) error {
		k.RequestsPerMinute = 1 << 30
		return nil
	}); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("UpdateKey(tenant B, key of A) = %v, want ErrNotFound", err)
	}
	if _, err := s.Keys.UpdateKey(ctx(t), a.ID, k.ID+1000, func(*tenancy.APIKey) error { return nil }); !errors.Is(err, tenancy.ErrNotFound) {
		t.Errorf("UpdateKey(unknown) = %v, want ErrNotFound", err)
	}
	abort := errors.New("abort")
	if _, err := s.Keys.UpdateKey(ctx(t), a.ID, k.ID, func(k *tenancy.APIKey) error {
		k.RequestsPerMinute = 1
		return abort
	}); !errors.Is(err, abort) {
		t.Errorf("UpdateKey(fn fails) = %v, want fn's error as is", err)
	}
	stored, err = s.Keys.FindKeyByID(ctx(t), a.ID, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, "key after refused updates", stored, &want)

	// Parallel read-modify-writes are not lost.
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			if _, err := s.Keys.UpdateKey(ctx(t), a.ID, k.ID, func(k *tenancy.APIKey) error {
				k.RequestsPerHour++
				return nil
			}); err != nil {
				t.Errorf("UpdateKey = %v", err)
			}
		})
	}
	wg.Wait()
	if stored, err = s.Keys.FindKeyByID(ctx(t), a.ID, k.ID); err != nil || stored.RequestsPerHour != n {
		t.Errorf("after %d parallel increments: %+v, %v; want RequestsPerHour %d", n, stored, err, n)
	}
}

package tenancy_test

import (
	"errors"
	"regexp"
	"testing"

	"github.com/mtai-dev/mtai/tenancy"
)

func TestHashPasswordFormat(t *testing.T) {
	t.Parallel()
	// Production costs, once: the PHC string names them.
	h, err := tenancy.HashPassword("correct horse battery staple", tenancy.DefaultArgon2Params())
	if err != nil {
		t.Fatal(err)
	}
	phc := regexp.MustCompile(`^\$argon2id\$v=19\$m=65536,t=1,p=4\$[A-Za-z0-9+/]{22}\$[A-Za-z0-9+/]{43}$`)
	if !phc.MatchString(h) {
		t.Errorf("HashPassword = %q, want PHC argon2id with m=65536,t=1,p=4, 16-byte salt, 32-byte key", h)
	}
	if ok, err := tenancy.VerifyPassword(h, "correct horse battery staple"); !ok || err != nil {
		t.Errorf("VerifyPassword(right) = %v, %v; want true", ok, err)
	}
}

func TestVerifyPassword(t *testing.T) {
	t.Parallel()
	h1, _ := tenancy.HashPassword("secret-password", cheapArgon2)
	h2, _ := tenancy.HashPassword("secret-password", cheapArgon2)
	if h1 == h2 {
		t.Errorf("two hashes of one password are equal: salts are not random")
	}
	tests := []struct {
		name, hash, password string
		want                 bool
		wantErr              error
	}{
		{"right", h1, "secret-password", true, nil},
		{"other salt, right", h2, "secret-password", true, nil},
		{"wrong", h1, "secret-passwore", false, nil},
		{"empty", h1, "", false, nil},
		{"not phc", "plaintext", "plaintext", false, tenancy.ErrBadHash},
		{"argon2i", "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5", "x", false, tenancy.ErrBadHash},
		{"old version", "$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5", "x", false, tenancy.ErrBadHash},
		{"huge memory", "$argon2id$v=19$m=99999999,t=1,p=1$c2FsdHNhbHRzYWx0$a2V5a2V5a2V5a2V5a2V5a2V5", "x", false, tenancy.ErrBadHash},
		{"bad salt", "$argon2id$v=19$m=64,t=1,p=1$!!!$a2V5a2V5a2V5a2V5a2V5a2V5", "x", false, tenancy.ErrBadHash},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ok, err := tenancy.VerifyPassword(tc.hash, tc.password)
			if ok != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("VerifyPassword(%q) = %v, %v; want %v, %v", tc.hash, ok, err, tc.want, tc.wantErr)
			}
		})
	}
}

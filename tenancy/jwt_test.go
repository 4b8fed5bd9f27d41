package tenancy_test

import (
	"errors"
	"testing"
	"time"

	"github.com/mtai-dev/mtai/tenancy"
)

func TestIssuer(t *testing.T) {
	t.Parallel()
	clk := newClock()
	iss, err := tenancy.NewIssuer(testSecret, 15*time.Minute, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	token, ttl, err := iss.Issue("acme", 42, tenancy.RoleTenantAdmin)
	if err != nil || ttl != 15*time.Minute {
		t.Fatalf("Issue = %v, %v", ttl, err)
	}
	c, err := iss.Verify(token)
	if err != nil {
		t.Fatalf("Verify = %v", err)
	}
	if c.Tenant != "acme" || c.UserID() != 42 || c.Role != tenancy.RoleTenantAdmin || c.Issuer != "mtai" ||
		!c.IssuedAt.Time.Equal(clk.Now()) || !c.ExpiresAt.Time.Equal(clk.Now().Add(15*time.Minute)) {
		t.Errorf("Verify = %+v", c)
	}
	clk.Advance(15 * time.Minute)
	if _, err := iss.Verify(token); !errors.Is(err, tenancy.ErrUnauthenticated) {
		t.Errorf("Verify at expiry = %v, want ErrUnauthenticated", err)
	}

	other, _ := tenancy.NewIssuer([]byte("another-secret-another-secret-32"), 0, clk.Now)
	tok2, _, _ := other.Issue("acme", 42, tenancy.RolePlatformAdmin)
	if _, err := iss.Verify(tok2); !errors.Is(err, tenancy.ErrUnauthenticated) {
		t.Errorf("Verify(token of another secret) = %v, want ErrUnauthenticated", err)
	}
	if _, err := tenancy.NewIssuer([]byte("short"), 0, nil); err == nil {
		t.Errorf("NewIssuer(short secret) = nil error")
	}
}

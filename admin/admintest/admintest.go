// Package admintest seeds a store with a small, known set of tenants, keys
// and usage events, for the admin API's tests and the dashboard's browser
// test (cmd seedusage). The totals the tests expect are written out by
// hand in those tests, from the table in Events' comment.
package admintest

import (
	"context"
	"crypto/rand"
	"fmt"
	"time"

	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
)

// Passwords of the users Seed creates (tenant admins "boss" of acme and
// globex).
const BossPassword = "boss-password-1"

// Fixture is what Seed created.
type Fixture struct {
	Acme, Globex       *tenancy.Tenant
	AcmeKey, GlobexKey *tenancy.APIKey
	AcmeBoss           *tenancy.User
	GlobexBoss         *tenancy.User
}

// Seed creates tenants acme and globex, a tenant admin "boss" and an API key
// in each, and writes Events(now, ...) with w.
func Seed(ctx context.Context, svc *tenancy.Service, w billing.UsageWriter, now time.Time) (*Fixture, error) {
	var f Fixture
	var err error
	mk := func(name string) (*tenancy.Tenant, *tenancy.User, *tenancy.APIKey, error) {
		n := name
		t, err := svc.CreateTenant(ctx, tenancy.TenantUpdate{Name: &n})
		if err != nil {
			return nil, nil, nil, fmt.Errorf("tenant %s: %w", name, err)
		}
		u, err := svc.CreateUser(ctx, t.ID, "boss", BossPassword, tenancy.RoleTenantAdmin)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("user %s/boss: %w", name, err)
		}
		k, _, err := svc.CreateKey(ctx, t.ID, u.ID, name+"-prod", nil)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("key of %s: %w", name, err)
		}
		return t, u, k, nil
	}
	if f.Acme, f.AcmeBoss, f.AcmeKey, err = mk("acme"); err != nil {
		return nil, err
	}
	if f.Globex, f.GlobexBoss, f.GlobexKey, err = mk("globex"); err != nil {
		return nil, err
	}
	if err := w.WriteUsage(ctx, Events(now, &f)); err != nil {
		return nil, fmt.Errorf("write usage: %w", err)
	}
	return &f, nil
}

// Events are six requests before now (a = acme, its boss and key; g =
// globex's):
//
//	#  tenant  model   when      prompt  compl.  cost $    latency  status
//	1  a       gpt-4o  now-1h       100      50  0.001      80 ms   200
//	2  a       gpt-4o  now-1h       200     100  0.002     300 ms   200
//	3  a       claude  now-2h       300       0  0.003    1500 ms   500
//	4  g       gpt-4o  now-3h      1000     500  0.010     200 ms   200
//	5  g       gpt-4o  now-50h     4000    1000  0.040     600 ms   200
//	6  a       claude  now-240h   10000    5000  0.100    3000 ms   200
func Events(now time.Time, f *Fixture) []billing.Event {
	type row struct {
		acme          bool
		model         string
		ago           time.Duration
		prompt, compl int64
		cost          tenancy.MicroUSD
		latency       time.Duration
		status        int
	}
	rows := []row{
		{true, "gpt-4o", time.Hour, 100, 50, 1_000, 80 * time.Millisecond, 200},
		{true, "gpt-4o", time.Hour, 200, 100, 2_000, 300 * time.Millisecond, 200},
		{true, "claude", 2 * time.Hour, 300, 0, 3_000, 1500 * time.Millisecond, 500},
		{false, "gpt-4o", 3 * time.Hour, 1000, 500, 10_000, 200 * time.Millisecond, 200},
		{false, "gpt-4o", 50 * time.Hour, 4000, 1000, 40_000, 600 * time.Millisecond, 200},
		{true, "claude", 240 * time.Hour, 10000, 5000, 100_000, 3000 * time.Millisecond, 200},
	}
	out := make([]billing.Event, 0, len(rows))
	for i, r := range rows {
		t, u, k := f.Globex, f.GlobexBoss, f.GlobexKey
		if r.acme {
			t, u, k = f.Acme, f.AcmeBoss, f.AcmeKey
		}
		var id billing.EventID
		rand.Read(id[:])
		e := billing.Event{
			ID: id, Time: now.Add(-r.ago).UTC().Truncate(time.Microsecond), RequestID: fmt.Sprintf("seed-%d", i+1),
			TenantID: t.ID, Tenant: t.Name, UserID: u.ID, KeyID: k.ID, Endpoint: "chat_completions",
			Model: r.model, UpstreamModel: r.model, Deployment: "mock", Provider: "mock",
			Usage: providers.Usage{PromptTokens: r.prompt, CompletionTokens: r.compl, TotalTokens: r.prompt + r.compl},
			Cost:  r.cost, Priced: true, Latency: r.latency, Status: r.status,
		}
		if r.status >= 400 {
			e.ErrorCode = "upstream_error"
		}
		out = append(out, e)
	}
	return out
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"time"

	"go.uber.org/zap"

	"github.com/mtai-dev/mtai/tenancy"
)

// withApp runs fn with the store opened (and migrated) as `serve` would.
func withApp(ctx context.Context, getenv func(string) string, fn func(a *app) error) error {
	cfg, err := LoadConfig(getenv)
	if err != nil {
		return err
	}
	a, err := openApp(ctx, cfg, zap.NewNop())
	if err != nil {
		return err
	}
	defer a.Close()
	return fn(a)
}

// migrate applies the store's migrations and exits (opening the store migrates).
func migrate(ctx context.Context, getenv func(string) string, out io.Writer) error {
	return withApp(ctx, getenv, func(a *app) error {
		fmt.Fprintln(out, "migrations applied")
		return nil
	})
}

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// tenantCmd: mtai tenant create NAME [flags] | mtai tenant list
func tenantCmd(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: mtai tenant create NAME [--display-name S] [--default-model M] [--allowed-models a,b] [--rpm N] [--budget USD] | mtai tenant list")
	}
	switch args[0] {
	case "list":
		return withApp(ctx, getenv, func(a *app) error {
			ts, _, err := a.tenancy.ListTenants(ctx, 1000, 0)
			if err != nil {
				return err
			}
			return printJSON(out, ts)
		})
	case "create":
		fs := flag.NewFlagSet("tenant create", flag.ContinueOnError)
		display := fs.String("display-name", "", "display name")
		model := fs.String("default-model", "", "default model")
		allowed := fs.String("allowed-models", "", "comma-separated allowed models (empty: all)")
		rpm := fs.Int64("rpm", 0, "requests per minute (0: no limit)")
		tpm := fs.Int64("tpm", 0, "tokens per minute (0: no limit)")
		budget := fs.Float64("budget", 0, "monthly budget in USD (0: none)")
		prompt := fs.String("system-prompt", "", "system prompt placed first in every chat")
		if len(args) < 2 {
			return fmt.Errorf("usage: mtai tenant create NAME [flags]")
		}
		name := args[1]
		if err := fs.Parse(args[2:]); err != nil {
			return err
		}
		in := tenancy.TenantUpdate{Name: &name}
		if *display != "" {
			in.DisplayName = display
		}
		if *model != "" {
			in.DefaultModel = model
		}
		if *allowed != "" {
			list := splitList(*allowed)
			in.AllowedModels = &list
		}
		if *rpm != 0 {
			in.RequestsPerMinute = rpm
		}
		if *tpm != 0 {
			in.TokensPerMinute = tpm
		}
		if *budget != 0 {
			b := tenancy.USD(*budget)
			in.MonthlyBudget = &b
		}
		if *prompt != "" {
			in.SystemPrompt = prompt
		}
		return withApp(ctx, getenv, func(a *app) error {
			t, err := a.tenancy.CreateTenant(ctx, in)
			if err != nil {
				return err
			}
			return printJSON(out, t)
		})
	}
	return fmt.Errorf("unknown tenant command %q (create, list)", args[0])
}

// keyCmd: mtai key create --tenant NAME [--name N] [--expires 720h] [--rpm N] [--rph N] [--tpm N]
func keyCmd(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("usage: mtai key create --tenant NAME [--name LABEL] [--expires DURATION] [--rpm N] [--rph N] [--tpm N]")
	}
	fs := flag.NewFlagSet("key create", flag.ContinueOnError)
	tenant := fs.String("tenant", "", "tenant name (required)")
	name := fs.String("name", "cli", "label of the key")
	expires := fs.Duration("expires", 0, "lifetime, e.g. 720h (0: never expires)")
	var limits tenancy.RateLimits
	fs.Int64Var(&limits.RequestsPerMinute, "rpm", 0, "the key's own requests per minute, on top of the tenant's (0: no limit)")
	fs.Int64Var(&limits.RequestsPerHour, "rph", 0, "the key's own requests per hour (0: no limit)")
	fs.Int64Var(&limits.TokensPerMinute, "tpm", 0, "the key's own tokens per minute (0: no limit)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *tenant == "" {
		return fmt.Errorf("--tenant is required")
	}
	return withApp(ctx, getenv, func(a *app) error {
		t, err := a.tenancy.GetTenantByName(ctx, *tenant)
		if err != nil {
			return fmt.Errorf("tenant %q: %w", *tenant, err)
		}
		var exp *time.Time
		if *expires > 0 {
			e := time.Now().Add(*expires).UTC()
			exp = &e
		}
		k, secret, err := a.tenancy.CreateKeyWithLimits(ctx, t.ID, 0, *name, exp, limits)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "API key for tenant %s (id %d, shown this once):\n%s\n", t.Name, k.ID, secret)
		if !k.RateLimits.IsZero() {
			fmt.Fprintf(out, "its own limits (0: none): requests_per_minute %d, requests_per_hour %d, tokens_per_minute %d\n",
				k.RequestsPerMinute, k.RequestsPerHour, k.TokensPerMinute)
		}
		return nil
	})
}

// userCmd: mtai user create --tenant NAME --username U --role R (password from MTAI_USER_PASSWORD)
func userCmd(ctx context.Context, args []string, getenv func(string) string, out io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("usage: mtai user create --tenant NAME --username U [--role member|tenant_admin|platform_admin] (password in MTAI_USER_PASSWORD)")
	}
	fs := flag.NewFlagSet("user create", flag.ContinueOnError)
	tenant := fs.String("tenant", "", "tenant name (required)")
	username := fs.String("username", "", "user name (required)")
	role := fs.String("role", string(tenancy.RoleMember), "role")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	password := getenv("MTAI_USER_PASSWORD")
	if *tenant == "" || *username == "" || password == "" {
		return fmt.Errorf("--tenant, --username and MTAI_USER_PASSWORD are required")
	}
	return withApp(ctx, getenv, func(a *app) error {
		t, err := a.tenancy.GetTenantByName(ctx, *tenant)
		if err != nil {
			return fmt.Errorf("tenant %q: %w", *tenant, err)
		}
		u, err := a.tenancy.CreateUser(ctx, t.ID, *username, password, tenancy.Role(*role))
		if err != nil {
			return err
		}
		return printJSON(out, u)
	})
}

// Package tenancy owns who is calling: tenants, users, API keys, roles and the
// policy a tenant applies to its requests (allowed models, default model,
// system prompt, limits). Storage adapters live below it (store/...), and the
// HTTP edge (gateway) asks it, through small interfaces, to turn a credential
// into a Principal.
package tenancy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// Errors returned by resolvers and stores. Callers compare with errors.Is.
var (
	// ErrUnauthenticated means the credential is missing, unknown, revoked or expired.
	ErrUnauthenticated = errors.New("invalid api key")
	// ErrNotFound means the thing asked for does not exist or is not visible to the caller.
	ErrNotFound = errors.New("not found")
	// ErrForbidden means the caller is known but may not do this.
	ErrForbidden = errors.New("forbidden")
	// ErrConflict means a unique name is already taken.
	ErrConflict = errors.New("already exists")
)

// Role is what a principal may do. The zero value is RoleMember.
type Role string

// The roles, from least to most powerful.
const (
	RoleMember        Role = "member"
	RoleTenantAdmin   Role = "tenant_admin"
	RolePlatformAdmin Role = "platform_admin"
)

// Principal is an authenticated caller. It is immutable once built and safe to
// share between goroutines.
type Principal struct {
	// Tenant is the tenant name (the X-Tenant-ID value).
	Tenant string
	// TenantID is the store's id of the tenant; 0 for keys from static config.
	TenantID int64
	// UserID is the user behind a JWT, or the user an API key was issued to;
	// 0 for an API key issued to no user.
	UserID int64
	// KeyID is the id of the API key used, 0 for a JWT.
	KeyID int64
	// Role of the caller; API keys act as members of their tenant unless
	// issued to a user, whose current role they then carry.
	Role Role
	// Policy is the tenant's policy at the time of authentication (may be nil: no policy).
	Policy *Policy
	// KeyLimits are the API key's own rate limits, applied together with
	// the Policy's; nil for a JWT and for a key without limits.
	KeyLimits *KeyLimits
}

// Policy is what a tenant allows and adds to every request. A nil *Policy
// allows every routed model and adds nothing.
type Policy struct {
	// DefaultModel is used when a request names no model. Empty: the request must name one.
	DefaultModel string
	// AllowedModels lists the models a tenant may use; empty means every routed model.
	AllowedModels []string
	// SystemPrompt, when set, is placed first in every chat request.
	SystemPrompt string
	// RequestsPerMinute, RequestsPerHour and TokensPerMinute are the tenant's
	// rate limits; 0 means no limit.
	RequestsPerMinute int64
	RequestsPerHour   int64
	TokensPerMinute   int64
	// MonthlyBudget is the tenant's spending cap per calendar month (UTC);
	// 0 means no budget.
	MonthlyBudget MicroUSD
	// RAG is the tenant's retrieval configuration.
	RAG RAGConfig
}

// Allows reports whether the policy lets the tenant use model.
func (p *Policy) Allows(model string) bool {
	if p == nil || len(p.AllowedModels) == 0 {
		return true
	}
	for _, m := range p.AllowedModels {
		if m == model {
			return true
		}
	}
	return false
}

// KeyResolver turns an API key into a Principal. Implementations must be safe
// for concurrent use and fast: the gateway calls it on every request.
type KeyResolver interface {
	ResolveKey(ctx context.Context, key []byte) (*Principal, error)
}

// HashKey returns the stored form of an API key: hex SHA-256. Keys are long
// random strings, so a fast hash is enough; comparing hashes through a map
// lookup does not leak the secret's bytes through timing.
func HashKey(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:])
}

// StaticKeys is a KeyResolver over a fixed set of keys (from the config file
// or MTAI_BOOTSTRAP_API_KEY). The zero value knows no key. It is safe for
// concurrent use once built; it is never modified after NewStaticKeys.
type StaticKeys struct {
	byHash map[[sha256.Size]byte]*Principal
}

// NewStaticKeys builds a resolver from key → tenant name.
func NewStaticKeys(keys map[string]string) *StaticKeys {
	s := &StaticKeys{byHash: make(map[[sha256.Size]byte]*Principal, len(keys))}
	for k, tenant := range keys {
		s.byHash[sha256.Sum256([]byte(k))] = &Principal{Tenant: tenant, Role: RoleMember}
	}
	return s
}

// ResolveKey implements KeyResolver.
func (s *StaticKeys) ResolveKey(_ context.Context, key []byte) (*Principal, error) {
	if p, ok := s.byHash[sha256.Sum256(key)]; ok {
		return p, nil
	}
	return nil, ErrUnauthenticated
}

type principalKey struct{}

// WithPrincipal returns a context carrying p.
func WithPrincipal(ctx context.Context, p *Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal in ctx, or nil.
func PrincipalFrom(ctx context.Context) *Principal {
	p, _ := ctx.Value(principalKey{}).(*Principal)
	return p
}

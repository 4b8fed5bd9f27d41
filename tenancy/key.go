package tenancy

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"strconv"
	"time"
	"unicode/utf8"
)

// KeyPrefix starts every API key the gateway generates.
const KeyPrefix = "sk-mtai-"

// keyShownLen is how many leading characters of a secret are kept in
// APIKey.Prefix, to tell keys apart in lists.
const keyShownLen = 12

// maxKeyNameLen bounds APIKey.Name, in characters (what a form's
// maxlength counts).
const maxKeyNameLen = 100

// Bounds on the length of a presented key: anything outside cannot be a key
// and is refused without a lookup.
const (
	minKeyLen = 16
	maxKeyLen = 256
)

// APIKey is a long-lived credential of a tenant, used as a bearer token on
// /v1 and /api/v1. Only the SHA-256 of the secret is stored (Hash); the
// secret itself is shown once, when the key is created.
type APIKey struct {
	// ID is assigned by the store; 0 before creation.
	ID int64 `json:"id"`
	// TenantID is the tenant the key acts for.
	TenantID int64 `json:"tenant_id"`
	// UserID is the user the key was issued to, whose role it carries; 0 for
	// none (the key acts as a member).
	UserID int64 `json:"user_id,omitempty"`
	// Name is a label chosen by its creator: 1 to 100 characters.
	Name string `json:"name"`
	// Prefix is the first 12 characters of the secret ("sk-mtai-Ab3x").
	Prefix string `json:"prefix"`
	// Hash is HashKey(secret); never serialised.
	Hash string `json:"-"`
	// CreatedAt is set by the Service (UTC, microseconds).
	CreatedAt time.Time `json:"created_at"`
	// LastUsedAt is when the key was last seen, to within a minute; nil if
	// never. Written in batches by KeyCache.
	LastUsedAt *time.Time `json:"last_used_at"`
	// ExpiresAt, when set, is the instant the key stops working.
	ExpiresAt *time.Time `json:"expires_at"`
	// Revoked keys never work again; RevokedAt says since when.
	Revoked   bool       `json:"revoked"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	// RateLimits are the key's own limits, applied together with its
	// tenant's: a request must pass both. The zero value limits nothing
	// beyond the tenant. Their JSON fields sit beside the key's others.
	RateLimits
}

// RateLimits are an API key's own rate limits, named as the tenant's; 0
// means no limit.
type RateLimits struct {
	// RequestsPerMinute, RequestsPerHour and TokensPerMinute cap what
	// requests made with the key take, over those windows.
	RequestsPerMinute int64 `json:"requests_per_minute"`
	RequestsPerHour   int64 `json:"requests_per_hour"`
	TokensPerMinute   int64 `json:"tokens_per_minute"`
}

// IsZero reports whether l limits nothing.
func (l RateLimits) IsZero() bool { return l == RateLimits{} }

// Validate refuses negative limits, naming the field at fault.
func (l RateLimits) Validate() error {
	switch {
	case l.RequestsPerMinute < 0:
		return invalid("requests_per_minute", "must not be negative")
	case l.RequestsPerHour < 0:
		return invalid("requests_per_hour", "must not be negative")
	case l.TokensPerMinute < 0:
		return invalid("tokens_per_minute", "must not be negative")
	}
	return nil
}

// KeyLimits are the rate limits of the API key behind a Principal.
type KeyLimits struct {
	RateLimits
	// Scope tells the key's rate-limit buckets apart from its tenant's and
	// from other keys': "k" followed by the key's id (ratelimit.Bucket's
	// Scope). Built once, when the key is resolved, so that the hot path
	// formats nothing.
	Scope string
}

// keyLimits returns the limits a Principal of k carries: nil when k has none.
func (k *APIKey) keyLimits() *KeyLimits {
	if k.RateLimits.IsZero() {
		return nil
	}
	return &KeyLimits{RateLimits: k.RateLimits, Scope: "k" + strconv.FormatInt(k.ID, 10)}
}

// validate checks the fields a key's creator or admin chooses: its name
// (1 to 100 characters of UTF-8) and its limits.
func (k *APIKey) validate() error {
	if k.Name == "" || !utf8.ValidString(k.Name) || utf8.RuneCountInString(k.Name) > maxKeyNameLen {
		return invalid("name", "must be 1 to 100 characters")
	}
	return k.RateLimits.Validate()
}

// KeyUpdate is the body of PATCH /api/v1/keys/{id}: a nil field is left as
// it is, a non-nil one is set (a limit of 0 removes it). Other fields of
// a key cannot change.
type KeyUpdate struct {
	// Name is the key's new label.
	Name *string `json:"name"`
	// The others set the RateLimits field of the same JSON name.
	RequestsPerMinute *int64 `json:"requests_per_minute"`
	RequestsPerHour   *int64 `json:"requests_per_hour"`
	TokensPerMinute   *int64 `json:"tokens_per_minute"`
}

// Apply copies the non-nil fields of u into k and does not validate.
func (u *KeyUpdate) Apply(k *APIKey) {
	setIf(&k.Name, u.Name)
	setIf(&k.RequestsPerMinute, u.RequestsPerMinute)
	setIf(&k.RequestsPerHour, u.RequestsPerHour)
	setIf(&k.TokensPerMinute, u.TokensPerMinute)
}

// Usable reports whether k may authenticate a request at now: not revoked
// and not expired.
func (k *APIKey) Usable(now time.Time) bool {
	return !k.Revoked && (k.ExpiresAt == nil || now.Before(*k.ExpiresAt))
}

// NewKeySecret returns a new API key secret: KeyPrefix followed by 32 bytes
// from crypto/rand in unpadded base64url (51 characters in all).
func NewKeySecret() string {
	var b [32]byte
	rand.Read(b[:]) // never fails (Go ≥ 1.24 crashes instead)
	return KeyPrefix + base64.RawURLEncoding.EncodeToString(b[:])
}

// keyPrefix returns the part of secret shown in lists.
func keyPrefix(secret string) string {
	if len(secret) <= keyShownLen {
		return secret
	}
	return secret[:keyShownLen]
}

// KeyStore persists API keys. Every method but FindKeyByHash and
// MarkKeysUsed is scoped by tenant: a key of another tenant is ErrNotFound.
// Implementations are safe for concurrent use; a duplicate hash is
// ErrConflict, a missing tenant or user ErrNotFound.
type KeyStore interface {
	// CreateKey inserts k and sets k.ID.
	CreateKey(ctx context.Context, k *APIKey) error
	// FindKeyByHash returns the key whose Hash is hash, in any state, of any
	// tenant: the caller checks Usable and the tenant.
	FindKeyByHash(ctx context.Context, hash string) (*APIKey, error)
	// FindKeyByID returns key id of tenant tenantID, in any state.
	FindKeyByID(ctx context.Context, tenantID, id int64) (*APIKey, error)
	// FindKeys returns a page of the keys of tenant tenantID, ordered by id,
	// and how many it has in all. limit 0 returns them all.
	FindKeys(ctx context.Context, tenantID int64, limit, offset int) ([]*APIKey, int, error)
	// UpdateKey loads key id of tenant tenantID, lets fn change it and saves
	// its Name and RateLimits (no other field), atomically: no other update
	// of that key interleaves. An error from fn aborts and is returned as is.
	UpdateKey(ctx context.Context, tenantID, id int64, fn func(*APIKey) error) (*APIKey, error)
	// RevokeKey marks key id of tenant tenantID revoked at at and returns it.
	// Revoking a revoked key changes nothing (RevokedAt stays).
	RevokeKey(ctx context.Context, tenantID, id int64, at time.Time) (*APIKey, error)
	// MarkKeysUsed sets last_used_at of each key id to its time unless the
	// stored one is later. Unknown ids are ignored.
	MarkKeysUsed(ctx context.Context, used map[int64]time.Time) error
}

// Stores groups the three stores the Service and KeyCache need. The SQL
// adapters implement all three with one *DB: Stores{db, db, db}.
type Stores struct {
	// Tenants, Users and Keys are required wherever Stores is taken.
	Tenants TenantStore
	Users   UserStore
	Keys    KeyStore
}

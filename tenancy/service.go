package tenancy

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Pagination bounds of the List methods.
const (
	// DefaultPageSize is the page size when a List method is given limit 0.
	DefaultPageSize = 100
	// MaxPageSize is the largest page; a larger limit is lowered to it.
	MaxPageSize = 1000
)

// Invalidator is told when something a credential cache may hold changed:
// a revoked key, a tenant updated or disabled, a user's role or state
// changed. *KeyCache implements it (and forwards to the other replicas when
// it has a Bus). Invalidate must not fail the caller: it handles its errors.
type Invalidator interface {
	Invalidate(ctx context.Context, inv Invalidation)
}

// ServiceConfig holds what NewService needs. Stores and Issuer are required;
// the rest have defaults.
type ServiceConfig struct {
	// Stores persist tenants, users and keys.
	Stores Stores
	// Issuer signs the tokens of Login and verifies them in AuthenticateJWT.
	Issuer *Issuer
	// Invalidator, when set, hears of every change that must drop cached
	// credentials (usually the *KeyCache that serves ResolveKey).
	Invalidator Invalidator
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// Argon2 are the password hashing costs; DefaultArgon2Params when zero.
	// Tests pass cheap ones.
	Argon2 Argon2Params
}

// Service is the tenancy use cases the HTTP layer and the CLI call: tenants,
// users, API keys, login and JWT authentication, and the first-start
// bootstrap. It checks input (a *ValidationError names the field at fault)
// but not permissions: the caller checks the Principal's role and passes the
// tenant it may act on; anything of another tenant is ErrNotFound. A Service
// is safe for concurrent use.
type Service struct {
	tenants     TenantStore
	users       UserStore
	keys        KeyStore
	issuer      *Issuer
	invalidator Invalidator
	now         func() time.Time
	argon       Argon2Params

	dummyOnce sync.Once
	dummyHash string // verified when a login names no existing user
}

// NewService returns a Service over cfg.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Stores.Tenants == nil || cfg.Stores.Users == nil || cfg.Stores.Keys == nil {
		return nil, errors.New("tenancy: NewService needs the tenant, user and key stores")
	}
	if cfg.Issuer == nil {
		return nil, errors.New("tenancy: NewService needs an Issuer")
	}
	s := &Service{
		tenants:     cfg.Stores.Tenants,
		users:       cfg.Stores.Users,
		keys:        cfg.Stores.Keys,
		issuer:      cfg.Issuer,
		invalidator: cfg.Invalidator,
		now:         cfg.Now,
		argon:       cfg.Argon2,
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.argon == (Argon2Params{}) {
		s.argon = DefaultArgon2Params()
	}
	if _, err := HashPassword("probe-password", s.argon); err != nil {
		return nil, fmt.Errorf("tenancy: %w", err)
	}
	return s, nil
}

// clock returns the current time as stored: UTC, whole microseconds (the
// precision of both SQL stores).
func (s *Service) clock() time.Time {
	return s.now().UTC().Truncate(time.Microsecond)
}

func (s *Service) invalidate(ctx context.Context, inv Invalidation) {
	if s.invalidator != nil {
		s.invalidator.Invalidate(ctx, inv)
	}
}

// page checks and normalises limit and offset.
func page(limit, offset int) (int, int, error) {
	switch {
	case limit < 0:
		return 0, 0, invalid("limit", "must not be negative")
	case offset < 0:
		return 0, 0, invalid("offset", "must not be negative")
	case limit == 0:
		limit = DefaultPageSize
	case limit > MaxPageSize:
		limit = MaxPageSize
	}
	return limit, offset, nil
}

// CreateTenant creates a tenant from in: Name is required, every other nil
// field takes its default (no limits, every model, DefaultRAG). A taken name
// is ErrConflict, even if that tenant is disabled.
func (s *Service) CreateTenant(ctx context.Context, in TenantUpdate) (*Tenant, error) {
	if in.Name == nil {
		return nil, invalid("name", "is required")
	}
	now := s.clock()
	t := &Tenant{Name: *in.Name, RAG: DefaultRAG(), CreatedAt: now, UpdatedAt: now}
	in.Apply(t)
	if t.AllowedModels == nil {
		t.AllowedModels = []string{}
	}
	if err := t.Validate(); err != nil {
		return nil, err
	}
	if err := s.tenants.CreateTenant(ctx, t); err != nil {
		return nil, fmt.Errorf("create tenant %q: %w", t.Name, err)
	}
	return t, nil
}

// GetTenant returns tenant id, disabled or not.
func (s *Service) GetTenant(ctx context.Context, id int64) (*Tenant, error) {
	return s.tenants.FindTenantByID(ctx, id)
}

// GetTenantByName returns the tenant named name, disabled or not.
func (s *Service) GetTenantByName(ctx context.Context, name string) (*Tenant, error) {
	return s.tenants.FindTenantByName(ctx, name)
}

// ListTenants returns a page of tenants ordered by id, and how many there are
// in all. limit 0 means DefaultPageSize; above MaxPageSize it is lowered.
func (s *Service) ListTenants(ctx context.Context, limit, offset int) ([]*Tenant, int, error) {
	limit, offset, err := page(limit, offset)
	if err != nil {
		return nil, 0, err
	}
	return s.tenants.FindTenants(ctx, TenantFilter{Limit: limit, Offset: offset})
}

// UpdateTenant changes the fields upd names, atomically, and tells the
// Invalidator so that cached principals pick up the new policy. A Name other
// than the current one is a *ValidationError: names never change.
func (s *Service) UpdateTenant(ctx context.Context, id int64, upd TenantUpdate) (*Tenant, error) {
	t, err := s.tenants.UpdateTenant(ctx, id, func(t *Tenant) error {
		if upd.Name != nil && *upd.Name != t.Name {
			return invalid("name", "cannot be changed")
		}
		upd.Apply(t)
		t.UpdatedAt = s.clock()
		return t.Validate()
	})
	if err != nil {
		return nil, err
	}
	s.invalidate(ctx, Invalidation{TenantID: id})
	return t, nil
}

// DeleteTenant disables tenant id: at once its keys and tokens stop
// working, on every replica that shares the Invalidator's bus (within the
// KeyCache TTL on the others). Its rows stay; deleting a disabled tenant
// again succeeds.
func (s *Service) DeleteTenant(ctx context.Context, id int64) error {
	disabled := true
	_, err := s.UpdateTenant(ctx, id, TenantUpdate{Disabled: &disabled})
	return err
}

// activeTenant returns tenant id, or ErrNotFound if it is disabled.
func (s *Service) activeTenant(ctx context.Context, id int64) (*Tenant, error) {
	t, err := s.tenants.FindTenantByID(ctx, id)
	if err != nil {
		return nil, err
	}
	if t.Disabled {
		return nil, fmt.Errorf("tenant %d is disabled: %w", id, ErrNotFound)
	}
	return t, nil
}

// CreateUser adds a user to tenant tenantID (ErrNotFound when missing or
// disabled). The username is lowercased; a taken one is ErrConflict.
func (s *Service) CreateUser(ctx context.Context, tenantID int64, username, password string, role Role) (*User, error) {
	name, err := NormalizeUsername(username)
	if err != nil {
		return nil, err
	}
	if err := role.Validate(); err != nil {
		return nil, err
	}
	if err := ValidatePassword(password); err != nil {
		return nil, err
	}
	if _, err := s.activeTenant(ctx, tenantID); err != nil {
		return nil, err
	}
	hash, err := HashPassword(password, s.argon)
	if err != nil {
		return nil, err
	}
	now := s.clock()
	u := &User{TenantID: tenantID, Username: name, Role: role, PasswordHash: hash, CreatedAt: now, UpdatedAt: now}
	if err := s.users.CreateUser(ctx, u); err != nil {
		return nil, fmt.Errorf("create user %q: %w", name, err)
	}
	return u, nil
}

// GetUser returns user id of tenant tenantID.
func (s *Service) GetUser(ctx context.Context, tenantID, id int64) (*User, error) {
	return s.users.FindUserByID(ctx, tenantID, id)
}

// ListUsers returns a page of the users of tenant tenantID (which must be >
// 0) and how many it has.
func (s *Service) ListUsers(ctx context.Context, tenantID int64, limit, offset int) ([]*User, int, error) {
	if tenantID <= 0 {
		return nil, 0, ErrNotFound
	}
	limit, offset, err := page(limit, offset)
	if err != nil {
		return nil, 0, err
	}
	return s.users.FindUsers(ctx, UserFilter{TenantID: tenantID, Limit: limit, Offset: offset})
}

// ListAllUsers returns a page of the users of every tenant, for platform
// admins (the caller checks the role).
func (s *Service) ListAllUsers(ctx context.Context, limit, offset int) ([]*User, int, error) {
	limit, offset, err := page(limit, offset)
	if err != nil {
		return nil, 0, err
	}
	return s.users.FindUsers(ctx, UserFilter{AllTenants: true, Limit: limit, Offset: offset})
}

// UpdateUser changes the role, the disabled state or the password of user id
// of tenant tenantID. Role and state changes reach the keys issued to the
// user through the Invalidator; tokens already issued see them on their
// next request (AuthenticateJWT reads the user).
func (s *Service) UpdateUser(ctx context.Context, tenantID, id int64, upd UserUpdate) (*User, error) {
	if upd.Role != nil {
		if err := upd.Role.Validate(); err != nil {
			return nil, err
		}
	}
	var hash string
	if upd.Password != nil {
		if err := ValidatePassword(*upd.Password); err != nil {
			return nil, err
		}
		var err error
		if hash, err = HashPassword(*upd.Password, s.argon); err != nil {
			return nil, err
		}
	}
	u, err := s.users.UpdateUser(ctx, tenantID, id, func(u *User) error {
		setIf(&u.Role, upd.Role)
		setIf(&u.Disabled, upd.Disabled)
		if hash != "" {
			u.PasswordHash = hash
		}
		u.UpdatedAt = s.clock()
		return nil
	})
	if err != nil {
		return nil, err
	}
	if upd.Role != nil || upd.Disabled != nil {
		s.invalidate(ctx, Invalidation{TenantID: tenantID})
	}
	return u, nil
}

// Login checks username and password in the tenant named tenantName and
// returns a signed JWT and how long it is valid. An unknown tenant or user,
// a wrong password, a disabled user or tenant are all ErrUnauthenticated,
// and all cost one password verification, so that timing tells them apart
// no better than the answer does.
func (s *Service) Login(ctx context.Context, tenantName, username, password string) (string, time.Duration, error) {
	var u *User
	t, err := s.tenants.FindTenantByName(ctx, tenantName)
	switch {
	case errors.Is(err, ErrNotFound):
	case err != nil:
		return "", 0, fmt.Errorf("login: %w", err)
	case !t.Disabled:
		if name, nerr := NormalizeUsername(username); nerr == nil {
			u, err = s.users.FindUserByName(ctx, t.ID, name)
			if err != nil && !errors.Is(err, ErrNotFound) {
				return "", 0, fmt.Errorf("login: %w", err)
			}
		}
	}
	hash := s.dummy()
	if u != nil {
		hash = u.PasswordHash
	}
	ok, err := VerifyPassword(hash, password)
	if err != nil {
		return "", 0, fmt.Errorf("login: stored password hash: %w", err)
	}
	if u == nil || !ok || u.Disabled {
		return "", 0, ErrUnauthenticated
	}
	return s.issuer.Issue(t.Name, u.ID, u.Role)
}

// dummy returns a hash of a random password made with the Service's costs.
func (s *Service) dummy() string {
	s.dummyOnce.Do(func() {
		h, err := HashPassword(rand.Text(), s.argon)
		if err != nil {
			panic(err) // NewService checked the params
		}
		s.dummyHash = h
	})
	return s.dummyHash
}

// AuthenticateJWT turns a bearer token and the request's X-Tenant-ID into a
// Principal. A bad, expired or foreign token, an unknown or disabled tenant
// or user are ErrUnauthenticated; a valid token for another tenant than
// tenantHeader is ErrForbidden. The role is the user's current one, not the
// token's. It reads the tenant and the user from the store on each call.
func (s *Service) AuthenticateJWT(ctx context.Context, token, tenantHeader string) (*Principal, error) {
	c, err := s.issuer.Verify(token)
	if err != nil {
		return nil, err
	}
	if c.Tenant != tenantHeader {
		return nil, fmt.Errorf("%w: token is for another tenant than X-Tenant-ID", ErrForbidden)
	}
	t, err := s.tenants.FindTenantByName(ctx, c.Tenant)
	if errors.Is(err, ErrNotFound) || err == nil && t.Disabled {
		return nil, fmt.Errorf("%w: tenant %q unknown or disabled", ErrUnauthenticated, c.Tenant)
	}
	if err != nil {
		return nil, fmt.Errorf("authenticate jwt: %w", err)
	}
	u, err := s.users.FindUserByID(ctx, t.ID, c.UserID())
	if errors.Is(err, ErrNotFound) || err == nil && u.Disabled {
		return nil, fmt.Errorf("%w: user unknown or disabled", ErrUnauthenticated)
	}
	if err != nil {
		return nil, fmt.Errorf("authenticate jwt: %w", err)
	}
	return &Principal{Tenant: t.Name, TenantID: t.ID, UserID: u.ID, Role: u.Role, Policy: t.Policy()}, nil
}

// CreateKey creates an API key for tenant tenantID (ErrNotFound when missing
// or disabled), issued to user userID of that tenant when userID is not 0,
// and returns it with its secret. The secret is not kept: show it once.
// expiresAt, when not nil, must be in the future. The key has no limits of
// its own (CreateKeyWithLimits).
func (s *Service) CreateKey(ctx context.Context, tenantID, userID int64, name string, expiresAt *time.Time) (*APIKey, string, error) {
	return s.CreateKeyWithLimits(ctx, tenantID, userID, name, expiresAt, RateLimits{})
}

// CreateKeyWithLimits is CreateKey for a key with rate limits of its own,
// applied together with the tenant's.
func (s *Service) CreateKeyWithLimits(ctx context.Context, tenantID, userID int64, name string, expiresAt *time.Time, limits RateLimits) (*APIKey, string, error) {
	return s.createKey(ctx, tenantID, userID, name, expiresAt, limits, NewKeySecret())
}

func (s *Service) createKey(ctx context.Context, tenantID, userID int64, name string, expiresAt *time.Time, limits RateLimits, secret string) (*APIKey, string, error) {
	if err := (&APIKey{Name: name, RateLimits: limits}).validate(); err != nil {
		return nil, "", err
	}
	now := s.clock()
	var exp *time.Time
	if expiresAt != nil {
		e := expiresAt.UTC().Truncate(time.Microsecond)
		if !e.After(now) {
			return nil, "", invalid("expires_at", "must be in the future")
		}
		exp = &e
	}
	if _, err := s.activeTenant(ctx, tenantID); err != nil {
		return nil, "", err
	}
	if userID != 0 {
		if _, err := s.users.FindUserByID(ctx, tenantID, userID); err != nil {
			return nil, "", fmt.Errorf("user %d: %w", userID, err)
		}
	}
	k := &APIKey{
		TenantID:   tenantID,
		UserID:     userID,
		Name:       name,
		Prefix:     keyPrefix(secret),
		Hash:       HashKey([]byte(secret)),
		CreatedAt:  now,
		ExpiresAt:  exp,
		RateLimits: limits,
	}
	if err := s.keys.CreateKey(ctx, k); err != nil {
		return nil, "", fmt.Errorf("create key: %w", err)
	}
	// A cache may remember this hash as unknown (someone tried it early).
	s.invalidate(ctx, Invalidation{KeyHash: k.Hash})
	return k, secret, nil
}

// ListKeys returns a page of the keys of tenant tenantID, revoked ones
// included, and how many it has.
func (s *Service) ListKeys(ctx context.Context, tenantID int64, limit, offset int) ([]*APIKey, int, error) {
	limit, offset, err := page(limit, offset)
	if err != nil {
		return nil, 0, err
	}
	return s.keys.FindKeys(ctx, tenantID, limit, offset)
}

// GetKey returns key keyID of tenant tenantID (a key of another tenant is
// ErrNotFound), revoked or not.
func (s *Service) GetKey(ctx context.Context, tenantID, keyID int64) (*APIKey, error) {
	return s.keys.FindKeyByID(ctx, tenantID, keyID)
}

// UpdateKey changes the name or the rate limits of key keyID of tenant
// tenantID (a key of another tenant is ErrNotFound), atomically, and drops
// the key from every cache the Invalidator reaches, so that its next
// request is limited by what was saved.
func (s *Service) UpdateKey(ctx context.Context, tenantID, keyID int64, upd KeyUpdate) (*APIKey, error) {
	k, err := s.keys.UpdateKey(ctx, tenantID, keyID, func(k *APIKey) error {
		upd.Apply(k)
		return k.validate()
	})
	if err != nil {
		return nil, err
	}
	s.invalidate(ctx, Invalidation{KeyHash: k.Hash})
	return k, nil
}

// RevokeKey revokes key keyID of tenant tenantID (a key of another tenant is
// ErrNotFound) and drops it from every cache the Invalidator reaches.
// Revoking twice succeeds.
func (s *Service) RevokeKey(ctx context.Context, tenantID, keyID int64) error {
	k, err := s.keys.RevokeKey(ctx, tenantID, keyID, s.clock())
	if err != nil {
		return err
	}
	s.invalidate(ctx, Invalidation{KeyHash: k.Hash})
	return nil
}

// BootstrapConfig says what Bootstrap creates. Every field has a default.
type BootstrapConfig struct {
	// Tenant is the name of the first tenant; "demo" when empty.
	Tenant string
	// DefaultModel of that tenant; "mock-gpt" when empty.
	DefaultModel string
	// AdminPassword of the platform admin "admin"; generated when empty.
	AdminPassword string
	// APIKey is the secret of the first API key (e.g. MTAI_BOOTSTRAP_API_KEY,
	// 16 to 256 characters); generated when empty.
	APIKey string
}

// Bootstrapped is what Bootstrap created. AdminPassword and APIKey are the
// only copies of those secrets: print them once, never log them again.
type Bootstrapped struct {
	// Tenant is the tenant created.
	Tenant *Tenant
	// Admin is the platform admin, a user of Tenant.
	Admin *User
	// AdminPassword is Admin's password, as given or generated.
	AdminPassword string
	// Key is the API key created, and APIKey its secret, as given or
	// generated.
	Key    *APIKey
	APIKey string
}

// Bootstrap fills an empty store: a tenant (cfg.Tenant), a platform admin
// named "admin" in it, and an API key of that tenant (acting as a member).
// When the store already holds a tenant it does nothing and returns nil, nil,
// so it is safe on every start, also by several replicas at once.
func (s *Service) Bootstrap(ctx context.Context, cfg BootstrapConfig) (*Bootstrapped, error) {
	if cfg.Tenant == "" {
		cfg.Tenant = "demo"
	}
	if cfg.DefaultModel == "" {
		cfg.DefaultModel = "mock-gpt"
	}
	if cfg.AdminPassword == "" {
		var b [16]byte
		rand.Read(b[:])
		cfg.AdminPassword = base64.RawURLEncoding.EncodeToString(b[:])
	}
	if cfg.APIKey == "" {
		cfg.APIKey = NewKeySecret()
	} else if len(cfg.APIKey) < minKeyLen || len(cfg.APIKey) > maxKeyLen {
		return nil, invalid("api_key", fmt.Sprintf("must be %d to %d characters", minKeyLen, maxKeyLen))
	}
	if err := ValidatePassword(cfg.AdminPassword); err != nil {
		return nil, err
	}
	_, n, err := s.tenants.FindTenants(ctx, TenantFilter{Limit: 1})
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	if n > 0 {
		return nil, nil
	}
	t, err := s.CreateTenant(ctx, TenantUpdate{Name: &cfg.Tenant, DefaultModel: &cfg.DefaultModel})
	if errors.Is(err, ErrConflict) {
		return nil, nil // another replica bootstraps at the same time
	}
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	u, err := s.CreateUser(ctx, t.ID, "admin", cfg.AdminPassword, RolePlatformAdmin)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	k, secret, err := s.createKey(ctx, t.ID, 0, "bootstrap", nil, RateLimits{}, cfg.APIKey)
	if err != nil {
		return nil, fmt.Errorf("bootstrap: %w", err)
	}
	return &Bootstrapped{Tenant: t, Admin: u, AdminPassword: cfg.AdminPassword, Key: k, APIKey: secret}, nil
}

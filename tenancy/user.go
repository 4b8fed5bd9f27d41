package tenancy

import (
	"context"
	"time"
)

// User is a person who logs in to a tenant with a username and password and
// calls /api/v1 with the JWT they get. The password hash never leaves the
// process in JSON.
type User struct {
	// ID is assigned by the store; 0 before creation.
	ID int64 `json:"id"`
	// TenantID is the tenant the user belongs to.
	TenantID int64 `json:"tenant_id"`
	// Username is unique within its tenant (two tenants may each have an
	// "alice"); stored lowercase: 1 to 64 of a-z 0-9 . _ @ + -.
	Username string `json:"username"`
	// Role is what the user may do.
	Role Role `json:"role"`
	// Disabled users cannot log in and their tokens stop working.
	Disabled bool `json:"disabled"`
	// PasswordHash is the PHC-encoded argon2id hash (see HashPassword).
	PasswordHash string `json:"-"`
	// CreatedAt and UpdatedAt are set by the Service (UTC, microseconds).
	CreatedAt time.Time `json:"created_at"`
	UpdatedAt time.Time `json:"updated_at"`
}

// Validate reports whether r is one of the three roles.
func (r Role) Validate() error {
	switch r {
	case RoleMember, RoleTenantAdmin, RolePlatformAdmin:
		return nil
	}
	return invalid("role", "must be member, tenant_admin or platform_admin")
}

// AtLeast reports whether r is as powerful as min or more (member <
// tenant_admin < platform_admin). An unknown role is below every role.
func (r Role) AtLeast(min Role) bool {
	return roleRank(r) >= roleRank(min) && roleRank(r) > 0
}

func roleRank(r Role) int {
	switch r {
	case RoleMember:
		return 1
	case RoleTenantAdmin:
		return 2
	case RolePlatformAdmin:
		return 3
	}
	return 0
}

const maxUsernameLen = 64

// NormalizeUsername lowercases username and checks it: 1 to 64 of a-z 0-9
// and . _ @ + - (an email address fits).
func NormalizeUsername(username string) (string, error) {
	if username == "" || len(username) > maxUsernameLen {
		return "", invalid("username", "must be 1 to 64 characters")
	}
	b := []byte(username)
	for i, c := range b {
		switch {
		case 'A' <= c && c <= 'Z':
			b[i] = c + ('a' - 'A')
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '.', c == '_', c == '@', c == '+', c == '-':
		default:
			return "", invalid("username", "may contain only letters, digits and . _ @ + -")
		}
	}
	return string(b), nil
}

// UserUpdate is a partial change of a user; nil fields stay.
type UserUpdate struct {
	// Role, when set, becomes the user's role.
	Role *Role `json:"role"`
	// Disabled, when set, disables (true) or re-enables (false) the user.
	Disabled *bool `json:"disabled"`
	// Password, when set, is checked (ValidatePassword), hashed and replaces
	// the old one.
	Password *string `json:"password"`
}

// UserFilter selects a page of users, ordered by id.
type UserFilter struct {
	// TenantID restricts the page to one tenant. 0 is refused unless
	// AllTenants is set, so that a forgotten tenant never lists everyone.
	TenantID int64
	// AllTenants lists the users of every tenant (platform admins only; the
	// caller checks).
	AllTenants bool
	// Limit is the page size; the store returns every row when 0.
	Limit int
	// Offset skips that many rows.
	Offset int
}

// UserStore persists users. Every lookup is scoped by tenant: a user of
// another tenant is ErrNotFound. Implementations are safe for concurrent use;
// a taken username is ErrConflict, a missing tenant ErrNotFound.
type UserStore interface {
	// CreateUser inserts u and sets u.ID.
	CreateUser(ctx context.Context, u *User) error
	// FindUserByID returns user id of tenant tenantID.
	FindUserByID(ctx context.Context, tenantID, id int64) (*User, error)
	// FindUserByName returns the user of tenant tenantID named username.
	FindUserByName(ctx context.Context, tenantID int64, username string) (*User, error)
	// FindUsers returns a page of users and the number of users that match.
	FindUsers(ctx context.Context, f UserFilter) ([]*User, int, error)
	// UpdateUser loads user id of tenant tenantID, lets fn change it and saves
	// Role, Disabled, PasswordHash and UpdatedAt atomically. An error from fn
	// aborts and is returned as is.
	UpdateUser(ctx context.Context, tenantID, id int64, fn func(*User) error) (*User, error)
}

package tenancy

import (
	"fmt"
	"strconv"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// TokenIssuer is the "iss" of every token the gateway signs and accepts.
const TokenIssuer = "mtai"

// DefaultTokenTTL is how long a token from Login lasts unless configured.
const DefaultTokenTTL = time.Hour

// MinSecretLen is the shortest HS256 secret NewIssuer accepts, in bytes.
const MinSecretLen = 32

// Claims are the contents of a gateway JWT.
type Claims struct {
	// Tenant is the tenant name; it must equal the request's X-Tenant-ID.
	Tenant string `json:"tenant"`
	// Role is the user's role when the token was issued (informative: the
	// Service uses the user's current role).
	Role Role `json:"role"`
	// RegisteredClaims hold sub (the user id, decimal), iss, iat and exp.
	jwt.RegisteredClaims
}

// UserID returns the subject as a user id, or 0 if it is not one.
func (c *Claims) UserID() int64 {
	id, err := strconv.ParseInt(c.Subject, 10, 64)
	if err != nil || id <= 0 {
		return 0
	}
	return id
}

// Issuer signs and verifies the gateway's JWTs with HS256 and one secret.
// Verification refuses every other algorithm (including "none"), another
// issuer, a missing or past expiry and a bad signature. It is safe for
// concurrent use and never modified after NewIssuer.
type Issuer struct {
	secret []byte
	ttl    time.Duration
	now    func() time.Time
	parser *jwt.Parser
}

// NewIssuer returns an Issuer over secret (at least MinSecretLen bytes; see
// LoadOrCreateSecret). ttl is the lifetime of issued tokens, DefaultTokenTTL
// when 0; now is the clock, time.Now when nil. The Issuer keeps its own copy
// of secret.
func NewIssuer(secret []byte, ttl time.Duration, now func() time.Time) (*Issuer, error) {
	if len(secret) < MinSecretLen {
		return nil, fmt.Errorf("jwt secret: %d bytes, want at least %d", len(secret), MinSecretLen)
	}
	if ttl < 0 {
		return nil, fmt.Errorf("jwt ttl %v: must not be negative", ttl)
	}
	if ttl == 0 {
		ttl = DefaultTokenTTL
	}
	if now == nil {
		now = time.Now
	}
	return &Issuer{
		secret: append([]byte(nil), secret...),
		ttl:    ttl,
		now:    now,
		parser: jwt.NewParser(
			jwt.WithValidMethods([]string{jwt.SigningMethodHS256.Alg()}),
			jwt.WithIssuer(TokenIssuer),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithTimeFunc(now),
		),
	}, nil
}

// TTL returns the lifetime of the tokens i issues.
func (i *Issuer) TTL() time.Duration { return i.ttl }

// Issue signs a token for user userID of tenant as role. It returns the
// token and how long it stays valid.
func (i *Issuer) Issue(tenant string, userID int64, role Role) (string, time.Duration, error) {
	now := i.now()
	claims := Claims{
		Tenant: tenant,
		Role:   role,
		RegisteredClaims: jwt.RegisteredClaims{
			Issuer:    TokenIssuer,
			Subject:   strconv.FormatInt(userID, 10),
			IssuedAt:  jwt.NewNumericDate(now),
			ExpiresAt: jwt.NewNumericDate(now.Add(i.ttl)),
		},
	}
	token, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims).SignedString(i.secret)
	if err != nil {
		return "", 0, fmt.Errorf("sign jwt: %w", err)
	}
	return token, i.ttl, nil
}

// Verify checks token's algorithm, signature, issuer and times, and returns
// its claims. Every failure wraps ErrUnauthenticated.
func (i *Issuer) Verify(token string) (*Claims, error) {
	var c Claims
	_, err := i.parser.ParseWithClaims(token, &c, func(*jwt.Token) (any, error) { return i.secret, nil })
	if err != nil {
		return nil, fmt.Errorf("%w: jwt: %w", ErrUnauthenticated, err)
	}
	if c.Tenant == "" || c.UserID() == 0 {
		return nil, fmt.Errorf("%w: jwt: missing tenant or subject", ErrUnauthenticated)
	}
	return &c, nil
}

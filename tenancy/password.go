package tenancy

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/crypto/argon2"
)

// Argon2Params are the costs of argon2id password hashing. They are written
// into every hash, so changing them later still verifies old hashes.
type Argon2Params struct {
	// Memory in KiB.
	Memory uint32
	// Time is the number of passes over the memory.
	Time uint32
	// Threads is the degree of parallelism.
	Threads uint8
	// SaltLen and KeyLen are in bytes.
	SaltLen uint32
	KeyLen  uint32
}

// DefaultArgon2Params returns the production costs: 64 MiB, one pass, 4
// lanes (as golang.org/x/crypto/argon2 advises after RFC 9106), a 16-byte
// salt and a 32-byte key. One hash takes tens of milliseconds.
func DefaultArgon2Params() Argon2Params {
	return Argon2Params{Memory: 64 * 1024, Time: 1, Threads: 4, SaltLen: 16, KeyLen: 32}
}

// Bounds on the parameters found in a stored hash, so that a corrupted or
// hostile row cannot make a login allocate gigabytes.
const (
	maxArgonMemory = 1 << 20 // KiB: 1 GiB
	maxArgonTime   = 64
	maxArgonKey    = 1024
	maxPasswordLen = 1024
	minPasswordLen = 8
)

// ErrBadHash means a stored password hash cannot be parsed.
var ErrBadHash = errors.New("malformed password hash")

// ValidatePassword checks a new password: 8 to 1024 bytes.
func ValidatePassword(password string) error {
	if len(password) < minPasswordLen || len(password) > maxPasswordLen {
		return invalid("password", "must be 8 to 1024 characters")
	}
	return nil
}

// HashPassword hashes password with argon2id and a fresh random salt, and
// encodes the result in the PHC string format:
//
//	$argon2id$v=19$m=65536,t=1,p=4$<salt, base64 raw std>$<key, base64 raw std>
func HashPassword(password string, p Argon2Params) (string, error) {
	if p.Memory == 0 || p.Time == 0 || p.Threads == 0 || p.SaltLen < 8 || p.KeyLen < 16 {
		return "", fmt.Errorf("argon2 params %+v: memory, time and threads must be > 0, salt ≥ 8 and key ≥ 16 bytes", p)
	}
	salt := make([]byte, p.SaltLen)
	rand.Read(salt) // never fails (Go ≥ 1.24 crashes instead)
	key := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.Memory, p.Time, p.Threads,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key)), nil
}

// VerifyPassword reports whether password matches encoded, a hash made by
// HashPassword (with any parameters). The comparison of the derived keys
// runs in constant time. A malformed hash is ErrBadHash.
func VerifyPassword(encoded, password string) (bool, error) {
	p, salt, key, err := decodeHash(encoded)
	if err != nil {
		return false, err
	}
	got := argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, p.KeyLen)
	return subtle.ConstantTimeCompare(got, key) == 1, nil
}

func decodeHash(encoded string) (p Argon2Params, salt, key []byte, err error) {
	parts := strings.Split(encoded, "$")
	// "", "argon2id", "v=19", "m=..,t=..,p=..", salt, key
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" {
		return p, nil, nil, ErrBadHash
	}
	var version int
	if _, err := fmt.Sscanf(parts[2], "v=%d", &version); err != nil || version != argon2.Version {
		return p, nil, nil, fmt.Errorf("%w: unsupported version %q", ErrBadHash, parts[2])
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.Memory, &p.Time, &p.Threads); err != nil {
		return p, nil, nil, fmt.Errorf("%w: params %q", ErrBadHash, parts[3])
	}
	if p.Memory == 0 || p.Memory > maxArgonMemory || p.Time == 0 || p.Time > maxArgonTime || p.Threads == 0 {
		return p, nil, nil, fmt.Errorf("%w: params out of range %q", ErrBadHash, parts[3])
	}
	if salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, fmt.Errorf("%w: salt", ErrBadHash)
	}
	if key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > maxArgonKey {
		return p, nil, nil, fmt.Errorf("%w: key", ErrBadHash)
	}
	p.SaltLen, p.KeyLen = uint32(len(salt)), uint32(len(key))
	return p, salt, key, nil
}

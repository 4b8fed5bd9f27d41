package tenancy

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// SecretFileName is the file, in the data dir, that keeps the generated JWT
// signing secret.
const SecretFileName = "jwt.secret"

// LoadOrCreateSecret returns the JWT signing secret kept in
// dataDir/jwt.secret (hex), creating it with 32 random bytes and mode 0600
// on first use. Use it when MTAI_JWT_SECRET is unset, so that tokens survive
// a restart. Two processes starting at once agree on one secret: the file
// appears complete or not at all. A file readable by group or others is
// refused, as is one holding fewer than MinSecretLen bytes.
func LoadOrCreateSecret(dataDir string) ([]byte, error) {
	path := filepath.Join(dataDir, SecretFileName)
	if secret, err := readSecret(path); !errors.Is(err, fs.ErrNotExist) {
		return secret, err
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return nil, fmt.Errorf("jwt secret: %w", err)
	}
	var b [MinSecretLen]byte
	rand.Read(b[:])                                             // never fails (Go ≥ 1.24 crashes instead)
	tmp, err := os.CreateTemp(dataDir, SecretFileName+".*.tmp") // mode 0600
	if err != nil {
		return nil, fmt.Errorf("jwt secret: %w", err)
	}
	defer os.Remove(tmp.Name())
	_, err = tmp.WriteString(hex.EncodeToString(b[:]) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("jwt secret: %w", err)
	}
	// Link fails if the file exists: then another process won, use its secret.
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return readSecret(path)
		}
		return nil, fmt.Errorf("jwt secret: %w", err)
	}
	return b[:], nil
}

func readSecret(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err // fs.ErrNotExist is tested by the caller
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("jwt secret: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("jwt secret %s: mode %v lets others read it; chmod 600 it", path, st.Mode().Perm())
	}
	raw, err := io.ReadAll(io.LimitReader(f, 4096))
	if err != nil {
		return nil, fmt.Errorf("jwt secret %s: %w", path, err)
	}
	secret, err := hex.DecodeString(strings.TrimSpace(string(raw)))
	if err != nil || len(secret) < MinSecretLen {
		return nil, fmt.Errorf("jwt secret %s: want at least %d hex-encoded bytes", path, MinSecretLen)
	}
	return secret, nil
}

package tenancy_test

import (
	"bytes"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/mtai-dev/mtai/tenancy"
)

func TestLoadOrCreateSecret(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "data")
	first, err := tenancy.LoadOrCreateSecret(dir)
	if err != nil {
		t.Fatalf("LoadOrCreateSecret = %v", err)
	}
	if len(first) != 32 {
		t.Errorf("secret is %d bytes, want 32", len(first))
	}
	st, err := os.Stat(filepath.Join(dir, tenancy.SecretFileName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("secret file mode = %v, want 0600", st.Mode().Perm())
	}
	again, err := tenancy.LoadOrCreateSecret(dir)
	if err != nil || !bytes.Equal(first, again) {
		t.Errorf("second LoadOrCreateSecret = %x, %v; want the first %x", again, err, first)
	}
	if _, err := tenancy.NewIssuer(first, 0, nil); err != nil {
		t.Errorf("NewIssuer(generated secret) = %v", err)
	}
}

func TestLoadOrCreateSecretConcurrent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const n = 8
	secrets := make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			s, err := tenancy.LoadOrCreateSecret(dir)
			if err != nil {
				t.Errorf("LoadOrCreateSecret = %v", err)
			}
			secrets[i] = s
		})
	}
	wg.Wait()
	for i := 1; i < n; i++ {
		if !bytes.Equal(secrets[i], secrets[0]) {
			t.Fatalf("concurrent starts disagree: %x vs %x", secrets[i], secrets[0])
		}
	}
	if matches, _ := filepath.Glob(filepath.Join(dir, "*.tmp")); len(matches) != 0 {
		t.Errorf("temporary files left: %v", matches)
	}
}

func TestLoadOrCreateSecretRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		content string
		mode    os.FileMode
	}{
		{"readable by others", "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 0o644},
		{"too short", "0011", 0o600},
		{"not hex", "zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff", 0o600},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tenancy.SecretFileName)
			if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tc.mode)
			if s, err := tenancy.LoadOrCreateSecret(dir); err == nil {
				t.Errorf("LoadOrCreateSecret = %x, want an error", s)
			}
		})
	}
}

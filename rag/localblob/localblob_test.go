package localblob_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtai-dev/mtai/rag"
	"github.com/mtai-dev/mtai/rag/localblob"
)

func TestPutGetDelete(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := localblob.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "3/abc", strings.NewReader("hello"), 5); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, "3/abc", strings.NewReader("hello again"), 11); err != nil { // replaces
		t.Fatal(err)
	}
	rc, err := s.Get(ctx, "3/abc")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != "hello again" {
		t.Errorf("Get = %q", b)
	}
	if st, err := os.Stat(filepath.Join(dir, "3", "abc")); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, %v; want 0600", st.Mode().Perm(), err)
	}
	if err := s.Put(ctx, "3/short", strings.NewReader("abc"), 10); err == nil {
		t.Error("Put with a short reader = nil error")
	}
	if _, err := os.Stat(filepath.Join(dir, "3", "short")); !os.IsNotExist(err) {
		t.Error("a failed Put left a file")
	}
	if err := s.Delete(ctx, "3/abc"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, "3/abc"); !errors.Is(err, rag.ErrBlobNotFound) {
		t.Errorf("Get(deleted) = %v, want ErrBlobNotFound", err)
	}
	if err := s.Delete(ctx, "3/abc"); err != nil {
		t.Errorf("Delete(missing) = %v", err)
	}
	for _, bad := range []string{"../x", "/etc/passwd", "", `a\b`} {
		if err := s.Put(ctx, bad, strings.NewReader("x"), 1); err == nil {
			t.Errorf("Put(%q) = nil error", bad)
		}
	}
}

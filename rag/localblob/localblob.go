// Package localblob keeps uploaded documents as files under a directory
// (by default $MTAI_DATA_DIR/rag/blobs): the embedded mode's rag.BlobStore.
package localblob

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/mtai-dev/mtai/rag"
)

var _ rag.BlobStore = (*Store)(nil)

// Store is a directory of blobs. It is safe for concurrent use: a Put
// writes a temporary file and renames it into place, so a reader sees the
// old file or the new one, never half of one.
type Store struct {
	dir string
}

// Open returns the store over dir, creating it (mode 0700).
func Open(dir string) (*Store, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("localblob: %w", err)
	}
	return &Store{dir: dir}, nil
}

// path maps a key ("<tenant>/<sha256>") to a file; keys never escape dir.
func (s *Store) path(key string) (string, error) {
	if key == "" || strings.Contains(key, "..") || strings.HasPrefix(key, "/") || strings.Contains(key, `\`) {
		return "", fmt.Errorf("localblob: bad key %q", key)
	}
	return filepath.Join(s.dir, filepath.FromSlash(key)), nil
}

// Put implements rag.BlobStore.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("localblob: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(p), ".put-*")
	if err != nil {
		return fmt.Errorf("localblob: %w", err)
	}
	n, err := io.Copy(f, r)
	if err == nil && n != size {
		err = fmt.Errorf("wrote %d bytes, want %d", n, size)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), p)
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("localblob: put %s: %w", key, err)
	}
	return nil
}

// Get implements rag.BlobStore.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	p, err := s.path(key)
	if err != nil {
		return nil, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("localblob: %s: %w", key, rag.ErrBlobNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("localblob: %w", err)
	}
	return f, nil
}

// Delete implements rag.BlobStore.
func (s *Store) Delete(ctx context.Context, key string) error {
	p, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("localblob: %w", err)
	}
	return nil
}

package s3blob_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/mtai-dev/mtai/rag"
	"github.com/mtai-dev/mtai/rag/s3blob"
)

// newStore serves an in-process S3 (gofakes3) on loopback with one bucket.
func newStore(t *testing.T, prefix string) *s3blob.Store {
	t.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket("docs"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(backend).Server())
	t.Cleanup(srv.Close)
	s, err := s3blob.Open(context.Background(), s3blob.Config{Bucket: "docs", Prefix: prefix, Endpoint: srv.URL,
		Region: "us-east-1", AccessKeyID: "test", SecretAccessKey: "test-secret"})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestPutGetDelete(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := newStore(t, "rag/")
	data := bytes.Repeat([]byte("five megabytes of manual pages "), 1000)
	if err := s.Put(ctx, "7/abc", bytes.NewReader(data), int64(len(data))); err != nil {
		t.Fatalf("Put = %v", err)
	}
	// a reader that cannot seek works too
	if err := s.Put(ctx, "7/def", io.MultiReader(strings.NewReader("hello "), strings.NewReader("world")), 11); err != nil {
		t.Fatalf("Put(unseekable) = %v", err)
	}
	rc, err := s.Get(ctx, "7/abc")
	if err != nil {
		t.Fatalf("Get = %v", err)
	}
	got, _ := io.ReadAll(rc)
	rc.Close()
	if !bytes.Equal(got, data) {
		t.Errorf("Get returned %d bytes, want the %d put", len(got), len(data))
	}
	if ok, err := s.Exists(ctx, "7/abc"); !ok || err != nil {
		t.Errorf("Exists = %v, %v", ok, err)
	}
	if err := s.Delete(ctx, "7/abc"); err != nil {
		t.Fatalf("Delete = %v", err)
	}
	if _, err := s.Get(ctx, "7/abc"); !errors.Is(err, rag.ErrBlobNotFound) {
		t.Errorf("Get(deleted) = %v, want ErrBlobNotFound", err)
	}
	if ok, err := s.Exists(ctx, "7/abc"); ok || err != nil {
		t.Errorf("Exists(deleted) = %v, %v", ok, err)
	}
	if err := s.Delete(ctx, "7/abc"); err != nil {
		t.Errorf("Delete(again) = %v, want nil", err)
	}
	if err := s.Put(ctx, "../escape", strings.NewReader("x"), 1); err == nil {
		t.Error("Put(../escape) = nil, want an error")
	}
}

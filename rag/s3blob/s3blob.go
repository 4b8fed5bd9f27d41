// Package s3blob keeps uploaded documents in S3 (AWS S3, or any
// S3-compatible store such as MinIO, Ceph or versitygw with path-style
// addressing): the production rag.BlobStore, configured by S3_BUCKET and,
// for a non-AWS store, S3_ENDPOINT.
package s3blob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/mtai-dev/mtai/rag"
)

var _ rag.BlobStore = (*Store)(nil)

// Config locates the bucket.
type Config struct {
	// Bucket (S3_BUCKET). Required.
	Bucket string
	// Prefix is put before every key, e.g. "rag/" (MTAI_S3_PREFIX). Optional.
	Prefix string
	// Endpoint of an S3-compatible store, e.g. "http://minio:9000"
	// (S3_ENDPOINT); empty: AWS S3 of Region. With an endpoint, addressing
	// is path-style and checksums are sent only when the API requires them
	// (many S3-compatible stores reject the SDK's default trailing checksums).
	Endpoint string
	// Region (AWS_REGION); empty: from the AWS configuration, else us-east-1.
	Region string
	// AccessKeyID and SecretAccessKey, when both set, are static
	// credentials; otherwise the AWS default chain (environment, shared
	// files, ECS task role, instance role) is used. Secret: never logged.
	AccessKeyID, SecretAccessKey string
}

// Store is a bucket of blobs. It is safe for concurrent use.
type Store struct {
	client *s3.Client
	bucket string
	prefix string
}

// Open builds the S3 client of cfg. It makes no request.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3blob: S3_BUCKET is required")
	}
	var opts []func(*config.LoadOptions) error
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" && cfg.SecretAccessKey != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3blob: AWS configuration: %w", err)
	}
	if awsCfg.Region == "" {
		awsCfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
			o.UsePathStyle = true
			o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
			o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		}
	})
	return New(client, cfg.Bucket, cfg.Prefix), nil
}

// New returns a store over an S3 client the caller built.
func New(client *s3.Client, bucket, prefix string) *Store {
	return &Store{client: client, bucket: bucket, prefix: prefix}
}

func (s *Store) key(k string) (*string, error) {
	if k == "" || strings.Contains(k, "..") {
		return nil, fmt.Errorf("s3blob: bad key %q", k)
	}
	return aws.String(s.prefix + k), nil
}

// Put implements rag.BlobStore.
func (s *Store) Put(ctx context.Context, key string, r io.Reader, size int64) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	if _, ok := r.(io.ReadSeeker); !ok {
		// the SDK signs the payload, so it must be able to read it twice
		b, err := io.ReadAll(io.LimitReader(r, size+1))
		if err != nil {
			return fmt.Errorf("s3blob: put %s: %w", key, err)
		}
		r = bytes.NewReader(b)
	}
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(s.bucket), Key: k, Body: r,
		ContentLength: aws.Int64(size), ContentType: aws.String("application/octet-stream")})
	if err != nil {
		return fmt.Errorf("s3blob: put %s: %w", key, err)
	}
	return nil
}

// Get implements rag.BlobStore.
func (s *Store) Get(ctx context.Context, key string) (io.ReadCloser, error) {
	k, err := s.key(key)
	if err != nil {
		return nil, err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.bucket), Key: k})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil, fmt.Errorf("s3blob: %s: %w", key, rag.ErrBlobNotFound)
		}
		return nil, fmt.Errorf("s3blob: get %s: %w", key, err)
	}
	return out.Body, nil
}

// Delete implements rag.BlobStore (S3 deletes are idempotent).
func (s *Store) Delete(ctx context.Context, key string) error {
	k, err := s.key(key)
	if err != nil {
		return err
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.bucket), Key: k}); err != nil {
		return fmt.Errorf("s3blob: delete %s: %w", key, err)
	}
	return nil
}

// Exists reports whether key is stored (HEAD).
func (s *Store) Exists(ctx context.Context, key string) (bool, error) {
	k, err := s.key(key)
	if err != nil {
		return false, err
	}
	_, err = s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.bucket), Key: k})
	if err == nil {
		return true, nil
	}
	var nf *types.NotFound
	if errors.As(err, &nf) {
		return false, nil
	}
	return false, fmt.Errorf("s3blob: head %s: %w", key, err)
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/mtai-dev/mtai/admin"
	"github.com/mtai-dev/mtai/billing"
	"github.com/mtai-dev/mtai/chat"
	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/rag"
	"github.com/mtai-dev/mtai/rag/embedded"
	"github.com/mtai-dev/mtai/rag/hashembed"
	"github.com/mtai-dev/mtai/rag/localblob"
	"github.com/mtai-dev/mtai/rag/milvus"
	"github.com/mtai-dev/mtai/rag/openaiembed"
	"github.com/mtai-dev/mtai/rag/s3blob"
	"github.com/mtai-dev/mtai/store/postgres"
	"github.com/mtai-dev/mtai/store/sqlite"
	"github.com/mtai-dev/mtai/tenancy"
	"github.com/mtai-dev/mtai/tenancy/ratelimit"
	"github.com/mtai-dev/mtai/tenancy/redisbus"
	"github.com/mtai-dev/mtai/tenancy/redislimit"
)

// database is what both stores offer to the wiring.
type database interface {
	Migrate(ctx context.Context) error
	Ping(ctx context.Context) error
	Close() error
	billing.UsageWriter
	ratelimit.SpendSource
	admin.Store
}

// app holds the long-lived dependencies, closed in reverse order.
type app struct {
	cfg     *Config
	log     *zap.Logger
	db      database
	stores  tenancy.Stores
	convs   chat.Store
	redis   *redis.Client
	keys    *tenancy.KeyCache
	tenancy *tenancy.Service
	prices  *billing.Prices
	meter   *billing.Meter
	limits  ratelimit.Limiter
	rl      *redislimit.Limiter
	closers []func() error
}

// openApp opens the store (PostgreSQL when DATABASE_URL is set, else SQLite
// in the data dir), applies migrations, and builds the tenancy service.
func openApp(ctx context.Context, cfg *Config, log *zap.Logger) (*app, error) {
	a := &app{cfg: cfg, log: log}
	if err := a.open(ctx); err != nil {
		a.Close()
		return nil, err
	}
	return a, nil
}

func (a *app) open(ctx context.Context) error {
	cfg := a.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("MTAI_DATA_DIR: %w", err)
	}
	if cfg.DatabaseURL != "" {
		db, err := postgres.Open(ctx, cfg.DatabaseURL)
		if err != nil {
			return fmt.Errorf("DATABASE_URL: %w", err)
		}
		a.db, a.stores, a.convs = db, tenancy.Stores{Tenants: db, Users: db, Keys: db}, db
	} else {
		db, err := sqlite.Open(ctx, filepath.Join(cfg.DataDir, "mtai.db"))
		if err != nil {
			return fmt.Errorf("MTAI_DATA_DIR: %w", err)
		}
		a.db, a.stores, a.convs = db, tenancy.Stores{Tenants: db, Users: db, Keys: db}, db
	}
	a.closers = append(a.closers, a.db.Close)
	if err := a.db.Migrate(ctx); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	var bus tenancy.Bus
	if cfg.RedisURL != "" {
		opt, err := redis.ParseURL(cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("REDIS_URL: %w", err)
		}
		opt.DialTimeout, opt.ReadTimeout, opt.WriteTimeout = time.Second, 500*time.Millisecond, 500*time.Millisecond
		a.redis = redis.NewClient(opt)
		a.closers = append(a.closers, a.redis.Close)
		bus = redisbus.New(a.redis, "")
	}
	secret := []byte(cfg.JWTSecret)
	if len(secret) == 0 {
		var err error
		if secret, err = tenancy.LoadOrCreateSecret(cfg.DataDir); err != nil {
			return fmt.Errorf("MTAI_JWT_SECRET unset and the data dir's secret is unusable: %w", err)
		}
	}
	issuer, err := tenancy.NewIssuer(secret, cfg.JWTTTL, nil)
	if err != nil {
		return fmt.Errorf("MTAI_JWT_SECRET: %w", err)
	}
	a.keys, err = tenancy.NewKeyCache(ctx, a.stores, tenancy.KeyCacheConfig{Bus: bus, Logger: a.log})
	if err != nil {
		return err
	}
	a.closers = append(a.closers, a.keys.Close)
	a.tenancy, err = tenancy.NewService(tenancy.ServiceConfig{Stores: a.stores, Issuer: issuer, Invalidator: a.keys})
	if err != nil {
		return err
	}
	if a.prices, err = billing.LoadPrices(cfg.PricesFile); err != nil {
		return fmt.Errorf("MTAI_PRICES_FILE: %w", err)
	}
	return a.openLimiter()
}

// openMeter starts the usage meter: a journal in the data dir and a
// batched writer into the store. Only `serve` meters.
func (a *app) openMeter() error {
	m, err := billing.NewMeter(a.db, billing.MeterConfig{
		Dir:       filepath.Join(a.cfg.DataDir, "usage"),
		Prices:    a.prices,
		Retention: billing.Retention{Events: a.cfg.UsageRetention, Rollups: a.cfg.UsageRollupRetention},
		Logger:    a.log.Named("usage"),
	})
	if err != nil {
		return fmt.Errorf("usage meter: %w", err)
	}
	a.meter = m
	a.closers = append(a.closers, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		if err := m.Close(ctx); err != nil {
			a.log.Warn("usage meter closed before writing everything: the rest stays in the journal and is written at the next start", zap.Error(err))
		}
		return nil
	})
	return nil
}

// openLimiter picks the limiter: Redis when REDIS_URL is set (one limit
// shared by every replica), else in process.
func (a *app) openLimiter() error {
	cfg := a.cfg
	if cfg.RedisURL == "" {
		a.limits = ratelimit.NewLocal(ratelimit.LocalOptions{Spend: a.db})
		return nil
	}
	failOpen := cfg.Limits.FailOpen == nil || *cfg.Limits.FailOpen
	rl, err := redislimit.New(redislimit.Config{URL: cfg.RedisURL, FailClosed: !failOpen, Replicas: cfg.Limits.Replicas},
		redislimit.Options{Logger: a.log, Spend: a.db})
	if err != nil {
		return fmt.Errorf("REDIS_URL (limiter): %w", err)
	}
	a.rl, a.limits = rl, rl
	a.closers = append(a.closers, rl.Close)
	return nil
}

// Close closes everything opened, in reverse order.
func (a *app) Close() error {
	var errs []error
	for i := len(a.closers) - 1; i >= 0; i-- {
		errs = append(errs, a.closers[i]())
	}
	a.closers = nil
	return errors.Join(errs...)
}

// bootstrap creates the first tenant, admin and key on an empty store and
// prints them once. In the embedded mode the key is also kept in the data
// dir (mode 0600) so that `make run` can show it again.
func (a *app) bootstrap(ctx context.Context, w io.Writer, addr string) error {
	b, err := a.tenancy.Bootstrap(ctx, tenancy.BootstrapConfig{
		Tenant:        a.cfg.BootstrapTenant,
		AdminPassword: a.cfg.BootstrapAdminPassword,
		APIKey:        a.cfg.BootstrapKey,
	})
	if err != nil {
		return fmt.Errorf("bootstrap: %w", err)
	}
	keyFile := filepath.Join(a.cfg.DataDir, "bootstrap_api_key")
	if b != nil {
		a.log.Info("bootstrapped an empty store", zap.String("tenant", b.Tenant.Name), zap.String("admin", b.Admin.Username),
			zap.String("api_key_prefix", b.Key.Prefix))
		if a.cfg.DatabaseURL == "" {
			if err := os.WriteFile(keyFile, []byte(b.APIKey+"\n"), 0o600); err != nil {
				return fmt.Errorf("MTAI_DATA_DIR: %w", err)
			}
		}
		printWelcome(w, addr, b.Tenant.Name, b.APIKey, b.AdminPassword, true)
		return nil
	}
	if key, err := os.ReadFile(keyFile); err == nil && a.cfg.DatabaseURL == "" {
		printWelcome(w, addr, a.cfg.BootstrapTenant, strings.TrimSpace(string(key)), "", false)
	}
	return nil
}

// openRAG builds the document service: the embedder (offline lexical by
// default, or a routed embeddings model), the vector store (embedded in the
// data dir, or Milvus), the blob store (data dir, or S3); then starts its
// ingestion workers. It is closed before the store.
func (a *app) openRAG(ctx context.Context, router openaiembed.Router) (*rag.Service, error) {
	cfg := a.cfg
	var emb rag.Embedder = hashembed.New(0)
	if cfg.RAG.EmbeddingModel != "" {
		e, err := openaiembed.New(ctx, router, openaiembed.Config{Model: cfg.RAG.EmbeddingModel, Dimensions: cfg.RAG.EmbeddingDimensions})
		if err != nil {
			return nil, fmt.Errorf("MTAI_RAG_EMBEDDING_MODEL: %w", err)
		}
		emb = e
	}
	var vectors rag.VectorStore
	if cfg.RAG.MilvusAddress != "" {
		m, err := milvus.Open(ctx, milvus.Config{Address: cfg.RAG.MilvusAddress, Token: cfg.RAG.MilvusToken}, emb.ID(), emb.Dimension())
		if err != nil {
			return nil, fmt.Errorf("MILVUS_ADDRESS: %w", err)
		}
		vectors = m
	} else {
		e, err := embedded.Open(filepath.Join(cfg.DataDir, "rag", "vectors"), emb.ID(), emb.Dimension())
		if err != nil {
			return nil, fmt.Errorf("MTAI_DATA_DIR (vectors): %w", err)
		}
		vectors = e
	}
	var blobs rag.BlobStore
	if cfg.RAG.S3Bucket != "" {
		b, err := s3blob.Open(ctx, s3blob.Config{Bucket: cfg.RAG.S3Bucket, Endpoint: cfg.RAG.S3Endpoint, Prefix: cfg.RAG.S3Prefix})
		if err != nil {
			return nil, fmt.Errorf("S3_BUCKET: %w", err)
		}
		blobs = b
	} else {
		b, err := localblob.Open(filepath.Join(cfg.DataDir, "rag", "blobs"))
		if err != nil {
			return nil, fmt.Errorf("MTAI_DATA_DIR (documents): %w", err)
		}
		blobs = b
	}
	docs, ok := a.db.(rag.DocumentStore)
	if !ok {
		return nil, fmt.Errorf("the store does not keep documents")
	}
	svc, err := rag.New(rag.Config{Documents: docs, Vectors: vectors, Blobs: blobs, Embedder: emb,
		Workers: cfg.RAG.Workers, MaxDocumentBytes: cfg.RAG.MaxDocumentBytes, Logger: a.log.Named("rag"),
		OnUsage: a.meterEmbedding})
	if err != nil {
		return nil, err
	}
	if err := svc.Start(ctx); err != nil {
		return nil, fmt.Errorf("rag: %w", err)
	}
	a.closers = append(a.closers, svc.Close)
	return svc, nil
}

// meterEmbedding records the embedding tokens of RAG (ingestion and
// queries) as a usage event of the tenant, priced like any model.
func (a *app) meterEmbedding(u rag.Usage) {
	if a.meter == nil || u.Tokens <= 0 {
		return
	}
	endpoint := "rag_ingest"
	if u.Query {
		endpoint = "rag_query"
	}
	n := int64(u.Tokens)
	a.meter.Record(&billing.Event{Time: time.Now().UTC(), TenantID: u.TenantID, Endpoint: endpoint,
		Model: a.cfg.RAG.EmbeddingModel, UpstreamModel: a.cfg.RAG.EmbeddingModel, Provider: u.Embedder,
		Usage: providers.Usage{PromptTokens: n, TotalTokens: n}, Status: 200})
}

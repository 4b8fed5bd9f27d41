package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/mtai-dev/mtai/gateway"
	"github.com/mtai-dev/mtai/providers"
)

// Config is the whole configuration: defaults, then the YAML file named by
// MTAI_CONFIG, then environment variables (which win).
type Config struct {
	// DataDir holds the embedded store, keys and journals (MTAI_DATA_DIR). Default ./data.
	DataDir string `yaml:"data_dir"`
	// LogLevel is debug, info, warn or error (LOG_LEVEL). Default info.
	LogLevel string `yaml:"log_level"`
	// Debug switches logs to a human-readable console format (DEBUG).
	Debug bool `yaml:"debug"`
	// AllowedHosts limits the Host header (ALLOWED_HOSTS, comma-separated); empty or * allows any.
	AllowedHosts []string `yaml:"allowed_hosts"`
	// Server is the HTTP server.
	Server gateway.Config `yaml:"server"`
	// Providers is the routing table.
	Providers providers.Config `yaml:"providers"`

	// DatabaseURL selects PostgreSQL (DATABASE_URL); empty: SQLite in DataDir.
	DatabaseURL string `yaml:"-"`
	// RedisURL enables Redis for limits and cache invalidation (REDIS_URL).
	RedisURL string `yaml:"-"`
	// JWTSecret signs login tokens (MTAI_JWT_SECRET); empty: kept in DataDir.
	JWTSecret string `yaml:"-"`
	// JWTTTL is how long a login token lasts (MTAI_JWT_TTL). Default 1h.
	JWTTTL time.Duration `yaml:"jwt_ttl"`

	// RAG configures documents and retrieval.
	RAG RAGConfig `yaml:"rag"`
	// Limits configures rate limiting and budgets.
	Limits LimitsConfig `yaml:"limits"`
	// PricesFile overrides the built-in price table (MTAI_PRICES_FILE).
	PricesFile string `yaml:"prices_file"`
	// UsageRetention is how long raw usage events are kept
	// (MTAI_USAGE_RETENTION, e.g. 2160h); 0 keeps them forever.
	UsageRetention time.Duration `yaml:"usage_retention"`
	// UsageRollupRetention is how long the usage rollups (hourly and daily,
	// by tenant and model and by key and user) are kept
	// (MTAI_USAGE_ROLLUP_RETENTION); 0 keeps them forever. At least
	// UsageRetention.
	UsageRollupRetention time.Duration `yaml:"usage_rollup_retention"`

	// BootstrapTenant names the first tenant (MTAI_BOOTSTRAP_TENANT). Default demo.
	BootstrapTenant string `yaml:"-"`
	// BootstrapAdminPassword is the first admin's password (MTAI_BOOTSTRAP_ADMIN_PASSWORD); generated when empty.
	BootstrapAdminPassword string `yaml:"-"`
	// BootstrapKey is the first API key (MTAI_BOOTSTRAP_API_KEY); generated when empty.
	BootstrapKey string `yaml:"-"`
}

// RAGConfig configures the document service.
type RAGConfig struct {
	// EmbeddingModel is a routed embeddings model (MTAI_RAG_EMBEDDING_MODEL);
	// empty: the offline lexical embedder.
	EmbeddingModel string `yaml:"embedding_model"`
	// EmbeddingDimensions asks that model for shorter vectors (MTAI_RAG_EMBEDDING_DIMENSIONS).
	EmbeddingDimensions int `yaml:"embedding_dimensions"`
	// MilvusAddress selects Milvus for vectors (MILVUS_ADDRESS); empty: embedded in the data dir.
	MilvusAddress string `yaml:"milvus_address"`
	// MilvusToken authenticates to Milvus (MILVUS_TOKEN).
	MilvusToken string `yaml:"-"`
	// S3Bucket keeps uploaded files in S3 (S3_BUCKET); empty: the data dir.
	S3Bucket string `yaml:"s3_bucket"`
	// S3Endpoint is an S3-compatible endpoint, path-style (S3_ENDPOINT).
	S3Endpoint string `yaml:"s3_endpoint"`
	// S3Prefix starts every object key (MTAI_S3_PREFIX).
	S3Prefix string `yaml:"s3_prefix"`
	// Workers ingest documents in the background (MTAI_RAG_WORKERS). Default 2.
	Workers int `yaml:"workers"`
	// MaxDocumentBytes caps an upload (MTAI_RAG_MAX_DOCUMENT_BYTES). Default 6 MiB.
	MaxDocumentBytes int64 `yaml:"max_document_bytes"`
}

// LimitsConfig configures the rate limiter.
type LimitsConfig struct {
	// FailOpen decides requests in process (with a fair share of each limit)
	// while Redis is unreachable; false refuses them with 503
	// (MTAI_LIMIT_FAIL_OPEN). Default true.
	FailOpen *bool `yaml:"fail_open"`
	// Replicas is the number of gateway replicas, for the fair share when
	// failing open (MTAI_REPLICAS). Default 1.
	Replicas int `yaml:"replicas"`
	// DefaultMaxTokens is reserved for a request without max_tokens
	// (MTAI_LIMIT_DEFAULT_MAX_TOKENS). Default 1024.
	DefaultMaxTokens int64 `yaml:"default_max_tokens"`
}

// LoadConfig builds the configuration from the file and getenv.
func LoadConfig(getenv func(string) string) (*Config, error) {
	c := &Config{DataDir: "./data", LogLevel: "info"}
	if path := getenv("MTAI_CONFIG"); path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("MTAI_CONFIG: %w", err)
		}
		dec := yaml.NewDecoder(strings.NewReader(string(b)))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("MTAI_CONFIG %s: %w", path, err)
		}
	}
	if v := getenv("MTAI_DATA_DIR"); v != "" {
		c.DataDir = v
	}
	if v := getenv("LOG_LEVEL"); v != "" {
		c.LogLevel = strings.ToLower(v)
	}
	if v := getenv("DEBUG"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("DEBUG=%q is not a boolean", v)
		}
		c.Debug = b
	}
	if v := getenv("ALLOWED_HOSTS"); v != "" {
		c.AllowedHosts = splitList(v)
	}
	if v := getenv("MTAI_ADDR"); v != "" {
		c.Server.Addr = v
	} else if v := getenv("PORT"); v != "" && c.Server.Addr == "" {
		c.Server.Addr = ":" + v
	}
	if v := getenv("MTAI_MAX_BODY_BYTES"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			return nil, fmt.Errorf("MTAI_MAX_BODY_BYTES=%q is not an integer", v)
		}
		c.Server.MaxBodyBytes = n
	}
	if v := getenv("MTAI_SHUTDOWN_GRACE"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return nil, fmt.Errorf("MTAI_SHUTDOWN_GRACE=%q is not a duration (e.g. 30s)", v)
		}
		c.Server.ShutdownGrace = d
	}
	c.BootstrapKey = getenv("MTAI_BOOTSTRAP_API_KEY")
	if v := getenv("MTAI_LIMIT_FAIL_OPEN"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return nil, fmt.Errorf("MTAI_LIMIT_FAIL_OPEN=%q is not a boolean", v)
		}
		c.Limits.FailOpen = &b
	}
	if v := getenv("MTAI_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("MTAI_REPLICAS=%q: want a positive integer", v)
		}
		c.Limits.Replicas = n
	}
	if v := getenv("MTAI_LIMIT_DEFAULT_MAX_TOKENS"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("MTAI_LIMIT_DEFAULT_MAX_TOKENS=%q: want a positive integer", v)
		}
		c.Limits.DefaultMaxTokens = n
	}
	for name, dst := range map[string]*string{"MTAI_RAG_EMBEDDING_MODEL": &c.RAG.EmbeddingModel,
		"MILVUS_ADDRESS": &c.RAG.MilvusAddress, "MILVUS_TOKEN": &c.RAG.MilvusToken, "S3_BUCKET": &c.RAG.S3Bucket,
		"S3_ENDPOINT": &c.RAG.S3Endpoint, "MTAI_S3_PREFIX": &c.RAG.S3Prefix} {
		if v := getenv(name); v != "" {
			*dst = v
		}
	}
	for name, dst := range map[string]*int{"MTAI_RAG_EMBEDDING_DIMENSIONS": &c.RAG.EmbeddingDimensions, "MTAI_RAG_WORKERS": &c.RAG.Workers} {
		if v := getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("%s=%q: want a non-negative integer", name, v)
			}
			*dst = n
		}
	}
	if v := getenv("MTAI_RAG_MAX_DOCUMENT_BYTES"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("MTAI_RAG_MAX_DOCUMENT_BYTES=%q: want a positive integer", v)
		}
		c.RAG.MaxDocumentBytes = n
	}
	for _, r := range []struct {
		env string
		d   *time.Duration
	}{{"MTAI_USAGE_RETENTION", &c.UsageRetention}, {"MTAI_USAGE_ROLLUP_RETENTION", &c.UsageRollupRetention}} {
		if v := getenv(r.env); v != "" {
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 {
				return nil, fmt.Errorf("%s=%q is not a duration (e.g. 2160h)", r.env, v)
			}
			*r.d = d
		}
	}
	if v := getenv("MTAI_PRICES_FILE"); v != "" {
		c.PricesFile = v
	}
	c.BootstrapAdminPassword = getenv("MTAI_BOOTSTRAP_ADMIN_PASSWORD")
	c.BootstrapTenant = getenv("MTAI_BOOTSTRAP_TENANT")
	if c.BootstrapTenant == "" {
		c.BootstrapTenant = "demo"
	}
	c.DatabaseURL = getenv("DATABASE_URL")
	c.RedisURL = getenv("REDIS_URL")
	c.JWTSecret = getenv("MTAI_JWT_SECRET")
	if v := getenv("MTAI_JWT_TTL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < time.Minute {
			return nil, fmt.Errorf("MTAI_JWT_TTL=%q: want a duration of at least 1m", v)
		}
		c.JWTTTL = d
	}
	c.addDefaultModels(getenv)
	for i := range c.Providers.Models {
		for j := range c.Providers.Models[i].Deployments {
			d := &c.Providers.Models[i].Deployments[j]
			if d.APIKeyEnv != "" {
				d.APIKey = getenv(d.APIKeyEnv)
			}
		}
	}
	return c, c.Validate()
}

// Validate reports the first bad value, naming its variable.
func (c *Config) Validate() error {
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("LOG_LEVEL=%q: want debug, info, warn or error", c.LogLevel)
	}
	if c.DataDir == "" {
		return errors.New("MTAI_DATA_DIR must not be empty")
	}
	c.Server.SetDefaults()
	if err := c.Server.Validate(); err != nil {
		return err
	}
	c.Providers.SetDefaults()
	if err := c.Providers.Validate(); err != nil {
		return fmt.Errorf("MTAI_CONFIG: %w", err)
	}
	if c.BootstrapKey != "" && (len(c.BootstrapKey) < 16 || len(c.BootstrapKey) > 256) {
		return errors.New("MTAI_BOOTSTRAP_API_KEY must be 16 to 256 characters")
	}
	if c.JWTSecret != "" && len(c.JWTSecret) < 32 {
		return errors.New("MTAI_JWT_SECRET must be at least 32 characters")
	}
	return nil
}

func splitList(v string) []string {
	var out []string
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// addDefaultModels adds the built-in mock models, and the usual models of
// every provider whose key is in the environment, unless the config file
// already routes a model of that name.
func (c *Config) addDefaultModels(getenv func(string) string) {
	have := map[string]bool{}
	for _, m := range c.Providers.Models {
		have[m.Name] = true
	}
	add := func(m providers.ModelConfig) {
		if !have[m.Name] {
			c.Providers.Models = append(c.Providers.Models, m)
			have[m.Name] = true
		}
	}
	mock := func(name string, embeddings bool, mc providers.MockConfig) {
		add(providers.ModelConfig{Name: name, OwnedBy: "mtai", Embeddings: embeddings,
			Deployments: []providers.DeploymentConfig{{Provider: "mock", Model: name, Mock: mc}}})
	}
	mock("mock-gpt", false, providers.MockConfig{Words: 24, Chunks: 8})
	mock("mock-gpt-slow", false, providers.MockConfig{Words: 48, Chunks: 16, Latency: 200 * time.Millisecond, ChunkInterval: 50 * time.Millisecond})
	mock("mock-embed", true, providers.MockConfig{})
	if getenv("OPENAI_API_KEY") != "" {
		base := getenv("OPENAI_BASE_URL")
		for _, name := range []string{"gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o4-mini"} {
			add(providers.ModelConfig{Name: name, OwnedBy: "openai", Deployments: []providers.DeploymentConfig{
				{Provider: "openai", BaseURL: base, APIKeyEnv: "OPENAI_API_KEY"}}})
		}
		for _, name := range []string{"text-embedding-3-small", "text-embedding-3-large"} {
			add(providers.ModelConfig{Name: name, OwnedBy: "openai", Embeddings: true, Deployments: []providers.DeploymentConfig{
				{Provider: "openai", BaseURL: base, APIKeyEnv: "OPENAI_API_KEY"}}})
		}
	}
	if getenv("ANTHROPIC_API_KEY") != "" {
		for _, name := range []string{"claude-sonnet-4-5", "claude-haiku-4-5", "claude-opus-4-1", "claude-3-5-haiku-latest"} {
			add(providers.ModelConfig{Name: name, OwnedBy: "anthropic", Deployments: []providers.DeploymentConfig{
				{Provider: "anthropic", BaseURL: getenv("ANTHROPIC_BASE_URL"), APIKeyEnv: "ANTHROPIC_API_KEY"}}})
		}
	}
}

package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
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
	// Keys are static API keys, each bound to a tenant name.
	Keys []KeyConfig `yaml:"keys"`

	// BootstrapKey is MTAI_BOOTSTRAP_API_KEY (never from the file).
	BootstrapKey string `yaml:"-"`
}

// KeyConfig is one static API key.
type KeyConfig struct {
	Key    string `yaml:"key"`
	Tenant string `yaml:"tenant"`
}

// String is the config with secrets redacted, for logs.
func (k KeyConfig) String() string { return k.Tenant + ":" + redact(k.Key) }

func redact(s string) string {
	if len(s) <= 12 {
		return "****"
	}
	return s[:8] + "****"
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
	for i, k := range c.Keys {
		if len(k.Key) < 16 {
			return fmt.Errorf("MTAI_CONFIG: keys[%d] is shorter than 16 characters", i)
		}
		if k.Tenant == "" {
			return fmt.Errorf("MTAI_CONFIG: keys[%d].tenant is required", i)
		}
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
}

// bootstrapKey returns the key to accept when no other is configured:
// MTAI_BOOTSTRAP_API_KEY, else one generated on first start and kept in
// the data dir. created reports a new key.
func bootstrapKey(c *Config) (key string, created bool, err error) {
	if c.BootstrapKey != "" {
		return c.BootstrapKey, false, nil
	}
	path := filepath.Join(c.DataDir, "bootstrap_api_key")
	if b, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(b))) > 0 {
		return strings.TrimSpace(string(b)), false, nil
	}
	var raw [24]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", false, err
	}
	key = "sk-mtai-" + base64.RawURLEncoding.EncodeToString(raw[:])
	if err := os.MkdirAll(c.DataDir, 0o700); err != nil {
		return "", false, fmt.Errorf("MTAI_DATA_DIR: %w", err)
	}
	if err := os.WriteFile(path, []byte(key+"\n"), 0o600); err != nil {
		return "", false, fmt.Errorf("MTAI_DATA_DIR: %w", err)
	}
	return key, true, nil
}

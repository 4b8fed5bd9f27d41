package providers

import (
	"fmt"
	"time"
)

// Config is the routing configuration: which model names the gateway serves
// and where each one goes. It is read from the `providers:` section of the
// YAML file named by MTAI_CONFIG.
type Config struct {
	// Models maps a model name that clients send to an ordered list of deployments.
	Models []ModelConfig `yaml:"models"`
	// Retry controls retries on one deployment before falling back to the next.
	Retry RetryConfig `yaml:"retry"`
	// Breaker controls the per-deployment circuit breaker.
	Breaker BreakerConfig `yaml:"breaker"`
}

// ModelConfig is one routed model name (an alias) and its deployments.
type ModelConfig struct {
	// Name is what clients put in "model". Required, unique.
	Name string `yaml:"name"`
	// OwnedBy is shown in /v1/models; default: the first deployment's provider.
	OwnedBy string `yaml:"owned_by"`
	// Embeddings marks an embeddings model (listed, served on /v1/embeddings).
	Embeddings bool `yaml:"embeddings"`
	// Deployments are tried in order (the first one picked by weight when
	// weights are set). At least one.
	Deployments []DeploymentConfig `yaml:"deployments"`
}

// DeploymentConfig is one upstream that can serve a model.
type DeploymentConfig struct {
	// Name identifies the deployment in logs and metrics; default provider/model.
	Name string `yaml:"name"`
	// Provider is the protocol: openai (also any OpenAI-compatible server:
	// vLLM, Ollama, ...), azure, anthropic, bedrock, or mock.
	Provider string `yaml:"provider"`
	// Model is the upstream's model name; default: the route's name. For
	// azure it is the deployment name in the URL.
	Model string `yaml:"model"`
	// BaseURL of the upstream API, e.g. https://api.openai.com/v1 (the
	// default for openai), https://NAME.openai.azure.com for azure,
	// https://api.anthropic.com (the default for anthropic); optional for
	// bedrock (https://bedrock-runtime.REGION.amazonaws.com sets the region;
	// any other URL is the endpoint).
	BaseURL string `yaml:"base_url"`
	// Region is a bedrock deployment's AWS region; default: base_url's, else
	// AWS_REGION / AWS_DEFAULT_REGION / the AWS profile's.
	Region string `yaml:"region"`
	// MaxTokens is sent as max_tokens when a request sets none: anthropic
	// default 4096 (Anthropic requires one); bedrock default none (the model's own).
	MaxTokens int `yaml:"max_tokens"`
	// APIKeyEnv names the environment variable holding the key. The key
	// itself never appears in the config file or a log line.
	APIKeyEnv string `yaml:"api_key_env"`
	// APIVersion is Azure's api-version query parameter (default 2024-10-21).
	APIVersion string `yaml:"api_version"`
	// Weight picks the first deployment to try among those with weight > 0
	// (weighted random); the others follow in order as fallbacks. 0: order only.
	Weight int `yaml:"weight"`
	// Timeout is the longest silence tolerated from the upstream: before its
	// first byte and between two reads of a stream. Default 60s.
	Timeout time.Duration `yaml:"timeout"`
	// MaxConns caps open connections to this upstream; default 4096.
	MaxConns int `yaml:"max_conns"`
	// Mock configures the mock provider (provider: mock).
	Mock MockConfig `yaml:"mock"`

	// APIKey is resolved from APIKeyEnv at load time; never serialised.
	APIKey string `yaml:"-"`
}

// MockConfig shapes the answers of the built-in mock provider.
type MockConfig struct {
	// Words in each answer; default 12.
	Words int `yaml:"words"`
	// Chunks a streamed answer is split into; default 4 (at most Words).
	Chunks int `yaml:"chunks"`
	// Latency before the first byte; default 0.
	Latency time.Duration `yaml:"latency"`
	// ChunkInterval between two streamed chunks; default 0.
	ChunkInterval time.Duration `yaml:"chunk_interval"`
}

// RetryConfig controls retries on one deployment.
type RetryConfig struct {
	// Attempts per deployment, including the first; default 2.
	Attempts int `yaml:"attempts"`
	// Backoff before the first retry, doubled each time with jitter; default 100ms.
	Backoff time.Duration `yaml:"backoff"`
	// MaxBackoff caps a backoff, also one asked by an upstream's Retry-After; default 2s.
	MaxBackoff time.Duration `yaml:"max_backoff"`
}

// BreakerConfig controls the circuit breaker of each deployment.
type BreakerConfig struct {
	// Failures in a row that open the breaker; default 5. Negative disables it.
	Failures int `yaml:"failures"`
	// Cooldown a deployment stays out once open; then one trial request is let through. Default 30s.
	Cooldown time.Duration `yaml:"cooldown"`
}

// SetDefaults fills zero values with the documented defaults.
func (c *Config) SetDefaults() {
	if c.Retry.Attempts == 0 {
		c.Retry.Attempts = 2
	}
	if c.Retry.Backoff == 0 {
		c.Retry.Backoff = 100 * time.Millisecond
	}
	if c.Retry.MaxBackoff == 0 {
		c.Retry.MaxBackoff = 2 * time.Second
	}
	if c.Breaker.Failures == 0 {
		c.Breaker.Failures = 5
	}
	if c.Breaker.Cooldown == 0 {
		c.Breaker.Cooldown = 30 * time.Second
	}
	for i := range c.Models {
		m := &c.Models[i]
		for j := range m.Deployments {
			d := &m.Deployments[j]
			if d.Model == "" {
				d.Model = m.Name
			}
			if d.Name == "" {
				d.Name = d.Provider + "/" + d.Model
			}
			if d.Timeout == 0 {
				d.Timeout = 60 * time.Second
			}
			if d.MaxConns == 0 {
				d.MaxConns = 4096
			}
			if d.Provider == "openai" && d.BaseURL == "" {
				d.BaseURL = "https://api.openai.com/v1"
			}
			if d.Provider == "anthropic" && d.BaseURL == "" {
				d.BaseURL = "https://api.anthropic.com"
			}
			if d.Provider == "azure" && d.APIVersion == "" {
				d.APIVersion = "2024-10-21"
			}
		}
		if m.OwnedBy == "" && len(m.Deployments) > 0 {
			m.OwnedBy = m.Deployments[0].Provider
		}
	}
}

// Validate reports the first configuration error, naming the field.
func (c *Config) Validate() error {
	seen := map[string]bool{}
	for i, m := range c.Models {
		if m.Name == "" {
			return fmt.Errorf("providers.models[%d].name is required", i)
		}
		if seen[m.Name] {
			return fmt.Errorf("providers.models[%d].name %q is listed twice", i, m.Name)
		}
		seen[m.Name] = true
		if len(m.Deployments) == 0 {
			return fmt.Errorf("providers.models[%d] (%s) has no deployments", i, m.Name)
		}
		for j, d := range m.Deployments {
			where := fmt.Sprintf("providers.models[%d].deployments[%d]", i, j)
			switch d.Provider {
			case "openai", "azure":
				if d.BaseURL == "" {
					return fmt.Errorf("%s.base_url is required for provider %s", where, d.Provider)
				}
			case "":
				return fmt.Errorf("%s.provider is required", where)
			}
			if d.Weight < 0 {
				return fmt.Errorf("%s.weight must not be negative", where)
			}
			if d.Timeout < 0 {
				return fmt.Errorf("%s.timeout must not be negative", where)
			}
			if d.MaxTokens < 0 {
				return fmt.Errorf("%s.max_tokens must not be negative", where)
			}
		}
	}
	if c.Retry.Attempts < 1 {
		return fmt.Errorf("providers.retry.attempts must be at least 1")
	}
	return nil
}

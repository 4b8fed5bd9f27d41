package billing

import (
	"math"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
)

func TestPriceCost(t *testing.T) {
	gpt4o := Price{Input: 2_500_000, CachedInput: 1_250_000, Output: 10_000_000}
	cases := []struct {
		name  string
		price Price
		usage providers.Usage
		want  tenancy.MicroUSD
	}{
		{"zero", gpt4o, providers.Usage{}, 0},
		{"one million in", gpt4o, providers.Usage{PromptTokens: 1_000_000}, 2_500_000},
		{"exact", gpt4o, providers.Usage{PromptTokens: 1000, CompletionTokens: 500}, 2_500 + 5_000},
		{"cached part of prompt", gpt4o, providers.Usage{PromptTokens: 1000, CachedTokens: 400, CompletionTokens: 0}, 1_500 + 500},
		{"cached beyond prompt is capped", gpt4o, providers.Usage{PromptTokens: 10, CachedTokens: 99}, 13}, // 10·1.25 = 12.5 → 13
		{"rounds up", gpt4o, providers.Usage{PromptTokens: 1}, 3},                                          // 2.5 µ$ → 3
		{"one token of a cheap model is not free", Price{Input: 50_000}, providers.Usage{PromptTokens: 1}, 1},
		{"reasoning is in completion", gpt4o, providers.Usage{CompletionTokens: 100, ReasoningTokens: 80}, 1_000},
		{"negative counts are 0", gpt4o, providers.Usage{PromptTokens: -5, CompletionTokens: -1}, 0},
		{"free model", Price{}, providers.Usage{PromptTokens: 1e9, CompletionTokens: 1e9}, 0},
		{"saturates", Price{Input: math.MaxInt64, Output: math.MaxInt64}, providers.Usage{PromptTokens: math.MaxInt64, CompletionTokens: math.MaxInt64}, math.MaxInt64},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.price.Cost(tc.usage); got != tc.want {
				t.Errorf("Cost(%+v) = %d, want %d", tc.usage, got, tc.want)
			}
		})
	}
}

// TestPriceCostMatchesBigRat checks the 128-bit arithmetic against math/big
// over awkward values.
func TestPriceCostMatchesBigRat(t *testing.T) {
	prices := []int64{0, 1, 7, 75_000, 2_500_000, 999_999_999, 1 << 40}
	tokens := []int64{0, 1, 3, 999_999, 1_000_001, 123_456_789, 1 << 33}
	for _, in := range prices {
		for _, out := range prices {
			for _, pt := range tokens {
				for _, ct := range tokens {
					p := Price{Input: tenancy.MicroUSD(in), CachedInput: tenancy.MicroUSD(in / 2), Output: tenancy.MicroUSD(out)}
					u := providers.Usage{PromptTokens: pt, CachedTokens: pt / 3, CompletionTokens: ct}
					sum := new(big.Int).Mul(big.NewInt(pt-pt/3), big.NewInt(in))
					sum.Add(sum, new(big.Int).Mul(big.NewInt(pt/3), big.NewInt(in/2)))
					sum.Add(sum, new(big.Int).Mul(big.NewInt(ct), big.NewInt(out)))
					q, r := new(big.Int).QuoRem(sum, big.NewInt(1_000_000), new(big.Int))
					if r.Sign() > 0 {
						q.Add(q, big.NewInt(1))
					}
					if got := p.Cost(u); int64(got) != q.Int64() {
						t.Fatalf("Cost(%+v at %+v) = %d, want %s", u, p, got, q)
					}
				}
			}
		}
	}
}

func TestLookup(t *testing.T) {
	p := DefaultPrices()
	cases := []struct {
		model string
		known bool
		input tenancy.MicroUSD
	}{
		{"gpt-4o", true, 2_500_000},
		{"gpt-4o-mini", true, 150_000},
		{"gpt-4o-mini-2024-07-18", true, 150_000},
		{"gpt-4o-2024-08-06", true, 2_500_000},
		{"claude-sonnet-4-20250514", true, 3_000_000},
		{"claude-3-5-haiku-latest", true, 800_000},
		{"claude-haiku-4-5-20251001", true, 1_000_000},
		{"mock-gpt", true, 0},
		{"mock-anything", true, 0},
		{"gpt-4o-mini-2024-07", false, 0},
		{"llama-3-70b", false, 0},
		{"", false, 0},
	}
	for _, tc := range cases {
		pr, ok := p.Lookup(tc.model)
		if ok != tc.known || pr.Input != tc.input {
			t.Errorf("Lookup(%q) = %+v, %v; want input %d, %v", tc.model, pr, ok, tc.input, tc.known)
		}
	}
	var nilTable *Prices
	if c, ok := nilTable.Cost("gpt-4o", providers.Usage{PromptTokens: 1}); ok || c != 0 {
		t.Errorf("nil table Cost = %d, %v; want 0, false", c, ok)
	}
	// Every built-in price of a real model is positive, cached ≤ input.
	for _, m := range p.Models() {
		pr, _ := p.Lookup(m)
		if strings.HasPrefix(m, "mock-") {
			if pr != (Price{}) {
				t.Errorf("%s: mock model price %+v, want 0", m, pr)
			}
			continue
		}
		if pr.Input <= 0 || pr.CachedInput > pr.Input || pr.CachedInput <= 0 {
			t.Errorf("%s: implausible price %+v", m, pr)
		}
	}
}

func TestParsePrices(t *testing.T) {
	yml := `# dollars per million tokens
models:
  gpt-4o:
    input: 3
    output: 12.5
  local-llama: {input: 0.000001, cached_input: 0, output: 0.1234565}
`
	p, err := ParsePrices([]byte(yml), nil)
	if err != nil {
		t.Fatal(err)
	}
	if pr, _ := p.Lookup("gpt-4o"); pr != (Price{Input: 3_000_000, CachedInput: 3_000_000, Output: 12_500_000}) {
		t.Errorf("gpt-4o = %+v", pr)
	}
	if pr, _ := p.Lookup("local-llama"); pr != (Price{Input: 1, CachedInput: 0, Output: 123_457}) {
		t.Errorf("local-llama = %+v", pr)
	}
	if pr, _ := p.Lookup("gpt-4o-mini"); pr.Input != 150_000 {
		t.Errorf("defaults lost: gpt-4o-mini = %+v", pr)
	}
	if pr, _ := DefaultPrices().Lookup("gpt-4o"); pr.Input != 2_500_000 {
		t.Errorf("ParsePrices changed the defaults: %+v", pr)
	}

	bad := []struct{ name, yml, want string }{
		{"missing output", "models:\n  m: {input: 1}\n", "needs both"},
		{"string price", "models:\n  m: {input: \"1\", output: 1}\n", "number of dollars"},
		{"negative", "models:\n  m: {input: -1, output: 1}\n", "negative"},
		{"unknown field", "models:\n  m: {input: 1, output: 1, outptu: 2}\n", "outptu"},
		{"unknown top", "modles: {}\n", "modles"},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParsePrices([]byte(tc.yml), nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParsePrices(%q) error = %v, want one containing %q", tc.yml, err, tc.want)
			}
		})
	}
	if p, err := ParsePrices(nil, nil); err != nil || len(p.Models()) != len(DefaultPrices().Models()) {
		t.Errorf("empty file: %v, %d models", err, len(p.Models()))
	}
}

func TestLoadPrices(t *testing.T) {
	path := filepath.Join(t.TempDir(), "prices.yaml")
	if err := os.WriteFile(path, []byte("models:\n  x: {input: 1, output: 2}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := LoadPrices(path)
	if err != nil {
		t.Fatal(err)
	}
	if c, ok := p.Cost("x", providers.Usage{PromptTokens: 1_000_000, CompletionTokens: 500_000}); !ok || c != 2_000_000 {
		t.Errorf("Cost = %d, %v; want 2000000, true", c, ok)
	}
	if _, err := LoadPrices(path + ".missing"); err == nil {
		t.Error("LoadPrices of a missing file succeeded")
	}
	if p, err := LoadPrices(""); err != nil || p == nil {
		t.Errorf("LoadPrices(\"\") = %v, %v", p, err)
	}
}

package billing

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"os"
	"sort"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/mtai-dev/mtai/providers"
	"github.com/mtai-dev/mtai/tenancy"
)

// tokensPerPriceUnit is the number of tokens a Price is quoted for.
const tokensPerPriceUnit = 1_000_000

// Price is what one model costs, in micro-dollars per million tokens (the
// unit providers quote in: $2.50 per million input tokens is
// Input: 2_500_000). The zero value is a free model.
type Price struct {
	// Input is the price of a million prompt tokens that were not cached.
	Input tenancy.MicroUSD
	// CachedInput is the price of a million prompt tokens read from the
	// provider's prompt cache. A model without a cache discount has
	// CachedInput == Input.
	CachedInput tenancy.MicroUSD
	// Output is the price of a million completion tokens (reasoning
	// tokens included: providers bill them as output).
	Output tenancy.MicroUSD
}

// Cost returns what usage costs at this price, in micro-dollars.
//
// Usage is read with OpenAI's meaning: CachedTokens is the part of
// PromptTokens that was read from the cache (so uncached prompt tokens are
// PromptTokens − CachedTokens), and ReasoningTokens are already counted in
// CompletionTokens. Negative counts are taken as 0.
//
// Rounding: the sum uncached·Input + cached·CachedInput + completion·Output
// is computed exactly (128-bit integers) in millionths of a micro-dollar,
// then divided by one million and rounded UP to a whole micro-dollar, once
// per call. So a call with a non-zero price is never free, and a call is
// never charged more than $0.000001 above its exact price. A result beyond
// the range of MicroUSD saturates at math.MaxInt64.
func (p Price) Cost(u providers.Usage) tenancy.MicroUSD {
	prompt := nonNeg(u.PromptTokens)
	cached := min(nonNeg(u.CachedTokens), prompt)
	var acc wide
	acc.addMul(prompt-cached, nonNeg(int64(p.Input)))
	acc.addMul(cached, nonNeg(int64(p.CachedInput)))
	acc.addMul(nonNeg(u.CompletionTokens), nonNeg(int64(p.Output)))
	return acc.divCeil(tokensPerPriceUnit)
}

func nonNeg(v int64) uint64 {
	if v < 0 {
		return 0
	}
	return uint64(v)
}

// wide is an unsigned 128-bit accumulator.
type wide struct{ hi, lo uint64 }

func (w *wide) addMul(a, b uint64) {
	hi, lo := bits.Mul64(a, b)
	var carry uint64
	w.lo, carry = bits.Add64(w.lo, lo, 0)
	w.hi, _ = bits.Add64(w.hi, hi, carry)
}

// divCeil returns ⌈w/d⌉ as MicroUSD, saturating at math.MaxInt64.
func (w wide) divCeil(d uint64) tenancy.MicroUSD {
	if w.hi >= d {
		return math.MaxInt64
	}
	q, r := bits.Div64(w.hi, w.lo, d)
	if r != 0 {
		q++
	}
	if q > math.MaxInt64 {
		return math.MaxInt64
	}
	return tenancy.MicroUSD(q)
}

// Prices is a price table: model name → Price. Build it with DefaultPrices,
// ParsePrices or LoadPrices; it is never modified afterwards, so it is safe
// for concurrent use. A nil *Prices knows no model.
type Prices struct {
	byModel map[string]Price
}

// usd converts dollars per million tokens written as a decimal literal into
// a Price field; it is only used for the built-in table below.
func usd(s string) tenancy.MicroUSD {
	var m tenancy.MicroUSD
	if err := m.UnmarshalJSON([]byte(s)); err != nil {
		panic("billing: bad built-in price " + s)
	}
	return m
}

// defaultPrices are list prices in US dollars per million tokens (input,
// cached input, output) as published by OpenAI and Anthropic for standard
// (non-batch, non-priority) processing in 2025. Check them against the
// providers' pricing pages before invoicing anyone, and override them with
// a YAML file (LoadPrices) when they change. Anthropic's cache writes (1.25×
// input) are billed as plain input: Usage does not carry them.
var defaultPrices = []struct {
	model                 string
	input, cached, output string
}{
	// OpenAI
	{"gpt-5", "1.25", "0.125", "10"},
	{"gpt-5-chat-latest", "1.25", "0.125", "10"},
	{"gpt-5-mini", "0.25", "0.025", "2"},
	{"gpt-5-nano", "0.05", "0.005", "0.40"},
	{"gpt-4.1", "2", "0.50", "8"},
	{"gpt-4.1-mini", "0.40", "0.10", "1.60"},
	{"gpt-4.1-nano", "0.10", "0.025", "0.40"},
	{"gpt-4o", "2.50", "1.25", "10"},
	{"gpt-4o-mini", "0.15", "0.075", "0.60"},
	{"o1", "15", "7.50", "60"},
	{"o1-mini", "1.10", "0.55", "4.40"},
	{"o3", "2", "0.50", "8"},
	{"o3-mini", "1.10", "0.55", "4.40"},
	{"o4-mini", "1.10", "0.275", "4.40"},
	{"gpt-4-turbo", "10", "10", "30"},
	{"gpt-4", "30", "30", "60"},
	{"gpt-3.5-turbo", "0.50", "0.50", "1.50"},
	{"text-embedding-3-small", "0.02", "0.02", "0"},
	{"text-embedding-3-large", "0.13", "0.13", "0"},
	{"text-embedding-ada-002", "0.10", "0.10", "0"},
	// Anthropic (cached input = cache reads)
	{"claude-opus-4-5", "5", "0.50", "25"},
	{"claude-opus-4-1", "15", "1.50", "75"},
	{"claude-opus-4", "15", "1.50", "75"},
	{"claude-3-opus", "15", "1.50", "75"},
	{"claude-sonnet-4-5", "3", "0.30", "15"},
	{"claude-sonnet-4", "3", "0.30", "15"},
	{"claude-3-7-sonnet", "3", "0.30", "15"},
	{"claude-3-5-sonnet", "3", "0.30", "15"},
	{"claude-haiku-4-5", "1", "0.10", "5"},
	{"claude-3-5-haiku", "0.80", "0.08", "4"},
	{"claude-3-haiku", "0.25", "0.03", "1.25"},
	// The built-in mock provider's models cost nothing (any "mock-" name does).
	{"mock-gpt", "0", "0", "0"},
	{"mock-gpt-slow", "0", "0", "0"},
	{"mock-embed", "0", "0", "0"},
}

// DefaultPrices returns the built-in table: current OpenAI and Anthropic
// models, and 0 for the mock models. Each call returns a new table.
func DefaultPrices() *Prices {
	p := &Prices{byModel: make(map[string]Price, len(defaultPrices))}
	for _, d := range defaultPrices {
		p.byModel[d.model] = Price{Input: usd(d.input), CachedInput: usd(d.cached), Output: usd(d.output)}
	}
	return p
}

// Lookup returns the price of model. A name the table does not hold is
// tried again without a "-latest" suffix or a date suffix ("-2024-08-06",
// "-20250514"), so that snapshots share their family's price; any name
// starting with "mock-" is free. ok is false when the price is unknown.
func (p *Prices) Lookup(model string) (Price, bool) {
	if p == nil {
		return Price{}, false
	}
	if pr, ok := p.byModel[model]; ok {
		return pr, true
	}
	if base, ok := strings.CutSuffix(model, "-latest"); ok {
		if pr, ok := p.byModel[base]; ok {
			return pr, true
		}
	}
	if base, ok := stripDate(model); ok {
		if pr, ok := p.byModel[base]; ok {
			return pr, true
		}
	}
	if strings.HasPrefix(model, "mock-") {
		return Price{}, true
	}
	return Price{}, false
}

// Cost returns what usage of model costs (see Price.Cost for the rounding);
// known is false, and the cost 0, when the table has no price for model.
func (p *Prices) Cost(model string, u providers.Usage) (cost tenancy.MicroUSD, known bool) {
	pr, ok := p.Lookup(model)
	if !ok {
		return 0, false
	}
	return pr.Cost(u), true
}

// Models returns the names the table holds, sorted.
func (p *Prices) Models() []string {
	if p == nil {
		return nil
	}
	names := make([]string, 0, len(p.byModel))
	for m := range p.byModel {
		names = append(names, m)
	}
	sort.Strings(names)
	return names
}

// stripDate removes a trailing "-YYYY-MM-DD" or "-YYYYMMDD".
func stripDate(model string) (string, bool) {
	if n := len(model); n > 11 && model[n-11] == '-' && model[n-6] == '-' && model[n-3] == '-' &&
		digits(model[n-10:n-6]) && digits(model[n-5:n-3]) && digits(model[n-2:]) {
		return model[:n-11], true
	}
	if n := len(model); n > 9 && model[n-9] == '-' && digits(model[n-8:]) {
		return model[:n-9], true
	}
	return "", false
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

// priceFile is the YAML override file:
//
//	# US dollars per million tokens
//	models:
//	  gpt-4o:
//	    input: 2.50
//	    cached_input: 1.25   # optional; default: input
//	    output: 10
//	  my-vllm-model: {input: 0, output: 0}
type priceFile struct {
	Models map[string]struct {
		Input       *dollarsPerMillion `yaml:"input"`
		CachedInput *dollarsPerMillion `yaml:"cached_input"`
		Output      *dollarsPerMillion `yaml:"output"`
	} `yaml:"models"`
}

// dollarsPerMillion reads a YAML number of dollars exactly (as
// tenancy.MicroUSD does from JSON: beyond six decimals it rounds half away
// from zero).
type dollarsPerMillion tenancy.MicroUSD

func (d *dollarsPerMillion) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode || (n.Tag != "!!int" && n.Tag != "!!float") {
		return fmt.Errorf("line %d: a price must be a number of dollars per million tokens, got %q", n.Line, n.Value)
	}
	var m tenancy.MicroUSD
	if err := m.UnmarshalJSON([]byte(strings.ReplaceAll(n.Value, "_", ""))); err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	if m < 0 {
		return fmt.Errorf("line %d: a price must not be negative", n.Line)
	}
	*d = dollarsPerMillion(m)
	return nil
}

// ParsePrices returns base (nil: DefaultPrices) with the models of the YAML
// document data added or replaced. Every model must give input and output;
// cached_input defaults to input. base is not modified.
func ParsePrices(data []byte, base *Prices) (*Prices, error) {
	if base == nil {
		base = DefaultPrices()
	}
	var f priceFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("price table: %w", err)
	}
	out := &Prices{byModel: make(map[string]Price, len(base.byModel)+len(f.Models))}
	for m, pr := range base.byModel {
		out.byModel[m] = pr
	}
	for name, e := range f.Models {
		if name == "" {
			return nil, errors.New("price table: empty model name")
		}
		if e.Input == nil || e.Output == nil {
			return nil, fmt.Errorf("price table: model %q needs both input and output prices", name)
		}
		pr := Price{Input: tenancy.MicroUSD(*e.Input), CachedInput: tenancy.MicroUSD(*e.Input), Output: tenancy.MicroUSD(*e.Output)}
		if e.CachedInput != nil {
			pr.CachedInput = tenancy.MicroUSD(*e.CachedInput)
		}
		out.byModel[name] = pr
	}
	return out, nil
}

// LoadPrices reads the YAML price file at path (see ParsePrices) over the
// built-in defaults. An empty path returns DefaultPrices.
func LoadPrices(path string) (*Prices, error) {
	if path == "" {
		return DefaultPrices(), nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("price table: %w", err)
	}
	return ParsePrices(data, nil)
}

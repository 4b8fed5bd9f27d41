// Package billing owns what requests cost: the price table (price.go), and,
// as the package grows, token counting, usage events, the meter (a batched,
// durable writer), budgets and usage queries.
//
// Money is counted in tenancy.MicroUSD (integer millionths of a dollar) and
// prices in micro-dollars per million tokens, so that every cost is exact
// integer arithmetic with one documented rounding (see Price.Cost).
package billing

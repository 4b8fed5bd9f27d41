package tenancy

import (
	"bytes"
	"fmt"
	"math/big"
	"strconv"
)

// MicroUSD is an amount of money in millionths of a US dollar. Amounts are
// stored and added as integers so that no rounding ever creeps in; JSON shows
// them as a decimal number of dollars (50000000 is 50). The zero value is
// zero dollars.
type MicroUSD int64

// microPerUSD is the number of MicroUSD in one dollar.
const microPerUSD = 1_000_000

// USD converts a number of dollars to MicroUSD, rounding to the nearest
// micro-dollar.
func USD(dollars float64) MicroUSD {
	r := new(big.Rat)
	if r.SetFloat64(dollars) == nil {
		return 0 // NaN or ±Inf: no meaningful amount
	}
	m, _ := roundMicro(r)
	return m
}

// Dollars returns m as a float64 number of dollars (for display; exact only
// below 2^53 micro-dollars).
func (m MicroUSD) Dollars() float64 {
	return float64(m) / microPerUSD
}

// String formats m as an exact decimal number of dollars without trailing
// zeros: "50", "0.25", "-1.000001".
func (m MicroUSD) String() string {
	return string(m.appendDecimal(nil))
}

func (m MicroUSD) appendDecimal(b []byte) []byte {
	u := uint64(m)
	if m < 0 {
		b = append(b, '-')
		u = uint64(-m) // -MinInt64 wraps to itself, which as uint64 is right
	}
	b = strconv.AppendUint(b, u/microPerUSD, 10)
	frac := u % microPerUSD
	if frac == 0 {
		return b
	}
	var digits [6]byte
	for i := 5; i >= 0; i-- {
		digits[i] = byte('0' + frac%10)
		frac /= 10
	}
	n := 6
	for digits[n-1] == '0' {
		n--
	}
	b = append(b, '.')
	return append(b, digits[:n]...)
}

// MarshalJSON writes m as a JSON number of dollars, exactly (see String).
func (m MicroUSD) MarshalJSON() ([]byte, error) {
	return m.appendDecimal(nil), nil
}

// UnmarshalJSON reads a JSON number of dollars (e.g. 50, 50.0, 12.345678,
// 5e1) exactly, rounding beyond the sixth decimal to the nearest
// micro-dollar. null leaves m unchanged.
func (m *MicroUSD) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	if string(data) == "null" {
		return nil
	}
	if len(data) == 0 || data[0] == '"' {
		return fmt.Errorf("amount in USD must be a JSON number, got %s", data)
	}
	r, ok := new(big.Rat).SetString(string(data))
	if !ok {
		return fmt.Errorf("amount in USD: invalid number %s", data)
	}
	v, ok := roundMicro(r)
	if !ok {
		return fmt.Errorf("amount in USD out of range: %s", data)
	}
	*m = v
	return nil
}

// roundMicro returns dollars r as MicroUSD, rounded half away from zero; ok
// is false when it does not fit in an int64.
func roundMicro(r *big.Rat) (MicroUSD, bool) {
	x := new(big.Rat).Mul(r, big.NewRat(microPerUSD, 1))
	num, den := x.Num(), x.Denom()
	q, rem := new(big.Int).QuoRem(num, den, new(big.Int))
	// Round half away from zero: |2·rem| ≥ den.
	if rem.Sign() != 0 && new(big.Int).Abs(new(big.Int).Lsh(rem, 1)).Cmp(den) >= 0 {
		q.Add(q, big.NewInt(int64(rem.Sign())))
	}
	if !q.IsInt64() {
		return 0, false
	}
	return MicroUSD(q.Int64()), true
}

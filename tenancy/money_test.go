package tenancy_test

import (
	"encoding/json"
	"testing"

	"github.com/mtai-dev/mtai/tenancy"
)

func TestMicroUSDJSON(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		want tenancy.MicroUSD
		out  string
	}{
		{"50.0", 50_000_000, "50"},
		{"50", 50_000_000, "50"},
		{"0", 0, "0"},
		{"0.1", 100_000, "0.1"},
		{"12.345678", 12_345_678, "12.345678"},
		{"0.0000005", 1, "0.000001"}, // half a micro-dollar rounds away from zero
		{"0.00000049", 0, "0"},
		{"5e1", 50_000_000, "50"},
		{"9223372036854.775807", 9223372036854775807, "9223372036854.775807"},
		{"-1.5", -1_500_000, "-1.5"},
	}
	for _, tc := range tests {
		var m tenancy.MicroUSD
		if err := json.Unmarshal([]byte(tc.in), &m); err != nil {
			t.Errorf("Unmarshal(%s) = %v", tc.in, err)
			continue
		}
		if m != tc.want {
			t.Errorf("Unmarshal(%s) = %d, want %d", tc.in, m, tc.want)
		}
		out, _ := json.Marshal(m)
		if string(out) != tc.out {
			t.Errorf("Marshal(%d) = %s, want %s", m, out, tc.out)
		}
	}
	for _, bad := range []string{`"50"`, `true`, `9223372036855`, `[]`} {
		var m tenancy.MicroUSD
		if err := json.Unmarshal([]byte(bad), &m); err == nil {
			t.Errorf("Unmarshal(%s) = %d, want an error", bad, m)
		}
	}
	m := tenancy.MicroUSD(7)
	if err := json.Unmarshal([]byte("null"), &m); err != nil || m != 7 {
		t.Errorf("Unmarshal(null) = %d, %v; want unchanged 7", m, err)
	}
	if got := tenancy.USD(0.1); got != 100_000 {
		t.Errorf("USD(0.1) = %d, want 100000", got)
	}
}

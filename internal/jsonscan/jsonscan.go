// Package jsonscan reads the few fields the gateway needs out of a JSON
// document without decoding it: it walks the bytes once, validates the
// structure it skips, and reports byte offsets so that callers can splice
// changes into the original bytes instead of re-encoding them.
//
// Everything here works on []byte, allocates nothing, and is safe for
// concurrent use (there is no state).
package jsonscan

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"strconv"
)

// ErrSyntax is returned for malformed JSON.
var ErrSyntax = errors.New("malformed JSON")

// maxDepth bounds nesting so that hostile input cannot exhaust the stack.
const maxDepth = 512

// SkipSpace returns the index of the first non-space byte at or after i.
func SkipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// Skip validates the JSON value that starts at data[i] (after optional
// space) and returns the index just past it.
func Skip(data []byte, i int) (int, error) {
	return skip(data, SkipSpace(data, i), 0)
}

func skip(data []byte, i, depth int) (int, error) {
	if i >= len(data) {
		return i, ErrSyntax
	}
	switch c := data[i]; {
	case c == '"':
		return skipString(data, i)
	case c == '{':
		if depth >= maxDepth {
			return i, ErrSyntax
		}
		i = SkipSpace(data, i+1)
		if i < len(data) && data[i] == '}' {
			return i + 1, nil
		}
		for {
			if i >= len(data) || data[i] != '"' {
				return i, ErrSyntax
			}
			var err error
			if i, err = skipString(data, i); err != nil {
				return i, err
			}
			i = SkipSpace(data, i)
			if i >= len(data) || data[i] != ':' {
				return i, ErrSyntax
			}
			if i, err = skip(data, SkipSpace(data, i+1), depth+1); err != nil {
				return i, err
			}
			i = SkipSpace(data, i)
			if i >= len(data) {
				return i, ErrSyntax
			}
			if data[i] == '}' {
				return i + 1, nil
			}
			if data[i] != ',' {
				return i, ErrSyntax
			}
			i = SkipSpace(data, i+1)
		}
	case c == '[':
		if depth >= maxDepth {
			return i, ErrSyntax
		}
		i = SkipSpace(data, i+1)
		if i < len(data) && data[i] == ']' {
			return i + 1, nil
		}
		for {
			var err error
			if i, err = skip(data, i, depth+1); err != nil {
				return i, err
			}
			i = SkipSpace(data, i)
			if i >= len(data) {
				return i, ErrSyntax
			}
			if data[i] == ']' {
				return i + 1, nil
			}
			if data[i] != ',' {
				return i, ErrSyntax
			}
			i = SkipSpace(data, i+1)
		}
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(data, i)
	case c == 't':
		return literal(data, i, "true")
	case c == 'f':
		return literal(data, i, "false")
	case c == 'n':
		return literal(data, i, "null")
	}
	return i, ErrSyntax
}

func literal(data []byte, i int, lit string) (int, error) {
	if len(data)-i >= len(lit) && string(data[i:i+len(lit)]) == lit {
		return i + len(lit), nil
	}
	return i, ErrSyntax
}

const (
	lsb    = 0x0101010101010101
	msb    = 0x8080808080808080
	quotes = '"' * lsb
	slashs = '\\' * lsb
)

// plain8 reports whether none of 8 bytes is a quote, a backslash or a
// control character (SWAR: eight bytes tested at once).
func plain8(w uint64) bool {
	q := w ^ quotes
	b := w ^ slashs
	return ((q-lsb)&^q|(b-lsb)&^b|(w-0x20*lsb)&^w)&msb == 0
}

func skipString(data []byte, i int) (int, error) {
	i++ // opening quote
	for i < len(data) {
		for i+8 <= len(data) && plain8(binary.LittleEndian.Uint64(data[i:])) {
			i += 8
		}
		if i >= len(data) {
			break
		}
		c := data[i]
		switch {
		case c == '"':
			return i + 1, nil
		case c == '\\':
			if i+1 >= len(data) {
				return i, ErrSyntax
			}
			switch data[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if i+6 > len(data) || !isHex4(data[i+2:i+6]) {
					return i, ErrSyntax
				}
				i += 6
			default:
				return i, ErrSyntax
			}
		case c < 0x20:
			return i, ErrSyntax
		default:
			i++
		}
	}
	return i, ErrSyntax
}

func isHex4(b []byte) bool {
	for _, c := range b {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

func skipNumber(data []byte, i int) (int, error) {
	start := i
	if data[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(data) && data[i] >= '0' && data[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(data) && data[i] == '0' {
		i++
	} else if digits() == 0 {
		return start, ErrSyntax
	}
	if i < len(data) && data[i] == '.' {
		i++
		if digits() == 0 {
			return start, ErrSyntax
		}
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		i++
		if i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if digits() == 0 {
			return start, ErrSyntax
		}
	}
	return i, nil
}

// Field is one member of an object: its key (raw, without quotes and
// unescaped only if it had no escapes) and the bounds of its value.
type Field struct {
	Key        []byte
	Start, End int
}

// Object walks the object that starts at data[i] (after optional space),
// calling fn for each member. fn returns false to stop early (the rest is
// then not validated). Object returns the index just past the object.
func Object(data []byte, i int, fn func(f Field) bool) (int, error) {
	i = SkipSpace(data, i)
	if i >= len(data) || data[i] != '{' {
		return i, ErrSyntax
	}
	i = SkipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(data) || data[i] != '"' {
			return i, ErrSyntax
		}
		ks := i + 1
		ke, err := skipString(data, i)
		if err != nil {
			return ke, err
		}
		i = SkipSpace(data, ke)
		if i >= len(data) || data[i] != ':' {
			return i, ErrSyntax
		}
		vs := SkipSpace(data, i+1)
		ve, err := skip(data, vs, 1)
		if err != nil {
			return ve, err
		}
		if !fn(Field{Key: data[ks : ke-1], Start: vs, End: ve}) {
			return ve, nil
		}
		i = SkipSpace(data, ve)
		if i >= len(data) {
			return i, ErrSyntax
		}
		if data[i] == '}' {
			return i + 1, nil
		}
		if data[i] != ',' {
			return i, ErrSyntax
		}
		i = SkipSpace(data, i+1)
	}
}

// Array walks the array that starts at data[i], calling fn with the bounds
// of each element. It returns the index just past the array.
func Array(data []byte, i int, fn func(start, end int) bool) (int, error) {
	i = SkipSpace(data, i)
	if i >= len(data) || data[i] != '[' {
		return i, ErrSyntax
	}
	i = SkipSpace(data, i+1)
	if i < len(data) && data[i] == ']' {
		return i + 1, nil
	}
	for {
		e, err := skip(data, i, 1)
		if err != nil {
			return e, err
		}
		if !fn(i, e) {
			return e, nil
		}
		i = SkipSpace(data, e)
		if i >= len(data) {
			return i, ErrSyntax
		}
		if data[i] == ']' {
			return i + 1, nil
		}
		if data[i] != ',' {
			return i, ErrSyntax
		}
		i = SkipSpace(data, i+1)
	}
}

// Int parses a JSON integer value (as bytes). ok is false for anything else
// (a float with a fraction, a string, null).
func Int(v []byte) (n int64, ok bool) {
	if len(v) == 0 || len(v) > 19 {
		return 0, false
	}
	neg := v[0] == '-'
	if neg {
		v = v[1:]
		if len(v) == 0 {
			return 0, false
		}
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// Float parses a JSON number value.
func Float(v []byte) (float64, bool) {
	if len(v) == 0 || !(v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	return f, err == nil
}

// Bool parses true or false.
func Bool(v []byte) (b, ok bool) {
	switch string(v) {
	case "true":
		return true, true
	case "false":
		return false, true
	}
	return false, false
}

// IsNull reports whether v is the null literal.
func IsNull(v []byte) bool { return string(v) == "null" }

// String returns the content of a JSON string value (with quotes) and
// whether it is one. Strings without escapes are returned without copying;
// others are unescaped into a new slice.
func String(v []byte) ([]byte, bool) {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return nil, false
	}
	inner := v[1 : len(v)-1]
	for _, c := range inner {
		if c == '\\' {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, false
			}
			return []byte(s), true
		}
	}
	return inner, true
}

// Find returns the value bounds of key in the object at data[i]; ok is false
// when the key is absent or data is not an object.
func Find(data []byte, i int, key string) (start, end int, ok bool) {
	_, err := Object(data, i, func(f Field) bool {
		if string(f.Key) == key {
			start, end, ok = f.Start, f.End, true
			return false
		}
		return true
	})
	if err != nil {
		return 0, 0, false
	}
	return start, end, ok
}

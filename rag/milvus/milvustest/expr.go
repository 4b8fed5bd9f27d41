package milvustest

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/milvus-io/milvus-proto/go-api/v2/schemapb"
	"github.com/milvus-io/milvus/pkg/v2/util/merr"
)

// A boolean filter expression of Milvus's grammar, the part of it over
// scalar fields:
//
//	expr   = or
//	or     = and { ("||" | "or") and }
//	and    = not { ("&&" | "and") not }
//	not    = ("!" | "not") not | "(" expr ")" | cmp
//	cmp    = field op value | field ["not"] "in" "[" value {"," value} "]"
//	op     = "==" | "!=" | "<" | "<=" | ">" | ">="
//	value  = integer | "string" | 'string'
//
// Fields must exist in the schema and values must have their type, as
// Milvus checks.
type node interface {
	eval(values map[string]any) bool
}

type andNode struct{ a, b node }
type orNode struct{ a, b node }
type notNode struct{ a node }
type cmpNode struct {
	field string
	op    string
	value any
}
type inNode struct {
	field  string
	values []any
	not    bool
}

func (n andNode) eval(v map[string]any) bool { return n.a.eval(v) && n.b.eval(v) }
func (n orNode) eval(v map[string]any) bool  { return n.a.eval(v) || n.b.eval(v) }
func (n notNode) eval(v map[string]any) bool { return !n.a.eval(v) }

func (n cmpNode) eval(v map[string]any) bool {
	c, ok := compare(v[n.field], n.value)
	if !ok {
		return false
	}
	switch n.op {
	case "==":
		return c == 0
	case "!=":
		return c != 0
	case "<":
		return c < 0
	case "<=":
		return c <= 0
	case ">":
		return c > 0
	case ">=":
		return c >= 0
	}
	return false
}

func (n inNode) eval(v map[string]any) bool {
	for _, want := range n.values {
		if c, ok := compare(v[n.field], want); ok && c == 0 {
			return !n.not
		}
	}
	return n.not
}

func compare(a, b any) (int, bool) {
	switch x := a.(type) {
	case int64:
		y, ok := b.(int64)
		if !ok {
			return 0, false
		}
		switch {
		case x < y:
			return -1, true
		case x > y:
			return 1, true
		}
		return 0, true
	case string:
		y, ok := b.(string)
		if !ok {
			return 0, false
		}
		return strings.Compare(x, y), true
	}
	return 0, false
}

type parser struct {
	toks   []string
	pos    int
	fields map[string]*schemapb.FieldSchema
}

// parse parses expr against the collection's fields.
func parse(expr string, fields map[string]*schemapb.FieldSchema) (node, error) {
	toks, err := tokenize(expr)
	if err != nil {
		return nil, merr.WrapErrParameterInvalidMsg("cannot parse expression %q: %v", expr, err)
	}
	p := &parser{toks: toks, fields: fields}
	n, err := p.or()
	if err == nil && p.pos != len(p.toks) {
		err = fmt.Errorf("unexpected %q", p.toks[p.pos])
	}
	if err != nil {
		return nil, merr.WrapErrParameterInvalidMsg("cannot parse expression %q: %v", expr, err)
	}
	return n, nil
}

func (p *parser) peek() string {
	if p.pos < len(p.toks) {
		return p.toks[p.pos]
	}
	return ""
}

func (p *parser) next() string {
	t := p.peek()
	p.pos++
	return t
}

func (p *parser) or() (node, error) {
	a, err := p.and()
	for err == nil && (p.peek() == "||" || strings.EqualFold(p.peek(), "or")) {
		p.next()
		var b node
		if b, err = p.and(); err == nil {
			a = orNode{a, b}
		}
	}
	return a, err
}

func (p *parser) and() (node, error) {
	a, err := p.not()
	for err == nil && (p.peek() == "&&" || strings.EqualFold(p.peek(), "and")) {
		p.next()
		var b node
		if b, err = p.not(); err == nil {
			a = andNode{a, b}
		}
	}
	return a, err
}

func (p *parser) not() (node, error) {
	switch t := p.peek(); {
	case t == "!" || strings.EqualFold(t, "not"):
		p.next()
		a, err := p.not()
		return notNode{a}, err
	case t == "(":
		p.next()
		a, err := p.or()
		if err != nil {
			return nil, err
		}
		if p.next() != ")" {
			return nil, fmt.Errorf("missing )")
		}
		return a, nil
	}
	return p.cmp()
}

func (p *parser) cmp() (node, error) {
	name := p.next()
	f := p.fields[name]
	if f == nil {
		return nil, fmt.Errorf("field %q does not exist", name)
	}
	if f.DataType != schemapb.DataType_Int64 && f.DataType != schemapb.DataType_VarChar {
		return nil, fmt.Errorf("field %q cannot be filtered", name)
	}
	op := p.next()
	switch {
	case op == "==" || op == "!=" || op == "<" || op == "<=" || op == ">" || op == ">=":
		v, err := p.value(f)
		return cmpNode{field: name, op: op, value: v}, err
	case strings.EqualFold(op, "in") || strings.EqualFold(op, "not"):
		not := strings.EqualFold(op, "not")
		if not && !strings.EqualFold(p.next(), "in") {
			return nil, fmt.Errorf("want 'in' after 'not'")
		}
		if p.next() != "[" {
			return nil, fmt.Errorf("want [ after in")
		}
		n := inNode{field: name, not: not}
		for p.peek() != "]" {
			v, err := p.value(f)
			if err != nil {
				return nil, err
			}
			n.values = append(n.values, v)
			if p.peek() == "," {
				p.next()
			} else if p.peek() != "]" {
				return nil, fmt.Errorf("want , or ] in a list")
			}
		}
		p.next()
		return n, nil
	}
	return nil, fmt.Errorf("unexpected %q after %s", op, name)
}

func (p *parser) value(f *schemapb.FieldSchema) (any, error) {
	t := p.next()
	if f.DataType == schemapb.DataType_VarChar {
		if len(t) < 2 || (t[0] != '"' && t[0] != '\'') {
			return nil, fmt.Errorf("field %s wants a string, got %q", f.Name, t)
		}
		return t[1 : len(t)-1], nil
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("field %s wants an integer, got %q", f.Name, t)
	}
	return n, nil
}

func tokenize(s string) ([]string, error) {
	var toks []string
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case strings.HasPrefix(s[i:], "&&"), strings.HasPrefix(s[i:], "||"), strings.HasPrefix(s[i:], "=="),
			strings.HasPrefix(s[i:], "!="), strings.HasPrefix(s[i:], "<="), strings.HasPrefix(s[i:], ">="):
			toks = append(toks, s[i:i+2])
			i += 2
		case strings.ContainsRune("()[],<>!", rune(c)):
			toks = append(toks, s[i:i+1])
			i++
		case c == '"' || c == '\'':
			j := strings.IndexByte(s[i+1:], c)
			if j < 0 {
				return nil, fmt.Errorf("unterminated string")
			}
			toks = append(toks, s[i:i+j+2])
			i += j + 2
		case c == '-' || c == '_' || unicode.IsLetter(rune(c)) || unicode.IsDigit(rune(c)):
			j := i + 1
			for j < len(s) && (s[j] == '_' || unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j]))) {
				j++
			}
			toks = append(toks, s[i:j])
			i = j
		default:
			return nil, fmt.Errorf("unexpected %q", c)
		}
	}
	return toks, nil
}

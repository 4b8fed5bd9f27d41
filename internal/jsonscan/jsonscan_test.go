package jsonscan

import (
	"encoding/json"
	"testing"
)

func TestSkipMatchesEncodingJSON(t *testing.T) {
	cases := []string{
		`{}`, `[]`, `"a"`, `1`, `-0.5e+10`, `true`, `false`, `null`,
		`{"a":[1,2,{"b":"c\"d\\u00e9"}],"e":null}`,
		` { "a" : 1 , "b" : [ ] } `,
		`"\ud83d\ude00"`,
		// invalid
		`{`, `{"a"}`, `{"a":}`, `[1,]`, `{"a":1,}`, `01`, `1.`, `.5`, `-`, `tru`, `"abc`, `"\x"`, `"\u12"`,
		"\"a\x01b\"", `{"a":1}}`, `[1 2]`, `{1:2}`, `nul`, `1e`, `--1`,
	}
	for _, c := range cases {
		end, err := Skip([]byte(c), 0)
		got := err == nil && SkipSpace([]byte(c), end) == len(c)
		want := json.Valid([]byte(c))
		if got != want {
			t.Errorf("Skip(%q) valid = %v, want %v (end %d, err %v)", c, got, want, end, err)
		}
	}
}

func TestDepthLimit(t *testing.T) {
	deep := make([]byte, 0, 2*maxDepth+4)
	for i := 0; i < maxDepth+2; i++ {
		deep = append(deep, '[')
	}
	for i := 0; i < maxDepth+2; i++ {
		deep = append(deep, ']')
	}
	if _, err := Skip(deep, 0); err == nil {
		t.Fatalf("Skip of %d nested arrays succeeded, want ErrSyntax", maxDepth+2)
	}
}

func TestObjectAndFind(t *testing.T) {
	doc := []byte(`{"model":"gpt-4o","stream":true,"n":3,"messages":[{"role":"user"}],"x":{"y":1}}`)
	var keys []string
	end, err := Object(doc, 0, func(f Field) bool {
		keys = append(keys, string(f.Key))
		return true
	})
	if err != nil || end != len(doc) {
		t.Fatalf("Object = %d, %v; want %d, nil", end, err, len(doc))
	}
	if len(keys) != 5 || keys[0] != "model" || keys[4] != "x" {
		t.Errorf("keys = %v", keys)
	}
	s, e, ok := Find(doc, 0, "messages")
	if !ok || string(doc[s:e]) != `[{"role":"user"}]` {
		t.Errorf("Find(messages) = %q, %v", doc[s:e], ok)
	}
	if _, _, ok := Find(doc, 0, "absent"); ok {
		t.Error("Find(absent) = true")
	}
}

func TestScalars(t *testing.T) {
	ints := []struct {
		in   string
		want int64
		ok   bool
	}{{"0", 0, true}, {"42", 42, true}, {"-7", -7, true}, {"1.5", 0, false}, {`"1"`, 0, false}, {"", 0, false}, {"-", 0, false}}
	for _, c := range ints {
		got, ok := Int([]byte(c.in))
		if got != c.want || ok != c.ok {
			t.Errorf("Int(%q) = %d, %v; want %d, %v", c.in, got, ok, c.want, c.ok)
		}
	}
	if f, ok := Float([]byte("0.25")); !ok || f != 0.25 {
		t.Errorf("Float(0.25) = %v, %v", f, ok)
	}
	if _, ok := Float([]byte(`"1"`)); ok {
		t.Error(`Float("1") ok`)
	}
	if s, ok := String([]byte(`"a\"b"`)); !ok || string(s) != `a"b` {
		t.Errorf("String = %q, %v", s, ok)
	}
	if s, ok := String([]byte(`"plain"`)); !ok || string(s) != "plain" {
		t.Errorf("String = %q, %v", s, ok)
	}
}

func FuzzSkip(f *testing.F) {
	for _, s := range []string{`{"a":[1,"b",null]}`, `[`, `"\u00e9"`, `-1.5e3`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		end, err := Skip(b, 0)
		got := err == nil && SkipSpace(b, end) == len(b)
		if want := json.Valid(b); got != want {
			t.Fatalf("Skip(%q) valid = %v, json.Valid = %v", b, got, want)
		}
	})
}

func BenchmarkObject(b *testing.B) {
	doc := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"system","content":"You are helpful."},{"role":"user","content":"Tell me a story about a gateway that counted every token it relayed, in three sentences."}],"temperature":0.7,"stream":true,"max_tokens":256}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		_, _ = Object(doc, 0, func(f Field) bool { return true })
	}
}

func BenchmarkObjectLargePrompt(b *testing.B) {
	text := make([]byte, 0, 10240)
	for len(text) < 10000 {
		text = append(text, "The quick brown fox jumps over the lazy dog, again and again. "...)
	}
	doc := []byte(`{"model":"gpt-4o-mini","messages":[{"role":"user","content":"` + string(text) + `"}],"stream":true}`)
	b.ReportAllocs()
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		_, _ = Object(doc, 0, func(f Field) bool { return true })
	}
}

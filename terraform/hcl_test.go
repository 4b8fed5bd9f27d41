package terraform_test

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// module is one Terraform module: the .tf files of one directory, parsed.
type module struct {
	dir    string
	files  map[string][]byte // file name => source
	blocks []*hclsyntax.Block

	vars   map[string]*hclsyntax.Block
	locals map[string]hclsyntax.Expression

	// varVals holds each variable's default, or an unknown value when it
	// has none; localVals the locals evaluated against those defaults.
	varVals   map[string]cty.Value
	localVals map[string]cty.Value
}

// tree is a set of modules keyed by directory, so that module calls with a
// local source can be resolved.
type tree struct {
	modules map[string]*module
}

// loadTree parses every .tf file below root. It returns the parse
// diagnostics rather than failing, so that the parse test can report them.
func loadTree(root string) (*tree, hcl.Diagnostics, error) {
	byDir := map[string]map[string][]byte{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == ".terraform" || (strings.HasPrefix(d.Name(), ".") && path != root)) {
			return filepath.SkipDir
		}
		if d.IsDir() || filepath.Ext(path) != ".tf" {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		dir := filepath.Dir(path)
		if byDir[dir] == nil {
			byDir[dir] = map[string][]byte{}
		}
		byDir[dir][path] = src
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	t := &tree{modules: map[string]*module{}}
	var diags hcl.Diagnostics
	for dir, files := range byDir {
		m, d := parseModule(dir, files)
		diags = append(diags, d...)
		t.modules[dir] = m
	}
	return t, diags, nil
}

// parseModule parses the files of one module.
func parseModule(dir string, files map[string][]byte) (*module, hcl.Diagnostics) {
	m := &module{
		dir:    dir,
		files:  files,
		vars:   map[string]*hclsyntax.Block{},
		locals: map[string]hclsyntax.Expression{},
	}
	var diags hcl.Diagnostics
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		f, d := hclsyntax.ParseConfig(files[name], name, hcl.InitialPos)
		diags = append(diags, d...)
		if f == nil {
			continue
		}
		body, ok := f.Body.(*hclsyntax.Body)
		if !ok {
			continue
		}
		m.blocks = append(m.blocks, body.Blocks...)
	}
	for _, b := range m.blocks {
		switch {
		case b.Type == "variable" && len(b.Labels) == 1:
			m.vars[b.Labels[0]] = b
		case b.Type == "locals":
			for name, a := range b.Body.Attributes {
				m.locals[name] = a.Expr
			}
		}
	}
	m.evaluateDefaults()
	return m, diags
}

// snippetModule parses inline HCL as a module, for the negative tests.
func snippetModule(t *testing.T, src string) *module {
	t.Helper()
	m, diags := parseModule("snippet", map[string][]byte{"snippet.tf": []byte(src)})
	if diags.HasErrors() {
		t.Fatalf("snippet does not parse: %s", diags.Error())
	}
	return m
}

// evaluateDefaults fills varVals and localVals.
func (m *module) evaluateDefaults() {
	m.varVals = map[string]cty.Value{}
	for name, b := range m.vars {
		m.varVals[name] = cty.DynamicVal
		if a, ok := b.Body.Attributes["default"]; ok {
			v, diags := a.Expr.Value(&hcl.EvalContext{Functions: functions})
			if !diags.HasErrors() {
				m.varVals[name] = v
			}
		}
	}
	m.localVals = map[string]cty.Value{}
	for name := range m.locals {
		m.localVals[name] = cty.DynamicVal
	}
	// Locals may refer to each other: a few passes settle short chains.
	for range 4 {
		for name, e := range m.locals {
			m.localVals[name] = m.eval(e, nil)
		}
	}
}

// functions are the Terraform functions the evaluator knows; a call to any
// other makes the expression unknown, which the checks treat as unproven.
var functions = map[string]function.Function{
	"coalesce":   stdlib.CoalesceFunc,
	"concat":     stdlib.ConcatFunc,
	"contains":   stdlib.ContainsFunc,
	"format":     stdlib.FormatFunc,
	"join":       stdlib.JoinFunc,
	"jsonencode": stdlib.JSONEncodeFunc,
	"keys":       stdlib.KeysFunc,
	"length":     stdlib.LengthFunc,
	"lower":      stdlib.LowerFunc,
	"merge":      stdlib.MergeFunc,
	"replace":    stdlib.ReplaceFunc,
	"slice":      stdlib.SliceFunc,
	"split":      stdlib.SplitFunc,
	"tolist":     identity,
	"toset":      identity,
	"upper":      stdlib.UpperFunc,
	"values":     stdlib.ValuesFunc,
}

// identity stands in for tolist and toset: iterating the elements is all
// the checks need.
var identity = function.New(&function.Spec{
	Params: []function.Parameter{{Name: "v", Type: cty.DynamicPseudoType, AllowNull: true, AllowUnknown: true, AllowDynamicType: true}},
	Type:   func(args []cty.Value) (cty.Type, error) { return args[0].Type(), nil },
	Impl:   func(args []cty.Value, _ cty.Type) (cty.Value, error) { return args[0], nil },
})

// eval evaluates expr with the variables' defaults, the locals, and extra
// (each, count, dynamic iterators). Anything else it refers to (resources,
// data sources, modules) is unknown. An expression that fails to evaluate is
// unknown.
func (m *module) eval(expr hcl.Expression, extra map[string]cty.Value) cty.Value {
	vars := map[string]cty.Value{}
	if len(m.varVals) > 0 {
		vars["var"] = cty.ObjectVal(m.varVals)
	}
	if len(m.localVals) > 0 {
		vars["local"] = cty.ObjectVal(m.localVals)
	}
	for k, v := range extra {
		vars[k] = v
	}
	for _, tr := range expr.Variables() {
		if _, ok := vars[tr.RootName()]; !ok {
			vars[tr.RootName()] = cty.DynamicVal
		}
	}
	v, diags := expr.Value(&hcl.EvalContext{Variables: vars, Functions: functions})
	if diags.HasErrors() {
		return cty.DynamicVal
	}
	return v
}

// instances returns the evaluation scopes of a resource block: one per
// for_each element or count index as the defaults make them. A block that
// the defaults switch off (or whose count is unknown) still yields one scope
// with unknown each/count, so that its shape is checked all the same.
func (m *module) instances(b *hclsyntax.Block) []map[string]cty.Value {
	unknown := []map[string]cty.Value{{"each": cty.DynamicVal, "count": cty.DynamicVal}}
	if a, ok := b.Body.Attributes["for_each"]; ok {
		v := m.eval(a.Expr, nil)
		if !v.IsWhollyKnown() || v.IsNull() || !v.CanIterateElements() || v.LengthInt() == 0 {
			return unknown
		}
		var out []map[string]cty.Value
		for it := v.ElementIterator(); it.Next(); {
			k, e := it.Element()
			if v.Type().IsSetType() || v.Type().IsTupleType() || v.Type().IsListType() {
				k = e
			}
			out = append(out, map[string]cty.Value{"each": cty.ObjectVal(map[string]cty.Value{"key": k, "value": e})})
		}
		return out
	}
	if a, ok := b.Body.Attributes["count"]; ok {
		v := m.eval(a.Expr, nil)
		if !v.IsKnown() || v.IsNull() || !v.Type().Equals(cty.Number) {
			return unknown
		}
		n, _ := v.AsBigFloat().Int64()
		if n <= 0 {
			return unknown
		}
		out := make([]map[string]cty.Value, 0, n)
		for i := range n {
			out = append(out, map[string]cty.Value{"count": cty.ObjectVal(map[string]cty.Value{"index": cty.NumberIntVal(i)})})
		}
		return out
	}
	return []map[string]cty.Value{nil}
}

// resources returns the blocks `resource "<typ>" "..."`.
func (m *module) resources(types ...string) []*hclsyntax.Block {
	return m.labelled("resource", types...)
}

// data returns the blocks `data "<typ>" "..."`.
func (m *module) data(types ...string) []*hclsyntax.Block {
	return m.labelled("data", types...)
}

func (m *module) labelled(kind string, types ...string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, b := range m.blocks {
		if b.Type != kind || len(b.Labels) != 2 {
			continue
		}
		for _, typ := range types {
			if b.Labels[0] == typ {
				out = append(out, b)
			}
		}
	}
	return out
}

// moduleCalls returns the `module` blocks with the module each one calls,
// when its source is a local directory that was loaded.
func (tr *tree) moduleCalls(m *module) map[*hclsyntax.Block]*module {
	out := map[*hclsyntax.Block]*module{}
	for _, b := range m.blocks {
		if b.Type != "module" || len(b.Labels) != 1 {
			continue
		}
		out[b] = nil
		a, ok := b.Body.Attributes["source"]
		if !ok {
			continue
		}
		v := m.eval(a.Expr, nil)
		if !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
			continue
		}
		src := v.AsString()
		if !strings.HasPrefix(src, "./") && !strings.HasPrefix(src, "../") {
			continue
		}
		if tr != nil {
			out[b] = tr.modules[filepath.Clean(filepath.Join(m.dir, src))]
		}
	}
	return out
}

// ref returns the address of a block: "aws_s3_bucket.docs", "data.x.y",
// "module.name".
func ref(b *hclsyntax.Block) string {
	switch b.Type {
	case "resource":
		return b.Labels[0] + "." + b.Labels[1]
	case "data":
		return "data." + b.Labels[0] + "." + b.Labels[1]
	case "module":
		return "module." + b.Labels[0]
	}
	return b.Type + "." + strings.Join(b.Labels, ".")
}

// where formats a source position for messages.
func where(r hcl.Range) string {
	return fmt.Sprintf("%s:%d", filepath.ToSlash(r.Filename), r.Start.Line)
}

// traversalName renders the static part of a traversal: "var.x",
// "aws_security_group.db.id", "module.ecs.security_group_id".
func traversalName(tr hcl.Traversal) string {
	parts := []string{tr.RootName()}
	for _, step := range tr[1:] {
		if a, ok := step.(hcl.TraverseAttr); ok {
			parts = append(parts, a.Name)
		}
	}
	return strings.Join(parts, ".")
}

// addressOf returns the block address a traversal points into
// ("aws_security_group.db" for aws_security_group.db.id), or "".
func addressOf(tr hcl.Traversal) string {
	parts := strings.Split(traversalName(tr), ".")
	switch {
	case parts[0] == "data" && len(parts) >= 3:
		return strings.Join(parts[:3], ".")
	case len(parts) >= 2:
		return strings.Join(parts[:2], ".")
	}
	return ""
}

// addressesIn returns the block addresses an expression refers to.
func addressesIn(e hcl.Expression) []string {
	var out []string
	for _, tr := range e.Variables() {
		if a := addressOf(tr); a != "" {
			out = append(out, a)
		}
	}
	return out
}

// childBlocks returns the nested blocks of type typ, including the content
// of `dynamic "<typ>"` blocks.
func childBlocks(b *hclsyntax.Block, typ string) []*hclsyntax.Block {
	var out []*hclsyntax.Block
	for _, c := range b.Body.Blocks {
		if c.Type == typ {
			out = append(out, c)
		}
	}
	return out
}

// strs returns the known strings of a string or a collection of strings, and
// whether every element was known.
func strs(v cty.Value) ([]string, bool) {
	if !v.IsKnown() {
		return nil, false
	}
	if v.IsNull() {
		return nil, true
	}
	if v.Type() == cty.String {
		return []string{v.AsString()}, true
	}
	if !v.CanIterateElements() {
		return nil, false
	}
	known := true
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if !e.IsKnown() || e.IsNull() || e.Type() != cty.String {
			known = false
			continue
		}
		out = append(out, e.AsString())
	}
	return out, known
}

// boolIs reports whether v is the known boolean want.
func boolIs(v cty.Value, want bool) bool {
	return v.IsKnown() && !v.IsNull() && v.Type() == cty.Bool && v.True() == want
}

package terraform_test

import (
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
)

// A check inspects one module (with the tree, to follow module calls) and
// returns what it found wrong and how many things it inspected, so that a
// test on the real configuration can tell a pass from a vacuous pass.
type check func(tr *tree, m *module) (problems []string, checked int)

var checks = map[string]check{
	"format":             checkFormat,
	"documented":         checkDocumented,
	"references":         checkReferences,
	"security_groups":    checkSecurityGroups,
	"data_store_sources": checkDataStoreSources,
	"rds":                checkRDS,
	"elasticache":        checkElastiCache,
	"s3":                 checkS3,
	"ecs_network":        checkECSNetwork,
	"iam":                checkIAM,
}

// ---------------------------------------------------------------------------
// format: hclwrite.Format leaves every file unchanged (what terraform fmt
// would write).

func checkFormat(_ *tree, m *module) ([]string, int) {
	var problems []string
	for name, src := range m.files {
		if got := hclwrite.Format(src); string(got) != string(src) {
			problems = append(problems, fmt.Sprintf("%s: not canonically formatted (run terraform fmt)", name))
		}
	}
	return problems, len(m.files)
}

// ---------------------------------------------------------------------------
// documented: every variable has a type and a description, every output a
// description.

func checkDocumented(_ *tree, m *module) ([]string, int) {
	var problems []string
	n := 0
	for _, b := range m.blocks {
		if (b.Type != "variable" && b.Type != "output") || len(b.Labels) != 1 {
			continue
		}
		n++
		at := fmt.Sprintf("%s %s %q", where(b.DefRange()), b.Type, b.Labels[0])
		d, ok := b.Body.Attributes["description"]
		if !ok {
			problems = append(problems, at+": no description")
		} else if v := m.eval(d.Expr, nil); !v.IsKnown() || v.IsNull() || v.Type() != cty.String || strings.TrimSpace(v.AsString()) == "" {
			problems = append(problems, at+": empty description")
		}
		if _, ok := b.Body.Attributes["type"]; b.Type == "variable" && !ok {
			problems = append(problems, at+": no type")
		}
	}
	return problems, n
}

// ---------------------------------------------------------------------------
// references: what `terraform validate` would catch without provider
// schemas. Every var., local., data., module. and resource reference names
// something declared; every module call passes only variables the module
// declares, passes all those without a default, and reads only outputs the
// module declares.

func checkReferences(tr *tree, m *module) ([]string, int) {
	declared := map[string]bool{}
	iterators := map[string]bool{"each": true, "count": true, "self": true, "path": true, "terraform": true}
	var walkDynamic func(b *hclsyntax.Block)
	walkDynamic = func(b *hclsyntax.Block) {
		for _, c := range b.Body.Blocks {
			if c.Type == "dynamic" && len(c.Labels) == 1 {
				iterators[c.Labels[0]] = true
				if it, ok := c.Body.Attributes["iterator"]; ok {
					iterators[hcl.ExprAsKeyword(it.Expr)] = true
				}
			}
			walkDynamic(c)
		}
	}
	for _, b := range m.blocks {
		switch b.Type {
		case "resource", "data", "module":
			declared[ref(b)] = true
		}
		walkDynamic(b)
	}
	calls := tr.moduleCalls(m)
	callByName := map[string]*module{}
	for b, callee := range calls {
		callByName[b.Labels[0]] = callee
	}

	var problems []string
	n := 0
	var visit func(b *hclsyntax.Block)
	visit = func(b *hclsyntax.Block) {
		for name, a := range b.Body.Attributes {
			// Bare names in these are attribute names or provider
			// aliases, not references.
			if name == "ignore_changes" || name == "provider" || name == "providers" || name == "type" && b.Type == "variable" {
				continue
			}
			for _, t := range a.Expr.Variables() {
				n++
				if p := m.resolve(t, declared, iterators, callByName); p != "" {
					problems = append(problems, fmt.Sprintf("%s: %s", where(t.SourceRange()), p))
				}
			}
		}
		for _, c := range b.Body.Blocks {
			visit(c)
		}
	}
	for _, b := range m.blocks {
		visit(b)
	}

	for b, callee := range calls {
		if callee == nil {
			continue
		}
		meta := map[string]bool{"source": true, "version": true, "providers": true, "depends_on": true, "count": true, "for_each": true}
		for name, a := range b.Body.Attributes {
			if !meta[name] && callee.vars[name] == nil {
				problems = append(problems, fmt.Sprintf("%s: module %q has no variable %q", where(a.NameRange), b.Labels[0], name))
			}
		}
		for name, v := range callee.vars {
			if _, hasDefault := v.Body.Attributes["default"]; !hasDefault && b.Body.Attributes[name] == nil {
				problems = append(problems, fmt.Sprintf("%s: module %q needs variable %q", where(b.DefRange()), b.Labels[0], name))
			}
		}
	}
	return problems, n
}

// resolve returns what is wrong with one reference, or "".
func (m *module) resolve(t hcl.Traversal, declared, iterators map[string]bool, calls map[string]*module) string {
	name := traversalName(t)
	parts := strings.Split(name, ".")
	root := parts[0]
	switch {
	case iterators[root]:
		return ""
	case root == "var":
		if len(parts) < 2 || m.vars[parts[1]] == nil {
			return "undeclared variable " + name
		}
	case root == "local":
		if len(parts) < 2 {
			return "bad reference " + name
		}
		if _, ok := m.locals[parts[1]]; !ok {
			return "undeclared local " + name
		}
	case root == "module":
		if len(parts) < 2 || !declared["module."+parts[1]] {
			return "undeclared module " + name
		}
		if callee := calls[parts[1]]; callee != nil && len(parts) >= 3 && !callee.hasOutput(parts[2]) {
			return fmt.Sprintf("module %q has no output %q", parts[1], parts[2])
		}
	default:
		addr := addressOf(t)
		if addr == "" || !declared[addr] {
			return "undeclared " + name
		}
	}
	return ""
}

func (m *module) hasOutput(name string) bool {
	for _, b := range m.blocks {
		if b.Type == "output" && len(b.Labels) == 1 && b.Labels[0] == name {
			return true
		}
	}
	return false
}

// ---------------------------------------------------------------------------
// security_groups: nothing is open to the internet except the load
// balancer's 80 and 443; the database and cache security groups accept
// connections from other security groups only.

type ingress struct {
	at         string
	sg         string // "aws_security_group.x", or "" when unresolved
	cidrs      []string
	cidrAttr   bool // a CIDR attribute is set (known or not)
	fromSG     bool
	prefixList bool
	proto      string
	from, to   int64 // -1 when unknown
}

func (i ingress) open() []string {
	var out []string
	for _, c := range i.cidrs {
		if c == "0.0.0.0/0" || c == "::/0" {
			out = append(out, c)
		}
	}
	return out
}

func checkSecurityGroups(_ *tree, m *module) ([]string, int) {
	alb := sgRefs(m, map[string][]string{"aws_lb": {"security_groups"}, "aws_alb": {"security_groups"}})
	data := dataStoreSGs(m)
	rules := ingressRules(m)
	var problems []string
	for _, r := range rules {
		if data[r.sg] && (r.cidrAttr || r.prefixList || !r.fromSG) {
			problems = append(problems, fmt.Sprintf("%s: ingress to database/cache security group %s must come from a security group only (no CIDR, no prefix list)", r.at, r.sg))
		}
		for _, c := range r.open() {
			web := (r.proto == "tcp" || r.proto == "6") && r.from == r.to && (r.from == 80 || r.from == 443)
			if !alb[r.sg] || !web {
				problems = append(problems, fmt.Sprintf("%s: ingress from %s to %s (ports %d-%d/%s): only the load balancer's security group may be open to the internet, on 80 and 443", r.at, c, orUnknown(r.sg), r.from, r.to, r.proto))
			}
		}
	}
	return problems, len(rules)
}

func orUnknown(s string) string {
	if s == "" {
		return "an unresolved security group"
	}
	return s
}

// dataStoreSGs returns the security groups attached to databases and caches.
func dataStoreSGs(m *module) map[string]bool {
	return sgRefs(m, map[string][]string{
		"aws_db_instance":                   {"vpc_security_group_ids"},
		"aws_rds_cluster":                   {"vpc_security_group_ids"},
		"aws_elasticache_replication_group": {"security_group_ids"},
		"aws_elasticache_cluster":           {"security_group_ids"},
		"aws_elasticache_serverless_cache":  {"security_group_ids"},
		"aws_memorydb_cluster":              {"security_group_ids"},
	})
}

// sgRefs returns the aws_security_group addresses referenced by the given
// attributes of the given resource types.
func sgRefs(m *module, attrs map[string][]string) map[string]bool {
	out := map[string]bool{}
	for typ, names := range attrs {
		for _, b := range m.resources(typ) {
			for _, name := range names {
				if a, ok := b.Body.Attributes[name]; ok {
					for _, addr := range addressesIn(a.Expr) {
						if strings.HasPrefix(addr, "aws_security_group.") {
							out[addr] = true
						}
					}
				}
			}
		}
	}
	return out
}

// sgOf returns the aws_security_group address an expression points at.
func sgOf(e hcl.Expression) string {
	for _, addr := range addressesIn(e) {
		if strings.HasPrefix(addr, "aws_security_group.") {
			return addr
		}
	}
	return ""
}

// ingressRules gathers ingress rules in their three spellings: inline
// blocks, aws_security_group_rule and aws_vpc_security_group_ingress_rule.
func ingressRules(m *module) []ingress {
	var out []ingress
	port := func(b *hclsyntax.Block, scope map[string]cty.Value, name string) int64 {
		a, ok := b.Body.Attributes[name]
		if !ok {
			return -1
		}
		v := m.eval(a.Expr, scope)
		if !v.IsKnown() || v.IsNull() || v.Type() != cty.Number {
			return -1
		}
		n, _ := v.AsBigFloat().Int64()
		return n
	}
	str := func(b *hclsyntax.Block, scope map[string]cty.Value, name string) string {
		if a, ok := b.Body.Attributes[name]; ok {
			if s, known := strs(m.eval(a.Expr, scope)); known && len(s) == 1 {
				return s[0]
			}
			return "?"
		}
		return ""
	}
	rule := func(b *hclsyntax.Block, scope map[string]cty.Value, sg string, cidrAttrs, sgAttrs []string, protoAttr string) ingress {
		r := ingress{at: where(b.DefRange()), sg: sg, proto: str(b, scope, protoAttr), from: port(b, scope, "from_port"), to: port(b, scope, "to_port")}
		for _, name := range cidrAttrs {
			if a, ok := b.Body.Attributes[name]; ok {
				r.cidrAttr = true
				c, _ := strs(m.eval(a.Expr, scope))
				r.cidrs = append(r.cidrs, c...)
			}
		}
		for _, name := range sgAttrs {
			if _, ok := b.Body.Attributes[name]; ok {
				r.fromSG = true
			}
		}
		_, r.prefixList = b.Body.Attributes["prefix_list_ids"]
		if _, ok := b.Body.Attributes["prefix_list_id"]; ok {
			r.prefixList = true
		}
		return r
	}
	for _, b := range m.resources("aws_security_group") {
		for _, in := range childBlocks(b, "ingress") {
			for _, scope := range m.instances(b) {
				out = append(out, rule(in, scope, ref(b), []string{"cidr_blocks", "ipv6_cidr_blocks"}, []string{"security_groups"}, "protocol"))
			}
		}
		for _, d := range childBlocks(b, "dynamic") {
			if len(d.Labels) == 1 && d.Labels[0] == "ingress" {
				for _, c := range childBlocks(d, "content") {
					out = append(out, rule(c, map[string]cty.Value{"ingress": cty.DynamicVal}, ref(b), []string{"cidr_blocks", "ipv6_cidr_blocks"}, []string{"security_groups"}, "protocol"))
				}
			}
		}
	}
	for _, b := range m.resources("aws_security_group_rule") {
		for _, scope := range m.instances(b) {
			if t := str(b, scope, "type"); t != "ingress" && t != "?" {
				continue
			}
			sg := ""
			if a, ok := b.Body.Attributes["security_group_id"]; ok {
				sg = sgOf(a.Expr)
			}
			out = append(out, rule(b, scope, sg, []string{"cidr_blocks", "ipv6_cidr_blocks"}, []string{"source_security_group_id", "self"}, "protocol"))
		}
	}
	for _, b := range m.resources("aws_vpc_security_group_ingress_rule") {
		for _, scope := range m.instances(b) {
			sg := ""
			if a, ok := b.Body.Attributes["security_group_id"]; ok {
				sg = sgOf(a.Expr)
			}
			out = append(out, rule(b, scope, sg, []string{"cidr_ipv4", "cidr_ipv6"}, []string{"referenced_security_group_id"}, "ip_protocol"))
		}
	}
	return out
}

// ---------------------------------------------------------------------------
// data_store_sources: where a module with a database or cache is called,
// the security groups allowed into it are the ECS service's only.

func checkDataStoreSources(tr *tree, m *module) ([]string, int) {
	calls := tr.moduleCalls(m)
	services := map[string]bool{}
	for b, callee := range calls {
		if callee != nil && len(callee.resources("aws_ecs_service")) > 0 {
			services["module."+b.Labels[0]] = true
		}
	}
	var problems []string
	n := 0
	for b, callee := range calls {
		if callee == nil || len(dataStoreSGs(callee)) == 0 {
			continue
		}
		for name, a := range b.Body.Attributes {
			if !strings.Contains(name, "security_group") {
				continue
			}
			n++
			tup, ok := a.Expr.(*hclsyntax.TupleConsExpr)
			if !ok {
				problems = append(problems, fmt.Sprintf("%s: %s of module %q must list the service's security group explicitly", where(a.SrcRange), name, b.Labels[0]))
				continue
			}
			for _, e := range tup.Exprs {
				vars := e.Variables()
				if len(vars) != 1 || !services[addressOf(vars[0])] || !strings.HasSuffix(traversalName(vars[0]), ".security_group_id") {
					problems = append(problems, fmt.Sprintf("%s: %s of module %q may only hold an ECS service module's security_group_id", where(e.Range()), name, b.Labels[0]))
				}
			}
		}
	}
	return problems, n
}

// ---------------------------------------------------------------------------
// rds: storage encrypted, not publicly accessible, deletion protection
// from a variable (whose default, if any, is true).

func checkRDS(_ *tree, m *module) ([]string, int) {
	var problems []string
	blocks := m.resources("aws_db_instance", "aws_rds_cluster")
	for _, b := range blocks {
		at := where(b.DefRange()) + " " + ref(b)
		if !m.attrAlways(b, "storage_encrypted", cty.True) {
			problems = append(problems, at+": storage_encrypted must be true")
		}
		if b.Labels[0] == "aws_db_instance" && !m.attrAlways(b, "publicly_accessible", cty.False) {
			problems = append(problems, at+": publicly_accessible must be set to false")
		}
		a, ok := b.Body.Attributes["deletion_protection"]
		if !ok {
			problems = append(problems, at+": deletion_protection must be set from a variable")
			continue
		}
		vars := a.Expr.Variables()
		if _, isRef := a.Expr.(*hclsyntax.ScopeTraversalExpr); !isRef || len(vars) != 1 || vars[0].RootName() != "var" {
			problems = append(problems, at+": deletion_protection must be a variable")
			continue
		}
		if v := m.eval(a.Expr, nil); v.IsKnown() && !boolIs(v, true) {
			problems = append(problems, at+": deletion_protection's variable must default to true")
		}
	}
	return problems, len(blocks)
}

// attrAlways reports whether attribute name of b is set to the literal want.
// A value that comes from a variable (or anything else) does not count, even
// if its default is right: a security switch must not be one tfvars line
// away from off.
func (m *module) attrAlways(b *hclsyntax.Block, name string, want cty.Value) bool {
	a, ok := b.Body.Attributes[name]
	if !ok || len(a.Expr.Variables()) > 0 {
		return false
	}
	for _, scope := range m.instances(b) {
		v := m.eval(a.Expr, scope)
		if !v.IsWhollyKnown() || v.IsNull() || !v.Type().Equals(want.Type()) || !v.Equals(want).True() {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// elasticache: encryption at rest and in transit, with an AUTH token.

func checkElastiCache(_ *tree, m *module) ([]string, int) {
	var problems []string
	blocks := m.resources("aws_elasticache_replication_group")
	for _, b := range blocks {
		at := where(b.DefRange()) + " " + ref(b)
		for _, name := range []string{"at_rest_encryption_enabled", "transit_encryption_enabled"} {
			if !m.attrAlways(b, name, cty.True) {
				problems = append(problems, at+": "+name+" must be true")
			}
		}
		_, token := b.Body.Attributes["auth_token"]
		_, users := b.Body.Attributes["user_group_ids"]
		if !token && !users {
			problems = append(problems, at+": needs auth_token (or RBAC user groups)")
		}
	}
	// A lone cache cluster cannot enforce the same guarantees here.
	for _, b := range m.resources("aws_elasticache_cluster") {
		problems = append(problems, where(b.DefRange())+" "+ref(b)+": use aws_elasticache_replication_group (encryption and AUTH)")
	}
	return problems, len(blocks)
}

// ---------------------------------------------------------------------------
// s3: each bucket has SSE, a public access block with all four settings
// true, versioning enabled, a TLS-only bucket policy, and no public ACL.

func checkS3(_ *tree, m *module) ([]string, int) {
	var problems []string
	buckets := m.resources("aws_s3_bucket")
	companion := func(typ, bucket string) []*hclsyntax.Block {
		var out []*hclsyntax.Block
		for _, b := range m.resources(typ) {
			if a, ok := b.Body.Attributes["bucket"]; ok && slices.Contains(addressesIn(a.Expr), bucket) {
				out = append(out, b)
			}
		}
		return out
	}
	for _, bucket := range buckets {
		addr := ref(bucket)
		at := where(bucket.DefRange()) + " " + addr
		if a, ok := bucket.Body.Attributes["acl"]; ok {
			if s, _ := strs(m.eval(a.Expr, nil)); len(s) == 1 && strings.HasPrefix(s[0], "public") {
				problems = append(problems, at+": public ACL "+s[0])
			}
		}
		for _, acl := range companion("aws_s3_bucket_acl", addr) {
			if a, ok := acl.Body.Attributes["acl"]; ok {
				if s, known := strs(m.eval(a.Expr, nil)); !known || len(s) != 1 || strings.HasPrefix(s[0], "public") || s[0] == "authenticated-read" {
					problems = append(problems, at+": bucket ACL must be private")
				}
			}
		}

		sse := false
		for _, c := range companion("aws_s3_bucket_server_side_encryption_configuration", addr) {
			for _, r := range childBlocks(c, "rule") {
				for _, d := range childBlocks(r, "apply_server_side_encryption_by_default") {
					if a, ok := d.Body.Attributes["sse_algorithm"]; ok {
						s, known := strs(m.eval(a.Expr, nil))
						sse = sse || (known && len(s) == 1 && slices.Contains([]string{"AES256", "aws:kms", "aws:kms:dsse"}, s[0]))
					}
				}
			}
		}
		if !sse {
			problems = append(problems, at+": needs aws_s3_bucket_server_side_encryption_configuration with sse_algorithm AES256 or aws:kms")
		}

		pab := companion("aws_s3_bucket_public_access_block", addr)
		if len(pab) == 0 {
			problems = append(problems, at+": needs aws_s3_bucket_public_access_block")
		}
		for _, p := range pab {
			for _, name := range []string{"block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"} {
				if !m.attrAlways(p, name, cty.True) {
					problems = append(problems, fmt.Sprintf("%s: public access block %s must be true", where(p.DefRange()), name))
				}
			}
		}

		versioned := false
		for _, v := range companion("aws_s3_bucket_versioning", addr) {
			for _, c := range childBlocks(v, "versioning_configuration") {
				if a, ok := c.Body.Attributes["status"]; ok {
					s, _ := strs(m.eval(a.Expr, nil))
					versioned = versioned || (len(s) == 1 && s[0] == "Enabled")
				}
			}
		}
		if !versioned {
			problems = append(problems, at+": needs aws_s3_bucket_versioning with status Enabled")
		}

		tlsOnly := false
		for _, p := range companion("aws_s3_bucket_policy", addr) {
			if a, ok := p.Body.Attributes["policy"]; ok {
				stmts, _ := m.policyStatements(a.Expr, where(a.SrcRange))
				for _, s := range stmts {
					tlsOnly = tlsOnly || s.deniesInsecureTransport()
				}
			}
		}
		if !tlsOnly {
			problems = append(problems, at+": needs a bucket policy denying requests with aws:SecureTransport false")
		}
	}
	return problems, len(buckets)
}

// ---------------------------------------------------------------------------
// ecs_network: services run in private subnets without public IPs; module
// calls pass private subnets where private ones are asked for.

func checkECSNetwork(_ *tree, m *module) ([]string, int) {
	var problems []string
	n := 0
	for _, b := range m.resources("aws_ecs_service") {
		n++
		at := where(b.DefRange()) + " " + ref(b)
		nets := childBlocks(b, "network_configuration")
		if len(nets) == 0 {
			problems = append(problems, at+": needs network_configuration (awsvpc, private subnets)")
			continue
		}
		for _, nc := range nets {
			if !m.attrAlways(nc, "assign_public_ip", cty.False) {
				problems = append(problems, at+": assign_public_ip must be set to false")
			}
			if a, ok := nc.Body.Attributes["subnets"]; !ok || !privateOnly(a.Expr) {
				problems = append(problems, at+": subnets must be private subnets (references naming \"private\", none \"public\")")
			}
		}
	}
	for _, b := range m.blocks {
		if b.Type != "module" {
			continue
		}
		for name, a := range b.Body.Attributes {
			if strings.Contains(name, "private_subnet") {
				n++
				if !privateOnly(a.Expr) {
					problems = append(problems, fmt.Sprintf("%s: %s of module %q must reference private subnets", where(a.SrcRange), name, b.Labels[0]))
				}
			}
		}
	}
	return problems, n
}

func privateOnly(e hcl.Expression) bool {
	vars := e.Variables()
	if len(vars) == 0 {
		return false
	}
	for _, v := range vars {
		name := traversalName(v)
		if !strings.Contains(name, "private") || strings.Contains(name, "public") {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------------------
// iam: no Allow statement grants "*" actions, or wildcard actions on "*"
// resources, or uses NotAction/NotResource; every policy is written in a
// form this test reads; no broad AWS managed policy is attached.

type statement struct {
	at           string
	effect       string
	actions      []string
	actionsKnown bool
	resources    []string
	notActions   bool
	notResources bool
	conditions   []condition
}

type condition struct {
	test, variable string
	values         []string
}

func (s statement) allow() bool { return s.effect != "Deny" }

func (s statement) deniesInsecureTransport() bool {
	if s.effect != "Deny" {
		return false
	}
	for _, c := range s.conditions {
		if c.test == "Bool" && strings.EqualFold(c.variable, "aws:SecureTransport") && slices.Equal(c.values, []string{"false"}) {
			return true
		}
	}
	return false
}

func (s statement) problem() string {
	if !s.allow() {
		return ""
	}
	switch {
	case s.notActions || s.notResources:
		return "Allow with NotAction/NotResource"
	case !s.actionsKnown:
		return "actions must be literal strings"
	case slices.Contains(s.actions, "*"):
		return `Allow of action "*"`
	}
	if slices.Contains(s.resources, "*") {
		for _, a := range s.actions {
			if strings.Contains(a, "*") {
				return fmt.Sprintf("Allow of wildcard action %q on resource \"*\"", a)
			}
		}
	}
	return ""
}

// broadManaged are AWS managed policies that no role here may carry.
var broadManaged = []string{"/AdministratorAccess", "/PowerUserAccess", "/IAMFullAccess"}

// notIAMPolicy are resource types whose "policy" attribute is not an IAM
// policy document.
var notIAMPolicy = map[string]bool{"aws_ecr_lifecycle_policy": true}

func checkIAM(_ *tree, m *module) ([]string, int) {
	var problems []string
	var all []statement
	for _, d := range m.data("aws_iam_policy_document") {
		all = append(all, m.documentStatements(d)...)
	}
	var visit func(typ string, b *hclsyntax.Block)
	visit = func(typ string, b *hclsyntax.Block) {
		for name, a := range b.Body.Attributes {
			switch {
			case (name == "policy" && !notIAMPolicy[typ]) || name == "assume_role_policy":
				stmts, err := m.policyStatements(a.Expr, where(a.SrcRange))
				if err != "" {
					problems = append(problems, where(a.SrcRange)+": "+err)
				}
				all = append(all, stmts...)
			case name == "policy_arn" || name == "managed_policy_arns":
				s, _ := strs(m.eval(a.Expr, nil))
				for _, arn := range s {
					for _, bad := range broadManaged {
						if strings.HasSuffix(arn, bad) {
							problems = append(problems, fmt.Sprintf("%s: attaches %s", where(a.SrcRange), arn))
						}
					}
				}
			}
		}
		for _, c := range b.Body.Blocks {
			visit(typ, c)
		}
	}
	for _, b := range m.blocks {
		if b.Type == "resource" {
			visit(b.Labels[0], b)
		}
	}
	// A document referenced by a policy attribute is read twice: report once.
	seen := map[string]bool{}
	for _, s := range all {
		if p := s.at + ": " + s.problem(); s.problem() != "" && !seen[p] {
			seen[p] = true
			problems = append(problems, p)
		}
	}
	return problems, len(all)
}

// documentStatements reads the statements of a data "aws_iam_policy_document"
// block, expanding dynamic "statement" blocks over their for_each as the
// defaults make it.
func (m *module) documentStatements(d *hclsyntax.Block) []statement {
	var out []statement
	for _, scope := range m.instances(d) {
		for _, s := range childBlocks(d, "statement") {
			out = append(out, m.blockStatement(s, scope))
		}
		for _, dyn := range childBlocks(d, "dynamic") {
			if len(dyn.Labels) != 1 || dyn.Labels[0] != "statement" {
				continue
			}
			iter := "statement"
			if a, ok := dyn.Body.Attributes["iterator"]; ok {
				iter = hcl.ExprAsKeyword(a.Expr)
			}
			var elems []cty.Value
			if a, ok := dyn.Body.Attributes["for_each"]; ok {
				v := m.eval(a.Expr, scope)
				if v.IsWhollyKnown() && !v.IsNull() && v.CanIterateElements() {
					for it := v.ElementIterator(); it.Next(); {
						_, e := it.Element()
						elems = append(elems, cty.ObjectVal(map[string]cty.Value{"key": cty.DynamicVal, "value": e}))
					}
				}
			}
			// A statement the defaults switch off is still checked, with an
			// unknown iterator: another configuration may switch it on.
			if len(elems) == 0 {
				elems = []cty.Value{cty.DynamicVal}
			}
			for _, c := range childBlocks(dyn, "content") {
				for _, e := range elems {
					inner := map[string]cty.Value{iter: e}
					for k, v := range scope {
						inner[k] = v
					}
					out = append(out, m.blockStatement(c, inner))
				}
			}
		}
	}
	return out
}

func (m *module) blockStatement(b *hclsyntax.Block, scope map[string]cty.Value) statement {
	s := statement{at: where(b.DefRange()), effect: "Allow", actionsKnown: true}
	if a, ok := b.Body.Attributes["effect"]; ok {
		if v, known := strs(m.eval(a.Expr, scope)); known && len(v) == 1 {
			s.effect = v[0]
		} else {
			s.effect = ""
		}
	}
	if a, ok := b.Body.Attributes["actions"]; ok {
		s.actions, s.actionsKnown = strs(m.eval(a.Expr, scope))
	}
	if a, ok := b.Body.Attributes["resources"]; ok {
		s.resources, _ = strs(m.eval(a.Expr, scope))
	}
	_, s.notActions = b.Body.Attributes["not_actions"]
	_, s.notResources = b.Body.Attributes["not_resources"]
	for _, c := range childBlocks(b, "condition") {
		var cond condition
		if a, ok := c.Body.Attributes["test"]; ok {
			if v, _ := strs(m.eval(a.Expr, scope)); len(v) == 1 {
				cond.test = v[0]
			}
		}
		if a, ok := c.Body.Attributes["variable"]; ok {
			if v, _ := strs(m.eval(a.Expr, scope)); len(v) == 1 {
				cond.variable = v[0]
			}
		}
		if a, ok := c.Body.Attributes["values"]; ok {
			cond.values, _ = strs(m.eval(a.Expr, scope))
		}
		s.conditions = append(s.conditions, cond)
	}
	return s
}

// policyStatements reads the statements of a policy attribute written as a
// reference to a policy document (read elsewhere, so none here), a
// jsonencode() call, or a JSON string or heredoc. Anything else is reported.
func (m *module) policyStatements(e hclsyntax.Expression, at string) ([]statement, string) {
	switch x := e.(type) {
	case *hclsyntax.ScopeTraversalExpr, *hclsyntax.RelativeTraversalExpr, *hclsyntax.IndexExpr:
		for _, t := range e.Variables() {
			if strings.HasPrefix(addressOf(t), "data.aws_iam_policy_document.") {
				return m.referencedDocument(addressOf(t)), ""
			}
		}
	case *hclsyntax.FunctionCallExpr:
		if x.Name == "jsonencode" && len(x.Args) == 1 {
			return ctyStatements(m.eval(x.Args[0], nil), at), ""
		}
	case *hclsyntax.TemplateExpr:
		var sb strings.Builder
		for _, p := range x.Parts {
			if lit, ok := p.(*hclsyntax.LiteralValueExpr); ok && lit.Val.Type() == cty.String {
				sb.WriteString(lit.Val.AsString())
			} else {
				sb.WriteString("UNKNOWN")
			}
		}
		var doc any
		if err := json.Unmarshal([]byte(sb.String()), &doc); err != nil {
			return nil, "policy string is not JSON: " + err.Error()
		}
		v, err := goToCty(doc)
		if err != nil {
			return nil, err.Error()
		}
		return ctyStatements(v, at), ""
	}
	return nil, "policy must be a data.aws_iam_policy_document reference, jsonencode() or a JSON heredoc, so that it can be checked"
}

// referencedDocument returns the statements of the policy document at
// address (they are also checked as documents; this is for callers that
// look at one policy, such as the bucket policy check).
func (m *module) referencedDocument(address string) []statement {
	for _, d := range m.data("aws_iam_policy_document") {
		if ref(d) == address {
			return m.documentStatements(d)
		}
	}
	return nil
}

// ctyStatements reads IAM JSON (as a cty value) statements: Effect,
// Action/NotAction, Resource/NotResource, Condition.
func ctyStatements(doc cty.Value, at string) []statement {
	get := func(v cty.Value, key string) (cty.Value, bool) {
		if !v.IsKnown() || v.IsNull() || !(v.Type().IsObjectType() || v.Type().IsMapType()) {
			return cty.NilVal, false
		}
		if v.Type().IsObjectType() {
			if !v.Type().HasAttribute(key) {
				return cty.NilVal, false
			}
			return v.GetAttr(key), true
		}
		k := cty.StringVal(key)
		if !v.HasIndex(k).True() {
			return cty.NilVal, false
		}
		return v.Index(k), true
	}
	st, ok := get(doc, "Statement")
	if !ok {
		return []statement{{at: at, effect: "", actionsKnown: false}}
	}
	var list []cty.Value
	if st.IsKnown() && !st.IsNull() && (st.Type().IsTupleType() || st.Type().IsListType()) {
		for it := st.ElementIterator(); it.Next(); {
			_, e := it.Element()
			list = append(list, e)
		}
	} else {
		list = []cty.Value{st}
	}
	var out []statement
	for _, e := range list {
		s := statement{at: at}
		if v, ok := get(e, "Effect"); ok {
			if x, known := strs(v); known && len(x) == 1 {
				s.effect = x[0]
			}
		}
		if v, ok := get(e, "Action"); ok {
			s.actions, s.actionsKnown = strs(v)
		}
		if v, ok := get(e, "Resource"); ok {
			s.resources, _ = strs(v)
		}
		_, s.notActions = get(e, "NotAction")
		_, s.notResources = get(e, "NotResource")
		if c, ok := get(e, "Condition"); ok && c.IsWhollyKnown() && c.CanIterateElements() {
			for it := c.ElementIterator(); it.Next(); {
				test, inner := it.Element()
				if !inner.CanIterateElements() {
					continue
				}
				for it2 := inner.ElementIterator(); it2.Next(); {
					variable, values := it2.Element()
					vals, _ := strs(values)
					s.conditions = append(s.conditions, condition{test: test.AsString(), variable: variable.AsString(), values: vals})
				}
			}
		}
		out = append(out, s)
	}
	return out
}

// goToCty converts decoded JSON to a cty value.
func goToCty(v any) (cty.Value, error) {
	switch x := v.(type) {
	case nil:
		return cty.NullVal(cty.DynamicPseudoType), nil
	case string:
		return cty.StringVal(x), nil
	case bool:
		return cty.BoolVal(x), nil
	case float64:
		return cty.NumberVal(big.NewFloat(x)), nil
	case []any:
		if len(x) == 0 {
			return cty.EmptyTupleVal, nil
		}
		out := make([]cty.Value, len(x))
		for i, e := range x {
			c, err := goToCty(e)
			if err != nil {
				return cty.NilVal, err
			}
			out[i] = c
		}
		return cty.TupleVal(out), nil
	case map[string]any:
		if len(x) == 0 {
			return cty.EmptyObjectVal, nil
		}
		out := make(map[string]cty.Value, len(x))
		for k, e := range x {
			c, err := goToCty(e)
			if err != nil {
				return cty.NilVal, err
			}
			out[k] = c
		}
		return cty.ObjectVal(out), nil
	}
	return cty.NilVal, fmt.Errorf("unexpected JSON value %T", v)
}

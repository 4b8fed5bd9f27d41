package terraform_test

import (
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// load parses the configuration next to this file once per test.
func load(t *testing.T) *tree {
	t.Helper()
	tr, diags, err := loadTree(".")
	if err != nil {
		t.Fatal(err)
	}
	if diags.HasErrors() {
		t.Fatalf("parse: %s", diags.Error())
	}
	return tr
}

func sortedDirs(tr *tree) []string {
	dirs := make([]string, 0, len(tr.modules))
	for d := range tr.modules {
		dirs = append(dirs, d)
	}
	sort.Strings(dirs)
	return dirs
}

// TestParse: every .tf file parses, and the layout is the expected one.
func TestParse(t *testing.T) {
	tr, diags, err := loadTree(".")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range diags {
		t.Errorf("%s", d.Error())
	}
	want := []string{"examples/production"}
	for _, m := range []string{"alb", "ecr", "ecs", "iam", "network", "observability", "rds", "redis", "s3", "secrets"} {
		want = append(want, "modules/"+m)
	}
	for _, dir := range want {
		if tr.modules[filepath.FromSlash(dir)] == nil {
			t.Errorf("module %s: not found", dir)
		}
	}
	calls := tr.moduleCalls(tr.modules[filepath.FromSlash("examples/production")])
	for b, callee := range calls {
		if callee == nil {
			t.Errorf("module %q: source not found", b.Labels[0])
		}
	}
	if len(calls) != 10 {
		t.Errorf("example calls %d modules, want 10", len(calls))
	}
}

// TestChecks runs every check on every module of the real configuration;
// each check must have inspected something, so that a pass is not vacuous.
func TestChecks(t *testing.T) {
	tr := load(t)
	names := make([]string, 0, len(checks))
	for name := range checks {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			total := 0
			for _, dir := range sortedDirs(tr) {
				problems, n := checks[name](tr, tr.modules[dir])
				total += n
				for _, p := range problems {
					t.Errorf("%s", p)
				}
			}
			if total == 0 {
				t.Errorf("check %s inspected nothing", name)
			}
			t.Logf("check %s inspected %d items", name, total)
		})
	}
}

// TestChecksCatchViolations proves that each check fails on a small
// configuration that breaks its rule, and passes on the compliant variant.
func TestChecksCatchViolations(t *testing.T) {
	cases := []struct {
		name  string
		check string
		src   string
		want  string // substring of a problem; "" expects none
	}{
		// --- security_groups -------------------------------------------
		{
			name:  "database open to the internet (ingress rule resource)",
			check: "security_groups",
			src: `
resource "aws_security_group" "db" { name = "db" }
resource "aws_db_instance" "x" { vpc_security_group_ids = [aws_security_group.db.id] }
resource "aws_vpc_security_group_ingress_rule" "pg" {
  security_group_id = aws_security_group.db.id
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = "0.0.0.0/0"
}`,
			want: "only the load balancer's security group may be open",
		},
		{
			name:  "redis open through an inline ingress block",
			check: "security_groups",
			src: `
resource "aws_security_group" "redis" {
  ingress {
    protocol    = "tcp"
    from_port   = 6379
    to_port     = 6379
    cidr_blocks = ["0.0.0.0/0"]
  }
}
resource "aws_elasticache_replication_group" "x" { security_group_ids = [aws_security_group.redis.id] }`,
			want: "must come from a security group only",
		},
		{
			name:  "database open over IPv6 (aws_security_group_rule)",
			check: "security_groups",
			src: `
resource "aws_security_group" "db" {}
resource "aws_db_instance" "x" { vpc_security_group_ids = [aws_security_group.db.id] }
resource "aws_security_group_rule" "pg" {
  type              = "ingress"
  security_group_id = aws_security_group.db.id
  protocol          = "tcp"
  from_port         = 5432
  to_port           = 5432
  ipv6_cidr_blocks  = ["::/0"]
}`,
			want: "::/0",
		},
		{
			name:  "database reachable from a VPC range rather than the service",
			check: "security_groups",
			src: `
resource "aws_security_group" "db" {}
resource "aws_db_instance" "x" { vpc_security_group_ids = [aws_security_group.db.id] }
resource "aws_vpc_security_group_ingress_rule" "pg" {
  security_group_id = aws_security_group.db.id
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = "10.0.0.0/16"
}`,
			want: "must come from a security group only",
		},
		{
			name:  "database open through a variable default",
			check: "security_groups",
			src: `
variable "cidrs" {
  type    = list(string)
  default = ["10.0.0.0/8", "0.0.0.0/0"]
}
resource "aws_security_group" "db" {}
resource "aws_rds_cluster" "x" { vpc_security_group_ids = [aws_security_group.db.id] }
resource "aws_vpc_security_group_ingress_rule" "pg" {
  for_each          = toset(var.cidrs)
  security_group_id = aws_security_group.db.id
  ip_protocol       = "tcp"
  from_port         = 5432
  to_port           = 5432
  cidr_ipv4         = each.value
}`,
			want: "ingress from 0.0.0.0/0",
		},
		{
			name:  "load balancer open on SSH",
			check: "security_groups",
			src: `
resource "aws_security_group" "alb" {}
resource "aws_lb" "x" { security_groups = [aws_security_group.alb.id] }
resource "aws_vpc_security_group_ingress_rule" "ssh" {
  security_group_id = aws_security_group.alb.id
  ip_protocol       = "tcp"
  from_port         = 22
  to_port           = 22
  cidr_ipv4         = "0.0.0.0/0"
}`,
			want: "ports 22-22",
		},
		{
			name:  "service (not the load balancer) open to the internet",
			check: "security_groups",
			src: `
resource "aws_security_group" "service" {}
resource "aws_vpc_security_group_ingress_rule" "app" {
  security_group_id = aws_security_group.service.id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}`,
			want: "only the load balancer's security group may be open",
		},
		{
			name:  "compliant: load balancer open on 443, database from a security group",
			check: "security_groups",
			src: `
resource "aws_security_group" "alb" {}
resource "aws_security_group" "db" {}
resource "aws_lb" "x" { security_groups = [aws_security_group.alb.id] }
resource "aws_db_instance" "x" { vpc_security_group_ids = [aws_security_group.db.id] }
resource "aws_vpc_security_group_ingress_rule" "https" {
  security_group_id = aws_security_group.alb.id
  ip_protocol       = "tcp"
  from_port         = 443
  to_port           = 443
  cidr_ipv4         = "0.0.0.0/0"
}
resource "aws_vpc_security_group_ingress_rule" "pg" {
  security_group_id            = aws_security_group.db.id
  ip_protocol                  = "tcp"
  from_port                    = 5432
  to_port                      = 5432
  referenced_security_group_id = var.service_sg
}`,
		},

		// --- rds -------------------------------------------------------
		{
			name:  "database storage not encrypted",
			check: "rds",
			src: `
variable "dp" {
  type    = bool
  default = true
}
resource "aws_db_instance" "x" {
  storage_encrypted   = false
  publicly_accessible = false
  deletion_protection = var.dp
}`,
			want: "storage_encrypted must be true",
		},
		{
			name:  "database encryption left to the default",
			check: "rds",
			src: `
resource "aws_db_instance" "x" {
  publicly_accessible = false
  deletion_protection = var.dp
}
variable "dp" { type = bool }`,
			want: "storage_encrypted must be true",
		},
		{
			name:  "database publicly accessible",
			check: "rds",
			src: `
resource "aws_db_instance" "x" {
  storage_encrypted   = true
  publicly_accessible = true
  deletion_protection = var.dp
}
variable "dp" { type = bool }`,
			want: "publicly_accessible must be set to false",
		},
		{
			name:  "database deletion protection hard-coded",
			check: "rds",
			src: `
resource "aws_db_instance" "x" {
  storage_encrypted   = true
  publicly_accessible = false
  deletion_protection = false
}`,
			want: "deletion_protection must be a variable",
		},
		{
			name:  "database deletion protection defaulting to false",
			check: "rds",
			src: `
variable "dp" {
  type    = bool
  default = false
}
resource "aws_db_instance" "x" {
  storage_encrypted   = true
  publicly_accessible = false
  deletion_protection = var.dp
}`,
			want: "must default to true",
		},
		{
			name:  "database public access from a variable",
			check: "rds",
			src: `
variable "public" {
  type    = bool
  default = false
}
resource "aws_db_instance" "x" {
  storage_encrypted   = true
  publicly_accessible = var.public
  deletion_protection = var.dp
}
variable "dp" { type = bool }`,
			want: "publicly_accessible must be set to false",
		},
		{
			name:  "compliant database",
			check: "rds",
			src: `
variable "dp" {
  type    = bool
  default = true
}
resource "aws_db_instance" "x" {
  storage_encrypted   = true
  publicly_accessible = false
  deletion_protection = var.dp
}`,
		},

		// --- elasticache -----------------------------------------------
		{
			name:  "redis without TLS in transit",
			check: "elasticache",
			src: `
resource "aws_elasticache_replication_group" "x" {
  at_rest_encryption_enabled = true
  transit_encryption_enabled = false
  auth_token                 = var.token
}`,
			want: "transit_encryption_enabled must be true",
		},
		{
			name:  "redis not encrypted at rest",
			check: "elasticache",
			src: `
resource "aws_elasticache_replication_group" "x" {
  transit_encryption_enabled = true
  auth_token                 = var.token
}`,
			want: "at_rest_encryption_enabled must be true",
		},
		{
			name:  "redis without AUTH",
			check: "elasticache",
			src: `
resource "aws_elasticache_replication_group" "x" {
  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
}`,
			want: "needs auth_token",
		},
		{
			name:  "compliant redis",
			check: "elasticache",
			src: `
resource "aws_elasticache_replication_group" "x" {
  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  auth_token                 = var.token
}`,
		},

		// --- s3 ----------------------------------------------------------
		{
			name:  "bucket without encryption configuration",
			check: "s3",
			src:   s3Bucket(withoutSSE),
			want:  "needs aws_s3_bucket_server_side_encryption_configuration",
		},
		{
			name:  "bucket with one public access setting off",
			check: "s3",
			src:   s3Bucket(publicPolicyAllowed),
			want:  "block_public_policy must be true",
		},
		{
			name:  "bucket without a public access block",
			check: "s3",
			src:   s3Bucket(withoutPAB),
			want:  "needs aws_s3_bucket_public_access_block",
		},
		{
			name:  "bucket with a public-read ACL",
			check: "s3",
			src:   s3Bucket(publicACL),
			want:  "bucket ACL must be private",
		},
		{
			name:  "bucket without a TLS-only policy",
			check: "s3",
			src:   s3Bucket(withoutTLSPolicy),
			want:  "aws:SecureTransport",
		},
		{
			name:  "bucket without versioning",
			check: "s3",
			src:   s3Bucket(versioningSuspended),
			want:  "needs aws_s3_bucket_versioning",
		},
		{
			name:  "compliant bucket",
			check: "s3",
			src:   s3Bucket(),
		},

		// --- ecs_network -------------------------------------------------
		{
			name:  "tasks with public IPs",
			check: "ecs_network",
			src: `
resource "aws_ecs_service" "x" {
  network_configuration {
    subnets          = var.private_subnet_ids
    assign_public_ip = true
  }
}`,
			want: "assign_public_ip must be set to false",
		},
		{
			name:  "tasks in public subnets",
			check: "ecs_network",
			src: `
resource "aws_ecs_service" "x" {
  network_configuration {
    subnets          = module.network.public_subnet_ids
    assign_public_ip = false
  }
}`,
			want: "subnets must be private subnets",
		},
		{
			name:  "module given public subnets as private ones",
			check: "ecs_network",
			src: `
module "ecs" {
  source             = "./ecs"
  private_subnet_ids = module.network.public_subnet_ids
}`,
			want: "must reference private subnets",
		},
		{
			name:  "service without network configuration",
			check: "ecs_network",
			src:   `resource "aws_ecs_service" "x" { launch_type = "FARGATE" }`,
			want:  "needs network_configuration",
		},
		{
			name:  "compliant service",
			check: "ecs_network",
			src: `
resource "aws_ecs_service" "x" {
  network_configuration {
    subnets          = var.private_subnet_ids
    assign_public_ip = false
  }
}`,
		},

		// --- iam ---------------------------------------------------------
		{
			name:  "policy document allowing everything",
			check: "iam",
			src: `
data "aws_iam_policy_document" "x" {
  statement {
    actions   = ["*"]
    resources = ["*"]
  }
}`,
			want: `Allow of action "*"`,
		},
		{
			name:  "service wildcard on every resource",
			check: "iam",
			src: `
data "aws_iam_policy_document" "x" {
  statement {
    effect    = "Allow"
    actions   = ["s3:GetObject", "s3:*"]
    resources = ["*"]
  }
}`,
			want: `wildcard action "s3:*" on resource "*"`,
		},
		{
			name:  "wildcard through a dynamic statement and a variable default",
			check: "iam",
			src: `
variable "models" {
  type    = list(string)
  default = ["*"]
}
data "aws_iam_policy_document" "x" {
  dynamic "statement" {
    for_each = length(var.models) > 0 ? [var.models] : []
    content {
      actions   = ["bedrock:*"]
      resources = statement.value
    }
  }
}`,
			want: `wildcard action "bedrock:*"`,
		},
		{
			name:  "wildcard in a statement the defaults switch off",
			check: "iam",
			src: `
variable "exec" {
  type    = bool
  default = false
}
data "aws_iam_policy_document" "x" {
  dynamic "statement" {
    for_each = var.exec ? [1] : []
    content {
      actions   = ["ssmmessages:*"]
      resources = ["*"]
    }
  }
}`,
			want: `wildcard action "ssmmessages:*"`,
		},
		{
			name:  "jsonencode role policy allowing everything",
			check: "iam",
			src: `
resource "aws_iam_role_policy" "x" {
  role = "r"
  policy = jsonencode({
    Version   = "2012-10-17"
    Statement = [{ Effect = "Allow", Action = "*", Resource = "*" }]
  })
}`,
			want: `Allow of action "*"`,
		},
		{
			name:  "heredoc policy allowing everything",
			check: "iam",
			src: `
resource "aws_iam_policy" "x" {
  policy = <<-EOT
    {"Version": "2012-10-17",
     "Statement": [{"Effect": "Allow", "Action": ["iam:*"], "Resource": "*"}]}
  EOT
}`,
			want: `wildcard action "iam:*"`,
		},
		{
			name:  "Allow with NotAction",
			check: "iam",
			src: `
data "aws_iam_policy_document" "x" {
  statement {
    not_actions = ["iam:*"]
    resources   = ["*"]
  }
}`,
			want: "NotAction",
		},
		{
			name:  "policy from a file the test cannot read",
			check: "iam",
			src: `
resource "aws_iam_role_policy" "x" {
  role   = "r"
  policy = file("policy.json")
}`,
			want: "so that it can be checked",
		},
		{
			name:  "AdministratorAccess attached",
			check: "iam",
			src: `
resource "aws_iam_role_policy_attachment" "x" {
  role       = "r"
  policy_arn = "arn:aws:iam::aws:policy/AdministratorAccess"
}`,
			want: "AdministratorAccess",
		},
		{
			name:  "compliant policies: scoped actions, an unscopable action on *, a Deny on s3:*",
			check: "iam",
			src: `
data "aws_iam_policy_document" "x" {
  statement {
    actions   = ["ecr:GetAuthorizationToken"]
    resources = ["*"]
  }
  statement {
    actions   = ["s3:GetObject"]
    resources = ["arn:aws:s3:::bucket/*"]
  }
  statement {
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = ["*"]
  }
}
resource "aws_iam_role_policy" "x" {
  role   = "r"
  policy = data.aws_iam_policy_document.x.json
}`,
		},

		// --- format, documented, references --------------------------------
		{
			name:  "file not canonically formatted",
			check: "format",
			src:   "resource \"aws_s3_bucket\" \"x\" {\n    bucket = \"b\"\n  tags={}\n}\n",
			want:  "not canonically formatted",
		},
		{
			name:  "variable without description",
			check: "documented",
			src:   "variable \"x\" {\n  type = string\n}\n",
			want:  "no description",
		},
		{
			name:  "variable without type",
			check: "documented",
			src:   "variable \"x\" {\n  description = \"X.\"\n}\n",
			want:  "no type",
		},
		{
			name:  "output without description",
			check: "documented",
			src:   "output \"x\" {\n  value = 1\n}\n",
			want:  "no description",
		},
		{
			name:  "reference to an undeclared variable",
			check: "references",
			src:   `resource "aws_s3_bucket" "x" { bucket = var.nope }`,
			want:  "undeclared variable var.nope",
		},
		{
			name:  "reference to an undeclared resource",
			check: "references",
			src:   `resource "aws_s3_bucket_versioning" "x" { bucket = aws_s3_bucket.nope.id }`,
			want:  "undeclared aws_s3_bucket.nope.id",
		},
		{
			name:  "compliant references",
			check: "references",
			src: `
variable "n" {
  type    = string
  default = "b"
}
locals { name = var.n }
resource "aws_s3_bucket" "x" { bucket = local.name }
resource "aws_s3_bucket_versioning" "x" {
  bucket = aws_s3_bucket.x.id
  lifecycle { ignore_changes = [bucket] }
}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := snippetModule(t, tc.src)
			problems, _ := checks[tc.check](&tree{modules: map[string]*module{m.dir: m}}, m)
			if tc.want == "" {
				if len(problems) > 0 {
					t.Errorf("%s: problems %q, want none", tc.check, problems)
				}
				return
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("%s: problems %q, want one containing %q", tc.check, problems, tc.want)
			}
		})
	}
}

// TestModuleCallChecks covers the checks that follow module calls into
// their modules.
func TestModuleCallChecks(t *testing.T) {
	child := map[string]string{
		"db": `
variable "allowed_security_group_ids" { type = list(string) }
variable "name" { type = string }
resource "aws_security_group" "db" {}
resource "aws_db_instance" "x" { vpc_security_group_ids = [aws_security_group.db.id] }
output "address" { value = aws_db_instance.x.address }`,
		"svc": `
resource "aws_ecs_service" "x" {}
output "security_group_id" { value = "sg" }`,
		"net": `output "vpc_cidr" { value = "10.0.0.0/16" }`,
	}
	cases := []struct {
		name  string
		check string
		root  string
		want  string
	}{
		{
			name:  "database opened to another security group than the service's",
			check: "data_store_sources",
			root: `
module "svc" { source = "./svc" }
module "db" {
  source                     = "./db"
  name                       = "x"
  allowed_security_group_ids = [module.svc.security_group_id, var.bastion_sg]
}`,
			want: "may only hold an ECS service module's security_group_id",
		},
		{
			name:  "database allowed security groups from a variable",
			check: "data_store_sources",
			root: `
module "db" {
  source                     = "./db"
  name                       = "x"
  allowed_security_group_ids = var.sgs
}`,
			want: "must list the service's security group explicitly",
		},
		{
			name:  "compliant database sources",
			check: "data_store_sources",
			root: `
module "svc" { source = "./svc" }
module "db" {
  source                     = "./db"
  name                       = "x"
  allowed_security_group_ids = [module.svc.security_group_id]
}`,
		},
		{
			name:  "module argument the module does not declare",
			check: "references",
			root: `
module "db" {
  source                     = "./db"
  name                       = "x"
  allowed_security_group_ids = []
  multi_az                   = true
}`,
			want: `has no variable "multi_az"`,
		},
		{
			name:  "required module variable missing",
			check: "references",
			root: `
module "db" {
  source                     = "./db"
  allowed_security_group_ids = []
}`,
			want: `needs variable "name"`,
		},
		{
			name:  "module output that does not exist",
			check: "references",
			root: `
module "net" { source = "./net" }
output "x" {
  description = "x"
  value       = module.net.vpc_id
}`,
			want: `has no output "vpc_id"`,
		},
		{
			name:  "compliant module calls",
			check: "references",
			root: `
module "net" { source = "./net" }
module "db" {
  source                     = "./db"
  name                       = module.net.vpc_cidr
  allowed_security_group_ids = []
}`,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr := &tree{modules: map[string]*module{}}
			for dir, src := range child {
				m, diags := parseModule(filepath.Join("root", dir), map[string][]byte{dir + ".tf": []byte(src)})
				if diags.HasErrors() {
					t.Fatal(diags.Error())
				}
				tr.modules[m.dir] = m
			}
			root, diags := parseModule("root", map[string][]byte{"main.tf": []byte(tc.root)})
			if diags.HasErrors() {
				t.Fatal(diags.Error())
			}
			tr.modules["root"] = root
			problems, _ := checks[tc.check](tr, root)
			if tc.want == "" {
				if len(problems) > 0 {
					t.Errorf("%s: problems %q, want none", tc.check, problems)
				}
				return
			}
			if !slices.ContainsFunc(problems, func(p string) bool { return strings.Contains(p, tc.want) }) {
				t.Errorf("%s: problems %q, want one containing %q", tc.check, problems, tc.want)
			}
		})
	}
}

// s3 bucket variants for the negative tests.
const (
	withoutSSE = iota
	publicPolicyAllowed
	withoutPAB
	publicACL
	withoutTLSPolicy
	versioningSuspended
)

// s3Bucket returns a compliant bucket configuration, broken in the ways
// listed (nil: compliant).
func s3Bucket(breaks ...int) string {
	broken := func(b int) bool { return slices.Contains(breaks, b) }
	var sb strings.Builder
	sb.WriteString("resource \"aws_s3_bucket\" \"docs\" {\n  bucket = \"docs\"\n}\n")
	if !broken(withoutSSE) {
		sb.WriteString(`
resource "aws_s3_bucket_server_side_encryption_configuration" "docs" {
  bucket = aws_s3_bucket.docs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = var.kms == null ? "AES256" : "aws:kms"
    }
  }
}
variable "kms" {
  type    = string
  default = null
}
`)
	}
	if !broken(withoutPAB) {
		policy := "true"
		if broken(publicPolicyAllowed) {
			policy = "false"
		}
		sb.WriteString(`
resource "aws_s3_bucket_public_access_block" "docs" {
  bucket                  = aws_s3_bucket.docs.id
  block_public_acls       = true
  block_public_policy     = ` + policy + `
  ignore_public_acls      = true
  restrict_public_buckets = true
}
`)
	}
	if broken(publicACL) {
		sb.WriteString(`
resource "aws_s3_bucket_acl" "docs" {
  bucket = aws_s3_bucket.docs.id
  acl    = "public-read"
}
`)
	}
	status := "Enabled"
	if broken(versioningSuspended) {
		status = "Suspended"
	}
	sb.WriteString(`
resource "aws_s3_bucket_versioning" "docs" {
  bucket = aws_s3_bucket.docs.id
  versioning_configuration {
    status = "` + status + `"
  }
}
`)
	value := "false"
	if broken(withoutTLSPolicy) {
		value = "true"
	}
	sb.WriteString(`
data "aws_iam_policy_document" "docs" {
  statement {
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.docs.arn, "${aws_s3_bucket.docs.arn}/*"]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["` + value + `"]
    }
  }
}
resource "aws_s3_bucket_policy" "docs" {
  bucket = aws_s3_bucket.docs.id
  policy = data.aws_iam_policy_document.docs.json
}
`)
	return sb.String()
}

// ---------------------------------------------------------------------------
// TestRequirements pins what issue 10 asks of the deployment beyond the
// security checks: the wiring an operator relies on.

func TestRequirements(t *testing.T) {
	tr := load(t)
	mod := func(dir string) *module {
		m := tr.modules[filepath.FromSlash(dir)]
		if m == nil {
			t.Fatalf("module %s not found", dir)
		}
		return m
	}
	one := func(m *module, typ, name string) *hclsyntax.Block {
		for _, b := range m.resources(typ) {
			if b.Labels[1] == name {
				return b
			}
		}
		t.Fatalf("%s: no %s.%s", m.dir, typ, name)
		return nil
	}
	val := func(m *module, b *hclsyntax.Block, name string) cty.Value {
		a, ok := b.Body.Attributes[name]
		if !ok {
			t.Errorf("%s: %s has no %s", m.dir, ref(b), name)
			return cty.DynamicVal
		}
		return m.eval(a.Expr, nil)
	}
	str := func(v cty.Value) string {
		if s, known := strs(v); known && len(s) == 1 {
			return s[0]
		}
		return "<unknown>"
	}
	num := func(v cty.Value) int64 {
		if !v.IsKnown() || v.IsNull() || v.Type() != cty.Number {
			return -1
		}
		n, _ := v.AsBigFloat().Int64()
		return n
	}

	t.Run("ecr immutable and scanned", func(t *testing.T) {
		m := mod("modules/ecr")
		repo := one(m, "aws_ecr_repository", "this")
		if got := str(val(m, repo, "image_tag_mutability")); got != "IMMUTABLE" {
			t.Errorf("image_tag_mutability = %q, want IMMUTABLE", got)
		}
		scan := childBlocks(repo, "image_scanning_configuration")
		if len(scan) != 1 || !m.attrAlways(scan[0], "scan_on_push", cty.True) {
			t.Errorf("scan_on_push is not true")
		}
	})

	t.Run("alb https, redirect, /ping, drain", func(t *testing.T) {
		m := mod("modules/alb")
		https := one(m, "aws_lb_listener", "https")
		if got := str(val(m, https, "protocol")); got != "HTTPS" {
			t.Errorf("https listener protocol = %q", got)
		}
		if a := https.Body.Attributes["certificate_arn"]; a == nil || traversalName(a.Expr.Variables()[0]) != "var.certificate_arn" {
			t.Errorf("https listener certificate is not var.certificate_arn")
		}
		http := one(m, "aws_lb_listener", "http")
		redirected := false
		for _, a := range childBlocks(http, "default_action") {
			for _, r := range childBlocks(a, "redirect") {
				redirected = str(val(m, r, "protocol")) == "HTTPS"
			}
		}
		if !redirected {
			t.Errorf("http listener does not redirect to HTTPS")
		}
		tg := one(m, "aws_lb_target_group", "this")
		for _, hc := range childBlocks(tg, "health_check") {
			if got := str(val(m, hc, "path")); got != "/ping" {
				t.Errorf("health check path = %q, want /ping", got)
			}
		}
		if d := num(val(m, tg, "deregistration_delay")); d < 60 {
			t.Errorf("deregistration_delay = %d s, too short for SSE streams to drain", d)
		}
	})

	t.Run("drain and stop timeout share one setting", func(t *testing.T) {
		root := mod("examples/production")
		for b := range tr.moduleCalls(root) {
			for _, arg := range []string{"deregistration_delay_seconds", "stop_timeout_seconds"} {
				if a, ok := b.Body.Attributes[arg]; ok && traversalName(a.Expr.Variables()[0]) != "var.drain_seconds" {
					t.Errorf("module %s: %s is not var.drain_seconds", b.Labels[0], arg)
				}
			}
		}
		if v := root.varVals["drain_seconds"]; num(v) < 60 || num(v) > 120 {
			t.Errorf("drain_seconds default = %v, want 60..120", v)
		}
	})

	t.Run("autoscaling on cpu and requests per target", func(t *testing.T) {
		m := mod("modules/ecs")
		var types []string
		for _, p := range m.resources("aws_appautoscaling_policy") {
			for _, c := range childBlocks(p, "target_tracking_scaling_policy_configuration") {
				for _, s := range childBlocks(c, "predefined_metric_specification") {
					types = append(types, str(val(m, s, "predefined_metric_type")))
				}
			}
		}
		sort.Strings(types)
		if want := []string{"ALBRequestCountPerTarget", "ECSServiceAverageCPUUtilization"}; !slices.Equal(types, want) {
			t.Errorf("scaling metrics = %q, want %q", types, want)
		}
	})

	t.Run("container environment and secrets", func(t *testing.T) {
		root := mod("examples/production")
		env := root.localVals["environment"]
		for _, k := range []string{"LOG_LEVEL", "S3_BUCKET", "MTAI_DATA_DIR", "PORT"} {
			if !env.Type().IsObjectType() || !env.Type().HasAttribute(k) {
				t.Errorf("container environment lacks %s", k)
			}
		}
		sec := mod("modules/secrets")
		gen := sec.localVals["generated"]
		var names []string
		if gen.IsWhollyKnown() {
			for it := gen.ElementIterator(); it.Next(); {
				_, v := it.Element()
				if e := v.GetAttr("env"); !e.IsNull() {
					names = append(names, e.AsString())
				}
			}
		}
		names = append(names, mustStrings(t, root.varVals["provider_secret_names"])...)
		for _, k := range []string{"DATABASE_URL", "REDIS_URL", "MTAI_JWT_SECRET", "OPENAI_API_KEY", "ANTHROPIC_API_KEY"} {
			if !slices.Contains(names, k) {
				t.Errorf("container secrets lack %s (have %q)", k, names)
			}
		}
		if !strings.Contains(string(fileOf(t, sec, "main.tf")), `"rediss://`) {
			t.Errorf("REDIS_URL is not a rediss:// (TLS) URL")
		}
		if !strings.Contains(string(fileOf(t, root, "main.tf")), `"MILVUS_TOKEN"`) || root.vars["milvus_address"] == nil {
			t.Errorf("Milvus address variable or MILVUS_TOKEN secret missing")
		}
	})

	t.Run("postgres 15 or newer", func(t *testing.T) {
		for dir, name := range map[string]string{"modules/rds": "engine_version", "examples/production": "db_engine_version"} {
			s := str(mod(dir).varVals[name])
			major, err := strconv.Atoi(strings.Split(s, ".")[0])
			if err != nil || major < 15 {
				t.Errorf("%s: %s defaults to %q, want PostgreSQL 15 or newer", dir, name, s)
			}
		}
	})

	t.Run("alarms", func(t *testing.T) {
		m := mod("modules/observability")
		var metrics []string
		for _, a := range m.resources("aws_cloudwatch_metric_alarm") {
			if _, ok := a.Body.Attributes["metric_name"]; ok {
				metrics = append(metrics, str(val(m, a, "metric_name")))
			}
			for _, q := range childBlocks(a, "metric_query") {
				for _, mm := range childBlocks(q, "metric") {
					metrics = append(metrics, str(val(m, mm, "metric_name")))
				}
			}
		}
		for _, want := range []string{"HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count", "RequestCount", "TargetResponseTime", "CPUUtilization"} {
			if !slices.Contains(metrics, want) {
				t.Errorf("no alarm on %s", want)
			}
		}
		lat := one(m, "aws_cloudwatch_metric_alarm", "latency_p99")
		if got := str(val(m, lat, "extended_statistic")); got != "p99" {
			t.Errorf("latency alarm statistic = %q, want p99", got)
		}
	})

	t.Run("outputs", func(t *testing.T) {
		root := mod("examples/production")
		for _, want := range []string{"alb_url", "ecr_repository_url"} {
			if !root.hasOutput(want) {
				t.Errorf("example has no output %s", want)
			}
		}
	})
}

func mustStrings(t *testing.T, v cty.Value) []string {
	t.Helper()
	s, known := strs(v)
	if !known {
		t.Errorf("not a known list of strings: %#v", v)
	}
	return s
}

func fileOf(t *testing.T, m *module, name string) []byte {
	t.Helper()
	for path, src := range m.files {
		if filepath.Base(path) == name {
			return src
		}
	}
	t.Fatalf("%s: no %s", m.dir, name)
	return nil
}

# Generated credentials. They live in the Terraform state: keep the state in an
# encrypted, access-controlled backend (see docs/DEPLOYMENT.md). Provider API
# keys and the Milvus token are never passed through Terraform.

resource "random_password" "database" {
  length  = 40
  special = false
}

resource "random_password" "redis_auth" {
  length  = 64
  special = false
}

resource "random_password" "jwt" {
  length  = 64
  special = false
}

resource "random_password" "bootstrap_admin" {
  count = var.bootstrap_credentials ? 1 : 0

  length  = 24
  special = false
}

resource "random_password" "bootstrap_api_key" {
  count = var.bootstrap_credentials ? 1 : 0

  length  = 48
  special = false
}

locals {
  database_url = format(
    "postgres://%s:%s@%s:%d/%s?sslmode=%s",
    var.database.username,
    urlencode(random_password.database.result),
    var.database.host,
    var.database.port,
    var.database.name,
    var.database_sslmode,
  )
  redis_url = format(
    "rediss://:%s@%s:%d/0",
    urlencode(random_password.redis_auth.result),
    var.redis.host,
    var.redis.port,
  )

  # What each generated secret is. Kept apart from the values: for_each may
  # not iterate over sensitive values.
  generated = merge(
    {
      database-url         = { env = "DATABASE_URL", description = "PostgreSQL connection URL of mtai (DATABASE_URL)" }
      database-credentials = { env = null, description = "RDS master credentials of mtai (JSON in the RDS rotation format)" }
      redis-url            = { env = "REDIS_URL", description = "ElastiCache Redis URL with its AUTH token (REDIS_URL)" }
      jwt-secret           = { env = "MTAI_JWT_SECRET", description = "Key that signs mtai JWTs (MTAI_JWT_SECRET)" }
    },
    var.bootstrap_credentials ? {
      bootstrap-admin-password = { env = "MTAI_BOOTSTRAP_ADMIN_PASSWORD", description = "Password of the admin user created on an empty database" }
      bootstrap-api-key        = { env = "MTAI_BOOTSTRAP_API_KEY", description = "API key of the demo tenant created on an empty database" }
    } : {},
  )

  values = merge(
    {
      database-url = local.database_url
      database-credentials = jsonencode({
        engine   = "postgres"
        host     = var.database.host
        port     = var.database.port
        dbname   = var.database.name
        username = var.database.username
        password = random_password.database.result
      })
      redis-url  = local.redis_url
      jwt-secret = random_password.jwt.result
    },
    var.bootstrap_credentials ? {
      bootstrap-admin-password = random_password.bootstrap_admin[0].result
      bootstrap-api-key        = "mtai-${random_password.bootstrap_api_key[0].result}"
    } : {},
  )

  external = { for env in var.external_secret_names : lower(replace(env, "_", "-")) => env }
}

resource "aws_secretsmanager_secret" "generated" {
  for_each = local.generated

  name                    = "${var.name}/${each.key}"
  description             = each.value.description
  recovery_window_in_days = var.recovery_window_days
  kms_key_id              = var.kms_key_arn

  tags = var.tags
}

resource "aws_secretsmanager_secret_version" "generated" {
  for_each = local.generated

  secret_id     = aws_secretsmanager_secret.generated[each.key].id
  secret_string = local.values[each.key]
}

resource "aws_secretsmanager_secret" "external" {
  for_each = local.external

  name                    = "${var.name}/${each.key}"
  description             = "${each.value} of mtai; set its value with aws secretsmanager put-secret-value"
  recovery_window_in_days = var.recovery_window_days
  kms_key_id              = var.kms_key_arn

  tags = var.tags
}

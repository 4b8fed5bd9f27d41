output "env_secret_arns" {
  description = "Environment variable name => secret ARN, for the container's secrets. The ARNs of generated secrets come from their versions, so a task never starts before the value exists."
  value = merge(
    { for k, v in local.generated : v.env => aws_secretsmanager_secret_version.generated[k].arn if v.env != null },
    { for k, env in local.external : env => aws_secretsmanager_secret.external[k].arn },
    var.existing_secret_arns,
  )
}

output "secret_arns" {
  description = "ARNs of every secret the tasks read (the execution role may read these and no other)."
  value = concat(
    [for k, v in local.generated : aws_secretsmanager_secret.generated[k].arn if v.env != null],
    [for k, _ in local.external : aws_secretsmanager_secret.external[k].arn],
    values(var.existing_secret_arns),
  )
}

output "external_secret_names" {
  description = "Environment variable name => secret name, for the secrets whose values the operator must put."
  value       = { for k, env in local.external : env => aws_secretsmanager_secret.external[k].name }
}

output "database_password" {
  description = "Generated master password of the database."
  value       = random_password.database.result
  sensitive   = true
}

output "redis_auth_token" {
  description = "Generated AUTH token of Redis."
  value       = random_password.redis_auth.result
  sensitive   = true
}

output "bootstrap_secret_names" {
  description = "Names of the secrets holding the bootstrap admin password and API key (empty when bootstrap_credentials is false)."
  value       = var.bootstrap_credentials ? { admin_password = aws_secretsmanager_secret.generated["bootstrap-admin-password"].name, api_key = aws_secretsmanager_secret.generated["bootstrap-api-key"].name } : {}
}

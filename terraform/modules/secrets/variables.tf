variable "name" {
  description = "Path prefix of every secret's name (for example \"mtai-prod\" gives \"mtai-prod/jwt-secret\")."
  type        = string
}

variable "database" {
  description = "Where the database is, to build DATABASE_URL: host, port, database name and user name (the password is generated here)."
  type = object({
    host     = string
    port     = number
    name     = string
    username = string
  })
}

variable "database_sslmode" {
  description = "sslmode in DATABASE_URL. \"require\" encrypts; \"verify-full\" also checks the server certificate but needs the RDS CA bundle in the image."
  type        = string
  default     = "require"
}

variable "redis" {
  description = "Where Redis is, to build REDIS_URL (rediss://, TLS): primary endpoint host and port (the AUTH token is generated here)."
  type = object({
    host = string
    port = number
  })
}

variable "external_secret_names" {
  description = "Environment variables whose values the operator stores out of band (aws secretsmanager put-secret-value): Terraform creates each secret empty and never sees its value. Tasks cannot start until every one has a value. Remove the names you do not use."
  type        = list(string)
  default     = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY", "MILVUS_TOKEN"]
}

variable "existing_secret_arns" {
  description = "Environment variable name => ARN of a secret that already exists (shared across stacks, for example); added to the container as is."
  type        = map(string)
  default     = {}
}

variable "bootstrap_credentials" {
  description = "Generate MTAI_BOOTSTRAP_ADMIN_PASSWORD and MTAI_BOOTSTRAP_API_KEY, which the first start on an empty database uses for the admin user and the demo tenant's key (instead of printing random ones to the logs)."
  type        = bool
  default     = true
}

variable "recovery_window_days" {
  description = "Days a deleted secret can still be restored (0 deletes at once, 7 to 30 otherwise)."
  type        = number
  default     = 7
}

variable "kms_key_arn" {
  description = "ARN of a customer managed KMS key to encrypt the secrets with; null uses aws/secretsmanager."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

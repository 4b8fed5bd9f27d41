variable "name" {
  description = "Replication group ID and name prefix of its companions (at most 40 characters, lowercase letters, digits and hyphens)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,39}$", var.name))
    error_message = "name must start with a letter and hold at most 40 lowercase letters, digits or hyphens."
  }
}

variable "vpc_id" {
  description = "ID of the VPC the cache lives in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (two zones) for the cache subnet group."
  type        = list(string)
}

variable "allowed_security_group_ids" {
  description = "Security groups allowed to connect on the Redis port: the mtai service's (and nothing else)."
  type        = list(string)
}

variable "auth_token" {
  description = "Redis AUTH token (16 to 128 printable characters without '@', '\"' or '/'); from the secrets module."
  type        = string
  sensitive   = true
}

variable "engine_version" {
  description = "Redis OSS engine version."
  type        = string
  default     = "7.1"
}

variable "parameter_group_name" {
  description = "Cache parameter group; must match the engine's major version."
  type        = string
  default     = "default.redis7"
}

variable "node_type" {
  description = "Cache node type. cache.t4g.micro (0.5 GiB) holds the rate-limit buckets, budgets and caches of a small deployment."
  type        = string
  default     = "cache.t4g.micro"
}

variable "replicas" {
  description = "Read replicas besides the primary. 1 or more turns on automatic failover and Multi-AZ; 0 is a single node (cheaper, no failover)."
  type        = number
  default     = 1

  validation {
    condition     = var.replicas >= 0 && var.replicas <= 5
    error_message = "replicas must be between 0 and 5."
  }
}

variable "snapshot_retention_days" {
  description = "Days daily snapshots are kept; 0 disables snapshots (the cache holds only rebuildable state)."
  type        = number
  default     = 1
}

variable "kms_key_arn" {
  description = "ARN of a customer managed KMS key for encryption at rest; null uses the AWS managed key. Data is encrypted at rest either way."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

variable "name" {
  description = "Identifier of the DB instance and name prefix of its companions (subnet group, parameter group, security group)."
  type        = string
}

variable "vpc_id" {
  description = "ID of the VPC the database lives in."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets (two zones) for the DB subnet group."
  type        = list(string)
}

variable "allowed_security_group_ids" {
  description = "Security groups allowed to connect on the PostgreSQL port: the mtai service's (and nothing else)."
  type        = list(string)
}

variable "engine_version" {
  description = "PostgreSQL major (or major.minor) version; 15 or newer. Minor versions are upgraded automatically in the maintenance window."
  type        = string
  default     = "16"

  validation {
    condition     = tonumber(split(".", var.engine_version)[0]) >= 15
    error_message = "engine_version must be PostgreSQL 15 or newer."
  }
}

variable "instance_class" {
  description = "DB instance class. db.t4g.micro is enough for a small deployment; use db.m7g/r7g for sustained load (burstable classes throttle when their CPU credits run out)."
  type        = string
  default     = "db.t4g.micro"
}

variable "allocated_storage_gb" {
  description = "Initial gp3 storage in GiB (20 is the minimum)."
  type        = number
  default     = 20
}

variable "max_allocated_storage_gb" {
  description = "Storage autoscaling ceiling in GiB; 0 disables storage autoscaling."
  type        = number
  default     = 100
}

variable "database_name" {
  description = "Name of the database mtai uses."
  type        = string
  default     = "mtai"
}

variable "username" {
  description = "Master user name mtai connects as."
  type        = string
  default     = "mtai"
}

variable "password" {
  description = "Master password (from the secrets module's random_password; it must not contain '/', '@', '\"' or spaces)."
  type        = string
  sensitive   = true
}

variable "multi_az" {
  description = "Run a synchronous standby in a second zone (automatic failover; doubles the instance cost)."
  type        = bool
  default     = false
}

variable "backup_retention_days" {
  description = "Days automated backups (point-in-time recovery) are kept, 1 to 35."
  type        = number
  default     = 7

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 35
    error_message = "backup_retention_days must be between 1 and 35."
  }
}

variable "deletion_protection" {
  description = "Refuse to delete the database (set false, apply, then destroy, to really remove it)."
  type        = bool
  default     = true
}

variable "skip_final_snapshot" {
  description = "Delete without taking a final snapshot. Keep false in production."
  type        = bool
  default     = false
}

variable "performance_insights_enabled" {
  description = "Enable Performance Insights (7 days of history are free). Off by default: the smallest classes (db.t4g.micro/small) may not support it; turn it on with a larger class."
  type        = bool
  default     = false
}

variable "kms_key_arn" {
  description = "ARN of a customer managed KMS key for storage encryption; null uses the AWS managed key aws/rds. Storage is encrypted either way."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

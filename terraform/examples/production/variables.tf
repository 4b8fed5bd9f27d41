variable "region" {
  description = "AWS region to deploy to."
  type        = string
  default     = "us-east-1"
}

variable "name" {
  description = "Name of this deployment; prefixes every resource (lowercase letters, digits, hyphens; at most 20 characters)."
  type        = string
  default     = "mtai-prod"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{0,19}$", var.name))
    error_message = "name must start with a letter and hold at most 20 lowercase letters, digits or hyphens."
  }
}

variable "availability_zones" {
  description = "The two availability zones to use; empty picks the region's first two."
  type        = list(string)
  default     = []
}

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the new VPC."
  type        = string
  default     = "10.40.0.0/16"
}

variable "single_nat_gateway" {
  description = "Share one NAT gateway between both zones (cheaper) instead of one per zone (zone-failure tolerant egress)."
  type        = bool
  default     = true
}

# --- Edge -----------------------------------------------------------------

variable "certificate_arn" {
  description = "ARN of an issued ACM certificate (same region) for the HTTPS listener, covering the domain you will point at the load balancer."
  type        = string
}

variable "alb_ingress_cidr_blocks" {
  description = "IPv4 ranges allowed to reach the load balancer on 80 and 443."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "alb_deletion_protection" {
  description = "Protect the load balancer from deletion (set false before terraform destroy)."
  type        = bool
  default     = true
}

variable "alb_idle_timeout_seconds" {
  description = "Seconds a silent connection stays open at the load balancer; long enough for a slow first token of a streamed answer."
  type        = number
  default     = 300
}

variable "drain_seconds" {
  description = "Seconds a leaving task keeps serving its open streams: used both as the target group's deregistration delay and as the container's stop timeout (SIGTERM to SIGKILL, at most 120 on Fargate)."
  type        = number
  default     = 120

  validation {
    condition     = var.drain_seconds >= 2 && var.drain_seconds <= 120
    error_message = "drain_seconds must be between 2 and 120."
  }
}

# --- Service ----------------------------------------------------------------

variable "image_tag" {
  description = "Tag of the mtai image in the ECR repository to run (tags are immutable: use a version or a commit hash)."
  type        = string
}

variable "migrate_image_tag" {
  description = "Tag of the image the one-off migrate task runs; null means image_tag. During an upgrade set it to the new tag first (see docs/DEPLOYMENT.md)."
  type        = string
  default     = null
}

variable "cpu_architecture" {
  description = "ARM64 (Graviton, cheaper; build with --platform linux/arm64) or X86_64."
  type        = string
  default     = "ARM64"
}

variable "task_cpu" {
  description = "vCPU units per task (1024 = 1 vCPU)."
  type        = number
  default     = 512
}

variable "task_memory" {
  description = "Memory per task in MiB."
  type        = number
  default     = 1024
}

variable "min_tasks" {
  description = "Fewest running tasks (two spread the service over both zones)."
  type        = number
  default     = 2
}

variable "max_tasks" {
  description = "Most running tasks autoscaling may reach."
  type        = number
  default     = 10
}

variable "cpu_target_percent" {
  description = "Target average CPU of the service for autoscaling."
  type        = number
  default     = 60
}

variable "requests_per_target" {
  description = "Target load balancer requests per task per minute for autoscaling."
  type        = number
  default     = 1200
}

variable "log_level" {
  description = "LOG_LEVEL of mtai: debug, info, warn or error."
  type        = string
  default     = "info"

  validation {
    condition     = contains(["debug", "info", "warn", "error"], var.log_level)
    error_message = "log_level must be debug, info, warn or error."
  }
}

variable "extra_environment" {
  description = "More plain environment variables for the container (name => value), for settings this example does not name. Never secrets."
  type        = map(string)
  default     = {}
}

variable "enable_execute_command" {
  description = "Allow ECS Exec into running tasks."
  type        = bool
  default     = false
}

# --- Secrets and providers --------------------------------------------------

variable "provider_secret_names" {
  description = "Model provider keys passed to the container from Secrets Manager. Terraform creates each secret empty; put its value with the AWS CLI before the tasks can start. Remove the ones you do not use."
  type        = list(string)
  default     = ["OPENAI_API_KEY", "ANTHROPIC_API_KEY"]
}

variable "existing_secret_arns" {
  description = "Environment variable name => ARN of a secret that already exists, passed to the container as is (a shared provider key, for example)."
  type        = map(string)
  default     = {}
}

variable "bedrock_model_arns" {
  description = "Bedrock foundation-model or inference-profile ARNs mtai may invoke; empty grants no Bedrock access."
  type        = list(string)
  default     = []
}

# --- Vectors (Milvus) ---------------------------------------------------------

variable "milvus_address" {
  description = "Milvus endpoint (MILVUS_ADDRESS): a Zilliz Cloud URI such as https://in03-xxxx.serverless.gcp-us-west1.cloud.zilliz.com, or host:19530 of a self-hosted Milvus. Empty leaves vectors in the embedded index, which is per task and lost when it stops: set it in production."
  type        = string
  default     = ""
}

variable "milvus_token_enabled" {
  description = "Pass MILVUS_TOKEN from Secrets Manager (Zilliz Cloud API key, or user:password of a self-hosted Milvus with authorization on). Terraform creates the secret empty; put its value with the AWS CLI."
  type        = bool
  default     = true
}

variable "extra_egress_cidr_blocks" {
  description = "IPv4 ranges outside the VPC the tasks may reach on any TCP port (a peered VPC running Milvus on 19530, for example)."
  type        = list(string)
  default     = []
}

# --- Data stores ------------------------------------------------------------

variable "db_engine_version" {
  description = "PostgreSQL version (15 or newer)."
  type        = string
  default     = "16"
}

variable "db_instance_class" {
  description = "RDS instance class."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_allocated_storage_gb" {
  description = "Initial database storage in GiB (gp3)."
  type        = number
  default     = 20
}

variable "db_multi_az" {
  description = "Run a Multi-AZ standby for automatic database failover (doubles its cost)."
  type        = bool
  default     = false
}

variable "db_backup_retention_days" {
  description = "Days of automated backups and point-in-time recovery."
  type        = number
  default     = 7
}

variable "db_deletion_protection" {
  description = "Protect the database from deletion."
  type        = bool
  default     = true
}

variable "redis_node_type" {
  description = "ElastiCache node type."
  type        = string
  default     = "cache.t4g.micro"
}

variable "redis_replicas" {
  description = "Redis replicas besides the primary; 1 or more enables automatic failover across zones."
  type        = number
  default     = 1
}

variable "documents_bucket_name" {
  description = "Name of the S3 bucket for RAG documents; null derives \"<name>-documents-<account id>\"."
  type        = string
  default     = null
}

# --- Observability ------------------------------------------------------------

variable "log_retention_days" {
  description = "Days container logs are kept."
  type        = number
  default     = 30
}

variable "alarm_topic_arn" {
  description = "ARN of an SNS topic notified by the alarms; null creates the alarms without notifications."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource (through the provider's default_tags)."
  type        = map(string)
  default     = {}
}

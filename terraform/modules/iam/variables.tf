variable "name" {
  description = "Name prefix of the roles (\"<name>-execution\" and \"<name>-task\")."
  type        = string
}

variable "ecr_repository_arn" {
  description = "ARN of the ECR repository the execution role may pull images from."
  type        = string
}

variable "log_group_arn" {
  description = "ARN of the CloudWatch log group the execution role may write container logs to."
  type        = string
}

variable "secret_arns" {
  description = "ARNs of the Secrets Manager secrets injected into the container; the execution role may read exactly these."
  type        = list(string)
}

variable "secrets_kms_key_arn" {
  description = "ARN of the customer managed KMS key that encrypts the secrets, if any (null for aws/secretsmanager, which needs no grant)."
  type        = string
  default     = null
}

variable "bucket_arn" {
  description = "ARN of the documents bucket; the task role may read, write and delete its objects and list it, and nothing else in S3."
  type        = string
}

variable "bucket_kms_key_arn" {
  description = "ARN of the customer managed KMS key of the bucket, if it uses SSE-KMS (null for SSE-S3)."
  type        = string
  default     = null
}

variable "bedrock_model_arns" {
  description = "ARNs of the Bedrock foundation models and inference profiles the gateway may invoke (for example arn:aws:bedrock:us-east-1::foundation-model/anthropic.claude-3-5-haiku-20241022-v1:0). Empty grants no Bedrock access."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for a in var.bedrock_model_arns : can(regex("^arn:aws[a-z-]*:bedrock:", a))])
    error_message = "bedrock_model_arns must hold Bedrock ARNs only (no wildcards for every resource)."
  }
}

variable "enable_execute_command" {
  description = "Let operators open a shell in running tasks with ECS Exec (grants the SSM messages channel actions, which AWS only offers on every resource)."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

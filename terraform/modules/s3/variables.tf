variable "bucket_name" {
  description = "Globally unique name of the documents bucket."
  type        = string
}

variable "kms_key_arn" {
  description = "ARN of a customer managed KMS key for SSE-KMS; null uses SSE-S3 (AES256). Objects are encrypted either way."
  type        = string
  default     = null
}

variable "noncurrent_version_expiration_days" {
  description = "Days a replaced or deleted document version is kept before it expires (undo window)."
  type        = number
  default     = 30
}

variable "force_destroy" {
  description = "Let terraform destroy delete the bucket even if it still holds objects. Keep false in production."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

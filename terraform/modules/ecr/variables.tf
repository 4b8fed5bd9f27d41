variable "name" {
  description = "Name of the ECR repository (for example \"mtai\")."
  type        = string
}

variable "keep_images" {
  description = "How many tagged images the lifecycle policy keeps; older ones are expired. Untagged images are expired after 7 days."
  type        = number
  default     = 30
}

variable "kms_key_arn" {
  description = "ARN of a customer managed KMS key to encrypt images with; null uses AES256 (ECR-managed keys)."
  type        = string
  default     = null
}

variable "force_delete" {
  description = "Let terraform destroy delete the repository even if it still holds images."
  type        = bool
  default     = false
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

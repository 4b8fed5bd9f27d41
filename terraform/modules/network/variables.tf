variable "name" {
  description = "Name prefix for every resource of this module (for example \"mtai-prod\")."
  type        = string
}

variable "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC. Subnets are carved out of it with cidrsubnet (/20 each for a /16)."
  type        = string
  default     = "10.40.0.0/16"
}

variable "availability_zones" {
  description = "Availability zones to spread the subnets over; exactly two (one public and one private subnet in each)."
  type        = list(string)

  validation {
    condition     = length(var.availability_zones) == 2
    error_message = "availability_zones must list exactly two zones."
  }
}

variable "single_nat_gateway" {
  description = "One NAT gateway for both zones (cheaper, about 32 USD a month less) instead of one per zone (survives the loss of a zone)."
  type        = bool
  default     = true
}

variable "enable_s3_gateway_endpoint" {
  description = "Add a free S3 gateway endpoint so that document traffic to S3 does not go through (and pay for) the NAT gateway."
  type        = bool
  default     = true
}

variable "flow_logs_retention_days" {
  description = "Retention of VPC flow logs in CloudWatch Logs, in days; 0 disables flow logs."
  type        = number
  default     = 0
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

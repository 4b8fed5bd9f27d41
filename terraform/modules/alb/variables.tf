variable "name" {
  description = "Name prefix for the load balancer, its target group and security group (at most 26 characters: the target group name adds \"-tg\" and AWS caps names at 32)."
  type        = string

  validation {
    condition     = length(var.name) <= 26
    error_message = "name must be at most 26 characters."
  }
}

variable "vpc_id" {
  description = "ID of the VPC the load balancer lives in."
  type        = string
}

variable "public_subnet_ids" {
  description = "Public subnets (two zones at least) that the internet-facing load balancer is placed in."
  type        = list(string)
}

variable "certificate_arn" {
  description = "ARN of the ACM certificate served by the HTTPS listener; it must be issued (validated) in the same region."
  type        = string
}

variable "ssl_policy" {
  description = "TLS negotiation policy of the HTTPS listener (TLS 1.2 and 1.3 only by default)."
  type        = string
  default     = "ELBSecurityPolicy-TLS13-1-2-2021-06"
}

variable "container_port" {
  description = "Port the mtai container listens on; the target group forwards to it."
  type        = number
  default     = 8080
}

variable "health_check_path" {
  description = "Path of the target group health check: mtai answers 200 on /ping without authentication."
  type        = string
  default     = "/ping"
}

variable "idle_timeout_seconds" {
  description = "Seconds a connection may stay silent before the load balancer closes it. Streamed (SSE) completions can wait long for the first token, so this is well above the 60 s AWS default."
  type        = number
  default     = 300
}

variable "deregistration_delay_seconds" {
  description = "Seconds a target that is being removed keeps serving its open connections (SSE streams) before the load balancer cuts them. Keep it at or above the task's stop timeout."
  type        = number
  default     = 120
}

variable "ingress_cidr_blocks" {
  description = "IPv4 ranges allowed to reach the listeners (ports 80 and 443). The default is the whole internet."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "deletion_protection" {
  description = "Refuse to delete the load balancer through the API (set false before terraform destroy)."
  type        = bool
  default     = true
}

variable "access_logs_bucket" {
  description = "Name of an S3 bucket for load balancer access logs (it needs the ELB log delivery bucket policy); null disables access logs."
  type        = string
  default     = null
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

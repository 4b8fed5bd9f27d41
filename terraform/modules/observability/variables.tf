variable "name" {
  description = "Name prefix of the log group (\"/ecs/<name>\") and of the alarms."
  type        = string
}

variable "log_retention_days" {
  description = "Days the container logs are kept in CloudWatch Logs (one of the values CloudWatch accepts: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, ...)."
  type        = number
  default     = 30
}

variable "log_kms_key_arn" {
  description = "ARN of a customer managed KMS key to encrypt the log group with; null uses CloudWatch Logs' own encryption."
  type        = string
  default     = null
}

variable "create_alarms" {
  description = "Create the CloudWatch alarms (set false until the load balancer and the service exist elsewhere)."
  type        = bool
  default     = true
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the load balancer (dimension LoadBalancer)."
  type        = string
}

variable "target_group_arn_suffix" {
  description = "ARN suffix of the target group (dimension TargetGroup)."
  type        = string
}

variable "ecs_cluster_name" {
  description = "Name of the ECS cluster (dimension ClusterName)."
  type        = string
}

variable "ecs_service_name" {
  description = "Name of the ECS service (dimension ServiceName)."
  type        = string
}

variable "alarm_actions" {
  description = "ARNs notified when an alarm fires or recovers (an SNS topic, for example). Empty: alarms only show in the console."
  type        = list(string)
  default     = []
}

variable "http_5xx_rate_threshold_percent" {
  description = "Alarm when 5xx answers (from the load balancer and from the targets) exceed this percentage of requests for 3 of 5 minutes."
  type        = number
  default     = 5
}

variable "latency_p99_threshold_seconds" {
  description = "Alarm when the p99 target response time (time to the response's first byte; for streams, to the first event) exceeds this many seconds for 3 of 5 minutes."
  type        = number
  default     = 20
}

variable "cpu_threshold_percent" {
  description = "Alarm when the service's average CPU exceeds this percentage for 5 minutes (autoscaling should have acted before)."
  type        = number
  default     = 85
}

variable "memory_threshold_percent" {
  description = "Alarm when the service's average memory use exceeds this percentage for 5 minutes."
  type        = number
  default     = 85
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

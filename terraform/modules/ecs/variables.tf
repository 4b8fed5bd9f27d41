variable "name" {
  description = "Name of the ECS cluster, service and task definition family."
  type        = string
}

variable "region" {
  description = "AWS region (for the awslogs driver)."
  type        = string
}

variable "vpc_id" {
  description = "ID of the VPC the tasks run in."
  type        = string
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC; the tasks may open TCP connections anywhere inside it (PostgreSQL, Redis, a self-hosted Milvus)."
  type        = string
}

variable "private_subnet_ids" {
  description = "Private subnets the tasks are placed in (they get no public IP and reach the internet through NAT)."
  type        = list(string)
}

variable "alb_security_group_id" {
  description = "Security group of the load balancer: the only source allowed to reach the container port."
  type        = string
}

variable "target_group_arn" {
  description = "ARN of the load balancer target group the service registers its tasks in."
  type        = string
}

variable "alb_arn_suffix" {
  description = "ARN suffix of the load balancer, for the requests-per-target scaling metric."
  type        = string
}

variable "target_group_arn_suffix" {
  description = "ARN suffix of the target group, for the requests-per-target scaling metric."
  type        = string
}

variable "image" {
  description = "Container image reference (REPOSITORY_URL:TAG, or @sha256:DIGEST)."
  type        = string
}

variable "migrate_image" {
  description = "Image of the one-off migrate task definition; null uses image. Set it to the new image first during an upgrade, run the migration, then move image (docs/DEPLOYMENT.md)."
  type        = string
  default     = null
}

variable "cpu_architecture" {
  description = "CPU architecture of the tasks: ARM64 (Graviton, about 20% cheaper; build the image with --platform linux/arm64) or X86_64."
  type        = string
  default     = "ARM64"

  validation {
    condition     = contains(["ARM64", "X86_64"], var.cpu_architecture)
    error_message = "cpu_architecture must be ARM64 or X86_64."
  }
}

variable "task_cpu" {
  description = "vCPU units of a task (1024 = one vCPU); a valid Fargate size together with task_memory."
  type        = number
  default     = 512
}

variable "task_memory" {
  description = "Memory of a task in MiB; a valid Fargate size together with task_cpu."
  type        = number
  default     = 1024
}

variable "container_port" {
  description = "Port the mtai container listens on (PORT)."
  type        = number
  default     = 8080
}

variable "environment" {
  description = "Plain environment variables of the container (name => value). Never put a secret here: use secret_arns."
  type        = map(string)
  default     = {}
}

variable "secret_arns" {
  description = "Environment variables read from Secrets Manager when a task starts (name => secret ARN)."
  type        = map(string)
  default     = {}
}

variable "execution_role_arn" {
  description = "ARN of the task execution role (image pull, secrets, logs)."
  type        = string
}

variable "task_role_arn" {
  description = "ARN of the task role (the application's own AWS identity)."
  type        = string
}

variable "log_group_name" {
  description = "CloudWatch log group the container writes to."
  type        = string
}

variable "min_capacity" {
  description = "Fewest tasks autoscaling keeps (also the initial desired count). Two spread the service over two zones."
  type        = number
  default     = 2
}

variable "max_capacity" {
  description = "Most tasks autoscaling may run."
  type        = number
  default     = 10
}

variable "cpu_target_percent" {
  description = "Target average CPU utilisation of the service for target-tracking autoscaling."
  type        = number
  default     = 60
}

variable "requests_per_target" {
  description = "Target ALB requests per task per minute for target-tracking autoscaling. mtai spends little CPU per request, but each open stream holds a connection and memory: lower it when answers are long."
  type        = number
  default     = 1200
}

variable "stop_timeout_seconds" {
  description = "Seconds between SIGTERM and SIGKILL when a task stops (Fargate allows at most 120). mtai stops accepting, lets open streams finish, then flushes its usage meter."
  type        = number
  default     = 120

  validation {
    condition     = var.stop_timeout_seconds >= 2 && var.stop_timeout_seconds <= 120
    error_message = "stop_timeout_seconds must be between 2 and 120 (the Fargate maximum)."
  }
}

variable "health_check_grace_period_seconds" {
  description = "Seconds after a task starts during which failing load balancer health checks are ignored (migrations on start)."
  type        = number
  default     = 90
}

variable "readonly_root_filesystem" {
  description = "Mount the container's root file system read-only; /data and /tmp are writable task-storage volumes."
  type        = bool
  default     = true
}

variable "container_insights" {
  description = "CloudWatch Container Insights for the cluster: \"disabled\", \"enabled\" or \"enhanced\" (extra metrics, billed as custom metrics)."
  type        = string
  default     = "disabled"
}

variable "enable_execute_command" {
  description = "Allow ECS Exec (aws ecs execute-command) into running tasks; the task role must grant the SSM channel actions. Note: the distroless image has no shell."
  type        = bool
  default     = false
}

variable "extra_egress_cidr_blocks" {
  description = "IPv4 ranges (outside the VPC) the tasks may reach on any TCP port, such as a peered VPC running Milvus on 19530. HTTPS (443) to anywhere is always allowed for model providers and AWS APIs."
  type        = list(string)
  default     = []
}

variable "tags" {
  description = "Tags added to every resource of this module."
  type        = map(string)
  default     = {}
}

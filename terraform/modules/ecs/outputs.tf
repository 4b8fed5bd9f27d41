output "cluster_name" {
  description = "Name of the ECS cluster."
  value       = aws_ecs_cluster.this.name
}

output "cluster_arn" {
  description = "ARN of the ECS cluster."
  value       = aws_ecs_cluster.this.arn
}

output "service_name" {
  description = "Name of the ECS service."
  value       = aws_ecs_service.this.name
}

output "task_definition_family" {
  description = "Family of the task definition (run-task uses the latest active revision)."
  value       = aws_ecs_task_definition.this.family
}

output "task_definition_arn" {
  description = "ARN of the current task definition revision."
  value       = aws_ecs_task_definition.this.arn
}

output "security_group_id" {
  description = "ID of the tasks' security group (the database and Redis accept connections from it only)."
  value       = aws_security_group.service.id
}

output "container_name" {
  description = "Name of the container in the task definition (for command overrides)."
  value       = local.container_name
}

output "migrate_task_definition_family" {
  description = "Family of the one-off migrate task definition (command: mtai migrate)."
  value       = aws_ecs_task_definition.migrate.family
}

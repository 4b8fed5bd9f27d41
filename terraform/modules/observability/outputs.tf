output "log_group_name" {
  description = "Name of the container log group."
  value       = aws_cloudwatch_log_group.app.name
}

output "log_group_arn" {
  description = "ARN of the container log group."
  value       = aws_cloudwatch_log_group.app.arn
}

output "alarm_arns" {
  description = "ARNs of the alarms."
  value = concat(
    aws_cloudwatch_metric_alarm.http_5xx_rate[*].arn,
    aws_cloudwatch_metric_alarm.latency_p99[*].arn,
    aws_cloudwatch_metric_alarm.no_healthy_targets[*].arn,
    aws_cloudwatch_metric_alarm.ecs_cpu[*].arn,
    aws_cloudwatch_metric_alarm.ecs_memory[*].arn,
  )
}

output "alb_url" {
  description = "HTTPS URL of the load balancer. Its certificate names your domain, not this host: point a CNAME (or Route 53 alias) of the certificate's domain at alb_dns_name and use that."
  value       = "https://${module.alb.dns_name}"
}

output "alb_dns_name" {
  description = "DNS name of the load balancer."
  value       = module.alb.dns_name
}

output "alb_zone_id" {
  description = "Route 53 zone ID of the load balancer, for an alias record."
  value       = module.alb.zone_id
}

output "ecr_repository_url" {
  description = "ECR repository to push mtai images to."
  value       = module.ecr.repository_url
}

output "ecs_cluster_name" {
  description = "Name of the ECS cluster."
  value       = module.ecs.cluster_name
}

output "ecs_service_name" {
  description = "Name of the ECS service."
  value       = module.ecs.service_name
}

output "log_group_name" {
  description = "CloudWatch log group of the containers."
  value       = module.observability.log_group_name
}

output "documents_bucket" {
  description = "S3 bucket holding RAG documents."
  value       = module.s3.bucket_name
}

output "secrets_to_fill" {
  description = "Environment variable => Secrets Manager secret name whose value you must put before the tasks can start."
  value       = module.secrets.external_secret_names
}

output "bootstrap_secret_names" {
  description = "Secrets holding the first admin's password and the demo tenant's API key."
  value       = module.secrets.bootstrap_secret_names
}

output "nat_public_ips" {
  description = "Addresses the tasks reach the internet from (to allow-list at Zilliz Cloud or a provider)."
  value       = module.network.nat_public_ips
}

output "migrate_command" {
  description = "AWS CLI command that runs `mtai migrate` as a one-off task with the migrate task definition."
  value = join(" ", [
    "aws ecs run-task",
    "--region ${var.region}",
    "--cluster ${module.ecs.cluster_name}",
    "--task-definition ${module.ecs.migrate_task_definition_family}",
    "--launch-type FARGATE",
    "--network-configuration 'awsvpcConfiguration={subnets=[${join(",", module.network.private_subnet_ids)}],securityGroups=[${module.ecs.security_group_id}],assignPublicIp=DISABLED}'",
  ])
}

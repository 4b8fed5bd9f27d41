output "primary_endpoint" {
  description = "Host name of the primary endpoint (follows failover)."
  value       = aws_elasticache_replication_group.this.primary_endpoint_address
}

output "port" {
  description = "Redis port."
  value       = local.port
}

output "security_group_id" {
  description = "ID of the cache's security group."
  value       = aws_security_group.redis.id
}

output "replication_group_id" {
  description = "Replication group ID (CloudWatch dimension ReplicationGroupId)."
  value       = aws_elasticache_replication_group.this.id
}

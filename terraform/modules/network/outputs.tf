output "vpc_id" {
  description = "ID of the VPC."
  value       = aws_vpc.this.id
}

output "vpc_cidr" {
  description = "IPv4 CIDR block of the VPC."
  value       = aws_vpc.this.cidr_block
}

output "public_subnet_ids" {
  description = "IDs of the public subnets (load balancer and NAT gateways only)."
  value       = aws_subnet.public[*].id
}

output "private_subnet_ids" {
  description = "IDs of the private subnets (ECS tasks, RDS, ElastiCache)."
  value       = aws_subnet.private[*].id
}

output "nat_public_ips" {
  description = "Public IPv4 addresses the tasks use to reach the internet (allow-list these at model providers or a managed Milvus if needed)."
  value       = aws_eip.nat[*].public_ip
}

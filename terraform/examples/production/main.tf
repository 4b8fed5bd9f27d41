# mtai on AWS: ECS Fargate behind an ALB, RDS PostgreSQL, ElastiCache Redis,
# S3 for documents, Milvus (external) for vectors. See docs/DEPLOYMENT.md.

data "aws_availability_zones" "available" {
  state = "available"
}

data "aws_caller_identity" "current" {}

locals {
  azs          = length(var.availability_zones) > 0 ? var.availability_zones : slice(data.aws_availability_zones.available.names, 0, 2)
  bucket_name  = coalesce(var.documents_bucket_name, "${var.name}-documents-${data.aws_caller_identity.current.account_id}")
  external     = concat(var.provider_secret_names, var.milvus_address != "" && var.milvus_token_enabled ? ["MILVUS_TOKEN"] : [])
  image_prefix = "${module.ecr.repository_url}:"

  environment = merge(
    {
      PORT          = "8080"
      LOG_LEVEL     = var.log_level
      MTAI_DATA_DIR = "/data"
      S3_BUCKET     = module.s3.bucket_name
      AWS_REGION    = var.region
    },
    var.milvus_address != "" ? { MILVUS_ADDRESS = var.milvus_address } : {},
    var.extra_environment,
  )
}

module "network" {
  source = "../../modules/network"

  name               = var.name
  vpc_cidr           = var.vpc_cidr
  availability_zones = local.azs
  single_nat_gateway = var.single_nat_gateway
}

module "ecr" {
  source = "../../modules/ecr"

  name = var.name
}

module "s3" {
  source = "../../modules/s3"

  bucket_name = local.bucket_name
}

module "alb" {
  source = "../../modules/alb"

  name                         = var.name
  vpc_id                       = module.network.vpc_id
  public_subnet_ids            = module.network.public_subnet_ids
  certificate_arn              = var.certificate_arn
  ingress_cidr_blocks          = var.alb_ingress_cidr_blocks
  idle_timeout_seconds         = var.alb_idle_timeout_seconds
  deregistration_delay_seconds = var.drain_seconds
  deletion_protection          = var.alb_deletion_protection
}

module "rds" {
  source = "../../modules/rds"

  name                       = var.name
  vpc_id                     = module.network.vpc_id
  private_subnet_ids         = module.network.private_subnet_ids
  allowed_security_group_ids = [module.ecs.security_group_id]
  password                   = module.secrets.database_password
  engine_version             = var.db_engine_version
  instance_class             = var.db_instance_class
  allocated_storage_gb       = var.db_allocated_storage_gb
  multi_az                   = var.db_multi_az
  backup_retention_days      = var.db_backup_retention_days
  deletion_protection        = var.db_deletion_protection
}

module "redis" {
  source = "../../modules/redis"

  name                       = var.name
  vpc_id                     = module.network.vpc_id
  private_subnet_ids         = module.network.private_subnet_ids
  allowed_security_group_ids = [module.ecs.security_group_id]
  auth_token                 = module.secrets.redis_auth_token
  node_type                  = var.redis_node_type
  replicas                   = var.redis_replicas
}

module "secrets" {
  source = "../../modules/secrets"

  name = var.name
  database = {
    host     = module.rds.address
    port     = module.rds.port
    name     = module.rds.database_name
    username = module.rds.username
  }
  redis = {
    host = module.redis.primary_endpoint
    port = module.redis.port
  }
  external_secret_names = local.external
  existing_secret_arns  = var.existing_secret_arns
}

module "observability" {
  source = "../../modules/observability"

  name                    = var.name
  log_retention_days      = var.log_retention_days
  alb_arn_suffix          = module.alb.arn_suffix
  target_group_arn_suffix = module.alb.target_group_arn_suffix
  ecs_cluster_name        = module.ecs.cluster_name
  ecs_service_name        = module.ecs.service_name
  alarm_actions           = var.alarm_topic_arn == null ? [] : [var.alarm_topic_arn]
}

module "iam" {
  source = "../../modules/iam"

  name                   = var.name
  ecr_repository_arn     = module.ecr.repository_arn
  log_group_arn          = module.observability.log_group_arn
  secret_arns            = module.secrets.secret_arns
  bucket_arn             = module.s3.bucket_arn
  bedrock_model_arns     = var.bedrock_model_arns
  enable_execute_command = var.enable_execute_command
}

module "ecs" {
  source = "../../modules/ecs"

  name                    = var.name
  region                  = var.region
  vpc_id                  = module.network.vpc_id
  vpc_cidr                = module.network.vpc_cidr
  private_subnet_ids      = module.network.private_subnet_ids
  alb_security_group_id   = module.alb.security_group_id
  target_group_arn        = module.alb.target_group_arn
  alb_arn_suffix          = module.alb.arn_suffix
  target_group_arn_suffix = module.alb.target_group_arn_suffix

  image            = "${local.image_prefix}${var.image_tag}"
  migrate_image    = var.migrate_image_tag == null ? null : "${local.image_prefix}${var.migrate_image_tag}"
  cpu_architecture = var.cpu_architecture
  task_cpu         = var.task_cpu
  task_memory      = var.task_memory

  environment        = local.environment
  secret_arns        = module.secrets.env_secret_arns
  execution_role_arn = module.iam.execution_role_arn
  task_role_arn      = module.iam.task_role_arn
  log_group_name     = module.observability.log_group_name

  min_capacity         = var.min_tasks
  max_capacity         = var.max_tasks
  cpu_target_percent   = var.cpu_target_percent
  requests_per_target  = var.requests_per_target
  stop_timeout_seconds = var.drain_seconds

  enable_execute_command   = var.enable_execute_command
  extra_egress_cidr_blocks = var.extra_egress_cidr_blocks

  # The target group must be attached to a listener before a service can use it.
  depends_on = [module.alb]
}

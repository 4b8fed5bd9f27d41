terraform {
  required_version = ">= 1.5.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.80, < 7.0"
    }
    random = {
      source  = "hashicorp/random"
      version = ">= 3.6, < 4.0"
    }
  }

  # Keep the state remote, encrypted and locked: it holds the generated
  # database password, Redis token and JWT key. Create the bucket once, then
  # uncomment and run terraform init -migrate-state.
  #
  # backend "s3" {
  #   bucket       = "my-terraform-state-bucket"
  #   key          = "mtai/production.tfstate"
  #   region       = "us-east-1"
  #   encrypt      = true
  #   use_lockfile = true
  # }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = merge(var.tags, {
      Application = "mtai"
      Environment = var.name
      ManagedBy   = "terraform"
    })
  }
}

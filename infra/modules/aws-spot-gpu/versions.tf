terraform {
  required_version = ">= 1.5.0"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}

provider "aws" {
  region = var.region
  default_tags {
    tags = {
      "gauntlet:node-id" = var.node_id
      "gauntlet:run"     = var.task_queue
    }
  }
}

variable "node_id" {
  description = "Identity of the node; names every resource and the worker's --node-id."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9-]{1,48}$", var.node_id))
    error_message = "node_id may hold only letters, digits and '-', at most 48 (IAM names derive from it)."
  }
}

variable "task_queue" {
  description = "Task queue unique to the run; the worker polls it."
  type        = string
}

variable "temporal_address" {
  description = "Temporal frontend host:port, reachable from the subnet."
  type        = string
}

variable "namespace" {
  description = "Temporal namespace."
  type        = string
  default     = "default"
}

variable "region" {
  description = "AWS region of the chosen offer."
  type        = string
}

variable "instance_types" {
  description = "Acceptable instance types, best first (internal/cloud ranks them by live spot price). The first is launched."
  type        = list(string)
  validation {
    condition     = length(var.instance_types) > 0
    error_message = "instance_types must name at least one type."
  }
}

variable "subnet_ids" {
  description = "Subnet per availability zone, e.g. {\"us-east-1a\" = \"subnet-...\"}."
  type        = map(string)
  validation {
    condition     = length(var.subnet_ids) > 0
    error_message = "subnet_ids must hold at least one subnet."
  }
}

variable "availability_zone" {
  description = "Zone of the chosen spot offer; empty lets the first subnet (by zone name) decide."
  type        = string
  default     = ""
}

variable "vpc_id" {
  description = "VPC of the subnets, for the security group."
  type        = string
}

variable "ami_id" {
  description = "GPU AMI with the NVIDIA driver (e.g. an AWS Deep Learning Base AMI)."
  type        = string
}

variable "max_price_per_hour" {
  description = "Spot max price in USD per hour; the request's max_price_per_hour."
  type        = number
  validation {
    condition     = var.max_price_per_hour > 0
    error_message = "max_price_per_hour must be positive."
  }
}

variable "worker_url" {
  description = "HTTPS or s3:// URL of the linux/amd64 worker binary to install."
  type        = string
}

variable "artifact_bucket" {
  description = "S3 bucket holding run artifacts."
  type        = string
}

variable "artifact_prefix" {
  description = "Key prefix under which this node may read and write, e.g. runs/<run-id>/."
  type        = string
  validation {
    condition     = length(var.artifact_prefix) > 0 && !startswith(var.artifact_prefix, "/")
    error_message = "artifact_prefix must be a non-empty key prefix without a leading '/'."
  }
}

variable "store" {
  description = "The artifact store every worker of the fleet shares (--store), e.g. s3://bucket/prefix; its IAM policy must cover it. Empty: the worker's default, on the node's disk."
  type        = string
  default     = ""
}

variable "root_volume_gb" {
  description = "Root volume size; datasets and checkpoints are cached there."
  type        = number
  default     = 100
}

variable "gpu_description" {
  description = "What the chosen instance type carries, for reports (from the catalogue)."
  type        = string
  default     = ""
}

variable "extra_args" {
  description = "More worker arguments, one list element per argument."
  type        = list(string)
  default     = []
}

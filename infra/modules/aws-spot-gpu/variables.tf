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
  description = "The artifact store every worker of the fleet shares (--store), e.g. s3://bucket/prefix?region=R; the node's instance role may read and write under that prefix (and list it). Empty: the worker's default, on the node's disk."
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

variable "metrics_port" {
  description = "Port the worker serves Prometheus /metrics on, open to the monitoring network only."
  type        = number
  default     = 9464
  validation {
    condition     = var.metrics_port >= 1 && var.metrics_port <= 65535 && floor(var.metrics_port) == var.metrics_port
    error_message = "metrics_port must be a port number from 1 to 65535."
  }
}

variable "monitoring_cidr_blocks" {
  description = "IPv4 networks Prometheus scrapes from (e.g. the monitoring subnet); with monitoring_security_group_ids the only sources the metrics port admits. Both empty: the node serves no metrics and admits nothing."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for c in var.monitoring_cidr_blocks : can(cidrnetmask(c)) && !endswith(c, "/0")])
    error_message = "monitoring_cidr_blocks must be IPv4 CIDR blocks of the monitoring network, never a /0 (the whole internet)."
  }
}

variable "monitoring_security_group_ids" {
  description = "Security groups of the Prometheus servers (e.g. sg-...), admitted to the metrics port."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for g in var.monitoring_security_group_ids : can(regex("^sg-[0-9a-f]+$", g))])
    error_message = "monitoring_security_group_ids must be security group ids (sg-...)."
  }
}

variable "extra_args" {
  description = "More worker arguments, one list element per argument."
  type        = list(string)
  default     = []
}

# One spot GPU instance running a Gauntlet worker on the run's task queue.
#
# Why aws_instance with a launch template, not an autoscaling group or an
# EC2 fleet: listing several types needs an autoscaling group's mixed
# instances policy, which rejects launch templates that carry
# instance_market_options, and an EC2 fleet sets spot options on the fleet
# rather than the template. Neither fits a node whose life is one run: an
# autoscaling group would also replace a preempted node behind the
# workflow's back, when the workflow must see the preemption (missed
# heartbeat) to re-provision and resume from the last checkpoint. Choosing
# among acceptable types happens before apply in internal/cloud, which
# compares live spot prices across regions and zones; on
# InsufficientInstanceCapacity the activity re-applies with the failed type
# dropped from instance_types.

locals {
  instance_type = var.instance_types[0]
  zone          = var.availability_zone != "" ? var.availability_zone : sort(keys(var.subnet_ids))[0]
  subnet_id     = var.subnet_ids[local.zone]
  prefix        = trimsuffix(var.artifact_prefix, "/")
  # The worker serves metrics only when someone may scrape them.
  metrics = length(var.monitoring_cidr_blocks) + length(var.monitoring_security_group_ids) > 0
  # The fleet's store (s3://bucket/prefix?query), which the node's worker
  # reads models and data from and writes checkpoints and models to.
  store_path   = startswith(var.store, "s3://") ? split("?", trimprefix(var.store, "s3://"))[0] : ""
  store_bucket = local.store_path == "" ? "" : split("/", local.store_path)[0]
  store_prefix = local.store_path == "" ? "" : trim(substr(local.store_path, length(local.store_bucket), -1), "/")
}

resource "aws_security_group" "node" {
  name_prefix = "gauntlet-${var.node_id}-"
  description = "Gauntlet GPU node ${var.node_id}: it dials Temporal and S3; only the monitoring network dials it, for metrics."
  vpc_id      = var.vpc_id

  # The one way in: Prometheus scraping the worker's metrics, from the
  # monitoring network alone. Without one, no ingress at all.
  dynamic "ingress" {
    for_each = local.metrics ? [var.metrics_port] : []
    content {
      description     = "Prometheus scrapes the worker /metrics"
      from_port       = ingress.value
      to_port         = ingress.value
      protocol        = "tcp"
      cidr_blocks     = var.monitoring_cidr_blocks
      security_groups = var.monitoring_security_group_ids
    }
  }

  egress {
    description = "Temporal, S3, package mirrors"
    from_port   = 0
    to_port     = 0
    protocol    = "-1"
    cidr_blocks = ["0.0.0.0/0"]
  }

  lifecycle {
    create_before_destroy = true
  }
}

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

data "aws_iam_policy_document" "artifacts" {
  statement {
    sid       = "ObjectsUnderPrefix"
    actions   = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload"]
    resources = ["arn:aws:s3:::${var.artifact_bucket}/${local.prefix}/*"]
  }
  statement {
    sid       = "ListPrefix"
    actions   = ["s3:ListBucket"]
    resources = ["arn:aws:s3:::${var.artifact_bucket}"]
    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${local.prefix}/*", local.prefix]
    }
  }
  # The store: blobs are written once and never deleted, refs are replaced
  # with conditional writes, so reading and writing are all it needs.
  dynamic "statement" {
    for_each = local.store_bucket == "" ? [] : [1]
    content {
      sid       = "StoreObjects"
      actions   = ["s3:GetObject", "s3:PutObject", "s3:AbortMultipartUpload"]
      resources = [local.store_prefix == "" ? "arn:aws:s3:::${local.store_bucket}/*" : "arn:aws:s3:::${local.store_bucket}/${local.store_prefix}/*"]
    }
  }
  dynamic "statement" {
    for_each = local.store_bucket == "" ? [] : [1]
    content {
      sid       = "StoreList"
      actions   = ["s3:ListBucket"]
      resources = ["arn:aws:s3:::${local.store_bucket}"]
      dynamic "condition" {
        for_each = local.store_prefix == "" ? [] : [1]
        content {
          test     = "StringLike"
          variable = "s3:prefix"
          values   = ["${local.store_prefix}/*", local.store_prefix]
        }
      }
    }
  }
}

resource "aws_iam_role" "node" {
  name_prefix        = "gauntlet-${var.node_id}-"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_role_policy" "artifacts" {
  name   = "artifact-prefix"
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.artifacts.json
}

resource "aws_iam_instance_profile" "node" {
  name_prefix = "gauntlet-${var.node_id}-"
  role        = aws_iam_role.node.name
}

resource "aws_launch_template" "node" {
  name_prefix   = "gauntlet-${var.node_id}-"
  image_id      = var.ami_id
  instance_type = local.instance_type

  instance_market_options {
    market_type = "spot"
    spot_options {
      max_price = format("%.4f", var.max_price_per_hour)
      # One-time request: a preempted node is gone, and the workflow, not
      # EC2, decides whether and where to re-provision.
      spot_instance_type             = "one-time"
      instance_interruption_behavior = "terminate"
    }
  }

  iam_instance_profile {
    arn = aws_iam_instance_profile.node.arn
  }

  vpc_security_group_ids = [aws_security_group.node.id]

  metadata_options {
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  block_device_mappings {
    device_name = "/dev/xvda"
    ebs {
      volume_size           = var.root_volume_gb
      volume_type           = "gp3"
      encrypted             = true
      delete_on_termination = true
    }
  }

  user_data = base64encode(templatefile("${path.module}/user_data.sh.tftpl", {
    node_id          = var.node_id
    task_queue       = var.task_queue
    temporal_address = var.temporal_address
    namespace        = var.namespace
    worker_url       = var.worker_url
    region           = var.region
    metrics_addr     = local.metrics ? ":${var.metrics_port}" : ""
    store            = var.store
    extra_args       = var.extra_args
  }))

  tag_specifications {
    resource_type = "instance"
    tags          = { Name = "gauntlet-${var.node_id}" }
  }
}

resource "aws_instance" "node" {
  subnet_id = local.subnet_id

  launch_template {
    id      = aws_launch_template.node.id
    version = aws_launch_template.node.latest_version
  }

  lifecycle {
    precondition {
      condition     = contains(keys(var.subnet_ids), local.zone)
      error_message = "availability_zone ${local.zone} has no subnet in subnet_ids."
    }
  }
}

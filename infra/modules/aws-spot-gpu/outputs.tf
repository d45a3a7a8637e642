output "task_queue" {
  description = "Task queue the node's worker polls."
  value       = var.task_queue
  depends_on  = [aws_instance.node]
}

output "node_id" {
  description = "Identity of the node."
  value       = var.node_id
  depends_on  = [aws_instance.node]
}

output "gpu_description" {
  description = "What accelerator the node has."
  value       = var.gpu_description != "" ? var.gpu_description : local.instance_type
}

output "instance_id" {
  description = "EC2 instance id."
  value       = aws_instance.node.id
}

output "instance_type" {
  description = "Instance type launched."
  value       = aws_instance.node.instance_type
}

output "availability_zone" {
  description = "Zone the instance runs in."
  value       = aws_instance.node.availability_zone
}

output "spot_instance_request_id" {
  description = "Spot request behind the instance."
  value       = aws_instance.node.spot_instance_request_id
}

output "metrics_endpoint" {
  description = "host:port Prometheus scrapes the node's worker at (its private address); empty when no monitoring network is given."
  value       = local.metrics ? "${aws_instance.node.private_ip}:${var.metrics_port}" : ""
}

output "private_ip" {
  description = "Private address, for debugging from inside the VPC."
  value       = aws_instance.node.private_ip
}

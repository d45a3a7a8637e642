output "task_queue" {
  description = "Task queue the node's worker polls."
  value       = var.task_queue
  depends_on  = [terraform_data.worker]
}

output "node_id" {
  description = "Identity of the node."
  value       = terraform_data.worker.output.node_id
}

output "gpu_description" {
  description = "What accelerator the node has."
  value       = var.gpu_description
}

output "pid_file" {
  description = "File holding the worker's process id."
  value       = terraform_data.worker.output.pid_file
}

output "metrics_endpoint" {
  description = "host:port Prometheus scrapes the node's worker at; empty when it serves no metrics."
  value       = var.metrics_addr
  depends_on  = [terraform_data.worker]
}

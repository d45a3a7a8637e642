# A "node" that is just a worker process on this machine, or on the
# machine a launcher picks for it. It uses only the built-in terraform_data
# resource and local-exec, so init downloads nothing, and it exercises the
# same provision/destroy path as a cloud GPU node.

locals {
  pid_file = "${var.state_dir}/worker-${var.node_id}.pid"
  # The start and stop scripts run here, or through the launcher on the
  # node's machine (LAUNCHER NODE_ID start|stop SCRIPT): the pid file and
  # the worker's log are that machine's.
  start = length(var.launcher) == 0 ? ["/bin/sh"] : concat(var.launcher, [var.node_id, "start"])
}

resource "terraform_data" "worker" {
  # Destroy-time provisioners may read only self, so everything teardown
  # needs is kept in the resource's own input.
  input = {
    node_id              = var.node_id
    pid_file             = local.pid_file
    stop_timeout_seconds = var.stop_timeout_seconds
    launcher             = var.launcher
    host                 = var.host
  }

  # Any change to how the worker runs restarts it: the old one is stopped by
  # the destroy provisioner, the new one started by the create provisioner.
  triggers_replace = {
    node_id          = var.node_id
    task_queue       = var.task_queue
    worker_binary    = var.worker_binary
    temporal_address = var.temporal_address
    namespace        = var.namespace
    state_dir        = var.state_dir
    store            = var.store
    log_file         = var.log_file
    metrics_addr     = var.metrics_addr
    extra_args       = var.extra_args
    launcher         = var.launcher
  }

  provisioner "local-exec" {
    # Run as a file rather than inline so the log shows its name, not its text.
    interpreter = local.start
    command     = "${path.module}/start.sh"
    environment = {
      WORKER           = var.worker_binary
      TASK_QUEUE       = var.task_queue
      NODE_ID          = var.node_id
      TEMPORAL_ADDRESS = var.temporal_address
      NAMESPACE        = var.namespace
      STATE_DIR        = var.state_dir
      STORE            = var.store
      LOG_FILE         = var.log_file
      PID_FILE         = local.pid_file
      METRICS_ADDR     = var.metrics_addr
      EXTRA_ARGS       = join("\n", var.extra_args)
    }
  }

  provisioner "local-exec" {
    when        = destroy
    interpreter = length(self.input.launcher) == 0 ? ["/bin/sh"] : concat(self.input.launcher, [self.input.node_id, "stop"])
    command     = "${path.module}/stop.sh"
    environment = {
      NODE_ID      = self.input.node_id
      PID_FILE     = self.input.pid_file
      STOP_TIMEOUT = self.input.stop_timeout_seconds
      # Without a launcher the worker is a process of the machine that
      # started it, which alone can stop it.
      STARTED_ON = length(self.input.launcher) == 0 ? self.input.host : ""
    }
  }
}

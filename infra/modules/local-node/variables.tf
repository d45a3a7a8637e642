variable "node_id" {
  description = "Identity of the node; the worker reports it with every task."
  type        = string
  validation {
    condition     = can(regex("^[A-Za-z0-9._-]+$", var.node_id))
    error_message = "node_id may hold only letters, digits, '.', '_' and '-' (it names the pid file)."
  }
}

variable "task_queue" {
  description = "Task queue unique to the run; steps with runs_on are dispatched there."
  type        = string
  validation {
    condition     = length(var.task_queue) > 0
    error_message = "task_queue must not be empty."
  }
}

variable "worker_binary" {
  description = "Path of the worker executable to start."
  type        = string
}

variable "temporal_address" {
  description = "Temporal frontend host:port the worker dials."
  type        = string
}

variable "namespace" {
  description = "Temporal namespace."
  type        = string
  default     = "default"
}

variable "state_dir" {
  description = "Worker state directory; the pid file lives here too."
  type        = string
}

variable "store" {
  description = "The artifact store every worker of the fleet shares (--store); empty: the worker's default under state_dir."
  type        = string
  default     = ""
}

variable "log_file" {
  description = "File the worker's stdout and stderr are appended to."
  type        = string
}

variable "gpu_description" {
  description = "What accelerator the node has, for reports."
  type        = string
  default     = "none (local CPU node)"
}

variable "metrics_addr" {
  description = "host:port the worker serves Prometheus /metrics on (its --metrics-addr); empty serves none. Provision sets a free loopback port when the worker that applies the module has a Prometheus targets directory."
  type        = string
  default     = ""
  validation {
    # Prometheus is told to scrape exactly this address, so it must name
    # a host as well as a port.
    condition     = var.metrics_addr == "" || can(regex("^[^:/ ]+:[0-9]+$|^\\[[0-9a-fA-F:.]+\\]:[0-9]+$", var.metrics_addr))
    error_message = "metrics_addr must be empty or host:port (e.g. 127.0.0.1:9470), with a host Prometheus can connect to."
  }
}

variable "extra_args" {
  description = "More worker arguments, one list element per argument."
  type        = list(string)
  default     = []
  validation {
    # They travel newline-separated to the start script.
    condition     = alltrue([for a in var.extra_args : !strcontains(a, "\n")])
    error_message = "extra_args must not contain newlines."
  }
}

variable "launcher" {
  description = "Runs the node on a machine of its choosing rather than this one: a command (one list element per argument) that the module runs as LAUNCHER... NODE_ID start|stop SCRIPT, with the script's variables in its environment. It must run SCRIPT with /bin/sh and that environment on the machine it picks for NODE_ID at start, and on the same machine at stop (the script reads the pid file it wrote there), and exit with the script's status. Empty: the node is a process on the machine that applies the module. Provision sets it from $GAUNTLET_NODE_LAUNCHER."
  type        = list(string)
  default     = []
}

variable "host" {
  description = "Hostname of the machine that applies the module (provision sets it). Without a launcher the node's worker is a process there, and destroy refuses to run on another machine, which could not see it, rather than report it stopped."
  type        = string
  default     = ""
}

variable "stop_timeout_seconds" {
  description = "How long destroy waits after SIGTERM before SIGKILL."
  type        = number
  default     = 30
  validation {
    condition     = var.stop_timeout_seconds >= 0 && floor(var.stop_timeout_seconds) == var.stop_timeout_seconds
    error_message = "stop_timeout_seconds must be a whole number of seconds, zero or more."
  }
}

package workflows

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
)

// Register registers every Gauntlet workflow on w.
func Register(w worker.WorkflowRegistry) {
	w.RegisterWorkflowWithOptions(Pipeline, workflow.RegisterOptions{Name: PipelineName})
	w.RegisterWorkflowWithOptions(Monitor, workflow.RegisterOptions{Name: MonitorName})
}

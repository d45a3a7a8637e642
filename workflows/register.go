package workflows

import (
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

// Register registers every Gauntlet workflow on w.
func Register(w worker.WorkflowRegistry) {
	w.RegisterWorkflowWithOptions(Pipeline, workflow.RegisterOptions{Name: contract.PipelineName})
	w.RegisterWorkflowWithOptions(Monitor, workflow.RegisterOptions{Name: contract.MonitorName})
	w.RegisterWorkflowWithOptions(FanOutChunk, workflow.RegisterOptions{Name: contract.FanOutChunkName})
}

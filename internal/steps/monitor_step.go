package steps

import (
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
	"github.com/gauntlet-ml/gauntlet/internal/wfsteps"
)

func init() {
	// The monitor is a workflow of its own (it lives as long as the model
	// serves); this entry tells the validator what the step takes.
	Register(Type{
		Name: "monitor",
		Doc: "Watches the model in production as the child workflow monitor-<name>: every interval it compares the served " +
			"features with the training data (PSI, KS, chi-square), checks health and, with delayed labels, accuracy. A breach " +
			"rolls back to the previous champion and/or starts one retraining run, at most once per cooldown. With duration the " +
			"step watches for that long and reports; without, the monitor keeps running after the run ends.",
		Kind:    Workflow,
		Inputs:  stepio.Fields[wfsteps.MonitorInputs](),
		Outputs: []string{"monitor_id", "already_running", "passes", "incidents", "rolled_back", "retrain_runs", "drifted", "samples"},
	})
}

package steps

import (
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
	"github.com/gauntlet-ml/gauntlet/internal/wfsteps"
)

func init() {
	// The canary is workflow code (it waits through intervals and on
	// people's signals); this entry tells the validator what it takes.
	Register(Type{
		Name: "canary-deploy",
		Doc: "Registers the candidate, serves it beside the champion behind the router, shifts traffic weight by weight " +
			"with metric analysis after each interval, then promotes it (champion moves, the old one becomes previous) or rolls back. " +
			"Signals canary-pause, canary-resume, canary-promote and canary-abort ({\"step\": ID, \"by\": NAME}) steer it.",
		Kind:    Workflow,
		Inputs:  stepio.Fields[wfsteps.CanaryInputs](),
		Outputs: []string{"decision", "reason", "version", "champion", "weight", "intervals", "failures", "router_url"},
	})
}

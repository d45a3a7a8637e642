package steps

import (
	"context"
	"errors"

	"github.com/gauntlet-ml/gauntlet/internal/extstep"
)

func init() {
	Register(Type{
		Name: "run",
		Doc:  "Runs a step's `run:` command under the external-step contract (internal/extstep/CONTRACT.md): inputs as env vars and a JSON file, progress lines as heartbeats, outputs.json, exit codes that decide retries.",
		Kind: Activity,
		Run:  runCommand,
	})
}

func runCommand(ctx context.Context, env Env, in Input) (map[string]any, error) {
	if in.Command == nil {
		return nil, Permanentf("BadInput", "step %s: no command to run (a run step needs `run:`)", in.StepID)
	}
	out, err := extstep.Run(ctx, env, extstep.Command(*in.Command), extstep.Input{
		RunID:    in.RunID,
		Pipeline: in.Pipeline,
		StepID:   in.StepID,
		With:     in.With,
		// Kept in the store, so an attempt on any host resumes from it.
		Checkpoint: CheckpointName(in),
	})
	var xe *extstep.Error
	if errors.As(err, &xe) {
		// Keep the contract's kind (CommandFailed, BadOutput, ...) rather
		// than the generic one Classify would give a Retryable() error.
		return nil, &Error{Kind: xe.Kind, Retryable: xe.Retryable(), Err: err}
	}
	return out, err
}

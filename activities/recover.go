package activities

import (
	"context"
	"errors"

	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/recovery"
	"github.com/gauntlet-ml/gauntlet/internal/recovery/oldrun"
)

// KindRecoveryRefused is the error type of a retry that cannot be done as
// asked: another attempt would be refused the same way.
const KindRecoveryRefused = "RecoveryRefused"

// Recoverer plans the runs that recover earlier ones: it reads the earlier
// run through the worker's Temporal client and checks the artifacts the new
// run would reuse in the worker's store.
type Recoverer struct {
	// Store is the artifact store every worker shares.
	Store artifact.Store
}

// Recover implements contract.RecoverName.
func (r *Recoverer) Recover(ctx context.Context, in contract.RecoverInput) (contract.Recovery, error) {
	def, old, err := oldrun.Read(ctx, activity.GetClient(ctx), in.RunID)
	if err != nil {
		return contract.Recovery{}, refused(err)
	}
	plan, err := recovery.Make(def, old, in.From, in.Params)
	if err != nil {
		return contract.Recovery{}, refused(err)
	}
	if err := recovery.Check(ctx, r.Store, plan.Reused); err != nil {
		return contract.Recovery{}, refused(err)
	}
	def.Params = plan.Params
	return contract.Recovery{RunID: in.RunID, Resolved: def, Reused: plan.Reused, NotNeeded: plan.NotNeeded}, nil
}

// refused makes a refusal permanent; anything else (a query that timed
// out, a store that did not answer) is worth another attempt.
func refused(err error) error {
	var re *recovery.Error
	if errors.As(err, &re) || errors.Is(err, oldrun.ErrNoRun) {
		return temporal.NewNonRetryableApplicationError(err.Error(), KindRecoveryRefused, nil)
	}
	return err
}

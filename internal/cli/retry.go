package cli

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/recovery"
	"github.com/gauntlet-ml/gauntlet/internal/recovery/oldrun"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

type retryFlags struct {
	from    string
	params  []string
	wait    bool
	timeout time.Duration
	noCache bool
	id      string
	as      string
	store   string
}

func (a *app) retryCommand() *cobra.Command {
	var f retryFlags
	cmd := &cobra.Command{
		Use:   "retry RUN",
		Short: "Recover a failed, canceled or rejected run: a new run reuses what succeeded and runs the rest",
		Long: `retry starts a new run of RUN's pinned definition and params that takes over
the outputs of every step that succeeded (their artifacts checked to still be
in the store) and runs the failed, canceled and never-started ones. --from STEP
runs STEP and everything after it again too; -p k=v changes params, but only
those no reused step reads. Approvals are never reused: the reviewers are
asked again. Nothing starts when the retry cannot be done as asked (RUN still
running, artifacts gone, a param under a reused step). The new run's status
names RUN, and RUN's status lists the runs that recover it. The same from the
Temporal UI: start Pipeline with {"retry_of": "RUN"}.`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.retry(cmd.Context(), args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.from, "from", "", "run this step and everything after it again")
	fl.StringArrayVarP(&f.params, "param", "p", nil, "change a param as key=value (repeatable), for steps that run again")
	fl.BoolVarP(&f.wait, "wait", "w", false, "wait for the new run to finish, streaming progress")
	fl.DurationVar(&f.timeout, "timeout", 0, "with --wait, stop waiting after this long (exit 4; the run goes on)")
	fl.BoolVar(&f.noCache, "no-cache", false, "ignore cached step results in the steps that run again")
	fl.StringVar(&f.store, "store", "", "the artifact store the workers share, where the reused artifacts are checked (env "+workerhost.EnvStore+"); without it each pointer's own store is tried where this host reaches it")
	fl.StringVar(&f.id, "id", "", "id of the new run (default NAME-<UTC timestamp>)")
	fl.StringVar(&f.as, "as", "", "who starts the run (env "+EnvUser+")")
	return cmd
}

// RetryReport is `retry --output json` without --wait.
type RetryReport struct {
	RunID   string   `json:"run_id"`
	RetryOf string   `json:"retry_of"`
	Reused  []string `json:"reused"`
	Rerun   []string `json:"rerun"`
	URL     string   `json:"url"`
	State   string   `json:"state"`
}

func (a *app) retry(ctx context.Context, old string, f retryFlags) error {
	params, err := parseParams(f.params)
	if err != nil {
		return err
	}
	if f.timeout < 0 {
		return usagef("--timeout must be positive")
	}
	c, err := a.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	// Everything the worker will check is checked here first, so that a
	// retry that cannot be done starts nothing.
	def, st, err := oldrun.Read(ctx, c, old)
	if err != nil {
		return retryError(err)
	}
	plan, err := recovery.Make(def, st, f.from, params)
	if err != nil {
		return retryError(err)
	}
	if err := a.checkArtifacts(ctx, f.store, plan.Reused); err != nil {
		return retryError(err)
	}
	id := f.id
	if id == "" {
		id = RunID(def.Spec.Name, time.Now())
	}
	in := contract.PipelineInput{RetryOf: old, RetryFrom: f.from, Params: params, NoCache: f.noCache, StartedBy: a.user(f.as)}
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                                       id,
		TaskQueue:                                a.taskQueue,
		WorkflowIDReusePolicy:                    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy:                 enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            "retry of " + old,
	}, contract.PipelineName, in)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return withCode(ExitUsage, fmt.Errorf("run id %s is already taken: choose another with --id", id))
		}
		return fmt.Errorf("start run %s: %w", id, err)
	}
	reused := make([]string, len(plan.Reused))
	for i, r := range plan.Reused {
		reused[i] = r.ID
	}
	url := a.runURL(id)
	switch {
	case a.jsonOut() && !f.wait:
		return a.printJSON(RetryReport{RunID: id, RetryOf: old, Reused: reused, Rerun: plan.Rerun, URL: url, State: contract.RunRunning})
	case !a.jsonOut():
		fmt.Fprintf(a.stdout, "Started %s, recovering %s\n  reused: %s\n  runs again: %s\n  %s\n", id, old, listOrNone(reused), listOrNone(plan.Rerun), url)
	}
	if !f.wait {
		return nil
	}
	return a.follow(ctx, c, id, f.timeout)
}

func listOrNone(ids []string) string {
	if len(ids) == 0 {
		return "none"
	}
	return strings.Join(ids, ", ")
}

func retryError(err error) error {
	var re *recovery.Error
	switch {
	case errors.Is(err, oldrun.ErrNoRun):
		return withCode(ExitNotFound, err)
	case errors.As(err, &re):
		return withCode(ExitUsage, fmt.Errorf("cannot retry: %w (nothing was started)", err))
	}
	return err
}

// checkArtifacts looks for the reused outputs' artifacts: in the store the
// workers share when --store or GAUNTLET_STORE names it (with its endpoint
// and region), else in the stores their pointers name, where this host can
// reach them: a file:// store whose directory is here, an s3:// store with
// the AWS SDK's credentials. The worker checks its own store again before
// the run takes them over.
func (a *app) checkArtifacts(ctx context.Context, storeFlag string, reused []contract.StepStatus) error {
	opened := map[string]artifact.Store{}
	if storeFlag != "" || a.getenv(workerhost.EnvStore) != "" {
		loc, err := a.storeURL(storeFlag, "", ".gauntlet")
		if err != nil {
			return err
		}
		s, err := artifact.Open(ctx, loc)
		if err != nil {
			return withCode(ExitUsage, fmt.Errorf("store %s: %w", workspace.Redact(loc), err))
		}
		opened[s.Location()] = s
	}
	byStore := map[string][]recovery.Pointer{}
	var order []string
	for _, p := range recovery.Pointers(reused) {
		if _, ok := byStore[p.Pointer.Store]; !ok {
			order = append(order, p.Pointer.Store)
		}
		byStore[p.Pointer.Store] = append(byStore[p.Pointer.Store], p)
	}
	for _, loc := range order {
		if s, ok := opened[loc]; ok {
			if err := recovery.CheckPointers(ctx, s, byStore[loc]); err != nil {
				return err
			}
			continue
		}
		if u, err := url.Parse(loc); err == nil && u.Scheme == "file" {
			if _, err := os.Stat(u.Path); err != nil {
				fmt.Fprintf(a.stderr, "note: the artifact store %s is not on this host; the worker checks it\n", loc)
				continue
			}
		}
		store, err := artifact.Open(ctx, loc)
		if err != nil {
			fmt.Fprintf(a.stderr, "note: cannot open the artifact store %s from here (%v); the worker checks it\n", loc, err)
			continue
		}
		if err := recovery.CheckPointers(ctx, store, byStore[loc]); err != nil {
			return err
		}
	}
	return nil
}

// recoveredBy lists the runs that recover run id, newest first.
func recoveredBy(ctx context.Context, c client.Client, id string) ([]RunListItem, error) {
	q := fmt.Sprintf("WorkflowType = '%s' AND %s = '%s'", contract.PipelineName, searchattr.RetryOf.GetName(), quote(id))
	return listRuns(ctx, c, q, 20)
}

// StatusReport is `status --output json`: the run's record, and the runs
// that recover it.
type StatusReport struct {
	RunReport
	RecoveredBy []RunListItem `json:"recovered_by,omitempty"`
}

// printLinks prints what a status adds to a run's summary: the run it
// recovers and the runs that recover it.
func (a *app) printLinks(st contract.Status, by []RunListItem) {
	if st.RetryOf != "" {
		fmt.Fprintf(a.stdout, "  recovers %s\n", st.RetryOf)
	}
	for _, r := range by {
		fmt.Fprintf(a.stdout, "  recovered by %s (%s)  %s\n", r.RunID, r.State, a.runURL(r.RunID))
	}
}

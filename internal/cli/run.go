package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
)

type runFlags struct {
	params    []string
	wait      bool
	timeout   time.Duration
	noCache   bool
	id        string
	as        string
	pipelines string
}

func (a *app) runCommand() *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run PIPELINE",
		Short: "Start a pipeline run (and with --wait, follow it to the end)",
		Long: `run starts the named pipeline and prints its run id and UI link. With --wait
it streams step progress and exits 0 on success, 1 on failure, 3 when a reviewer
rejected the model, 4 when --timeout passed and 5 when the run was canceled.
With --output json the final line is one JSON document (see README).`,
		Args: exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.run(cmd.Context(), args[0], f)
		},
	}
	fl := cmd.Flags()
	fl.StringArrayVarP(&f.params, "param", "p", nil, "pipeline parameter as key=value (repeatable)")
	fl.BoolVarP(&f.wait, "wait", "w", false, "wait for the run to finish, streaming progress")
	fl.DurationVar(&f.timeout, "timeout", 0, "with --wait, stop waiting after this long (exit 4; the run goes on)")
	fl.BoolVar(&f.noCache, "no-cache", false, "ignore cached step results")
	fl.StringVar(&f.id, "id", "", "run id (default NAME-<UTC timestamp>)")
	fl.StringVar(&f.as, "as", "", "who starts the run (env "+EnvUser+")")
	fl.StringVar(&f.pipelines, "pipelines", "", "local pipelines directory used to check the definition before starting (env "+EnvPipelines+")")
	return cmd
}

func parseParams(kvs []string) (map[string]any, error) {
	out := map[string]any{}
	for _, kv := range kvs {
		k, v, ok := splitKV(kv)
		if !ok {
			return nil, usagef("--param %q is not key=value", kv)
		}
		if _, dup := out[k]; dup {
			return nil, usagef("--param %s given twice", k)
		}
		out[k] = v
	}
	return out, nil
}

// RunID is the default id of a run started now: the pipeline's name and
// the UTC time to the millisecond, readable and sortable.
func RunID(pipeline string, now time.Time) string {
	return pipeline + "-" + now.UTC().Format("20060102T150405.000Z")
}

// precheck validates a local copy of the pipeline, when there is one, so CI
// fails in a second with file:line:col rather than after a round trip.
func (a *app) precheck(name, dir string, params map[string]any) error {
	var path string
	for _, ext := range []string{".yaml", ".yml"} {
		p := filepath.Join(dir, name+ext)
		if _, err := os.Stat(p); err == nil {
			path = p
			break
		}
	}
	if path == "" {
		return nil
	}
	sp, diags := spec.Load(path, steps.Catalog{})
	if len(diags) > 0 {
		return withCode(ExitInvalid, fmt.Errorf("pipeline %s is invalid:\n%s", name, diags.Error()))
	}
	if _, err := spec.ResolveParams(sp, params); err != nil {
		return withCode(ExitInvalid, fmt.Errorf("pipeline %s: %w", name, err))
	}
	return nil
}

func (a *app) run(ctx context.Context, name string, f runFlags) error {
	params, err := parseParams(f.params)
	if err != nil {
		return err
	}
	if f.timeout < 0 {
		return usagef("--timeout must be positive")
	}
	if err := a.precheck(name, a.pipelinesDir(f.pipelines), params); err != nil {
		return err
	}
	c, err := a.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	id := f.id
	if id == "" {
		id = RunID(name, time.Now())
	}
	in := contract.PipelineInput{Pipeline: name, Params: params, NoCache: f.noCache, StartedBy: a.user(f.as)}
	_, err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
		ID:                       id,
		TaskQueue:                a.taskQueue,
		WorkflowIDReusePolicy:    enumspb.WORKFLOW_ID_REUSE_POLICY_REJECT_DUPLICATE,
		WorkflowIDConflictPolicy: enumspb.WORKFLOW_ID_CONFLICT_POLICY_FAIL,
		// Without this the SDK quietly hands back the existing run.
		WorkflowExecutionErrorWhenAlreadyStarted: true,
		StaticSummary:                            "pipeline " + name,
	}, contract.PipelineName, in)
	if err != nil {
		var started *serviceerror.WorkflowExecutionAlreadyStarted
		if errors.As(err, &started) {
			return withCode(ExitUsage, fmt.Errorf("run id %s is already taken: choose another with --id", id))
		}
		return fmt.Errorf("start run %s: %w", id, err)
	}
	url := a.runURL(id)
	if !f.wait {
		if a.jsonOut() {
			return a.printJSON(map[string]string{"run_id": id, "pipeline": name, "url": url, "state": contract.RunRunning})
		}
		fmt.Fprintf(a.stdout, "Started %s\n  %s\n", id, url)
		return nil
	}
	if !a.jsonOut() {
		fmt.Fprintf(a.stdout, "Started %s\n  %s\n", id, url)
	}
	return a.follow(ctx, c, id, f.timeout)
}

func (a *app) runURL(id string) string {
	base := a.uiBase
	if base == "" {
		base = a.getenv("GAUNTLET_UI_URL")
	}
	if base == "" {
		base = "http://127.0.0.1:8233"
	}
	return fmt.Sprintf("%s/namespaces/%s/workflows/%s", strings.TrimRight(base, "/"), a.conn.Namespace, id)
}

// RunReport is the stable JSON document of `run --wait`, `status` and
// `watch` with --output json.
type RunReport struct {
	contract.Status
	URL string `json:"url"`
}

// follow streams step changes until the run ends or timeout passes.
func (a *app) follow(ctx context.Context, c client.Client, id string, timeout time.Duration) error {
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	done := make(chan error, 1)
	go func() { done <- c.GetWorkflow(ctx, id, "").Get(ctx, nil) }()
	printer := &progressPrinter{w: a.stdout, quiet: a.jsonOut(), seen: map[string]string{}}
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case runErr := <-done:
			if ctx.Err() != nil {
				return a.timedOut(id, printer.last)
			}
			st, err := a.finalStatus(context.Background(), c, id, runErr)
			if err != nil {
				return err
			}
			printer.update(st)
			return a.report(st, runErr)
		case <-tick.C:
			if st, err := queryStatus(ctx, c, id); err == nil {
				printer.update(st)
			}
		case <-ctx.Done():
			return a.timedOut(id, printer.last)
		}
	}
}

func (a *app) timedOut(id string, last *contract.Status) error {
	if a.jsonOut() && last != nil {
		_ = a.printJSON(RunReport{Status: *last, URL: a.runURL(id)})
	}
	return withCode(ExitTimedOut, fmt.Errorf("stopped waiting for %s: --timeout passed (the run goes on)", id))
}

func queryStatus(ctx context.Context, c client.Client, id string) (contract.Status, error) {
	var st contract.Status
	qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	v, err := c.QueryWorkflow(qctx, id, "", contract.StatusQuery)
	if err != nil {
		return st, err
	}
	return st, v.Get(&st)
}

// finalStatus reads the finished run's record from its result or failure,
// which needs no worker, unlike a query.
func (a *app) finalStatus(ctx context.Context, c client.Client, id string, runErr error) (contract.Status, error) {
	var st contract.Status
	if runErr == nil {
		if err := c.GetWorkflow(ctx, id, "").Get(ctx, &st); err != nil {
			return st, fmt.Errorf("read result of %s: %w", id, err)
		}
		return st, nil
	}
	var app *temporal.ApplicationError
	if errors.As(runErr, &app) && app.HasDetails() && app.Details(&st) == nil {
		return st, nil
	}
	var canceled *temporal.CanceledError
	if errors.As(runErr, &canceled) && canceled.HasDetails() && canceled.Details(&st) == nil {
		return st, nil
	}
	// A failure before the interpreter had a record (an invalid pipeline,
	// a terminated run): report what Temporal knows.
	st = contract.Status{RunID: id, State: contract.RunFailed, Error: rootError(runErr)}
	var term *temporal.TerminatedError
	if errors.As(runErr, &term) {
		st.State = contract.RunCanceled
	}
	var to *temporal.TimeoutError
	if errors.As(runErr, &to) {
		st.Error = "the run timed out"
	}
	return st, nil
}

func rootError(err error) string {
	msg := err.Error()
	for e := errors.Unwrap(err); e != nil; e = errors.Unwrap(e) {
		msg = e.Error()
	}
	return msg
}

// report prints the outcome and maps it to the exit code.
func (a *app) report(st contract.Status, runErr error) error {
	if a.jsonOut() {
		if err := a.printJSON(RunReport{Status: st, URL: a.runURL(st.RunID)}); err != nil {
			return err
		}
	} else {
		printSummary(a.stdout, st)
	}
	switch st.State {
	case contract.RunSucceeded:
		return nil
	case contract.RunRejected:
		return withCode(ExitRejected, fmt.Errorf("run %s: rejected: %s", st.RunID, st.Error))
	case contract.RunCanceled:
		return withCode(ExitCanceled, fmt.Errorf("run %s was canceled", st.RunID))
	default:
		var to *temporal.TimeoutError
		if errors.As(runErr, &to) {
			return withCode(ExitTimedOut, fmt.Errorf("run %s timed out", st.RunID))
		}
		return withCode(ExitFailed, fmt.Errorf("run %s failed: %s", st.RunID, st.Error))
	}
}

// progressPrinter prints one line per step state change: readable in a CI
// log, where a redrawn table would be noise.
type progressPrinter struct {
	w     io.Writer
	quiet bool
	seen  map[string]string
	last  *contract.Status
}

func (p *progressPrinter) update(st contract.Status) {
	p.last = &st
	if p.quiet {
		return
	}
	for _, s := range st.Steps {
		// The reason is part of the key: a canary reports each weight there.
		key := s.State + "/" + fmt.Sprint(s.Attempt) + "/" + s.Reason + "/" + fanOutNote(s)
		if p.seen[s.ID] == key || s.State == contract.StatePending {
			continue
		}
		p.seen[s.ID] = key
		line := fmt.Sprintf("  %-20s %-10s", s.ID, s.State)
		if note := fanOutNote(s); note != "" {
			line += " " + note
		}
		if s.Attempt > 1 {
			line += fmt.Sprintf(" attempt %d", s.Attempt)
		}
		if s.StartedAt != nil && s.EndedAt != nil {
			line += " " + s.EndedAt.Sub(*s.StartedAt).Round(time.Millisecond).String()
		}
		if s.Cached {
			line += " (cached)"
		}
		if s.Error != "" {
			line += "  " + s.Error
		} else if s.Reason != "" {
			line += "  " + s.Reason
		}
		fmt.Fprintln(p.w, line)
	}
}

func printSummary(w io.Writer, st contract.Status) {
	dur := ""
	if st.EndedAt != nil {
		dur = " in " + st.EndedAt.Sub(st.StartedAt).Round(time.Millisecond).String()
	}
	fmt.Fprintf(w, "Run %s (%s): %s%s\n", st.RunID, st.Pipeline, st.State, dur)
	if st.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", st.Error)
	}
	for _, s := range st.Steps {
		d := ""
		if s.StartedAt != nil && s.EndedAt != nil {
			d = s.EndedAt.Sub(*s.StartedAt).Round(time.Millisecond).String()
		}
		out := outputsLine(s.Outputs)
		if note := fanOutNote(s); note != "" {
			out = note
		}
		fmt.Fprintf(w, "  %-20s %-10s %8s  %s\n", s.ID, s.State, d, out)
	}
}

// outputsLine shows scalar outputs briefly; nested maps are in --output json.
func outputsLine(out map[string]any) string {
	keys := make([]string, 0, len(out))
	for k, v := range out {
		switch v.(type) {
		case map[string]any, []any:
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%v", k, out[k]))
	}
	s := strings.Join(parts, " ")
	if len(s) > 100 {
		s = s[:97] + "..."
	}
	return s
}

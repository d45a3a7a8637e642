package workflows

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/dag"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/tmpl"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
)

// Built-in policy for steps whose pipeline sets none, documented in the
// README's YAML reference.
const (
	defaultStepTimeout   = time.Hour
	defaultMaxAttempts   = 3
	defaultInitialRetry  = time.Second
	defaultBackoff       = 2.0
	defaultMaxRetryDelay = time.Minute
	defaultMaxParallel   = 10
	resolveTimeout       = time.Minute
)

// runVersionChange is the one version marker a run records, so that
// histories from before each change keep replaying. Its versions:
//
//	1: the definition is resolved in a local activity (the worker running
//	   the workflow reads its own pipelines directory: no task queue round
//	   trip per run);
//	2: a run hands its metric records (how it ended, approvals, lost
//	   nodes) to the worker's Recorder rather than to local activities
//	   behind a marker each; a step that is one activity call has no
//	   coroutine of its own, and one coroutine receives both approval
//	   signals;
//	3: the siblings of a failed step (fail_fast) and the steps of a
//	   canceled run are cancelled in definition order, not in map order,
//	   and a cancelled step that heartbeats is waited for until it stops;
//	   the inputs of approval, canary-deploy and monitor steps are decoded
//	   by package stepio, as activity steps' are (typedInputsVersion); a
//	   step with `cache: true` is looked up by CacheLookup, which adds the
//	   content of its file and URL inputs to the key and returns the final
//	   key CachePut stores under (CacheGet before);
//	4: steps fan out over items (for_each, matrix), in chunk workflows
//	   when there are many; runs_on may be a template; several items or
//	   steps that lose one node replace it once; a run started with
//	   retry_of recovers an earlier run instead of resolving its
//	   definition; the templates of run: commands (command, env, workdir)
//	   are resolved, as they always were documented to be;
//	5: a lost node is destroyed by its node_id, which any worker finds in
//	   the store, not by its provision step's workdir output, a path on
//	   the worker that provisioned it (provision no longer outputs it).
//
// The change id is historical: bump runVersionLatest for the next change
// rather than adding a GetVersion call, since each one costs every run a
// marker and a visibility update.
const (
	runVersionChange = "resolve-local"
	runVersionLatest = 5
)

// resolveRetry retries a worker that could not read its files, never a
// definition that is wrong.
var resolveRetry = &temporal.RetryPolicy{
	InitialInterval:        time.Second,
	MaximumAttempts:        5,
	NonRetryableErrorTypes: []string{"InvalidPipeline"},
}

// workflowStep carries out a step type in workflow code (it waits on people
// or time rather than computing). It returns the step's outputs.
type workflowStep func(ctx workflow.Context, r *run, st *stepRun) (map[string]any, error)

// workflowSteps maps step types executed in workflow code to their handler.
var workflowSteps = map[string]workflowStep{}

// Pipeline interprets a pipeline definition as a DAG of activities.
func Pipeline(ctx workflow.Context, in contract.PipelineInput) (*contract.Result, error) {
	r := &run{input: in, status: contract.Status{RunID: workflow.GetInfo(ctx).WorkflowExecution.ID, State: contract.RunRunning, StartedAt: workflow.Now(ctx)},
		provisionWith: map[string]map[string]any{}, replacing: map[string]bool{}}
	r.status.Pipeline = in.Pipeline
	// The version comes first: handlers depend on it, and its marker was
	// always the run's first command.
	r.version = workflow.GetVersion(ctx, runVersionChange, workflow.DefaultVersion, runVersionLatest)
	if err := workflow.SetQueryHandler(ctx, contract.StatusQuery, func() (contract.Status, error) { return r.snapshot(), nil }); err != nil {
		return nil, err
	}
	// What a retry of this run pins (gauntlet retry); answered by runs of
	// every version, since handlers set no commands.
	if err := workflow.SetQueryHandler(ctx, contract.DefinitionQuery, func() (contract.Resolved, error) { return r.resolved, nil }); err != nil {
		return nil, err
	}
	if err := r.registerHandlers(ctx); err != nil {
		return nil, err
	}
	start := r.resolve
	if in.RetryOf != "" {
		start = r.recover
	}
	if err := start(ctx); err != nil {
		r.finish(ctx, contract.RunFailed, err)
		return nil, err
	}
	err := r.execute(ctx)
	return r.conclude(ctx, err)
}

// run is the interpreter's state for one execution.
type run struct {
	input    contract.PipelineInput
	resolved contract.Resolved
	status   contract.Status
	main     *phase
	fin      *phase
	// gates are the approval steps of this run, sorted by step id.
	gates []*gate
	// provisionWith keeps provision steps' resolved inputs, to provision
	// a replacement when a node is lost.
	provisionWith map[string]map[string]any
	// version is the run's runVersionChange.
	version workflow.Version
	// itemSlots counts the items and chunks of fan-outs pending in the
	// run, which maxItemsInFlight bounds.
	itemSlots int
	// replacing marks provision steps whose lost node is being replaced.
	replacing map[string]bool
	// preset are the states a recovered run starts its steps in.
	preset map[string]dag.Status
}

// phase is one DAG: the normal steps, or the finally steps.
type phase struct {
	finally bool
	graph   *dag.Graph
	specs   map[string]spec.Step
	order   []string
}

// stepRun is one step in flight.
type stepRun struct {
	spec   spec.Step
	index  int
	with   map[string]any
	cancel workflow.CancelFunc
	// items are a fanned-out step's, in item order; nil otherwise.
	items   []any
	finally bool
}

func (r *run) registerHandlers(ctx workflow.Context) error {
	for _, h := range registeredHooks {
		if err := h(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// registeredHooks lets workflow-executed step types register their signal,
// update and query handlers before the first blocking call, as Temporal
// requires for early updates to be accepted.
var registeredHooks []func(workflow.Context, *run) error

func (r *run) resolve(ctx workflow.Context) error {
	actx := workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: resolveTimeout,
		RetryPolicy:         resolveRetry,
	})
	in := contract.ResolveInput{Pipeline: r.input.Pipeline, Spec: r.input.Spec, YAML: r.input.YAML, Params: r.input.Params}
	var fut workflow.Future
	if r.version == workflow.DefaultVersion {
		fut = workflow.ExecuteActivity(actx, contract.ResolveName, in)
	} else {
		lctx := workflow.WithLocalActivityOptions(ctx, workflow.LocalActivityOptions{
			StartToCloseTimeout: resolveTimeout,
			RetryPolicy:         resolveRetry,
		})
		fut = workflow.ExecuteLocalActivity(lctx, contract.ResolveName, in)
	}
	if err := fut.Get(ctx, &r.resolved); err != nil {
		return fmt.Errorf("resolve pipeline %q: %w", r.input.Pipeline, err)
	}
	return r.load(ctx)
}

// load makes the resolved definition the run's: its phases, its steps'
// records, and the memo and search attributes that name it.
func (r *run) load(ctx workflow.Context) error {
	sp := &r.resolved.Spec
	r.status.Pipeline = sp.Name
	r.status.SpecHash = r.resolved.Hash
	r.status.Params = r.resolved.Params
	var err error
	if r.main, err = newPhase(sp.Steps, false); err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), "InvalidPipeline", err)
	}
	if r.fin, err = newPhase(sp.Finally, true); err != nil {
		return temporal.NewNonRetryableApplicationError(err.Error(), "InvalidPipeline", err)
	}
	for _, list := range [][]spec.Step{sp.Steps, sp.Finally} {
		for _, s := range list {
			r.status.Steps = append(r.status.Steps, contract.StepStatus{ID: s.ID, Uses: usesOf(s), Finally: r.fin.specs[s.ID].ID != "", State: contract.StatePending})
		}
	}
	memo := map[string]any{"spec_hash": r.resolved.Hash, "pipeline": sp.Name}
	attrs := []temporal.SearchAttributeUpdate{
		searchattr.Pipeline.ValueSet(sp.Name),
		searchattr.SpecHash.ValueSet(r.resolved.Hash),
		searchattr.RunStatus.ValueSet(contract.RunRunning),
	}
	if r.status.RetryOf != "" {
		memo[contract.RetryOfMemo] = r.status.RetryOf
		attrs = append(attrs, searchattr.RetryOf.ValueSet(r.status.RetryOf))
	}
	_ = workflow.UpsertMemo(ctx, memo)
	return workflow.UpsertTypedSearchAttributes(ctx, attrs...)
}

func newPhase(steps []spec.Step, finally bool) (*phase, error) {
	p := &phase{finally: finally, specs: map[string]spec.Step{}}
	nodes := make([]dag.Node, 0, len(steps))
	for _, s := range steps {
		p.specs[s.ID] = s
		p.order = append(p.order, s.ID)
		var needs []string
		for _, n := range s.Needs {
			// A finally step may name a normal step in needs to read its
			// outputs; ordering against it is already given, since finally
			// runs after the whole main phase.
			if !finally || containsStep(steps, n) {
				needs = append(needs, n)
			}
		}
		nodes = append(nodes, dag.Node{ID: s.ID, Needs: needs})
	}
	g, err := dag.New(nodes)
	if err != nil {
		return nil, err
	}
	p.graph = g
	return p, nil
}

func containsStep(steps []spec.Step, id string) bool {
	for _, s := range steps {
		if s.ID == id {
			return true
		}
	}
	return false
}

func usesOf(s spec.Step) string {
	if s.Run != nil {
		return "run"
	}
	return s.Uses
}

// execute runs the main phase, then the finally phase whatever happened,
// in a context that a cancellation of the run does not reach.
func (r *run) execute(ctx workflow.Context) error {
	mainErr := r.runPhase(ctx, r.main)
	if len(r.fin.order) == 0 {
		return mainErr
	}
	dctx, cancel := workflow.NewDisconnectedContext(ctx)
	defer cancel()
	finErr := r.runPhase(dctx, r.fin)
	if mainErr != nil {
		return mainErr
	}
	return finErr
}

// runPhase drives one DAG to completion.
func (r *run) runPhase(ctx workflow.Context, p *phase) error {
	states := map[string]dag.Status{}
	for _, id := range p.order {
		if s, ok := r.preset[id]; ok {
			states[id] = s
		}
	}
	running := map[string]*stepRun{}
	sel := workflow.NewSelector(ctx)
	var firstErr error
	stopping := false
	maxParallel := r.resolved.Spec.MaxParallel
	if maxParallel <= 0 {
		maxParallel = defaultMaxParallel
	}
	type done struct {
		id      string
		outputs map[string]any
		err     error
	}
	var finished []done

	for {
		if !stopping {
			next := p.graph.Ready(states)
			for _, id := range next.Skip {
				states[id] = dag.Skipped
				r.setState(id, contract.StateSkipped, "an upstream step failed or was skipped")
			}
			for _, id := range next.Run {
				if len(running) >= maxParallel {
					break
				}
				st := p.specs[id]
				ok, err := r.condition(st, p.finally)
				if err != nil {
					states[id] = dag.Failed
					r.failStep(ctx, id, err)
					firstErr = firstOf(firstErr, fmt.Errorf("step %s: %w", id, err))
					stopping = stopping || r.resolved.Spec.FailFast
					continue
				}
				if !ok {
					states[id] = dag.Skipped
					r.setState(id, contract.StateSkipped, "condition is false: "+st.If)
					continue
				}
				sr, err := r.prepare(ctx, st, p)
				if err != nil {
					states[id] = dag.Failed
					r.failStep(ctx, id, err)
					firstErr = firstOf(firstErr, fmt.Errorf("step %s: %w", id, err))
					stopping = stopping || r.resolved.Spec.FailFast
					continue
				}
				states[id] = dag.Running
				running[id] = sr
				r.start(ctx, sr, sel, func(outputs map[string]any, err error) {
					finished = append(finished, done{id: id, outputs: outputs, err: err})
				})
			}
		}
		if len(running) == 0 {
			if stopping || p.graph.Done(states) {
				break
			}
			// Nothing runs and nothing is ready: every remaining step
			// waits on one that will never succeed.
			next := p.graph.Ready(states)
			if len(next.Run) == 0 && len(next.Skip) == 0 {
				break
			}
			continue
		}
		sel.Select(ctx)
		for _, d := range finished {
			delete(running, d.id)
			st := p.specs[d.id]
			switch {
			case d.err == nil:
				states[d.id] = dag.Succeeded
				r.succeed(ctx, d.id, d.outputs)
			case st.ContinueOnError && !isCanceled(d.err):
				// Downstream steps still run; the record keeps the error.
				states[d.id] = dag.Succeeded
				r.failStep(ctx, d.id, d.err)
				r.index(d.id).Reason = "continue_on_error: the run goes on"
			default:
				states[d.id] = dag.Failed
				if isCanceled(d.err) {
					r.setState(d.id, contract.StateCanceled, "")
				} else {
					r.failStep(ctx, d.id, d.err)
				}
				firstErr = firstOf(firstErr, fmt.Errorf("step %s: %w", d.id, d.err))
				if r.resolved.Spec.FailFast && !stopping {
					stopping = true
					r.cancelRunning(p, running)
				}
			}
		}
		finished = finished[:0]
		if ctx.Err() != nil && !stopping {
			stopping = true
			r.cancelRunning(p, running)
		}
	}
	for _, id := range p.order {
		if !states[id].Terminal() && states[id] != dag.Running {
			reason := "not started: the run stopped early"
			if ctx.Err() != nil {
				reason = "not started: the run was canceled"
			}
			r.setState(id, contract.StateSkipped, reason)
		}
	}
	if firstErr == nil && ctx.Err() != nil {
		return temporal.NewCanceledError("run canceled")
	}
	return firstErr
}

// cancelRunning cancels the steps still running, in definition order: each
// cancel of an activity is a RequestCancelActivityTask command, which a
// replay matches against its history event by the activity's scheduled
// event, so the order must be the same on every worker.
//
// Runs before version 3 cancelled in Go's random map order. No fixed order
// replays their histories any better, while a random one lets a retried
// workflow task find the recorded order again, so they keep it.
func (r *run) cancelRunning(p *phase, running map[string]*stepRun) {
	if r.version < 3 {
		//workflowcheck:ignore
		for _, other := range running {
			other.cancel()
		}
		return
	}
	for _, id := range p.order {
		if sr, ok := running[id]; ok {
			sr.cancel()
		}
	}
}

func firstOf(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func isCanceled(err error) bool {
	var ce *temporal.CanceledError
	return errors.As(err, &ce)
}

// tmplContext is what templates and conditions of a step may read.
func (r *run) tmplContext(stepID string, finally bool) tmpl.Context {
	steps := make(map[string]tmpl.StepState, len(r.status.Steps))
	for _, s := range r.status.Steps {
		if s.State == contract.StatePending {
			continue
		}
		steps[s.ID] = tmpl.StepState{Status: s.State, Outputs: s.Outputs, FanOut: s.FanOut != nil, Items: s.Items}
	}
	return tmpl.Context{
		Params:  r.resolved.Params,
		Steps:   steps,
		Run:     tmpl.RunInfo{ID: r.runID(), Pipeline: r.resolved.Spec.Name},
		Finally: finally,
		Step:    stepID,
	}
}

func (r *run) runID() string { return r.status.RunID }

func (r *run) condition(st spec.Step, finally bool) (bool, error) {
	// A fan-out's condition that reads the item decides each item.
	if strings.TrimSpace(st.If) == "" || st.FansOut() && st.ConditionReadsItem() {
		return true, nil
	}
	return tmpl.EvalCondition(st.If, r.tmplContext(st.ID, finally))
}

// prepare resolves a step's inputs against what ran before it; a step that
// fans out gets its items, whose inputs are resolved as each starts.
func (r *run) prepare(_ workflow.Context, st spec.Step, p *phase) (*stepRun, error) {
	finally := p.finally
	if st.FansOut() {
		if r.version < 4 {
			return nil, badInput("step %s fans out, which runs before version 4 cannot", st.ID)
		}
		items, err := r.items(st, finally)
		if err != nil {
			return nil, err
		}
		if items == nil {
			items = []any{}
		}
		return &stepRun{spec: st, index: r.indexOf(st.ID), items: items, finally: finally}, nil
	}
	if r.version >= 4 && tmpl.HasTemplate(st.RunsOn) {
		v, err := tmpl.ResolveString(st.RunsOn, r.tmplContext(st.ID, finally))
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), "TemplateError", err)
		}
		target, _ := v.(string)
		if _, err := r.nodeQueue(st, target, finally); err != nil {
			return nil, err
		}
		st.RunsOn = target
	}
	if r.version >= 4 && st.Run != nil {
		cmd, err := resolveCommand(st.Run, r.tmplContext(st.ID, finally))
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), "TemplateError", err)
		}
		st.Run = cmd
	}
	var with map[string]any
	if len(st.With) > 0 {
		v, err := tmpl.Resolve(st.With, r.tmplContext(st.ID, finally))
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), "TemplateError", err)
		}
		with, _ = v.(map[string]any)
	}
	return &stepRun{spec: st, index: r.indexOf(st.ID), with: with, finally: finally}, nil
}

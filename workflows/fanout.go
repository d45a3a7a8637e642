package workflows

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/tmpl"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

// Limits that keep a run inside Temporal's: at most 2,000 pending
// activities or child workflows per workflow and 51,200 events in its
// history. A fan-out of more than fanOutChunk items runs them in child
// workflows of fanOutChunk items each, so the run's own history grows by a
// few events per chunk, not per item; the run holds at most
// maxItemsInFlight items and chunks pending across all its fan-outs.
const (
	fanOutChunk      = 500
	maxItemsInFlight = 1000
	// maxFanOutOutputBytes bounds the JSON of a fanned-out step's outputs
	// (and of one chunk's results): they stay in the run's record, which
	// every status query and the run's result carry, and a payload over
	// 2 MiB fails the workflow task that sends it.
	maxFanOutOutputBytes = 1 << 20
)

// itemID names item i of a step, in activity inputs (its working
// directory), errors and the UI.
func itemID(step string, i int) string { return fmt.Sprintf("%s[%d]", step, i) }

// items expands a step's for_each or matrix against what ran before it.
func (r *run) items(st spec.Step, finally bool) ([]any, error) {
	ctx := r.tmplContext(st.ID, finally)
	bound := r.resolved.Spec.FanOutBound()
	list := func(what string, src any) ([]any, error) {
		v, err := tmpl.Resolve(src, ctx)
		if err != nil {
			return nil, temporal.NewNonRetryableApplicationError(err.Error(), "TemplateError", err)
		}
		l, ok := spec.List(v)
		if !ok {
			return nil, badInput("%s gave %s, not a list", what, describe(v))
		}
		return l, nil
	}
	if st.ForEach != nil {
		l, err := list("for_each", st.ForEach)
		if err != nil {
			return nil, err
		}
		if len(l) > bound {
			return nil, badInput("for_each gave %d items, more than max_fan_out (%d)", len(l), bound)
		}
		return l, nil
	}
	names := make([]string, len(st.Matrix))
	lists := make([][]any, len(st.Matrix))
	for i, a := range st.Matrix {
		l, err := list(fmt.Sprintf("matrix axis %q", a.Name), a.Values)
		if err != nil {
			return nil, err
		}
		names[i], lists[i] = a.Name, l
	}
	items, err := spec.Product(names, lists, bound)
	if err != nil {
		return nil, badInput("%v", err)
	}
	return items, nil
}

func badInput(format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	return temporal.NewNonRetryableApplicationError(msg, "BadInput", nil)
}

// describe shows a value briefly in a message.
func describe(v any) string {
	if v == nil {
		return "null"
	}
	b, err := json.Marshal(v)
	s := string(b)
	if err != nil {
		s = fmt.Sprint(v)
	}
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	kind := fmt.Sprintf("%T", v)
	switch v.(type) {
	case string:
		kind = "a string"
	case float64, int:
		kind = "a number"
	case bool:
		kind = "a boolean"
	case map[string]any:
		kind = "a mapping"
	}
	return kind + " " + s
}

// fanOut runs a fanned-out step: its items in the run itself, or in
// chunks of child workflows when there are many, and merges their outputs.
func (r *run) fanOut(ctx workflow.Context, sr *stepRun) (map[string]any, error) {
	st := sr.spec
	rec := r.index(st.ID)
	fo := &contract.FanOut{Items: len(sr.items)}
	rec.FanOut, rec.Items = fo, sr.items
	limit := st.MaxParallel
	if limit <= 0 {
		limit = r.maxParallel()
	}
	t := &tally{st: &st, fo: fo, items: sr.items}
	var results []contract.ItemResult
	if len(sr.items) <= fanOutChunk {
		ir := r.itemRunner(sr, limit)
		results = ir.run(ctx, sr.items, t)
	} else {
		results = r.runChunks(ctx, sr, limit, t)
	}
	for _, res := range results {
		rec.Attempt = max(rec.Attempt, res.Attempt)
	}
	return t.conclude(ctx, rec, results)
}

func (r *run) maxParallel() int {
	if n := r.resolved.Spec.MaxParallel; n > 0 {
		return n
	}
	return defaultMaxParallel
}

// tally counts the items of one fan-out as they end and decides the step.
type tally struct {
	st    *spec.Step
	fo    *contract.FanOut
	items []any
	// chunk marks a chunk's tally, which sees only its own items: it
	// gives up after more than chunkLimit failures, when the step has
	// failed whatever the other chunks do.
	chunk      bool
	chunkLimit int
}

func (t *tally) started(n int) { t.fo.Running += n }

func (t *tally) done(i int, res contract.ItemResult) {
	switch res.State {
	case contract.ItemSucceeded:
		t.fo.Succeeded++
		if res.Cached {
			t.fo.Cached++
		}
	case contract.ItemFailed:
		t.fo.Failed++
		if len(t.fo.Failures) < contract.MaxListedFailures {
			t.fo.Failures = append(t.fo.Failures, contract.ItemFailure{Index: i, Item: t.items[i], Error: res.Error})
		}
	case contract.ItemSkipped:
		t.fo.Skipped++
	case contract.ItemCanceled:
		t.fo.Canceled++
	}
}

// hopeless reports that the step can no longer succeed: too many items
// failed for the rest to make up min_success. Once true it stays true, as
// items skipped later lower what is required by no more than what can
// still succeed.
func (t *tally) hopeless() bool {
	if t.chunk {
		return t.fo.Failed > t.chunkLimit
	}
	ran := t.fo.Items - t.fo.Skipped
	return ran-t.fo.Failed-t.fo.Canceled < t.st.RequiredSuccesses(ran)
}

// maxFailures is how many failures the step can take: a chunk that sees
// more stops, since the step has failed whatever the others do.
func (t *tally) maxFailures() int {
	if t.st.MinSuccess <= 0 {
		return 0
	}
	return t.fo.Items - min(t.st.RequiredSuccesses(t.fo.Items), t.fo.Items)
}

// conclude merges the items' outputs and decides how the step ended.
func (t *tally) conclude(ctx workflow.Context, rec *contract.StepStatus, results []contract.ItemResult) (map[string]any, error) {
	t.fo.Running = 0
	// The list is rebuilt in item order: items end in any order.
	t.fo.Failures = t.fo.Failures[:0]
	for i, res := range results {
		if res.State == contract.ItemFailed && len(t.fo.Failures) < contract.MaxListedFailures {
			t.fo.Failures = append(t.fo.Failures, contract.ItemFailure{Index: i, Item: t.items[i], Error: res.Error})
		}
	}
	outputs := mergeOutputs(results)
	if b, err := json.Marshal(outputs); err != nil || len(b) > maxFanOutOutputBytes {
		size := "cannot be encoded"
		if err == nil {
			size = fmt.Sprintf("are %d bytes, more than the %d a run's record can hold", len(b), maxFanOutOutputBytes)
		}
		return nil, temporal.NewNonRetryableApplicationError(
			fmt.Sprintf("the outputs of %d items %s: have items store large results as artifacts and output their pointers", len(results), size),
			"FanOutTooLarge", nil)
	}
	rec.Outputs = outputs
	if ctx.Err() != nil {
		return nil, temporal.NewCanceledError("fan-out canceled")
	}
	ran := t.fo.Items - t.fo.Skipped
	need := t.st.RequiredSuccesses(ran)
	if t.fo.Succeeded < need {
		return nil, temporal.NewNonRetryableApplicationError(t.failureMessage(ran, need), "FanOutFailed", nil)
	}
	if t.fo.Failed > 0 {
		rec.Reason = fmt.Sprintf("%d of %d items failed; %s holds (%d succeeded)", t.fo.Failed, ran, t.st.DescribeMinSuccess(), t.fo.Succeeded)
	}
	return outputs, nil
}

func (t *tally) failureMessage(ran, need int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d of %d items succeeded", t.fo.Succeeded, ran)
	if t.st.MinSuccess > 0 {
		fmt.Fprintf(&b, ", %s needs %d", t.st.DescribeMinSuccess(), need)
	}
	if t.fo.Failed > 0 {
		fmt.Fprintf(&b, "; %d failed", t.fo.Failed)
	}
	if t.fo.Canceled > 0 {
		fmt.Fprintf(&b, ", %d canceled", t.fo.Canceled)
	}
	for k, f := range t.fo.Failures {
		if k == 3 {
			fmt.Fprintf(&b, "; and %d more", t.fo.Failed-k)
			break
		}
		fmt.Fprintf(&b, "; item %d (%s): %s", f.Index, shortItem(f.Item), f.Error)
	}
	return b.String()
}

func shortItem(v any) string {
	s, err := tmpl.Text(v)
	if err != nil {
		s = fmt.Sprint(v)
	}
	if len(s) > 40 {
		s = s[:37] + "..."
	}
	return s
}

// mergeOutputs turns the items' outputs into the step's: each key a list
// of the items' values in item order, null where an item did not produce
// it (it failed, was skipped or has no such output).
func mergeOutputs(results []contract.ItemResult) map[string]any {
	var keys []string
	for _, res := range results {
		//workflowcheck:ignore the keys are sorted before anything uses them
		for k := range res.Outputs {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	out := make(map[string]any, len(keys))
	for _, k := range keys {
		col := make([]any, len(results))
		for i, res := range results {
			col[i] = res.Outputs[k]
		}
		out[k] = col
	}
	return out
}

// itemRunner runs the items of one step, in the run or in a chunk.
type itemRunner struct {
	step    spec.Step
	base    tmpl.Context
	input   contract.StepInput
	version workflow.Version
	// offset is the index of the first item, for ids and messages.
	offset int
	limit  int
	// perItemIf: the step's condition reads the item.
	perItemIf bool
	// queue returns the task queue of a provision step's node.
	queue func(provision string) (string, error)
	// replace, when set, replaces a lost node as the run does for steps.
	replace  func(ctx workflow.Context, provision, item, queue string, lost error) error
	upstream string
	noCache  bool
	// acquire and release share the run's budget of pending items.
	acquire func() bool
	release func()
	waitFor func() bool
}

// itemRunner builds the runner of a fan-out run by the run itself.
func (r *run) itemRunner(sr *stepRun, limit int) *itemRunner {
	st := sr.spec
	return &itemRunner{
		step: st, base: r.tmplContext(st.ID, sr.finally), input: r.stepInput(sr), version: r.version,
		limit: limit, perItemIf: st.ConditionReadsItem(),
		queue: func(id string) (string, error) { return r.nodeQueue(st, id, sr.finally) },
		replace: func(ctx workflow.Context, prov, item, queue string, lost error) error {
			return r.replaceNodeOnce(ctx, prov, item, queue, lost)
		},
		upstream: r.upstreamDigest(st),
		noCache:  r.input.NoCache,
		acquire: func() bool {
			if r.itemSlots >= maxItemsInFlight {
				return false
			}
			r.itemSlots++
			return true
		},
		release: func() { r.itemSlots-- },
		waitFor: func() bool { return r.itemSlots < maxItemsInFlight },
	}
}

// upstreamDigest is the digest of the outputs of a step's needs, which
// carry their artifacts' digests: part of every item's cache key.
func (r *run) upstreamDigest(st spec.Step) string {
	up := map[string]any{}
	for _, n := range st.Needs {
		up[n] = r.index(n).Outputs
	}
	b, _ := json.Marshal(up)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// flight is one item in progress.
type flight struct {
	i      int
	cancel workflow.CancelFunc
}

// run runs items with at most limit in flight, launching them in item
// order, and stops launching once t says the step cannot succeed, when it
// cancels what is in flight, in item order. Items never launched end
// canceled.
func (ir *itemRunner) run(ctx workflow.Context, items []any, t *tally) []contract.ItemResult {
	results := make([]contract.ItemResult, len(items))
	var inflight []flight
	sel := workflow.NewSelector(ctx)
	next, stopping := 0, false
	finish := func(i int, res contract.ItemResult) {
		results[i] = res
		t.done(i, res)
	}
	stop := func() {
		if stopping {
			return
		}
		stopping = true
		for _, f := range inflight {
			f.cancel()
		}
	}
	for {
		for !stopping && ctx.Err() == nil && next < len(items) && len(inflight) < ir.limit && ir.acquire() {
			i := next
			next++
			ictx, cancel := workflow.WithCancel(ctx)
			l := ir.start(ictx, ir.offset+i, items[i])
			if l.fut == nil {
				cancel()
				ir.release()
				finish(i, l.now)
				if t.hopeless() {
					stop()
				}
				continue
			}
			t.started(1)
			inflight = append(inflight, flight{i: i, cancel: cancel})
			sel.AddFuture(l.fut, func(f workflow.Future) {
				inflight = slices.DeleteFunc(inflight, func(fl flight) bool { return fl.i == i })
				ir.release()
				t.started(-1)
				finish(i, l.result(f))
			})
		}
		if len(inflight) == 0 {
			if stopping || ctx.Err() != nil || next >= len(items) {
				break
			}
			// Other fan-outs of the run hold every slot: wait for one.
			_ = workflow.Await(ctx, ir.waitFor)
			continue
		}
		sel.Select(ctx)
		if t.hopeless() || ctx.Err() != nil {
			stop()
		}
	}
	for i := next; i < len(items); i++ {
		finish(i, contract.ItemResult{State: contract.ItemCanceled, Error: "not started: the step stopped early"})
	}
	return results
}

// launch is a started item: now when it ended before running (skipped by
// its condition, or a template error), else a future that result reads.
type launch struct {
	now    contract.ItemResult
	fut    workflow.Future
	result func(workflow.Future) contract.ItemResult
}

// start launches item i. An item that is one activity call is scheduled
// here, with no coroutine of its own: a chunk keeps hundreds in flight.
func (ir *itemRunner) start(ctx workflow.Context, i int, item any) launch {
	id := itemID(ir.step.ID, i)
	tc := ir.base
	tc.Step, tc.Item, tc.HasItem = id, item, true
	fail := func(err error) launch {
		return launch{now: contract.ItemResult{State: contract.ItemFailed, Error: rootMessage(err)}}
	}
	if ir.perItemIf {
		ok, err := tmpl.EvalCondition(ir.step.If, tc)
		if err != nil {
			return fail(err)
		}
		if !ok {
			return launch{now: contract.ItemResult{State: contract.ItemSkipped}}
		}
	}
	var with map[string]any
	if len(ir.step.With) > 0 {
		v, err := tmpl.Resolve(ir.step.With, tc)
		if err != nil {
			return fail(err)
		}
		with, _ = v.(map[string]any)
	}
	prov, queue := "", ""
	if target := ir.step.RunsOn; target != "" {
		if tmpl.HasTemplate(target) {
			v, err := tmpl.ResolveString(target, tc)
			if err != nil {
				return fail(err)
			}
			s, ok := v.(string)
			if !ok {
				return fail(fmt.Errorf("runs_on gave %s, not a step id", describe(v)))
			}
			target = s
		}
		q, err := ir.queue(target)
		if err != nil {
			return fail(err)
		}
		prov, queue = target, q
	}
	in := ir.input
	in.StepID, in.With = id, with
	if ir.step.Run != nil {
		cmd, err := resolveCommand(ir.step.Run, tc)
		if err != nil {
			return fail(err)
		}
		in.Command = cmd
	}
	cached := ir.step.Cache && !ir.noCache
	if prov == "" && !cached {
		fut := workflow.ExecuteActivity(stepOptions(ctx, ir.step, ir.version, "", id), contract.StepActivityName(in.Uses), in)
		return launch{fut: fut, result: func(f workflow.Future) contract.ItemResult {
			var res contract.StepResult
			return itemOutcome(res, f.Get(ctx, &res))
		}}
	}
	fut, set := workflow.NewFuture(ctx)
	workflow.Go(ctx, func(gctx workflow.Context) {
		set.SetValue(ir.perform(gctx, in, prov, queue, cached))
	})
	return launch{fut: fut, result: func(f workflow.Future) contract.ItemResult {
		var res contract.ItemResult
		if err := f.Get(ctx, &res); err != nil {
			return contract.ItemResult{State: contract.ItemFailed, Error: rootMessage(err)}
		}
		return res
	}}
}

func itemOutcome(res contract.StepResult, err error) contract.ItemResult {
	switch {
	case err == nil:
		return contract.ItemResult{State: contract.ItemSucceeded, Outputs: res.Outputs, Attempt: res.Attempt}
	case isCanceled(err):
		return contract.ItemResult{State: contract.ItemCanceled, Error: "canceled"}
	}
	return contract.ItemResult{State: contract.ItemFailed, Error: rootMessage(err), Attempt: attemptOf(err, 1)}
}

// perform runs an item that looks up the cache or runs on the node of
// provision step prov, whose task queue is q.
func (ir *itemRunner) perform(ctx workflow.Context, in contract.StepInput, prov, q string, cached bool) contract.ItemResult {
	key := ""
	if cached {
		b, err := json.Marshal(struct {
			Uses     string         `json:"uses"`
			Command  *spec.Command  `json:"command,omitempty"`
			With     map[string]any `json:"with"`
			Upstream string         `json:"upstream"`
		}{in.Uses, in.Command, in.With, ir.upstream})
		if err != nil {
			return contract.ItemResult{State: contract.ItemFailed, Error: "cache key: " + err.Error()}
		}
		sum := sha256.Sum256(b)
		key = hex.EncodeToString(sum[:])
		// Fan-outs exist from version 4, after CacheLookup (3): an item's
		// key takes the content of its file and URL inputs in too.
		var hit contract.CacheEntry
		lookup := contract.CacheLookupInput{Key: key, With: in.With}
		if err := workflow.ExecuteActivity(lookupOptions(ctx), contract.CacheLookupName, lookup).Get(ctx, &hit); err != nil {
			return contract.ItemResult{State: contract.ItemFailed, Error: "cache lookup: " + rootMessage(err)}
		}
		if hit.Key == "" {
			return contract.ItemResult{State: contract.ItemFailed, Error: "cache lookup returned no key"}
		}
		key = hit.Key
		if hit.Found {
			return contract.ItemResult{State: contract.ItemSucceeded, Outputs: hit.Outputs, Cached: true}
		}
	}
	var res contract.StepResult
	for replaced := 0; ; replaced++ {
		err := workflow.ExecuteActivity(stepOptions(ctx, ir.step, ir.version, q, in.StepID), contract.StepActivityName(in.Uses), in).Get(ctx, &res)
		if err == nil {
			break
		}
		if prov == "" || !nodeLost(err) || ctx.Err() != nil || ir.replace == nil || replaced >= maxNodeReplacements {
			return itemOutcome(res, err)
		}
		if rerr := ir.replace(ctx, prov, in.StepID, q, err); rerr != nil {
			return contract.ItemResult{State: contract.ItemFailed, Error: fmt.Sprintf("node of %s lost (%s) and could not be replaced: %s", prov, rootMessage(err), rootMessage(rerr))}
		}
		nq, qerr := ir.queue(prov)
		if qerr != nil {
			return contract.ItemResult{State: contract.ItemFailed, Error: rootMessage(qerr)}
		}
		q = nq
	}
	if key != "" {
		if err := workflow.ExecuteActivity(quickOptions(ctx), contract.CachePutName, contract.CacheEntry{Key: key, Found: true, Outputs: res.Outputs}).Get(ctx, nil); err != nil {
			workflow.GetLogger(ctx).Warn("cache store failed", "item", in.StepID, "error", err)
		}
	}
	return contract.ItemResult{State: contract.ItemSucceeded, Outputs: res.Outputs, Attempt: res.Attempt}
}

// runChunks runs a large fan-out in child workflows of fanOutChunk items,
// as many at once as the step's max_parallel fills, each with its share of
// it. Chunks start in item order and are cancelled in that order.
func (r *run) runChunks(ctx workflow.Context, sr *stepRun, limit int, t *tally) []contract.ItemResult {
	st := sr.spec
	items := sr.items
	n := len(items)
	chunks := (n + fanOutChunk - 1) / fanOutChunk
	conc := min(chunks, max(1, (limit+fanOutChunk-1)/fanOutChunk))
	per := max(1, min(fanOutChunk, limit/conc))
	t.fo.Chunks = chunks
	results := make([]contract.ItemResult, n)
	base := contract.ChunkInput{
		RunID: r.status.RunID, Pipeline: r.resolved.Spec.Name, SpecHash: r.resolved.Hash, StartedBy: r.input.StartedBy,
		Step: st, Params: r.resolved.Params, Steps: r.readState(st, sr.finally), Queues: r.queues(),
		Upstream: r.upstreamDigest(st), MaxParallel: per, MaxFailures: t.maxFailures(), NoCache: r.input.NoCache, Version: int(r.version),
	}
	type running struct {
		c      int
		cancel workflow.CancelFunc
	}
	var inflight []running
	sel := workflow.NewSelector(ctx)
	next, stopping := 0, false
	stop := func() {
		if !stopping {
			stopping = true
			for _, c := range inflight {
				c.cancel()
			}
		}
	}
	for {
		for !stopping && ctx.Err() == nil && next < chunks && len(inflight) < conc && r.itemSlots < maxItemsInFlight {
			c := next
			next++
			lo, hi := c*fanOutChunk, min(n, (c+1)*fanOutChunk)
			in := base
			in.Offset, in.Items = lo, items[lo:hi]
			cctx, cancel := workflow.WithCancel(ctx)
			cctx = workflow.WithChildOptions(cctx, workflow.ChildWorkflowOptions{
				WorkflowID: fmt.Sprintf("%s.%s.%d", r.status.RunID, st.ID, c),
				// The chunk cancels its items and waits for those that
				// heartbeat, as the run does for its own steps.
				WaitForCancellation: true,
				StaticSummary:       fmt.Sprintf("%s items %d to %d", st.ID, lo, hi-1),
			})
			r.itemSlots++
			t.started(hi - lo)
			inflight = append(inflight, running{c: c, cancel: cancel})
			fut := workflow.ExecuteChildWorkflow(cctx, contract.FanOutChunkName, in)
			sel.AddFuture(fut, func(f workflow.Future) {
				inflight = slices.DeleteFunc(inflight, func(x running) bool { return x.c == c })
				r.itemSlots--
				t.started(-(hi - lo))
				var res contract.ChunkResult
				err := f.Get(ctx, &res)
				for k := lo; k < hi; k++ {
					switch {
					case err != nil && isCanceled(err):
						results[k] = contract.ItemResult{State: contract.ItemCanceled, Error: "canceled"}
					case err != nil:
						results[k] = contract.ItemResult{State: contract.ItemFailed, Error: fmt.Sprintf("chunk of items %d to %d: %s", lo, hi-1, rootMessage(err))}
					case k-lo < len(res.Items):
						results[k] = res.Items[k-lo]
					default:
						results[k] = contract.ItemResult{State: contract.ItemFailed, Error: "missing from its chunk's result"}
					}
					t.done(k, results[k])
				}
			})
		}
		if len(inflight) == 0 {
			if stopping || ctx.Err() != nil || next >= chunks {
				break
			}
			_ = workflow.Await(ctx, func() bool { return r.itemSlots < maxItemsInFlight })
			continue
		}
		sel.Select(ctx)
		if t.hopeless() || ctx.Err() != nil {
			stop()
		}
	}
	for k := next * fanOutChunk; k < n; k++ {
		results[k] = contract.ItemResult{State: contract.ItemCanceled, Error: "not started: the step stopped early"}
		t.done(k, results[k])
	}
	return results
}

// readState is the state of the steps a step's templates read, for a
// chunk of its items to resolve them.
func (r *run) readState(st spec.Step, finally bool) map[string]tmpl.StepState {
	all := r.tmplContext(st.ID, finally).Steps
	ids, whole := st.ReadsSteps()
	if whole {
		return all
	}
	out := make(map[string]tmpl.StepState, len(ids))
	for _, id := range ids {
		if s, ok := all[id]; ok {
			out[id] = s
		}
	}
	return out
}

// queues are the task queues of the run's nodes by provision step.
func (r *run) queues() map[string]string {
	out := map[string]string{}
	for _, s := range r.status.Steps {
		if q, ok := s.Outputs["task_queue"].(string); ok && s.Uses == spec.ProvisionType {
			out[s.ID] = q
		}
	}
	return out
}

// nodeQueue is the task queue of the node that provision step id started,
// which step st may run on: id must be a provision step upstream of it.
func (r *run) nodeQueue(st spec.Step, id string, finally bool) (string, error) {
	i := r.indexOf(id)
	if i < 0 || r.status.Steps[i].Uses != spec.ProvisionType {
		return "", badInput("runs_on %q: not a provision step of this pipeline", id)
	}
	if !finally && !r.main.graph.IsUpstream(id, st.ID) {
		return "", badInput("runs_on %q: not upstream of step %s; add it to needs", id, st.ID)
	}
	q, _ := r.status.Steps[i].Outputs["task_queue"].(string)
	if q == "" {
		return "", badInput("runs_on %s: that step has no task_queue output", id)
	}
	return q, nil
}

// replaceNodeOnce replaces the lost node of provision step prov unless
// another item already did since queue was read: several items of a
// fan-out on one node lose it together, and one replacement is enough.
func (r *run) replaceNodeOnce(ctx workflow.Context, prov, item, queue string, lost error) error {
	if err := workflow.Await(ctx, func() bool { return !r.replacing[prov] }); err != nil {
		return err
	}
	if q, _ := r.index(prov).Outputs["task_queue"].(string); q != queue {
		return nil
	}
	r.replacing[prov] = true
	defer delete(r.replacing, prov)
	return r.replaceNode(ctx, prov, item, lost)
}

// stepOptions maps a step's retry, timeout and heartbeat onto Temporal's
// activity options, on task queue queue ("" for the run's own); nothing
// here is fixed except the documented defaults.
func stepOptions(ctx workflow.Context, st spec.Step, version workflow.Version, queue, summary string) workflow.Context {
	timeout := time.Duration(st.Timeout)
	if timeout <= 0 {
		timeout = defaultStepTimeout
	}
	policy := &temporal.RetryPolicy{
		InitialInterval:    defaultInitialRetry,
		BackoffCoefficient: defaultBackoff,
		MaximumInterval:    defaultMaxRetryDelay,
		MaximumAttempts:    defaultMaxAttempts,
	}
	if rt := st.Retry; rt != nil {
		if rt.MaxAttempts > 0 {
			policy.MaximumAttempts = int32(rt.MaxAttempts)
		}
		if rt.InitialInterval > 0 {
			policy.InitialInterval = time.Duration(rt.InitialInterval)
		}
		if rt.Backoff > 0 {
			policy.BackoffCoefficient = rt.Backoff
		}
		if rt.MaxInterval > 0 {
			policy.MaximumInterval = time.Duration(rt.MaxInterval)
		}
		policy.NonRetryableErrorTypes = append([]string(nil), rt.NonRetryable...)
	}
	if policy.MaximumInterval < policy.InitialInterval {
		policy.MaximumInterval = policy.InitialInterval
	}
	ao := workflow.ActivityOptions{
		StartToCloseTimeout: timeout,
		HeartbeatTimeout:    time.Duration(st.Heartbeat),
		RetryPolicy:         policy,
		Summary:             summary,
		// From version 3 a cancelled step that heartbeats is waited for
		// until it has stopped, so that a failed run's finally steps (a
		// node's teardown) never race the processes still running on it.
		// One that does not heartbeat cannot hear the cancellation, and
		// waiting for it could take its whole timeout.
		WaitForCancellation: version >= 3 && st.Heartbeat > 0,
	}
	if queue != "" {
		ao.TaskQueue = queue
		// A task nobody picks up means the node is gone (a retry after a
		// missed heartbeat lands on the dead node's queue): give up on it
		// and let the interpreter replace the node.
		ao.ScheduleToStartTimeout = nodeStartTimeout(time.Duration(st.Heartbeat))
	}
	return workflow.WithActivityOptions(ctx, ao)
}

func quickOptions(ctx workflow.Context) workflow.Context {
	return workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: 30 * time.Second,
		RetryPolicy:         &temporal.RetryPolicy{MaximumAttempts: 5},
	})
}

// resolveCommand resolves the templates of a run: command: its shell
// string or arguments, its environment values and its working directory.
// Values are interpolated as text, as in any longer string.
func resolveCommand(c *spec.Command, ctx tmpl.Context) (*spec.Command, error) {
	text := func(s string) (string, error) {
		v, err := tmpl.ResolveString(s, ctx)
		if err != nil {
			return "", err
		}
		return tmpl.Text(v)
	}
	out := &spec.Command{}
	var err error
	if out.Shell, err = text(c.Shell); err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	for i, a := range c.Argv {
		s, err := text(a)
		if err != nil {
			return nil, fmt.Errorf("run[%d]: %w", i, err)
		}
		out.Argv = append(out.Argv, s)
	}
	if len(c.Env) > 0 {
		out.Env = make(map[string]string, len(c.Env))
		for _, k := range stepio.SortedKeys(c.Env) {
			if out.Env[k], err = text(c.Env[k]); err != nil {
				return nil, fmt.Errorf("env.%s: %w", k, err)
			}
		}
	}
	if out.Workdir, err = text(c.Workdir); err != nil {
		return nil, fmt.Errorf("workdir: %w", err)
	}
	return out, nil
}

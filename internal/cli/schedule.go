package cli

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	commonpb "go.temporal.io/api/common/v1"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/pipeline/spec"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
)

// Schedules Gauntlet owns are named schedulePrefix + pipeline name, so sync
// can tell them from schedules people made by hand.
const (
	schedulePrefix = "gauntlet-"
	scheduleHash   = "gauntlet_schedule_hash"
)

func scheduleID(arg string) string {
	if strings.HasPrefix(arg, schedulePrefix) {
		return arg
	}
	return schedulePrefix + arg
}

var overlapPolicies = map[string]enumspb.ScheduleOverlapPolicy{
	spec.OverlapSkip:           enumspb.SCHEDULE_OVERLAP_POLICY_SKIP,
	spec.OverlapBufferOne:      enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ONE,
	spec.OverlapBufferAll:      enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ALL,
	spec.OverlapCancelOther:    enumspb.SCHEDULE_OVERLAP_POLICY_CANCEL_OTHER,
	spec.OverlapTerminateOther: enumspb.SCHEDULE_OVERLAP_POLICY_TERMINATE_OTHER,
	spec.OverlapAllowAll:       enumspb.SCHEDULE_OVERLAP_POLICY_ALLOW_ALL,
}

// desiredSchedule is what a pipeline's schedule block asks of the server.
type desiredSchedule struct {
	Pipeline      string         `json:"pipeline"`
	Cron          string         `json:"cron"`
	Timezone      string         `json:"timezone"`
	Overlap       string         `json:"overlap"`
	CatchupWindow time.Duration  `json:"catchup_window"`
	Params        map[string]any `json:"params,omitempty"`
	TaskQueue     string         `json:"task_queue"`
}

func (d desiredSchedule) hash() string {
	b, _ := json.Marshal(d)
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func (d desiredSchedule) action() *client.ScheduleWorkflowAction {
	return &client.ScheduleWorkflowAction{
		// Temporal appends the scheduled time to this id, so a run's id
		// says when it was due and a repeated trigger for the same time
		// cannot start a second run.
		ID:        d.Pipeline,
		Workflow:  contract.PipelineName,
		Args:      []any{contract.PipelineInput{Pipeline: d.Pipeline, Params: d.Params, StartedBy: "schedule"}},
		TaskQueue: d.TaskQueue,
		Memo:      map[string]any{scheduleHash: d.hash()},
	}
}

func (d desiredSchedule) spec() client.ScheduleSpec {
	return client.ScheduleSpec{CronExpressions: []string{d.Cron}, TimeZoneName: d.Timezone}
}

// desiredSchedules reads the schedule blocks of every pipeline in dir.
func (a *app) desiredSchedules(dir string) (map[string]desiredSchedule, error) {
	files, err := pipelineFiles([]string{dir})
	if err != nil {
		return nil, err
	}
	out := map[string]desiredSchedule{}
	for _, f := range files {
		sp, diags := spec.Load(f, steps.Catalog{})
		if len(diags) > 0 {
			return nil, withCode(ExitInvalid, fmt.Errorf("pipeline %s is invalid:\n%s", f, diags.Error()))
		}
		if sp.Schedule == nil {
			continue
		}
		if _, err := spec.ResolveParams(sp, sp.Schedule.Params); err != nil {
			return nil, withCode(ExitInvalid, fmt.Errorf("%s: schedule params: %w", f, err))
		}
		out[scheduleID(sp.Name)] = desiredSchedule{
			Pipeline: sp.Name, Cron: sp.Schedule.Cron, Timezone: sp.Schedule.Timezone,
			Overlap: sp.Schedule.Overlap, CatchupWindow: time.Duration(sp.Schedule.CatchupWindow),
			Params: sp.Schedule.Params, TaskQueue: a.taskQueue,
		}
	}
	return out, nil
}

func (a *app) scheduleCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Manage Temporal Schedules that start pipelines (nightly retraining)",
	}
	var dir string
	cmd.PersistentFlags().StringVar(&dir, "pipelines", "", "pipelines directory (env "+EnvPipelines+")")
	withClient := func(f func(ctx context.Context, c client.Client, args []string) error) func(*cobra.Command, []string) error {
		return func(cmd *cobra.Command, args []string) error {
			c, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			return f(cmd.Context(), c, args)
		}
	}
	simple := func(use, short string, act func(ctx context.Context, h client.ScheduleHandle) error, done string) *cobra.Command {
		return &cobra.Command{
			Use: use + " PIPELINE", Short: short, Args: exactArgs(1),
			RunE: withClient(func(ctx context.Context, c client.Client, args []string) error {
				h := c.ScheduleClient().GetHandle(ctx, scheduleID(args[0]))
				if err := act(ctx, h); err != nil {
					return scheduleErr(args[0], err)
				}
				if a.jsonOut() {
					return a.printJSON(map[string]string{"schedule": h.GetID(), "done": done})
				}
				fmt.Fprintf(a.stdout, "%s %s\n", h.GetID(), done)
				return nil
			}),
		}
	}
	var dryRun, prune bool
	sync := &cobra.Command{
		Use:   "sync",
		Short: "Make the server's schedules match the schedule: blocks in pipelines/ (idempotent)",
		Args:  noArgs,
		RunE: withClient(func(ctx context.Context, c client.Client, _ []string) error {
			changes, err := a.syncSchedules(ctx, c, a.pipelinesDir(dir), dryRun, prune)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(changes)
			}
			if len(changes) == 0 {
				fmt.Fprintln(a.stdout, "schedules are in sync")
			}
			for _, ch := range changes {
				fmt.Fprintf(a.stdout, "%-8s %s\n", ch.Action, ch.Schedule)
			}
			return nil
		}),
	}
	sync.Flags().BoolVar(&dryRun, "dry-run", false, "print the changes without making them")
	sync.Flags().BoolVar(&prune, "prune", true, "delete gauntlet- schedules whose pipeline no longer has a schedule block")

	create := &cobra.Command{
		Use:   "create PIPELINE",
		Short: "Create the schedule a pipeline's schedule: block describes",
		Args:  exactArgs(1),
		RunE: withClient(func(ctx context.Context, c client.Client, args []string) error {
			want, err := a.desiredSchedules(a.pipelinesDir(dir))
			if err != nil {
				return err
			}
			d, ok := want[scheduleID(args[0])]
			if !ok {
				return withCode(ExitNotFound, fmt.Errorf("pipeline %s has no schedule: block in %s", args[0], a.pipelinesDir(dir)))
			}
			if err := createSchedule(ctx, c, scheduleID(args[0]), d); err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "%s created (%s %s)\n", scheduleID(args[0]), d.Cron, d.Timezone)
			return nil
		}),
	}
	list := &cobra.Command{
		Use: "list", Short: "List Gauntlet's schedules", Args: noArgs,
		RunE: withClient(func(ctx context.Context, c client.Client, _ []string) error {
			entries, err := listSchedules(ctx, c)
			if err != nil {
				return err
			}
			if a.jsonOut() {
				return a.printJSON(entries)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "SCHEDULE\tPAUSED\tNEXT")
			for _, e := range entries {
				fmt.Fprintf(tw, "%s\t%v\t%s\n", e.ID, e.Paused, e.Next)
			}
			return tw.Flush()
		}),
	}
	describe := &cobra.Command{
		Use: "describe PIPELINE", Short: "Show a schedule's spec, state and recent runs", Args: exactArgs(1),
		RunE: withClient(func(ctx context.Context, c client.Client, args []string) error {
			d, err := c.ScheduleClient().GetHandle(ctx, scheduleID(args[0])).Describe(ctx)
			if err != nil {
				return scheduleErr(args[0], err)
			}
			info := map[string]any{
				"schedule": scheduleID(args[0]), "paused": d.Schedule.State.Paused, "note": d.Schedule.State.Note,
				"next": d.Info.NextActionTimes, "actions": d.Info.NumActions, "missed_catchup": d.Info.NumActionsMissedCatchupWindow,
				"skipped_overlap": d.Info.NumActionsSkippedOverlap, "overlap": strings.ToLower(d.Schedule.Policy.Overlap.String()),
				"catchup_window": d.Schedule.Policy.CatchupWindow.String(),
			}
			var recent []string
			for _, r := range d.Info.RecentActions {
				if r.StartWorkflowResult != nil {
					recent = append(recent, r.StartWorkflowResult.WorkflowID)
				}
			}
			info["recent_runs"] = recent
			if a.jsonOut() {
				return a.printJSON(info)
			}
			keys := make([]string, 0, len(info))
			for k := range info {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintf(a.stdout, "%-16s %v\n", k, info[k])
			}
			return nil
		}),
	}
	var start, end string
	backfill := &cobra.Command{
		Use: "backfill PIPELINE --start T --end T", Short: "Run the schedule's missed times in a range", Args: exactArgs(1),
		RunE: withClient(func(ctx context.Context, c client.Client, args []string) error {
			s, err1 := time.Parse(time.RFC3339, start)
			e, err2 := time.Parse(time.RFC3339, end)
			if err1 != nil || err2 != nil || !e.After(s) {
				return usagef("--start and --end must be RFC 3339 times with end after start")
			}
			h := c.ScheduleClient().GetHandle(ctx, scheduleID(args[0]))
			if err := h.Backfill(ctx, client.ScheduleBackfillOptions{Backfill: []client.ScheduleBackfill{{Start: s, End: e, Overlap: enumspb.SCHEDULE_OVERLAP_POLICY_BUFFER_ALL}}}); err != nil {
				return scheduleErr(args[0], err)
			}
			fmt.Fprintf(a.stdout, "%s backfill requested for %s … %s\n", h.GetID(), s.Format(time.RFC3339), e.Format(time.RFC3339))
			return nil
		}),
	}
	backfill.Flags().StringVar(&start, "start", "", "start of the range (RFC 3339)")
	backfill.Flags().StringVar(&end, "end", "", "end of the range (RFC 3339)")

	cmd.AddCommand(sync, create, list, describe, backfill,
		simple("pause", "Pause a schedule", func(ctx context.Context, h client.ScheduleHandle) error {
			return h.Pause(ctx, client.SchedulePauseOptions{Note: "paused by " + a.user("")})
		}, "paused"),
		simple("unpause", "Resume a paused schedule", func(ctx context.Context, h client.ScheduleHandle) error {
			return h.Unpause(ctx, client.ScheduleUnpauseOptions{Note: "unpaused by " + a.user("")})
		}, "unpaused"),
		simple("trigger", "Start a run now", func(ctx context.Context, h client.ScheduleHandle) error {
			return h.Trigger(ctx, client.ScheduleTriggerOptions{})
		}, "triggered"),
		simple("delete", "Delete a schedule (runs already started go on)", func(ctx context.Context, h client.ScheduleHandle) error {
			return h.Delete(ctx)
		}, "deleted"),
	)
	return cmd
}

func scheduleErr(name string, err error) error {
	var nf *serviceerror.NotFound
	if errors.As(err, &nf) {
		return withCode(ExitNotFound, fmt.Errorf("no schedule %s", scheduleID(name)))
	}
	return fmt.Errorf("schedule %s: %w", scheduleID(name), err)
}

func createSchedule(ctx context.Context, c client.Client, id string, d desiredSchedule) error {
	_, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{
		ID:            id,
		Spec:          d.spec(),
		Action:        d.action(),
		Overlap:       overlapPolicies[d.Overlap],
		CatchupWindow: d.CatchupWindow,
		Note:          "managed by gauntlet schedule sync",
	})
	if err != nil {
		return fmt.Errorf("create schedule %s: %w", id, err)
	}
	return nil
}

// ScheduleChange is one action of `schedule sync`.
type ScheduleChange struct {
	Action   string `json:"action"` // create, update, delete
	Schedule string `json:"schedule"`
}

type scheduleEntry struct {
	ID     string    `json:"id"`
	Paused bool      `json:"paused"`
	Next   time.Time `json:"next,omitempty"`
}

func listSchedules(ctx context.Context, c client.Client) ([]scheduleEntry, error) {
	it, err := c.ScheduleClient().List(ctx, client.ScheduleListOptions{PageSize: 100})
	if err != nil {
		return nil, fmt.Errorf("list schedules: %w", err)
	}
	var out []scheduleEntry
	for it.HasNext() {
		e, err := it.Next()
		if err != nil {
			return nil, fmt.Errorf("list schedules: %w", err)
		}
		if !strings.HasPrefix(e.ID, schedulePrefix) {
			continue
		}
		se := scheduleEntry{ID: e.ID, Paused: e.Paused}
		if len(e.NextActionTimes) > 0 {
			se.Next = e.NextActionTimes[0]
		}
		out = append(out, se)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// syncSchedules creates, updates and deletes so that the server matches the
// files. The desired state's hash rides in the action's memo: the server
// rewrites cron strings into calendar specs, so comparing specs would see a
// difference every time and sync would never be idempotent.
func (a *app) syncSchedules(ctx context.Context, c client.Client, dir string, dryRun, prune bool) ([]ScheduleChange, error) {
	want, err := a.desiredSchedules(dir)
	if err != nil {
		return nil, err
	}
	have, err := listSchedules(ctx, c)
	if err != nil {
		return nil, err
	}
	existing := map[string]bool{}
	for _, e := range have {
		existing[e.ID] = true
	}
	var changes []ScheduleChange
	ids := make([]string, 0, len(want))
	for id := range want {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		d := want[id]
		if !existing[id] {
			changes = append(changes, ScheduleChange{"create", id})
			if !dryRun {
				if err := createSchedule(ctx, c, id, d); err != nil {
					return changes, err
				}
			}
			continue
		}
		h := c.ScheduleClient().GetHandle(ctx, id)
		desc, err := h.Describe(ctx)
		if err != nil {
			return changes, scheduleErr(id, err)
		}
		if actionHash(desc) == d.hash() {
			continue
		}
		changes = append(changes, ScheduleChange{"update", id})
		if dryRun {
			continue
		}
		err = h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
			s := in.Description.Schedule
			sp := d.spec()
			s.Spec = &sp
			s.Action = d.action()
			s.Policy.Overlap = overlapPolicies[d.Overlap]
			s.Policy.CatchupWindow = d.CatchupWindow
			return &client.ScheduleUpdate{Schedule: &s}, nil
		}})
		if err != nil {
			return changes, scheduleErr(id, err)
		}
	}
	if prune {
		for _, e := range have {
			if _, ok := want[e.ID]; ok {
				continue
			}
			changes = append(changes, ScheduleChange{"delete", e.ID})
			if !dryRun {
				if err := c.ScheduleClient().GetHandle(ctx, e.ID).Delete(ctx); err != nil {
					return changes, scheduleErr(e.ID, err)
				}
			}
		}
	}
	return changes, nil
}

func actionHash(desc *client.ScheduleDescription) string {
	act, ok := desc.Schedule.Action.(*client.ScheduleWorkflowAction)
	if !ok {
		return ""
	}
	switch v := act.Memo[scheduleHash].(type) {
	case string:
		return v
	case *commonpb.Payload:
		var s string
		if converter.GetDefaultDataConverter().FromPayload(v, &s) == nil {
			return s
		}
	}
	return ""
}

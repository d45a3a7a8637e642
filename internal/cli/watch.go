package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/converter"
	"golang.org/x/term"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
)

func (a *app) watchCommand() *cobra.Command {
	var interval time.Duration
	cmd := &cobra.Command{
		Use:   "watch RUN",
		Short: "Follow a run: a live step table with progress on a terminal, plain lines otherwise",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if interval <= 0 {
				return usagef("--interval must be positive")
			}
			c, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			f, isFile := a.stdout.(*os.File)
			if isFile && term.IsTerminal(int(f.Fd())) && !a.jsonOut() {
				return a.watchTable(cmd.Context(), c, args[0], interval)
			}
			return a.follow(cmd.Context(), c, args[0], 0)
		},
	}
	cmd.Flags().DurationVar(&interval, "interval", time.Second, "refresh interval")
	return cmd
}

// watchTable redraws the step table in place until the run ends.
func (a *app) watchTable(ctx context.Context, c client.Client, id string, every time.Duration) error {
	tick := time.NewTicker(every)
	defer tick.Stop()
	lines := 0
	for {
		st, err := a.runStatus(ctx, c, id)
		if err != nil {
			return err
		}
		progress := pendingProgress(ctx, c, id)
		if lines > 0 {
			fmt.Fprintf(a.stdout, "\x1b[%dA\x1b[J", lines)
		}
		lines = drawTable(a.stdout, st, progress)
		switch st.State {
		case contract.RunRunning, contract.RunWaiting:
		default:
			return a.report(st, nil)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// pendingProgress reads the last heartbeat of each running step activity.
func pendingProgress(ctx context.Context, c client.Client, id string) map[string]map[string]any {
	out := map[string]map[string]any{}
	d, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return out
	}
	dc := converter.GetDefaultDataConverter()
	for _, pa := range d.GetPendingActivities() {
		var details any
		if p := pa.GetHeartbeatDetails().GetPayloads(); len(p) > 0 {
			_ = dc.FromPayload(p[len(p)-1], &details)
		}
		m, _ := details.(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		m["attempt"] = pa.GetAttempt()
		out[pa.GetActivityId()+"|"+pa.GetActivityType().GetName()] = m
	}
	return out
}

func drawTable(w io.Writer, st contract.Status, progress map[string]map[string]any) int {
	n := 0
	p := func(format string, args ...any) {
		fmt.Fprintf(w, format, args...)
		n++
	}
	p("%s (%s): %s\n", st.RunID, st.Pipeline, st.State)
	for _, s := range st.Steps {
		extra := ""
		if s.State == contract.StateRunning {
			extra = progressBar(findProgress(progress, s.Uses))
		}
		if s.State == contract.StateWaiting {
			extra = "waiting for a reviewer: gauntlet approve " + st.RunID + " --as NAME"
		}
		if s.Error != "" {
			extra = s.Error
		}
		p("  %-20s %-10s %s\n", s.ID, s.State, extra)
	}
	return n
}

func findProgress(progress map[string]map[string]any, uses string) map[string]any {
	keys := make([]string, 0, len(progress))
	for k := range progress {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if strings.HasSuffix(k, "|"+contract.StepActivityName(uses)) {
			return progress[k]
		}
	}
	return nil
}

// progressBar draws epoch/epochs when the step reports them.
func progressBar(m map[string]any) string {
	if m == nil {
		return ""
	}
	done, okD := m["epoch"].(float64)
	total, okT := m["epochs"].(float64)
	s := ""
	if okD && okT && total > 0 {
		width := 20
		filled := int(float64(width) * done / total)
		if filled > width {
			filled = width
		}
		s = fmt.Sprintf("[%s%s] %d/%d", strings.Repeat("#", filled), strings.Repeat(".", width-filled), int(done), int(total))
	}
	if loss, ok := m["loss"].(float64); ok {
		s += fmt.Sprintf(" loss %.4f", loss)
	}
	return s
}

package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/traffic"
)

// Data the demo's clients send: the population the model was trained on,
// and the same population after a shift the monitor should catch.
const (
	demoTraffic        = "builtin:credit-risk?rows=3000&seed=11&bias=0.3"
	demoDriftedTraffic = "builtin:credit-risk?rows=3000&seed=11&bias=0.3&drift=1.5"
	demoReviewer       = "demo-reviewer"
	demoMarker         = ".gauntlet-demo"
)

// demoRun is one pipeline run of the demo's story.
type demoRun struct {
	title  string
	id     string
	params []string
}

// demoStory runs the credit-risk gauntlet twice on a fresh registry: the
// first model takes the no-baseline path and becomes champion; the second
// is evaluated against it, canaried under generated traffic and promoted;
// then drift is injected and the monitor rolls production back.
func (a *app) demoStory(ctx context.Context, pipeline string, extra []string, local *deploy.Local, store string) error {
	runs := []demoRun{
		{title: "1. The first model: no champion yet, so no comparison and no canary analysis", id: RunID(pipeline, time.Now()) + "-first",
			params: append([]string{"monitor=false"}, extra...)},
		{title: "2. A retrained model: evaluated against the champion, canaried, then watched while drift is injected", id: RunID(pipeline, time.Now()) + "-second",
			params: append([]string{"data=builtin:credit-risk?rows=20000&seed=8&bias=0.3"}, extra...)},
	}
	var failed error
	for _, r := range runs {
		fmt.Fprintf(a.stdout, "\n%s\n", r.title)
		err := a.demoAttend(ctx, r.id, pipeline, local, func() error {
			return a.run(ctx, pipeline, runFlags{params: r.params, wait: true, id: r.id, as: a.user("")})
		})
		if err != nil {
			failed = errors.Join(failed, err)
			break
		}
	}
	if failed == nil {
		failed = a.demoRetrains(ctx, runs[len(runs)-1].id, pipeline, local)
	}
	a.demoSummary(ctx, pipeline, store)
	return failed
}

// demoAttend runs wait while the demo's reviewer and clients attend run id.
func (a *app) demoAttend(ctx context.Context, id, model string, local *deploy.Local, wait func() error) error {
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { a.demoReviewer(rctx, id) })
	wg.Go(func() { a.demoClients(rctx, id, model, local) })
	err := wait()
	stop()
	wg.Wait()
	return err
}

// demoRetrains follows the retraining runs the monitor of run id started:
// each goes through the whole gauntlet again before it may serve.
func (a *app) demoRetrains(ctx context.Context, id, model string, local *deploy.Local) error {
	c, err := a.dial(ctx)
	if err != nil {
		return err
	}
	defer c.Close()
	st, err := a.finalStatus(ctx, c, id, nil)
	if err != nil {
		return err
	}
	var retrains []any
	for _, s := range st.Steps {
		if s.Uses == "monitor" {
			retrains, _ = s.Outputs["retrain_runs"].([]any)
		}
	}
	for _, r := range retrains {
		rid, _ := r.(string)
		fmt.Fprintf(a.stdout, "\n3. The retraining run the monitor started: %s\n", rid)
		err := a.demoAttend(ctx, rid, model, local, func() error { return a.follow(ctx, c, rid, 0) })
		if err != nil {
			return err
		}
	}
	return nil
}

// demoReviewer approves the run's model as a named reviewer through the
// same Update the CLI sends, after saying how a person would.
func (a *app) demoReviewer(ctx context.Context, id string) {
	c, err := a.dial(ctx)
	if err != nil {
		return
	}
	defer c.Close()
	for ctx.Err() == nil {
		st, err := queryStatus(ctx, c, id)
		if err == nil && st.State == contract.RunWaiting {
			fmt.Fprintf(a.stdout, "  → waiting for %s. A person would approve with\n"+
				"      bin/gauntlet approve %s --as %s --address %s --comment \"...\"\n"+
				"    or, in the Temporal UI, send the signal approve with {\"reviewer\": %q} to %s.\n"+
				"    The demo approves as %s now.\n", demoReviewer, id, demoReviewer, a.conn.Address, demoReviewer, a.runURL(id), demoReviewer)
			_, err := c.UpdateWorkflow(ctx, client.UpdateWorkflowOptions{
				WorkflowID: id, UpdateName: contract.ApproveName, WaitForStage: client.WorkflowUpdateStageCompleted,
				Args: []any{contract.Decision{Reviewer: demoReviewer, Comment: "evidence reviewed by the demo"}},
			})
			if err != nil {
				fmt.Fprintf(a.stderr, "demo: approve %s: %v\n", id, err)
			}
			return
		}
		sleepCtx(ctx, 300*time.Millisecond)
	}
}

// demoClients sends traffic to the router while the run canaries or
// monitors its model: the usual population during the canary, a drifted
// one while the monitor watches.
func (a *app) demoClients(ctx context.Context, id, model string, local *deploy.Local) {
	c, err := a.dial(ctx)
	if err != nil {
		return
	}
	defer c.Close()
	announced := ""
	for ctx.Err() == nil {
		st, err := queryStatus(ctx, c, id)
		data := ""
		if err == nil {
			for _, s := range st.Steps {
				if s.State != contract.StateRunning {
					continue
				}
				switch s.Uses {
				case "canary-deploy":
					data = demoTraffic
				case "monitor":
					data = demoDriftedTraffic
				}
			}
		}
		env, ok := local.Describe(model)
		if data == "" || !ok || env.RouterURL == "" {
			sleepCtx(ctx, 300*time.Millisecond)
			continue
		}
		if data != announced {
			what := "the usual population"
			if data == demoDriftedTraffic {
				what = "a DRIFTED population (drift=1.5): the monitor should catch it"
			}
			fmt.Fprintf(a.stdout, "  → clients send %s to %s\n", what, env.RouterURL)
			announced = data
		}
		// Short bursts, so a switch of phase changes the data quickly.
		_, _ = traffic.Run(ctx, traffic.Options{Target: env.RouterURL, Data: data, Rate: 40, Duration: 2 * time.Second, Batch: 10})
	}
}

func (a *app) demoSummary(ctx context.Context, model, store string) {
	fmt.Fprintf(a.stdout, "\nRegistry (%s):\n", store)
	s, err := artifact.Open(ctx, store)
	if err != nil {
		fmt.Fprintf(a.stdout, "  unavailable: %v\n", err)
		return
	}
	m, err := registry.New(s).Get(ctx, model)
	if err != nil {
		fmt.Fprintf(a.stdout, "  %s: %v\n", model, err)
		return
	}
	fmt.Fprintf(a.stdout, "  %s: %d versions; champion v%d, previous v%d\n", model, len(m.Versions), m.Aliases[registry.Champion], m.Aliases[registry.Previous])
	for _, mv := range m.History {
		var moves []string
		for _, ch := range mv.Changes {
			moves = append(moves, fmt.Sprintf("%s v%d→v%d", ch.Alias, ch.From, ch.To))
		}
		fmt.Fprintf(a.stdout, "  %-8s %s  by %s: %s\n", mv.Op, strings.Join(moves, ", "), mv.Actor, mv.Reason)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// prepareDemoState empties the demo's state directory so every demo tells
// the same story from an empty registry; it refuses a directory it did not
// make.
func prepareDemoState(dir string) error {
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		if _, err := os.Stat(filepath.Join(dir, demoMarker)); err != nil {
			return usagef("--state-dir %s holds files the demo did not write; give an empty or new directory", dir)
		}
		if err := os.RemoveAll(dir); err != nil {
			return fmt.Errorf("demo: empty %s: %w", dir, err)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	return os.WriteFile(filepath.Join(dir, demoMarker), []byte("state of `gauntlet demo`; emptied by the next demo\n"), 0o644)
}

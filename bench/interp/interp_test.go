//go:build bench

// Package interp measures the Pipeline interpreter's orchestration overhead
// against a hand-written Temporal workflow calling the same activities, on
// one embedded server in one run. Run with `make bench-interp`.
package interp

import (
	"context"
	"fmt"
	"math"
	"sort"
	"strings"
	"testing"
	"time"

	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/devstack"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
	"github.com/gauntlet-ml/gauntlet/internal/tclient"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

const queue = "bench"

// handChain is what a person would write by hand: the same activity, the
// same options, no interpreter.
func handChain(ctx workflow.Context, n int) error {
	ctx = workflow.WithActivityOptions(ctx, handOptions())
	for i := 0; i < n; i++ {
		var out contract.StepResult
		in := handInput(ctx, "chain", i)
		if err := workflow.ExecuteActivity(ctx, contract.StepActivityName("echo"), in).Get(ctx, &out); err != nil {
			return err
		}
	}
	return nil
}

func handFan(ctx workflow.Context, n int) error {
	ctx = workflow.WithActivityOptions(ctx, handOptions())
	futs := make([]workflow.Future, n)
	for i := range futs {
		in := handInput(ctx, "fan", i)
		futs[i] = workflow.ExecuteActivity(ctx, contract.StepActivityName("echo"), in)
	}
	for _, f := range futs {
		if err := f.Get(ctx, nil); err != nil {
			return err
		}
	}
	return nil
}

// handInput is the step's input as a hand-written workflow would give it:
// the run id too, since the activity keeps each run's files apart by it
// (without it every run would reuse one directory and skip the work of
// creating its own).
func handInput(ctx workflow.Context, name string, i int) contract.StepInput {
	return contract.StepInput{
		RunID:    workflow.GetInfo(ctx).WorkflowExecution.ID,
		Pipeline: name,
		StepID:   fmt.Sprintf("s%d", i),
		Uses:     "echo",
		With:     map[string]any{"i": float64(i)},
	}
}

func handOptions() workflow.ActivityOptions {
	return workflow.ActivityOptions{StartToCloseTimeout: time.Hour, RetryPolicy: &temporal.RetryPolicy{MaximumAttempts: 3}}
}

func chainYAML(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: chain%d\nmax_parallel: %d\nsteps:\n", n, n)
	for i := 0; i < n; i++ {
		if i == 0 {
			fmt.Fprintf(&b, "  - {id: s%d, uses: echo, with: {i: %d}}\n", i, i)
		} else {
			fmt.Fprintf(&b, "  - {id: s%d, uses: echo, needs: [s%d], with: {i: %d}}\n", i, i-1, i)
		}
	}
	return b.String()
}

func fanYAML(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: fan%d\nmax_parallel: %d\nsteps:\n", n, n)
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - {id: s%d, uses: echo, with: {i: %d}}\n", i, i)
	}
	return b.String()
}

func setup(b *testing.B) client.Client {
	b.Helper()
	opts := devstack.Defaults()
	opts.DBPath = ""
	opts.UIAddr = ""
	opts.FrontendAddr = "127.0.0.1:17233"
	opts.SearchAttributes = searchattr.Definitions()
	stack, err := devstack.Start(context.Background(), opts)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = stack.Stop() })
	c, err := tclient.Dial(context.Background(), tclient.Options{Address: opts.FrontendAddr, Namespace: "default"}, 30*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	w, err := workerhost.New(c, workerhost.Config{TaskQueue: queue, PipelinesDir: b.TempDir(), StateDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	w.RegisterWorkflow(handChain)
	w.RegisterWorkflow(handFan)
	if err := w.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(w.Stop)
	return c
}

func runOnce(b *testing.B, c client.Client, wf any, args ...any) {
	run, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{TaskQueue: queue}, wf, args...)
	if err != nil {
		b.Fatal(err)
	}
	if err := run.Get(context.Background(), nil); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkOverhead interleaves the two so that server warm-up and noise
// from the other core fall on both alike.
func BenchmarkOverhead(b *testing.B) {
	c := setup(b)
	for _, shape := range []struct {
		name string
		hand any
		yaml string
	}{
		{"chain20", handChain, chainYAML(20)},
		{"fan20", handFan, fanYAML(20)},
	} {
		// Warm both paths once.
		runOnce(b, c, shape.hand, 20)
		runOnce(b, c, contract.PipelineName, contract.PipelineInput{YAML: shape.yaml})
		b.Run(shape.name, func(b *testing.B) {
			hand := make([]time.Duration, 0, b.N)
			interp := make([]time.Duration, 0, b.N)
			timed := func(wf any, args ...any) time.Duration {
				t0 := time.Now()
				runOnce(b, c, wf, args...)
				return time.Since(t0)
			}
			for i := 0; i < b.N; i++ {
				// The side that goes first swaps every pair.
				if i%2 == 0 {
					hand = append(hand, timed(shape.hand, 20))
					interp = append(interp, timed(contract.PipelineName, contract.PipelineInput{YAML: shape.yaml}))
				} else {
					interp = append(interp, timed(contract.PipelineName, contract.PipelineInput{YAML: shape.yaml}))
					hand = append(hand, timed(shape.hand, 20))
				}
			}
			// Medians: one slow run caused by the other core should not
			// decide the ratio.
			h, p := median(hand), median(interp)
			b.ReportMetric(float64(h.Microseconds())/1000, "hand-ms/run")
			b.ReportMetric(float64(p.Microseconds())/1000, "pipeline-ms/run")
			b.ReportMetric(float64(p)/float64(h), "ratio")
			lo, hi := blockRatios(hand, interp)
			b.ReportMetric(lo, "ratio-min")
			b.ReportMetric(hi, "ratio-max")
		})
	}
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// blocks is how many consecutive runs of pairs blockRatios compares: one
// pair's ratio is mostly noise of a 2-core machine, a block's median is not.
const blocks = 7

// blockRatios splits the pairs into blocks of consecutive pairs and returns
// the smallest and the largest ratio of the block medians, interp/hand.
func blockRatios(hand, interp []time.Duration) (lo, hi float64) {
	n := len(hand) / blocks
	if n == 0 {
		r := float64(median(interp)) / float64(median(hand))
		return r, r
	}
	lo, hi = math.Inf(1), math.Inf(-1)
	for k := range blocks {
		r := float64(median(interp[k*n:(k+1)*n])) / float64(median(hand[k*n:(k+1)*n]))
		lo, hi = min(lo, r), max(hi, r)
	}
	return lo, hi
}

// BenchmarkThroughput10Step reports pipelines completed per second for a
// 10-step DAG (two chains of five joined at the end), 8 runs in flight.
func BenchmarkThroughput10Step(b *testing.B) {
	c := setup(b)
	y := "name: dag10\nsteps:\n"
	for i := 0; i < 5; i++ {
		for _, br := range []string{"a", "b"} {
			if i == 0 {
				y += fmt.Sprintf("  - {id: %s%d, uses: echo}\n", br, i)
			} else {
				y += fmt.Sprintf("  - {id: %s%d, uses: echo, needs: [%s%d]}\n", br, i, br, i-1)
			}
		}
	}
	runOnce(b, c, contract.PipelineName, contract.PipelineInput{YAML: y})
	b.ResetTimer()
	start := time.Now()
	sem := make(chan struct{}, 8)
	errs := make(chan error, b.N)
	for i := 0; i < b.N; i++ {
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			run, err := c.ExecuteWorkflow(context.Background(), client.StartWorkflowOptions{TaskQueue: queue}, contract.PipelineName, contract.PipelineInput{YAML: y})
			if err == nil {
				err = run.Get(context.Background(), nil)
			}
			errs <- err
		}()
	}
	for i := 0; i < b.N; i++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pipelines/s")
}

// Command load measures how the embedded stack holds up under many runs at
// once: it starts an in-memory Temporal server and a Gauntlet worker in this
// process, starts -runs runs of one pipeline together, waits for them all,
// and prints the completion rate, run time percentiles (start to close, on
// the server's clock), the wall time and the peak RSS of the process.
//
// Usage, from the repository root: go run ./bench/load -runs 200 -pipeline smoke
//
// Results are kept in bench/load/RESULTS.md.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/devstack"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
	"github.com/gauntlet-ml/gauntlet/internal/tclient"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

const queue = "gauntlet"

func main() {
	runs := flag.Int("runs", 200, "runs started at once")
	pipeline := flag.String("pipeline", "smoke", "pipeline to run")
	pipelines := flag.String("pipelines", "pipelines", "directory of pipeline definitions")
	bound := flag.Duration("timeout", 30*time.Minute, "give up on runs not closed by then")
	flag.Parse()
	if *runs < 1 {
		fmt.Fprintln(os.Stderr, "load: -runs must be at least 1")
		os.Exit(2)
	}
	failed, err := run(os.Stdout, *runs, *pipeline, *pipelines, *bound)
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	if failed > 0 {
		os.Exit(1)
	}
}

// outcome is one run as the server saw it.
type outcome struct {
	id   string
	took time.Duration
	err  error
}

func run(out io.Writer, n int, pipeline, pipelines string, bound time.Duration) (failed int, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	state, err := os.MkdirTemp("", "gauntlet-load-")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(state)
	addr, err := freeAddr()
	if err != nil {
		return 0, err
	}
	opts := devstack.Defaults()
	opts.DBPath = ""
	opts.UIAddr = ""
	opts.LogPath = ""
	opts.FrontendAddr = addr
	opts.SearchAttributes = searchattr.Definitions()
	stack, err := devstack.Start(ctx, opts)
	if err != nil {
		return 0, err
	}
	defer stack.Stop()
	c, err := tclient.Dial(ctx, tclient.Options{Address: addr, Namespace: opts.Namespace}, 30*time.Second)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	// Every step logs at info; thousands of lines on the terminal would be
	// part of what is measured.
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	w, err := workerhost.New(c, workerhost.Config{TaskQueue: queue, PipelinesDir: pipelines, StateDir: state, Logger: quiet})
	if err != nil {
		return 0, err
	}
	if err := w.Start(); err != nil {
		return 0, err
	}
	defer w.Stop()

	began := time.Now()
	handles := make([]client.WorkflowRun, n)
	for i := range handles {
		id := fmt.Sprintf("load-%s-%04d", pipeline, i+1)
		handles[i], err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue},
			contract.PipelineName, contract.PipelineInput{Pipeline: pipeline, StartedBy: "bench/load"})
		if err != nil {
			return 0, fmt.Errorf("start run %d of %d: %w", i+1, n, err)
		}
	}
	started := time.Since(began)
	results := make([]outcome, n)
	for i, h := range handles {
		results[i] = wait(ctx, c, h)
	}
	wall := time.Since(began)

	var took []time.Duration
	for _, r := range results {
		if r.err != nil {
			if failed < 3 {
				fmt.Fprintf(os.Stderr, "load: run %s: %v\n", r.id, r.err)
			}
			failed++
			continue
		}
		took = append(took, r.took)
	}
	slices.Sort(took)
	peak, err := peakRSS()
	if err != nil {
		return failed, err
	}
	fmt.Fprintf(out, "runs         %d of pipeline %s, all started within %s\n", n, pipeline, started.Round(time.Millisecond))
	fmt.Fprintf(out, "completed    %d/%d succeeded (%.1f%%)\n", n-failed, n, 100*float64(n-failed)/float64(n))
	if len(took) > 0 {
		fmt.Fprintf(out, "run time     p50 %s  p99 %s  max %s (start to close, successful runs)\n",
			percentile(took, 0.50), percentile(took, 0.99), took[len(took)-1].Round(time.Millisecond))
	}
	fmt.Fprintf(out, "wall time    %s (first start to last close)\n", wall.Round(time.Millisecond))
	fmt.Fprintf(out, "peak RSS     %d MiB (server, worker and client, one process)\n", peak>>20)
	fmt.Fprintf(out, "machine      %d CPUs, GOMAXPROCS %d, %s\n", runtime.NumCPU(), runtime.GOMAXPROCS(0), runtime.Version())
	return failed, nil
}

// wait returns once the run has closed; its time is the server's start to
// close, so that the order this loop collects runs in does not count.
func wait(ctx context.Context, c client.Client, h client.WorkflowRun) outcome {
	o := outcome{id: h.GetID()}
	var st contract.Status
	if err := h.Get(ctx, &st); err != nil {
		o.err = err
		return o
	}
	if st.State != contract.RunSucceeded {
		o.err = fmt.Errorf("ended %s: %s", st.State, st.Error)
		return o
	}
	d, err := c.DescribeWorkflowExecution(ctx, h.GetID(), h.GetRunID())
	if err != nil {
		o.err = err
		return o
	}
	info := d.GetWorkflowExecutionInfo()
	o.took = info.GetCloseTime().AsTime().Sub(info.GetStartTime().AsTime())
	return o
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)].Round(time.Millisecond)
}

// peakRSS reads the process's high-water resident set size.
func peakRSS() (int64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			var kb int64
			if _, err := fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb); err != nil {
				return 0, fmt.Errorf("VmHWM %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no VmHWM in /proc/self/status")
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

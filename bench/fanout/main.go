// Command fanout measures a large fan-out on the embedded stack: one run of
// a pipeline whose step fans out over -items items of a no-op step (echo),
// with -parallel items in flight. It starts an in-memory Temporal server
// and a Gauntlet worker in this process, and prints for each of -runs runs
// its wall time (start to close, on the server's clock), the events in the
// run's own history and in its chunk workflows', and the memory of the
// process (server, worker and client together): the peak Go heap in use
// during the run and the process's peak RSS.
//
// Usage, from the repository root: go run ./bench/fanout -items 10000 -runs 3
//
// TestTenThousandItems runs it once in `make test`; results are kept in
// bench/fanout/RESULTS.md.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	items := flag.Int("items", 10000, "items of the fanned-out step")
	parallel := flag.Int("parallel", 200, "the step's max_parallel")
	runs := flag.Int("runs", 1, "runs, one after another")
	bound := flag.Duration("timeout", 20*time.Minute, "give up after this long")
	flag.Parse()
	if *items < 1 || *parallel < 1 || *runs < 1 {
		fmt.Fprintln(os.Stderr, "fanout: -items, -parallel and -runs must be at least 1")
		os.Exit(2)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *bound)
	defer cancel()
	res, err := measure(ctx, *items, *parallel, *runs)
	if err != nil {
		fmt.Fprintln(os.Stderr, "fanout:", err)
		os.Exit(1)
	}
	report(os.Stdout, *items, *parallel, res)
}

// Result is one measured run.
type Result struct {
	RunID string
	// Wall is start to close on the server's clock.
	Wall time.Duration
	// ParentEvents are the events of the run's own history; ChunkEvents
	// those of all its chunk workflows together, and Chunks their number.
	ParentEvents, ChunkEvents int64
	Chunks                    int
	// PeakHeap is the most Go heap in use while the run ran (sampled);
	// PeakRSS the process's high-water resident set after it.
	PeakHeap, PeakRSS uint64
	Status            contract.Status
}

// Pipeline is the measured pipeline: items of echo with no inputs.
func Pipeline(items, parallel int) string {
	return fmt.Sprintf(`name: fanout-bench
params:
  n: {type: integer, default: %d}
max_parallel: %d
steps:
  - id: each
    uses: echo
    for_each: "${{ map(1..int(params.n), # - 1) }}"
  - {id: count, uses: echo, needs: [each], with: {items: "${{ len(steps.each.items) }}"}}
`, items, parallel)
}

// measure starts a stack and measures runs runs, one after another.
func measure(ctx context.Context, items, parallel, runs int) ([]Result, error) {
	state, err := os.MkdirTemp("", "gauntlet-fanout-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(state)
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	opts := devstack.Defaults()
	opts.DBPath = ""
	opts.UIAddr = ""
	opts.LogPath = ""
	opts.FrontendAddr = addr
	opts.SearchAttributes = searchattr.Definitions()
	stack, err := devstack.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	defer stack.Stop()
	c, err := tclient.Dial(ctx, tclient.Options{Address: addr, Namespace: opts.Namespace}, 30*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// Ten thousand steps logging at info would be part of what is measured.
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	w, err := workerhost.New(c, workerhost.Config{TaskQueue: queue, PipelinesDir: state, StateDir: state, Logger: quiet})
	if err != nil {
		return nil, err
	}
	if err := w.Start(); err != nil {
		return nil, err
	}
	defer w.Stop()
	var out []Result
	for i := range runs {
		r, err := once(ctx, c, fmt.Sprintf("fanout-bench-%d", i+1), Pipeline(items, parallel))
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

func once(ctx context.Context, c client.Client, id, yaml string) (Result, error) {
	r := Result{RunID: id}
	runtime.GC()
	var peak atomic.Uint64
	stop := make(chan struct{})
	var sampled sync.WaitGroup
	sampled.Add(1)
	go func() {
		defer sampled.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	h, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: queue}, contract.PipelineName,
		contract.PipelineInput{YAML: yaml, StartedBy: "bench/fanout"})
	if err != nil {
		close(stop)
		return r, err
	}
	err = h.Get(ctx, &r.Status)
	close(stop)
	sampled.Wait()
	if err != nil {
		return r, fmt.Errorf("run %s: %w", id, err)
	}
	r.PeakHeap = peak.Load()
	d, err := c.DescribeWorkflowExecution(ctx, id, "")
	if err != nil {
		return r, err
	}
	info := d.GetWorkflowExecutionInfo()
	r.Wall = info.GetCloseTime().AsTime().Sub(info.GetStartTime().AsTime())
	r.ParentEvents = info.GetHistoryLength()
	for _, s := range r.Status.Steps {
		if s.FanOut != nil {
			r.Chunks += s.FanOut.Chunks
			for k := range s.FanOut.Chunks {
				cd, err := c.DescribeWorkflowExecution(ctx, fmt.Sprintf("%s.%s.%d", id, s.ID, k), "")
				if err != nil {
					return r, fmt.Errorf("chunk %d of %s: %w", k, s.ID, err)
				}
				r.ChunkEvents += cd.GetWorkflowExecutionInfo().GetHistoryLength()
			}
		}
	}
	rss, err := peakRSS()
	if err != nil {
		return r, err
	}
	r.PeakRSS = rss
	return r, nil
}

func report(out io.Writer, items, parallel int, res []Result) {
	fmt.Fprintf(out, "%d items of echo, max_parallel %d, %d CPUs, %s\n", items, parallel, runtime.NumCPU(), runtime.Version())
	var walls []time.Duration
	for _, r := range res {
		walls = append(walls, r.Wall)
		fmt.Fprintf(out, "%s  wall %s  parent history %d events  %d chunks %d events  peak heap %d MiB  peak RSS %d MiB\n",
			r.RunID, r.Wall.Round(time.Millisecond), r.ParentEvents, r.Chunks, r.ChunkEvents, r.PeakHeap>>20, r.PeakRSS>>20)
	}
	slices.Sort(walls)
	fmt.Fprintf(out, "wall min %s  median %s  max %s\n", walls[0].Round(time.Millisecond), walls[len(walls)/2].Round(time.Millisecond), walls[len(walls)-1].Round(time.Millisecond))
}

// peakRSS reads the process's high-water resident set size.
func peakRSS() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			var kb uint64
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

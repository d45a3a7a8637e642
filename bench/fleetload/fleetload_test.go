//go:build bench

// Package fleetload is bench/load on the fleet topology: the official
// Temporal server on PostgreSQL, the store on Versity's S3 gateway (behind
// a counting proxy) and two worker hosts, each a network and mount
// namespace (internal/fleettest), against which it starts -runs runs of a
// pipeline at once, as bench/load does on the embedded one-process stack.
// It prints what bench/load prints, the peak memory of every process of
// the fleet, and what one run costs the server and the store.
//
// It is a test only because fleettest is a test harness; the build tag
// keeps it out of `go test ./...`. bench/load/fleet.sh alternates it with
// bench/load:
//
//	go test -tags bench -run TestFleetLoad -count=1 -v ./bench/fleetload -args -runs 200
package fleetload

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/bench/countproxy"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/fleettest"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
)

var (
	runs     = flag.Int("runs", 200, "runs started at once")
	pipeline = flag.String("pipeline", "smoke", "pipeline to run")
	worker   = flag.String("worker", "", "worker binary (default: built from this tree)")
)

const proxyPort = 7071

func TestFleetLoad(t *testing.T) {
	root, err := fleettest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := *worker
	if bin == "" {
		bin = filepath.Join(t.TempDir(), "worker")
		cmd := exec.Command("go", "build", "-o", bin, "./worker")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build ./worker: %v\n%s", err, out)
		}
	}
	f := fleettest.New(t)
	server, cli := f.AddHost("temporal"), f.AddHost("cli")
	hosts := []*fleettest.Host{f.AddHost("worker-a"), f.AddHost("worker-b")}
	pg := fleettest.StartPostgres(t, server)
	tp := fleettest.StartTemporal(t, server, pg, fleettest.TemporalOptions{
		Namespace:        "default",
		SearchAttributes: searchattr.Definitions(),
		DynamicConfig:    filepath.Join(root, "deploy/temporal/dynamicconfig.yaml"),
	})
	store := fleettest.StartS3(t, server, "artifacts")
	l, err := server.Listen("tcp", server.Addr(proxyPort))
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := countproxy.Serve(l, store.Endpoint(), server.DialContext)
	if err != nil {
		t.Fatal(err)
	}
	defer proxy.Close()
	var env []string
	for _, kv := range store.Env() {
		// The store's URL names the proxy, which the SDK's own endpoint
		// variable would otherwise win over.
		if !strings.HasPrefix(kv, "AWS_ENDPOINT_URL") {
			env = append(env, kv)
		}
	}
	env = append(env, fmt.Sprintf("GAUNTLET_STORE=s3://artifacts/load?region=%s&endpoint=http://%s", fleettest.S3Region, server.Addr(proxyPort)))
	var workers []*fleettest.Proc
	for _, h := range hosts {
		p, err := h.Start("worker", fleettest.Spec{
			Args: []string{bin, "--address", tp.Addr(), "--state-dir", filepath.Join(h.Dir(), "state"),
				"--pipelines", filepath.Join(root, "pipelines"), "--log-level", "warn"},
			Env: env,
		}, syscall.SIGTERM)
		if err != nil {
			t.Fatal(err)
		}
		workers = append(workers, p)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	c, err := tp.Dial(ctx, cli, "default")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// One run first, so that both workers are polling and the servers
	// warm, as bench/load's stack is once it starts.
	if _, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "warm-up", TaskQueue: "gauntlet"}, contract.PipelineName,
		contract.PipelineInput{Pipeline: *pipeline, StartedBy: "bench/fleetload"}); err != nil {
		t.Fatal(err)
	}
	if err := c.GetWorkflow(ctx, "warm-up", "").Get(ctx, nil); err != nil {
		t.Fatalf("warm-up run: %v\n%s", err, workers[0].Output())
	}
	proxy.Reset()
	load := loadavg()

	began := time.Now()
	handles := make([]client.WorkflowRun, *runs)
	for i := range handles {
		id := fmt.Sprintf("load-%s-%04d", *pipeline, i+1)
		if handles[i], err = c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: id, TaskQueue: "gauntlet"}, contract.PipelineName,
			contract.PipelineInput{Pipeline: *pipeline, StartedBy: "bench/fleetload"}); err != nil {
			t.Fatalf("start run %d: %v", i+1, err)
		}
	}
	started := time.Since(began)
	var took []time.Duration
	failed := 0
	for _, h := range handles {
		d, err := wait(ctx, c, h)
		if err != nil {
			if failed < 3 {
				t.Logf("run %s: %v", h.GetID(), err)
			}
			failed++
			continue
		}
		took = append(took, d)
	}
	wall := time.Since(began)
	counts := proxy.Counts()
	slices.Sort(took)

	n := *runs
	fmt.Printf("runs         %d of pipeline %s on the fleet (PostgreSQL-backed Temporal, S3 store, 2 worker hosts), all started within %s\n", n, *pipeline, started.Round(time.Millisecond))
	fmt.Printf("completed    %d/%d succeeded (%.1f%%)\n", n-failed, n, 100*float64(n-failed)/float64(n))
	if len(took) > 0 {
		fmt.Printf("run time     p50 %s  p99 %s  max %s (start to close, successful runs)\n",
			percentile(took, 0.50), percentile(took, 0.99), took[len(took)-1].Round(time.Millisecond))
	}
	fmt.Printf("wall time    %s (first start to last close); throughput %.1f runs/s\n", wall.Round(time.Millisecond), float64(n-failed)/wall.Seconds())
	fmt.Printf("store        %d requests (%s), %.1f per run; up %.2f MiB, down %.2f MiB\n", counts.Total(), counts, float64(counts.Total())/float64(n),
		float64(counts.Up)/(1<<20), float64(counts.Down)/(1<<20))
	fmt.Println("peak RSS     " + peaks(t, server, hosts))
	events, activities := historyCost(ctx, t, c, handles[0].GetID())
	fmt.Printf("per run      %d history events, %d activities (run %s)\n", events, activities, handles[0].GetID())
	fmt.Printf("machine      %d CPUs, %s; load before %s, after %s\n", runtime.NumCPU(), runtime.Version(), load, loadavg())
	if failed > 0 {
		t.Errorf("%d of %d runs failed", failed, n)
	}
}

func wait(ctx context.Context, c client.Client, h client.WorkflowRun) (time.Duration, error) {
	var st contract.Status
	if err := h.Get(ctx, &st); err != nil {
		return 0, err
	}
	if st.State != contract.RunSucceeded {
		return 0, fmt.Errorf("ended %s: %s", st.State, st.Error)
	}
	d, err := c.DescribeWorkflowExecution(ctx, h.GetID(), h.GetRunID())
	if err != nil {
		return 0, err
	}
	info := d.GetWorkflowExecutionInfo()
	return info.GetCloseTime().AsTime().Sub(info.GetStartTime().AsTime()), nil
}

// historyCost counts a run's history events and its activities.
func historyCost(ctx context.Context, t *testing.T, c client.Client, id string) (events, activities int) {
	it := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		events++
		if ev.GetActivityTaskScheduledEventAttributes() != nil {
			activities++
		}
	}
	return events, activities
}

// peaks lists each process's high-water resident set: the servers on the
// server host by program (PostgreSQL's processes summed, with how many),
// then each worker.
func peaks(t *testing.T, server *fleettest.Host, workers []*fleettest.Host) string {
	var parts []string
	group := func(h *fleettest.Host, label string) {
		pids, err := h.Pids()
		if err != nil {
			t.Fatal(err)
		}
		sum, pss, count := map[string]int64{}, map[string]int64{}, map[string]int{}
		for _, pid := range pids {
			name, hwm := status(pid)
			if name == "" {
				continue
			}
			sum[name] += hwm
			pss[name] += proportional(pid)
			count[name]++
		}
		for _, name := range slices.Sorted(maps.Keys(sum)) {
			s := fmt.Sprintf("%s%s %d MiB", label, name, sum[name]>>20)
			if count[name] > 1 {
				// Each process's peak counts the shared buffers again;
				// the proportional set size now shares them out.
				s += fmt.Sprintf(" (%d processes, peaks summed; %d MiB proportional at the end)", count[name], pss[name]>>20)
			}
			parts = append(parts, s)
		}
	}
	group(server, "")
	for _, h := range workers {
		group(h, h.Name+" ")
	}
	return strings.Join(parts, "; ")
}

// status reads a process's name and VmHWM in bytes.
func status(pid int) (string, int64) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return "", 0
	}
	defer f.Close()
	var name string
	var hwm int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "Name:"); ok {
			name = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			hwm = kb << 10
		}
	}
	return name, hwm
}

// proportional reads a process's proportional set size in bytes: its
// private pages plus its share of the pages it shares.
func proportional(pid int) int64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "Pss:"); ok {
			var kb int64
			fmt.Sscanf(strings.TrimSpace(v), "%d kB", &kb)
			return kb << 10
		}
	}
	return 0
}

func percentile(sorted []time.Duration, p float64) time.Duration {
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	return sorted[max(i, 0)].Round(time.Millisecond)
}

func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

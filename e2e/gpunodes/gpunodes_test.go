package gpunodes

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/filesd"
	"github.com/gauntlet-ml/gauntlet/internal/gpu"
	"github.com/gauntlet-ml/gauntlet/internal/promtest"
	"github.com/gauntlet-ml/gauntlet/internal/steps"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
	"github.com/gauntlet-ml/gauntlet/internal/tf"
	"github.com/gauntlet-ml/gauntlet/internal/workerhost"
)

// The node's worker is this test binary run again with envNodeWorker set
// (see nodeWorker); envNodeGPU chooses its GPU telemetry.
const (
	envNodeWorker = "GAUNTLET_TEST_NODE_WORKER"
	envNodeGPU    = "GAUNTLET_TEST_NODE_GPU"
)

func TestMain(m *testing.M) {
	if os.Getenv(envNodeWorker) != "" {
		os.Exit(nodeWorker(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// h200 is what NVML would report on one H200: nodes here have no GPU, so
// one node's worker reads this instead of the driver.
type h200 struct{}

func (h200) Snapshot() (gpu.Snapshot, error) {
	return gpu.Snapshot{State: gpu.Available, Devices: []gpu.Device{{Index: 0, Name: "NVIDIA H200",
		MemoryUsedBytes: 80 << 30, MemoryTotalBytes: 141 << 30, UtilizationPercent: 97, TemperatureC: 64, PowerWatts: 612.5}}}, nil
}

// nodeWorker is what the worker binary does on a node up to dialling
// Temporal (worker/main.go's serve): the same process setup serving
// /metrics on --metrics-addr, fed by the GPU watch under --node-id, until
// SIGTERM. The real worker would then poll its task queue; nothing here
// needs it to, and no Temporal server runs.
func nodeWorker(args []string) int {
	fl := pflag.NewFlagSet("node-worker", pflag.ContinueOnError)
	nodeID := fl.String("node-id", "", "")
	metricsAddr := fl.String("metrics-addr", "", "")
	taskQueue := fl.String("task-queue", "", "")
	stateDir := fl.String("state-dir", "", "")
	fl.String("address", "", "")
	fl.String("namespace", "", "")
	// provision passes the worker's own store on to its nodes.
	fl.String("store", "", "")
	if err := fl.Parse(args); err != nil {
		fmt.Fprintln(os.Stderr, "node worker:", err)
		return 2
	}
	if *metricsAddr == "" {
		fmt.Fprintln(os.Stderr, "node worker: provision gave no --metrics-addr")
		return 2
	}
	proc, err := workerhost.NewProcess(workerhost.Config{TaskQueue: *taskQueue, StateDir: *stateDir, NodeID: *nodeID},
		workerhost.ProcessOptions{Stderr: os.Stderr, MetricsAddr: *metricsAddr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "node worker:", err)
		return 1
	}
	defer proc.Close()
	var src gpu.Source = gpu.NewNVML()
	if os.Getenv(envNodeGPU) == "h200" {
		src = h200{}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	stopGPU := workerhost.WatchGPU(ctx, src, proc.Config.Metrics, *nodeID, time.Second, proc.Logger)
	defer stopGPU()
	fmt.Printf("metrics on http://%s/metrics\n", proc.MetricsAddr)
	<-ctx.Done()
	return 0
}

type env struct {
	dir, state string
	artifacts  *workspace.Session
}

func (e env) Progress(any)                  {}
func (e env) Resume(any) bool               { return false }
func (e env) Dir() string                   { return e.dir }
func (e env) StateDir() string              { return e.state }
func (e env) Artifacts() *workspace.Session { return e.artifacts }
func (e env) Logger() *slog.Logger          { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newStepEnv is a step's host with the default store under state.
func newStepEnv(t *testing.T, dir, state string) env {
	t.Helper()
	ws, err := workspace.Open(context.Background(), workspace.Config{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	s := ws.Session()
	t.Cleanup(s.Close)
	return env{dir: dir, state: state, artifacts: s}
}

func runStep(t *testing.T, e env, uses, step string, with map[string]any) map[string]any {
	t.Helper()
	ty, ok := steps.Lookup(uses)
	if !ok {
		t.Fatalf("no step type %s", uses)
	}
	out, err := ty.Run(context.Background(), e, steps.Input{RunID: "run-obs", Pipeline: "credit-risk", StepID: step, Uses: uses, With: with})
	if err != nil {
		t.Fatalf("%s %s: %v", uses, step, err)
	}
	return out
}

// unavailable stops a test that lacks a tool `make tools` installs.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	testkit.Need(t, format, args...)
}

// workerScript is the worker binary provision starts for one node: this
// test binary as nodeWorker, with gpuMode "h200" or "" (the real NVML).
func workerScript(t *testing.T, gpuMode string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "worker")
	script := fmt.Sprintf("#!/bin/sh\n%s=1 %s=%s exec %s \"$@\"\n", envNodeWorker, envNodeGPU, gpuMode, strconv.Quote(self))
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestProvisionedNodesAreScrapedUntilDestroyed(t *testing.T) {
	promtest.Binary(t)
	if _, err := tf.Find(""); err != nil {
		unavailable(t, "no terraform (%v): `make tools` installs Terraform 1.5.7 into bin/terraform", err)
	}
	root := t.TempDir()
	targets := filepath.Join(root, "targets")
	if err := os.Mkdir(targets, 0o755); err != nil {
		t.Fatal(err)
	}
	prom := promtest.Start(t, promtest.JobConfig(t, "../../deploy/prometheus/prometheus.yml", "gauntlet-gpu-workers", root))
	t.Setenv(filesd.EnvDir, targets)
	e := newStepEnv(t, t.TempDir(), t.TempDir())

	type node struct {
		step, id string
		with     map[string]any
		pid      int
	}
	nodes := []*node{{step: "gpu"}, {step: "cpu"}}
	for i, n := range nodes {
		n.with = map[string]any{"vars": map[string]any{"worker_binary": workerScript(t, []string{"h200", ""}[i]), "stop_timeout_seconds": 5}}
		out := runStep(t, e, "provision", n.step, n.with)
		n.id = out["node_id"].(string)
		pidFile := out["module_outputs"].(map[string]any)["pid_file"].(string)
		b, err := os.ReadFile(pidFile)
		if err != nil {
			t.Fatal(err)
		}
		if n.pid, err = strconv.Atoi(strings.TrimSpace(string(b))); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = syscall.Kill(n.pid, syscall.SIGKILL) })
		endpoint, _ := out["module_outputs"].(map[string]any)["metrics_endpoint"].(string)
		if !strings.HasPrefix(endpoint, "127.0.0.1:") {
			t.Fatalf("node %s: metrics_endpoint %q, want a loopback port provision chose", n.id, endpoint)
		}
		g, err := must(filesd.Open(targets)).Read(n.id)
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"node": n.id, "run": "run-obs", "step": n.step, "pipeline": "credit-risk", "module": "local-node", "accelerator": "none (local CPU node)"}
		if fmt.Sprint(g.Targets) != fmt.Sprint([]string{endpoint}) || fmt.Sprint(g.Labels) != fmt.Sprint(want) {
			t.Errorf("target file of %s: %+v, want %s with labels %v", n.id, g, endpoint, want)
		}
	}

	target := func(id string) (promtest.Target, error) {
		ts, err := prom.Targets()
		if err != nil {
			return promtest.Target{}, err
		}
		for _, tg := range ts {
			if tg.Labels["node"] == id {
				return tg, nil
			}
		}
		return promtest.Target{}, errNoTarget
	}
	up := func(id string) func() error {
		return func() error {
			tg, err := target(id)
			if err != nil {
				return err
			}
			if tg.Health != "up" {
				return fmt.Errorf("target %s is %s: %s", id, tg.Health, tg.LastError)
			}
			return nil
		}
	}
	count := func(expr string, want int) func() error {
		return func() error {
			s, err := prom.Query(expr)
			if err != nil {
				return err
			}
			if len(s) != want {
				return fmt.Errorf("%s: %d series %v, want %d", expr, len(s), s, want)
			}
			return nil
		}
	}
	gpuNode, cpuNode := nodes[0].id, nodes[1].id
	// A retried provision re-applies the same node: same port, same worker.
	first, err := must(filesd.Open(targets)).Read(gpuNode)
	if err != nil {
		t.Fatal(err)
	}
	again := runStep(t, e, "provision", "gpu", nodes[0].with)
	if endpoint := again["module_outputs"].(map[string]any)["metrics_endpoint"]; endpoint != first.Targets[0] {
		t.Errorf("a retried provision moved the node's metrics from %s to %v", first.Targets[0], endpoint)
	}
	if !testkit.Alive(nodes[0].pid) {
		t.Errorf("a retried provision replaced the node's worker %d", nodes[0].pid)
	}
	for _, n := range nodes {
		promtest.Eventually(t, 30*time.Second, "node "+n.id+" scraped", up(n.id))
		// The worker's own metrics, GPU or not.
		promtest.Eventually(t, 10*time.Second, "worker metrics of "+n.id, count(fmt.Sprintf(`go_goroutines{node=%q,job="gauntlet-gpu-workers",run="run-obs",step=%q}`, n.id, n.step), 1))
	}
	promtest.Eventually(t, 10*time.Second, "GPU gauges of "+gpuNode, count(fmt.Sprintf(`gpu_utilization_percent{node=%q,gpu="0",name="NVIDIA H200"} == 97`, gpuNode), 1))
	// The other node reads the real driver: on this machine it finds none
	// and says so; on a GPU machine it reports what it has.
	snap, err := gpu.NewNVML().Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if snap.State == gpu.NoNVIDIAGPU {
		promtest.Eventually(t, 10*time.Second, cpuNode+" says it has no GPU", count(fmt.Sprintf(`gpu_devices{node=%q,state="no NVIDIA GPU"} == 0`, cpuNode), 1))
		if err := count(fmt.Sprintf(`gpu_utilization_percent{node=%q}`, cpuNode), 0)(); err != nil {
			t.Error(err)
		}
	} else {
		promtest.Eventually(t, 10*time.Second, cpuNode+"'s real GPUs", count(fmt.Sprintf(`gpu_devices{node=%q,state="available"} == %d`, cpuNode, len(snap.Devices)), 1))
		promtest.Eventually(t, 10*time.Second, cpuNode+"'s real GPU gauges", count(fmt.Sprintf(`gpu_memory_total_bytes{node=%q}`, cpuNode), len(snap.Devices)))
	}

	d := runStep(t, e, "destroy", "teardown-gpu", map[string]any{"node": "gpu"})
	if d["destroyed"] != true {
		t.Fatalf("destroy gpu: %v", d)
	}
	if testkit.Alive(nodes[0].pid) {
		t.Errorf("worker %d of the destroyed node still runs", nodes[0].pid)
	}
	if _, err := os.Stat(filepath.Join(targets, filesd.Prefix+gpuNode+filesd.Suffix)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("target file of the destroyed node: %v", err)
	}
	promtest.Eventually(t, 30*time.Second, gpuNode+" forgotten", func() error {
		if _, err := target(gpuNode); !errors.Is(err, errNoTarget) {
			return fmt.Errorf("still a target (%v)", err)
		}
		return count(fmt.Sprintf(`up{node=%q}`, gpuNode), 0)()
	})
	if err := count(fmt.Sprintf(`gpu_utilization_percent{node=%q}`, gpuNode), 0)(); err != nil {
		t.Errorf("the destroyed node's gauges are not stale: %v", err)
	}
	if err := up(cpuNode)(); err != nil {
		t.Errorf("the node still alive: %v", err)
	}

	runStep(t, e, "destroy", "teardown-cpu", map[string]any{"node": "cpu"})
	promtest.Eventually(t, 30*time.Second, cpuNode+" forgotten", count(fmt.Sprintf(`up{node=%q}`, cpuNode), 0))
	// Destroying again finds nothing to remove and still succeeds.
	if twice := runStep(t, e, "destroy", "teardown-cpu", map[string]any{"node": "cpu"}); twice["destroyed"] != false {
		t.Errorf("second destroy: %v", twice)
	}
	if entries, _ := os.ReadDir(targets); len(entries) != 0 {
		t.Errorf("targets directory after teardown holds %d entries", len(entries))
	}
	var rec map[string]any
	b, err := os.ReadFile(filepath.Join(e.state, "nodes", "run-obs", "cpu", "node.json"))
	if err == nil {
		err = json.Unmarshal(b, &rec)
	}
	if err != nil || rec["metrics_target"] == nil || rec["metrics_addr"] == nil {
		t.Errorf("node record lacks where the node's metrics were published: %v (%v)", rec, err)
	}
}

var errNoTarget = errors.New("no such target")

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

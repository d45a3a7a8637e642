package cli

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/tclient"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

// faultData is 150 times smoke's default data, so that a run's steps take
// longer than the longest gap between kills (2 s) on two cores and kills
// land in the middle of steps rather than between runs: since training
// became parallel and column-wise, thirty times was no longer enough.
const faultData = "data=builtin:credit-risk?rows=300000&seed=1&bias=0.3"

// faultPipelines writes pipelines/smoke.yaml with its defaults replaced
// and returns the directory. A step whose worker dies is retried once its
// heartbeat times out (the activity adapter heartbeats for every step type
// while it runs): 2s instead of smoke's 30s keeps twenty kills short. The
// retry budget is sized for the kills a step can suffer in a row.
func faultPipelines(t *testing.T) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(repoRoot(t), "pipelines", "smoke.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var doc yaml.MapSlice
	if err := yaml.Unmarshal(src, &doc); err != nil {
		t.Fatalf("pipelines/smoke.yaml: %v", err)
	}
	replaced := false
	for i := range doc {
		if doc[i].Key == "defaults" {
			doc[i].Value = map[string]any{
				"timeout":   "5m",
				"heartbeat": "2s",
				"retry":     map[string]any{"max_attempts": 12, "initial_interval": "200ms", "backoff": 2.0, "max_interval": "2s"},
			}
			replaced = true
		}
	}
	if !replaced {
		t.Fatal("pipelines/smoke.yaml has no defaults block to shorten")
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "smoke.yaml"), out, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// awaitRuns waits, within one bound for them all, for every run to close,
// and returns each one's final status; a run that did not succeed fails the
// test.
func awaitRuns(t *testing.T, c client.Client, ids []string, bound time.Duration) map[string]contract.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	out := make(map[string]contract.Status, len(ids))
	for _, id := range ids {
		var st contract.Status
		if err := c.GetWorkflow(ctx, id, "").Get(ctx, &st); err != nil {
			t.Fatalf("run %s: %v", id, err)
		}
		if st.State != contract.RunSucceeded {
			t.Fatalf("run %s ended %s: %s", id, st.State, st.Error)
		}
		out[id] = st
	}
	return out
}

// checkOneModelPerRun is the "no side effect twice" check on the model
// store: each run's train step recorded exactly one model, the one its
// output names, and no other step of a run did. It returns how many models
// there are, and how many half-written model directories killed attempts
// left in their step directories (never published).
func checkOneModelPerRun(t *testing.T, state string, runs map[string]contract.Status) (models, staging int) {
	t.Helper()
	ctx := context.Background()
	store, err := artifact.Open(ctx, filepath.Join(state, "artifacts"))
	if err != nil {
		t.Fatal(err)
	}
	refs, err := store.ListRefs(ctx, "steps/")
	if err != nil {
		t.Fatal(err)
	}
	byRun := map[string][]string{}
	for _, name := range refs {
		parts := strings.Split(name, "/")
		if len(parts) != 5 || parts[2] != "train" || parts[4] != "model" {
			t.Errorf("ref %s belongs to no run's train step", name)
			continue
		}
		if _, known := runs[parts[1]]; !known {
			t.Errorf("ref %s belongs to no run", name)
			continue
		}
		ref, err := store.GetRef(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		byRun[parts[1]] = append(byRun[parts[1]], string(ref.Data))
		models++
	}
	for id, st := range runs {
		train := stepOf(t, st, "train")
		if len(byRun[id]) != 1 {
			t.Errorf("run %s: %d models %v, want exactly 1", id, len(byRun[id]), byRun[id])
			continue
		}
		if train.Outputs["model"] != byRun[id][0] {
			t.Errorf("run %s: train output names %v, the store records %s", id, train.Outputs["model"], byRun[id][0])
		}
		// Only a retry can find a model already saved for its step.
		if train.Outputs["reused"] == true && train.Attempt < 2 {
			t.Errorf("run %s: attempt %d reports a reused model", id, train.Attempt)
		}
		left, _ := filepath.Glob(filepath.Join(state, "runs", id, "train", "model-*"))
		staging += len(left)
	}
	return models, staging
}

func stepOf(t *testing.T, st contract.Status, id string) contract.StepStatus {
	t.Helper()
	for _, s := range st.Steps {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("run %s has no step %s", st.RunID, id)
	return contract.StepStatus{}
}

// retryCounts counts steps that needed more than one attempt, and train
// steps whose retry found the model an earlier attempt had saved.
func retryCounts(runs map[string]contract.Status) (retried, reused int) {
	for _, st := range runs {
		for _, s := range st.Steps {
			if s.Attempt > 1 {
				retried++
			}
			if s.ID == "train" && s.Outputs["reused"] == true {
				reused++
			}
		}
	}
	return retried, reused
}

// readyWriter keeps a worker's output and closes ready once the worker says
// it polls, so that a kill is timed from when the worker can take work
// rather than from a process start that a loaded machine may drag out.
type readyWriter struct {
	out     io.Writer
	ready   chan struct{}
	pending []byte
}

const workerReadyLine = "worker polling task queue"

func (w *readyWriter) Write(p []byte) (int, error) {
	if w.pending != nil {
		w.pending = append(w.pending, p...)
		if bytes.Contains(w.pending, []byte(workerReadyLine)) {
			close(w.ready)
			w.pending = nil
		} else {
			w.pending = w.pending[max(0, len(w.pending)-len(workerReadyLine)):]
		}
	}
	return w.out.Write(p)
}

// TestWorkerKilledRepeatedlyLosesNoRun SIGKILLs the only worker at seeded
// random moments while smoke runs are in flight, restarting it each time.
// Every run must succeed, and no step may have left its side effect twice.
func TestWorkerKilledRepeatedlyLosesNoRun(t *testing.T) {
	if testing.Short() {
		t.Skip("kills and restarts a worker on a real Temporal server; skipped with -short")
	}
	bin := filepath.Join(repoRoot(t), "bin", "worker")
	if _, err := os.Stat(bin); err != nil {
		testkit.Need(t, "the worker under test is %s: build it with `make build` (make test does)", bin)
	}
	const (
		trials   = 20
		inFlight = 6
		maxOpen  = 10
		maxRuns  = 26
	)
	pipes, state := faultPipelines(t), t.TempDir()
	// dev always runs a worker of its own: it polls a queue nobody uses, so
	// that the killed subprocess is the only one running the runs.
	frontend := startEmbedded(t, pipes, "--task-queue", "faults-unused")
	ctx := context.Background()
	c, err := tclient.Dial(ctx, tclient.Options{Address: frontend, Namespace: "default"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	logPath := filepath.Join(t.TempDir(), "worker.log")
	logFile, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	var w *exec.Cmd
	startWorker := func() {
		w = exec.Command(bin, "--address", frontend, "--namespace", "default", "--task-queue", "gauntlet",
			"--pipelines", pipes, "--state-dir", state)
		out := &readyWriter{out: logFile, ready: make(chan struct{}), pending: []byte{}}
		w.Stdout, w.Stderr = out, logFile
		if err := w.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-out.ready:
		case <-time.After(60 * time.Second):
			t.Fatal("restarted worker not polling within 60s")
		}
	}
	t.Cleanup(func() {
		if w != nil && w.ProcessState == nil {
			_ = w.Process.Kill()
			_ = w.Wait()
		}
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("worker log (last 8 kB):\n%s", b[max(0, len(b)-8000):])
		}
	})

	env := map[string]string{"TEMPORAL_ADDRESS": frontend, "GAUNTLET_PIPELINES": pipes}
	var ids, open []string
	startRun := func() {
		id := fmt.Sprintf("crash-%02d", len(ids)+1)
		if code, out, stderr := runCLI(t, env, "run", "smoke", "--id", id, "--param", faultData); code != ExitOK {
			t.Fatalf("run %s: exit %d %s %s", id, code, out, stderr)
		}
		ids = append(ids, id)
		open = append(open, id)
	}

	rng := rand.New(rand.NewPCG(2024, 11))
	startWorker()
	for range inFlight {
		startRun()
	}
	caught, trialsCaught := 0, 0
	for range trials {
		time.Sleep(200*time.Millisecond + time.Duration(rng.Int64N(int64(1800*time.Millisecond))))
		// Step attempts this worker holds at the moment it dies: the worker
		// identity carries the pid, which is new after every restart.
		mine := fmt.Sprintf("%d@", w.Process.Pid)
		held := 0
		var still []string
		for _, id := range open {
			d, err := c.DescribeWorkflowExecution(ctx, id, "")
			if err != nil {
				t.Fatalf("describe %s: %v", id, err)
			}
			if d.GetWorkflowExecutionInfo().GetStatus() != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
				continue
			}
			still = append(still, id)
			for _, a := range d.GetPendingActivities() {
				if a.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED && strings.HasPrefix(a.GetLastWorkerIdentity(), mine) {
					held++
				}
			}
		}
		if err := w.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		_ = w.Wait()
		caught += held
		if held > 0 {
			trialsCaught++
		}
		open = still
		startWorker()
		// Runs hit by a kill sit out their step timeout; a fresh run gives
		// the next kill work in progress to land on.
		if len(ids) < maxRuns && len(open) < maxOpen {
			startRun()
		}
		for len(open) < inFlight && len(ids) < maxRuns {
			startRun()
		}
	}
	if caught == 0 {
		t.Fatalf("none of %d kills landed on a running step: the test exercised no retry", trials)
	}

	runs := awaitRuns(t, c, ids, 3*time.Minute)
	models, staging := checkOneModelPerRun(t, state, runs)
	retried, reused := retryCounts(runs)
	t.Logf("worker crashes: %d SIGKILL/restart trials, %d of them caught %d step attempts mid-run; %d/%d smoke runs succeeded; "+
		"%d steps retried, %d train retries reused the saved model; %d models in the store for %d runs; %d unpublished model directories left by killed saves",
		trials, trialsCaught, caught, len(runs), len(ids), retried, reused, models, len(ids), staging)
}

// TestDevStackKilledMidRunResumesSmokeRuns SIGKILLs a whole `gauntlet dev`
// (server and worker) once smoke runs are part way through, and restarts it
// on the same SQLite file: every run must carry on from where it was, keep
// the steps it had finished, and succeed.
func TestDevStackKilledMidRunResumesSmokeRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Temporal server twice; skipped with -short")
	}
	const runs = 4
	dir := t.TempDir()
	pipes, state := faultPipelines(t), filepath.Join(dir, "state")
	frontend, port := freeAddr(t)
	args := []string{"--db", filepath.Join(dir, "temporal.db"), "--headless", "--port", fmt.Sprint(port),
		"--log-file", filepath.Join(dir, "temporal.log"), "--pipelines", pipes, "--state-dir", state}
	dev := startDev(t, args...)

	ctx := context.Background()
	c, err := tclient.Dial(ctx, tclient.Options{Address: frontend, Namespace: "default"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	env := map[string]string{"TEMPORAL_ADDRESS": frontend, "GAUNTLET_PIPELINES": pipes}
	var ids []string
	startRuns := func() {
		for range runs {
			id := fmt.Sprintf("restart-%d", len(ids)+1)
			if code, out, stderr := runCLI(t, env, "run", "smoke", "--id", id, "--param", faultData); code != ExitOK {
				t.Fatalf("run %s: exit %d %s %s", id, code, out, stderr)
			}
			ids = append(ids, id)
		}
	}
	startRuns()

	// Kill once some step has finished and another is part way through an
	// attempt: then the file holds finished work that must not be redone
	// and an attempt that must be retried.
	var before map[string]contract.Status
	inFlight, attempts := 0, 0
	waitFor(t, func() bool {
		snap := map[string]contract.Status{}
		finished, open, started := false, 0, 0
		for _, id := range ids {
			qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			v, err := c.QueryWorkflow(qctx, id, "", contract.StatusQuery)
			if err != nil {
				return false
			}
			var st contract.Status
			if err := v.Get(&st); err != nil {
				t.Fatal(err)
			}
			for _, s := range st.Steps {
				finished = finished || s.State == contract.StateSucceeded
			}
			snap[id] = st
			if st.State != contract.RunRunning {
				continue
			}
			open++
			d, err := c.DescribeWorkflowExecution(qctx, id, "")
			if err != nil {
				return false
			}
			for _, a := range d.GetPendingActivities() {
				if a.GetState() == enumspb.PENDING_ACTIVITY_STATE_STARTED {
					started++
				}
			}
		}
		before, inFlight, attempts = snap, open, started
		// On a loaded machine the polls can miss every attempt until all
		// runs are done: then start another batch to catch in flight.
		if open == 0 && len(ids) < 5*runs {
			startRuns()
		}
		return finished && started > 0
	})
	if err := dev.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = dev.cmd.Wait()
	done, running := 0, 0
	for _, st := range before {
		for _, s := range st.Steps {
			switch s.State {
			case contract.StateSucceeded:
				done++
			case contract.StateRunning:
				running++
			}
		}
	}
	startDev(t, args...)

	after := awaitRuns(t, c, ids, 3*time.Minute)
	for id, st := range before {
		for _, s := range st.Steps {
			if s.State != contract.StateSucceeded {
				continue
			}
			now := stepOf(t, after[id], s.ID)
			if now.Attempt != s.Attempt || fmt.Sprint(now.Outputs) != fmt.Sprint(s.Outputs) {
				t.Errorf("run %s step %s finished before the kill but was run again: attempt %d→%d", id, s.ID, s.Attempt, now.Attempt)
			}
		}
	}
	models, staging := checkOneModelPerRun(t, state, after)
	retried, reused := retryCounts(after)
	t.Logf("dev stack restart: SIGKILL with %d of %d smoke runs in flight (%d steps finished, %d running, %d attempts started); "+
		"%d/%d runs succeeded after the restart; %d steps retried, %d train retries reused the saved model; %d models in the store for %d runs; %d unpublished model directories left",
		inFlight, runs, done, running, attempts, len(after), runs, retried, reused, models, runs, staging)
}

package fleet

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"go.temporal.io/sdk/client"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/fleettest"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
)

type binaries struct{ worker, gauntlet string }

var (
	buildMu  sync.Mutex
	builtBin = map[string]string{}
	buildDir string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// build compiles the worker and the CLI once per test binary.
func build(t *testing.T) binaries {
	t.Helper()
	return binaries{worker: buildOne(t, "./worker"), gauntlet: buildOne(t, "./starter")}
}

// buildOne compiles pkg once per test binary. The CLI links the Temporal
// server (for `gauntlet dev`): set GAUNTLET_BUILD_LOCK to a lock file to
// take turns with other builds of such binaries.
func buildOne(t *testing.T, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if out, ok := builtBin[pkg]; ok {
		return out
	}
	root, err := fleettest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	if buildDir == "" {
		if buildDir, err = os.MkdirTemp("", "fleet-bin-"); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(buildDir, filepath.Base(pkg))
	args := []string{"go", "build", "-o", out, pkg}
	if lock := os.Getenv("GAUNTLET_BUILD_LOCK"); lock != "" {
		args = append([]string{"flock", lock}, args...)
	}
	start := time.Now()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatal(&buildError{pkg, err, string(b)})
	}
	t.Logf("go build %s: %s", pkg, time.Since(start).Round(100*time.Millisecond))
	builtBin[pkg] = out
	return out
}

type buildError struct {
	pkg string
	err error
	out string
}

func (e *buildError) Error() string { return "go build " + e.pkg + ": " + e.err.Error() + "\n" + e.out }

func repoPath(t *testing.T, rel string) string {
	t.Helper()
	root, err := fleettest.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(root, rel)
}

// toolsPath puts the repository's bin/ (temporal, temporal-sql-tool) first
// on a host's PATH, as the admin-tools image has them on its own.
func toolsPath(t *testing.T) string {
	return "PATH=" + repoPath(t, "bin") + ":" + os.Getenv("PATH")
}

// script runs one of the compose file's setup scripts on h, as its job does.
func script(ctx context.Context, t *testing.T, h *fleettest.Host, name string, env ...string) (string, error) {
	t.Helper()
	out, err := h.OutputContext(ctx, fleettest.Spec{
		Args: []string{"sh", repoPath(t, filepath.Join("deploy", "temporal", name))},
		Env:  append([]string{toolsPath(t)}, env...),
	})
	return string(out), err
}

// TestCreateNamespaceOnFreshServer runs the compose file's namespace job
// against a server that has just started on an empty database: it must
// say ready only when a workflow's first task can upsert every attribute
// the workflows use, and change nothing when run again.
func TestCreateNamespaceOnFreshServer(t *testing.T) {
	fleettest.Tool(t, "temporal")
	f := fleettest.New(t)
	server, admin := f.AddHost("temporal"), f.AddHost("admin")
	pg := fleettest.StartPostgres(t, server)
	tp := fleettest.StartTemporal(t, server, pg, fleettest.TemporalOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	start := time.Now()
	out, err := script(ctx, t, admin, "create-namespace.sh", "TEMPORAL_ADDRESS="+tp.Addr(), "DEFAULT_NAMESPACE=default")
	if err != nil || !strings.Contains(out, "namespace default is ready") {
		t.Fatalf("create-namespace.sh on a fresh server: %v\n%s", err, out)
	}
	t.Logf("create-namespace.sh on a fresh server: ready in %s", time.Since(start).Round(time.Millisecond))

	// No grace: the probe's first task upserts every attribute at once.
	probe, cancelProbe := context.WithTimeout(ctx, 20*time.Second)
	defer cancelProbe()
	if err := tp.WaitReady(probe, admin, "default", searchattr.Definitions()); err != nil {
		t.Fatalf("after create-namespace.sh said ready: %v", err)
	}

	again, err := script(ctx, t, admin, "create-namespace.sh", "TEMPORAL_ADDRESS="+tp.Addr(), "DEFAULT_NAMESPACE=default", "NAMESPACE_CACHE_REFRESH=0")
	if err != nil || strings.TrimSpace(again) != "namespace default is ready" {
		t.Fatalf("create-namespace.sh run again: %v\n%s", err, again)
	}
}

// TestCreateNamespaceTimesOut points the namespace job at a host where no
// server runs: it must give up when told, saying what it waited for.
func TestCreateNamespaceTimesOut(t *testing.T) {
	fleettest.Tool(t, "temporal")
	f := fleettest.New(t)
	empty, admin := f.AddHost("empty"), f.AddHost("admin")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	addr := empty.Addr(fleettest.TemporalPort)
	out, err := script(ctx, t, admin, "create-namespace.sh", "TEMPORAL_ADDRESS="+addr, "READY_TIMEOUT=3")
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("create-namespace.sh without a server: %v, want exit status 1\n%s", err, out)
	}
	want := "create-namespace: Temporal server at " + addr + ": not ready within 3s: "
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("create-namespace.sh without a server: %v; want %q and the server's last error", err, want)
	}
}

// TestComposeTopology is docker-compose.yml's Temporal stack with its own
// setup scripts, the worker on its own host and the CLI on a third: the
// smoke pipeline runs to success, and its first workflow task is not
// rejected for search attributes the namespace job had not yet registered.
func TestComposeTopology(t *testing.T) {
	fleettest.Tool(t, "temporal")
	fleettest.Tool(t, "temporal-sql-tool")
	bins := build(t)
	f := fleettest.New(t)
	server, workerHost, cli := f.AddHost("temporal"), f.AddHost("worker"), f.AddHost("cli")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	pg := fleettest.StartPostgres(t, server)
	schemaEnv := []string{"POSTGRES_SEEDS=" + server.IP.String(), "DB_PORT=5432", "POSTGRES_USER=" + pg.User, "POSTGRES_PWD=" + pg.Password()}
	for i := range 2 { // the job runs on every `up`: the second run changes nothing
		if out, err := script(ctx, t, server, "setup-schema.sh", schemaEnv...); err != nil || !strings.Contains(out, "temporal schemas are up to date") {
			t.Fatalf("setup-schema.sh run %d: %v\n%s", i+1, err, out)
		}
	}
	tp := fleettest.StartTemporal(t, server, pg, fleettest.TemporalOptions{
		SkipSchema:    true,
		DynamicConfig: repoPath(t, "deploy/temporal/dynamicconfig.yaml"),
	})
	if out, err := script(ctx, t, cli, "create-namespace.sh", "TEMPORAL_ADDRESS="+tp.Addr(), "DEFAULT_NAMESPACE=default"); err != nil {
		t.Fatalf("create-namespace.sh: %v\n%s", err, out)
	}

	worker, err := workerHost.Start("worker", fleettest.Spec{Args: []string{bins.worker,
		"--address", tp.Addr(),
		"--state-dir", filepath.Join(workerHost.Dir(), "state"),
		"--pipelines", repoPath(t, "pipelines"),
	}}, syscall.SIGTERM)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	out, err := cli.OutputContext(ctx, fleettest.Spec{Args: []string{bins.gauntlet, "run", "smoke", "--wait",
		"--address", tp.Addr(), "--id", "smoke-fleet", "--pipelines", repoPath(t, "pipelines")}})
	if err != nil {
		t.Fatalf("gauntlet run smoke --wait: %v\n%s\nworker:\n%s", err, out, worker.Output())
	}
	t.Logf("smoke on the fleet: %s\n%s", time.Since(start).Round(time.Millisecond), out)

	c, err := tp.Dial(ctx, cli, "default")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	desc, err := c.DescribeWorkflowExecution(ctx, "smoke-fleet", "")
	if err != nil {
		t.Fatal(err)
	}
	if st := desc.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_COMPLETED {
		t.Fatalf("smoke-fleet: %v, want completed", st)
	}
	it := c.GetWorkflowHistory(ctx, "smoke-fleet", "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		if a := ev.GetWorkflowTaskFailedEventAttributes(); a != nil {
			t.Errorf("smoke-fleet: workflow task failed (%v): %s", a.GetCause(), a.GetFailure().GetMessage())
		}
	}

	if err := worker.Stop(time.Minute); err != nil {
		t.Errorf("worker shutdown on SIGTERM: %v\n%s", err, worker.Output())
	}
}

// TestWorkerHostLossMidRun is issue 17's fleet: two worker hosts with
// private state directories that share nothing but the Temporal cluster
// and one S3 store (GAUNTLET_STORE and the AWS SDK's environment). A run
// starts on worker A alone; once its train step has completed there,
// worker B joins and host A loses power. The steps left must run on B,
// from what A put in the store, and the run must succeed. (Workers keep a
// run to themselves while they live: sticky workflow tasks and eager
// activities, so a fleet's steps change hosts when a host is lost.)
func TestWorkerHostLossMidRun(t *testing.T) {
	bins := build(t)
	f := fleettest.New(t)
	server, hostA, hostB, cli := f.AddHost("temporal"), f.AddHost("worker-a"), f.AddHost("worker-b"), f.AddHost("cli")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pg := fleettest.StartPostgres(t, server)
	tp := fleettest.StartTemporal(t, server, pg, fleettest.TemporalOptions{
		Namespace:        "default",
		SearchAttributes: searchattr.Definitions(),
		DynamicConfig:    repoPath(t, "deploy/temporal/dynamicconfig.yaml"),
	})
	store := fleettest.StartS3(t, server, "artifacts")
	storeEnv := append(store.Env(), "GAUNTLET_STORE=s3://artifacts/fleet")
	startWorker := func(h *fleettest.Host) *fleettest.Proc {
		p, err := h.Start("worker", fleettest.Spec{
			Args: []string{bins.worker, "--address", tp.Addr(),
				"--state-dir", filepath.Join(h.Dir(), "state"),
				"--pipelines", repoPath(t, "pipelines")},
			Env: storeEnv,
		}, syscall.SIGTERM)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	workerA := startWorker(hostA)

	// Enough rows that evaluate and fairness outlast the kill below.
	data := "data=builtin:credit-risk?rows=400000&seed=1&bias=0.3"
	if out, err := cli.OutputContext(ctx, fleettest.Spec{
		Args: []string{bins.gauntlet, "run", "smoke", "-p", data, "--address", tp.Addr(), "--id", "smoke-handover", "--pipelines", repoPath(t, "pipelines")},
		Env:  storeEnv,
	}); err != nil {
		t.Fatalf("gauntlet run: %v\n%s", err, out)
	}
	c, err := tp.Dial(ctx, cli, "default")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for !stepCompleted(ctx, t, c, "smoke-handover", "train") {
		select {
		case <-ctx.Done():
			t.Fatalf("train did not complete on worker A:\n%s", workerA.Output())
		case <-time.After(50 * time.Millisecond):
		}
	}
	workerB := startWorker(hostB)
	if err := hostA.Kill(); err != nil {
		t.Fatal(err)
	}

	var result any
	err = c.GetWorkflow(ctx, "smoke-handover", "").Get(ctx, &result)
	if err != nil {
		t.Fatalf("run smoke-handover after losing worker host A: %v\nworker B:\n%s", err, workerB.Output())
	}
	// The steps that read train's model completed on host B, from the
	// store: what train wrote on host A went down with it.
	done := completedBy(ctx, t, c, "smoke-handover")
	trainer := done[contract.StepActivityName("train")]
	moved := 0
	for _, step := range []string{"evaluate", "fairness-gate"} {
		who, ok := done[contract.StepActivityName(step)]
		if !ok {
			t.Errorf("%s did not complete", step)
		}
		if ok && who != trainer {
			moved++
		}
	}
	if moved == 0 {
		t.Fatalf("evaluate and fairness-gate completed on %s, train's worker, before host A was killed; make the steps slower", trainer)
	}
}

// completedBy maps each activity type of run to the identity of the
// worker that completed it.
func completedBy(ctx context.Context, t *testing.T, c client.Client, run string) map[string]string {
	t.Helper()
	scheduled := map[int64]string{}
	out := map[string]string{}
	for _, ev := range history(ctx, t, c, run) {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil {
			out[scheduled[a.GetScheduledEventId()]] = a.GetIdentity()
		}
	}
	return out
}

func history(ctx context.Context, t *testing.T, c client.Client, id string) []*historypb.HistoryEvent {
	t.Helper()
	var events []*historypb.HistoryEvent
	it := c.GetWorkflowHistory(ctx, id, "", false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
	for it.HasNext() {
		ev, err := it.Next()
		if err != nil {
			t.Fatal(err)
		}
		events = append(events, ev)
	}
	return events
}

// stepCompleted reports whether the activity of step (its `uses`) has
// completed in run's history.
func stepCompleted(ctx context.Context, t *testing.T, c client.Client, run, step string) bool {
	t.Helper()
	scheduled := map[int64]string{}
	for _, ev := range history(ctx, t, c, run) {
		if a := ev.GetActivityTaskScheduledEventAttributes(); a != nil {
			scheduled[ev.GetEventId()] = a.GetActivityType().GetName()
		}
		if a := ev.GetActivityTaskCompletedEventAttributes(); a != nil && scheduled[a.GetScheduledEventId()] == contract.StepActivityName(step) {
			return true
		}
	}
	return false
}

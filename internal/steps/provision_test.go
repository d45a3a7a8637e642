package steps

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/stepio"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
	"github.com/gauntlet-ml/gauntlet/internal/tf"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// terraformForTest returns the pinned terraform the way provision finds
// it, or skips: these tests run the real binary; only the worker process
// the local-node module starts is a stand-in.
func terraformForTest(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the local-node tests read /proc, which only Linux has")
	}
	bin, err := tf.Find("")
	if errors.Is(err, tf.ErrNotFound) {
		testkit.Need(t, "needs terraform: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// fakeWorker writes a script standing in for the worker binary: it records
// its arguments one a line and idles until SIGTERM.
func fakeWorker(t *testing.T) (script, argsFile string) {
	t.Helper()
	dir := t.TempDir()
	argsFile = filepath.Join(dir, "worker-args")
	script = filepath.Join(dir, "fake-worker")
	body := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %s\ntrap 'exit 0' TERM\nwhile :; do sleep 0.1; done\n", strconv.Quote(argsFile))
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, argsFile
}

// nodeProcesses lists the live processes started for node id, found by
// their --node-id argument, so the test sees a second worker if a retry
// starts one.
func nodeProcesses(t *testing.T, id string) []int {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if i := slices.Index(args, "--node-id"); i >= 0 && i+1 < len(args) && args[i+1] == id && testkit.Alive(pid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killNodeOnCleanup stops whatever a failing test leaves running for id.
func killNodeOnCleanup(t *testing.T, id string) {
	t.Cleanup(func() {
		for _, pid := range nodeProcesses(t, id) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	})
}

func TestProvisionLocalNodeIsIdempotentAndDestroyed(t *testing.T) {
	terraformForTest(t)
	script, argsFile := fakeWorker(t)
	t.Setenv(EnvWorkerBinary, script)
	t.Setenv(envTemporalAddress, "127.0.0.1:7999")
	t.Setenv(envTemporalNamespace, "")
	state := t.TempDir()
	env := newEnv(t, state)
	id := nodeID("run-1", "gpu")
	killNodeOnCleanup(t, id)

	with := map[string]any{"module": "local-node", "gpu_memory_gb": 16, "max_price_per_hour": "1.20", "vars": map[string]any{"stop_timeout_seconds": 5}}
	out := mustRun(t, env, "provision", "gpu", with)
	for k, want := range map[string]any{
		"node_id":        id,
		"task_queue":     "gauntlet-node-" + id,
		"gpu":            "none (local CPU node)",
		"price_per_hour": 0.0,
		"offer":          nil,
	} {
		if out[k] != want {
			t.Errorf("output %s = %v, want %v", k, out[k], want)
		}
	}
	if _, ok := out["workdir"]; ok {
		t.Errorf("outputs hold the worker's local workdir %v: a path means nothing on another host", out["workdir"])
	}
	if log := readOut(t, env, out["terraform_log"]); !strings.Contains(string(log), "=== terraform apply") {
		t.Errorf("terraform_log output does not hold the apply's log:\n%s", log)
	}
	if req, _ := out["request"].(map[string]any); req["gpu_memory_gb"] != 16.0 || req["max_price_per_hour"] != 1.2 {
		t.Errorf("request not recorded: %v", out["request"])
	}
	started, err := time.Parse(time.RFC3339, fmt.Sprint(out["started_at"]))
	if err != nil || time.Since(started) > time.Minute {
		t.Errorf("started_at %v: %v", out["started_at"], err)
	}
	rec, err := loadNodeRecord(context.Background(), env.Artifacts().Store(), id)
	if err != nil || rec == nil || rec.Config == "" || rec.Vars["task_queue"] != "gauntlet-node-"+id || rec.Backend != nil || rec.TerraformLog != out["terraform_log"] {
		t.Errorf("node record in the store: %+v (%v); want the module as applied, its variables, local state (a file:// store) and the log", rec, err)
	}
	pidFile, _ := out["module_outputs"].(map[string]any)["pid_file"].(string)
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("pid file: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || !testkit.Alive(pid) {
		t.Fatalf("worker pid %q is not running", b)
	}
	args, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSpace(string(args)), "\n")
	for _, pair := range [][2]string{{"--node-id", id}, {"--task-queue", "gauntlet-node-" + id}, {"--address", "127.0.0.1:7999"},
		{"--namespace", "default"}, {"--state-dir", state}, {"--store", env.Artifacts().StoreURL()}} {
		if i := slices.Index(got, pair[0]); i < 0 || i+1 >= len(got) || got[i+1] != pair[1] {
			t.Errorf("worker args %q lack %s %s", got, pair[0], pair[1])
		}
	}
	if !slices.ContainsFunc(env.progress, func(p map[string]any) bool { return p["phase"] == "init" && p["node_id"] == id }) {
		t.Errorf("no init heartbeat in %v", env.progress)
	}

	// A retried activity re-applies the same node.
	again := mustRun(t, env, "provision", "gpu", with)
	if again["node_id"] != id || again["started_at"] != out["started_at"] || again["task_queue"] != out["task_queue"] {
		t.Errorf("retry gave %v, first attempt %v", again, out)
	}
	if pids := nodeProcesses(t, id); !slices.Equal(pids, []int{pid}) {
		t.Errorf("after the retry the node's workers are %v, want only %d", pids, pid)
	}

	d := mustRun(t, env, "destroy", "teardown", map[string]any{"node": id})
	if d["destroyed"] != true || d["node_id"] != id || d["reason"] != "" {
		t.Errorf("destroy = %v", d)
	}
	if d["cost_usd"] != 0.0 || d["seconds"].(float64) < 0 || d["duration_seconds"].(float64) <= 0 {
		t.Errorf("destroy cost of a local node = %v", d)
	}
	if testkit.Alive(pid) {
		t.Errorf("worker %d still running after destroy", pid)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after destroy: %v", err)
	}

	// Teardown again, by step id and by node id: nothing left, and it says so.
	for _, node := range []string{"gpu", id} {
		d2 := mustRun(t, env, "destroy", "teardown", map[string]any{"node": node})
		if d2["destroyed"] != false || d2["node_id"] != id || !strings.Contains(fmt.Sprint(d2["reason"]), "already destroyed") {
			t.Errorf("destroy %s again = %v", node, d2)
		}
		if d2["seconds"] != d["seconds"] {
			t.Errorf("destroy again priced %v seconds, first %v", d2["seconds"], d["seconds"])
		}
	}
	never := mustRun(t, env, "destroy", "teardown", map[string]any{"node": "no-such-step"})
	if never["destroyed"] != false || !strings.Contains(fmt.Sprint(never["reason"]), "never provisioned") {
		t.Errorf("destroy of a node never provisioned = %v", never)
	}
}

// A worker that dies at once fails the apply with Terraform's log in the
// error, and teardown by step id still finds the half-made node.
func TestProvisionFailureCarriesTerraformLog(t *testing.T) {
	terraformForTest(t)
	dir := t.TempDir()
	script := filepath.Join(dir, "broken-worker")
	if err := os.WriteFile(script, []byte("#!/bin/sh\necho 'cannot dial temporal' >&2\nexit 3\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvWorkerBinary, script)
	env := newEnv(t, t.TempDir())
	killNodeOnCleanup(t, nodeID("run-1", "gpu"))

	_, err := run(t, env, "provision", "gpu", nil)
	if err == nil {
		t.Fatal("provision with a worker that exits succeeded")
	}
	for _, want := range []string{"provision: apply", "last lines of", "exited at once", "cannot dial temporal"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	if _, retryable := Classify(err); !retryable {
		t.Errorf("a failed apply should be retryable: %v", err)
	}
	d := mustRun(t, env, "destroy", "teardown", map[string]any{"node": "gpu"})
	if d["destroyed"] != true {
		t.Errorf("destroy after a failed apply = %v, want the tainted resource destroyed", d)
	}
}

func TestProvisionBadInputs(t *testing.T) {
	env := newEnv(t, t.TempDir())
	for _, c := range []struct {
		name string
		with map[string]any
		want []string
	}{
		{"unknown module", map[string]any{"module": "no-such-module"}, []string{"with.module", "no-such-module", "local-node", "aws-spot-gpu"}},
		{"missing path", map[string]any{"module": "./no/such/dir"}, []string{"with.module", "not a directory of Terraform files"}},
		{"negative count", map[string]any{"gpu_count": -1}, []string{"with.gpu_count"}},
		{"not a number", map[string]any{"gpu_memory_gb": "lots"}, []string{"with.gpu_memory_gb"}},
		{"unknown instance type", map[string]any{"instance_types": "g5.xlarge,x9.huge"}, []string{"with.instance_types", "x9.huge"}},
		{"reserved var", map[string]any{"vars": map[string]any{"node_id": "mine"}}, []string{"with.vars.node_id"}},
		{"undeclared var", map[string]any{"vars": `{"colour": "blue"}`}, []string{"with.vars.colour", "declares no such variable"}},
		{"offer var on a cloud module", map[string]any{"module": "aws-spot-gpu", "max_price_per_hour": 1, "regions": "us-east-1",
			"vars": map[string]any{"region": "eu-west-1"}}, []string{"with.vars.region"}},
		{"cloud without price", map[string]any{"module": "aws-spot-gpu", "regions": "us-east-1"}, []string{"with.max_price_per_hour"}},
		{"cloud without regions", map[string]any{"module": "aws-spot-gpu", "max_price_per_hour": 1}, []string{"with.regions"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := run(t, env, "provision", "gpu", c.with)
			wantPermanent(t, err, c.want...)
			if kind, _ := Classify(err); kind != kindBadInput {
				t.Errorf("kind %s, want %s", kind, kindBadInput)
			}
		})
	}
	_, err := run(t, env, "destroy", "teardown", map[string]any{})
	wantPermanent(t, err, "with.node")
	if _, err := os.Stat(filepath.Join(env.state, "nodes")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("bad inputs left a node directory behind: %v", err)
	}
}

func TestProvisionMissingTools(t *testing.T) {
	env := newEnv(t, t.TempDir())
	t.Setenv(tf.EnvTerraform, filepath.Join(t.TempDir(), "terraform"))
	_, err := run(t, env, "provision", "gpu", nil)
	wantPermanent(t, err, "make tools", tf.EnvTerraform)

	// Any executable passes tf.Find; the worker is checked before it runs.
	t.Setenv(tf.EnvTerraform, "/bin/true")
	t.Setenv(EnvWorkerBinary, filepath.Join(t.TempDir(), "worker"))
	_, err = run(t, env, "provision", "gpu", nil)
	wantPermanent(t, err, "worker binary", "make build", EnvWorkerBinary)
	if kind, _ := Classify(err); kind != kindMissingTool {
		t.Errorf("kind %s, want %s", kind, kindMissingTool)
	}
}

func TestProvisionNodeIDFitsBothModules(t *testing.T) {
	long := strings.Repeat("r", 80)
	for _, c := range [][2]string{{"run-1", "gpu"}, {"wf/with spaces:and.dots", "train_gpu"}, {long, "gpu"}} {
		id := nodeID(c[0], c[1])
		if len(id) > maxNodeIDLen || strings.Trim(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
			t.Errorf("nodeID(%q, %q) = %q: not a valid aws-spot-gpu node id", c[0], c[1], id)
		}
		if nodeID(c[0], c[1]) != id {
			t.Errorf("nodeID(%q, %q) is not deterministic", c[0], c[1])
		}
	}
	if nodeID("a.b", "gpu") == nodeID("a_b", "gpu") || nodeID(long+"x", "gpu") == nodeID(long+"y", "gpu") {
		t.Error("ids that sanitise or truncate alike give the same node id")
	}
}

func TestProvisionBackendSettings(t *testing.T) {
	parseBackend := func(b any) (backendSettings, error) {
		var a provisionInputs
		if err := stepio.Decode(map[string]any{"backend": b}, &a); err != nil {
			return nil, Permanent(kindBadInput, err)
		}
		return a.Backend, nil
	}
	got, err := parseBackend(map[string]any{"bucket": "tf", "key_prefix": "/gauntlet/nodes/", "region": "eu-west-1",
		"force_path_style": true, "max_retries": 5.0})
	if err != nil {
		t.Fatal(err)
	}
	cfg := backendConfig(got, nodeID("run-1", "gpu"))
	want := map[string]string{"bucket": "tf", "key": "gauntlet/nodes/" + nodeID("run-1", "gpu") + ".tfstate",
		"region": "eu-west-1", "force_path_style": "true", "max_retries": "5"}
	if fmt.Sprint(cfg) != fmt.Sprint(want) {
		t.Errorf("backend config = %v, want %v", cfg, want)
	}
	if a, b := backendConfig(got, nodeID("run-1", "gpu"))["key"], backendConfig(got, nodeID("run-2", "gpu"))["key"]; a == b {
		t.Errorf("two runs share the state key %s", a)
	}
	if a, b := backendConfig(got, nodeID("run-1", "gpu"))["key"], backendConfig(got, nodeID("run-1", "gpu2"))["key"]; a == b {
		t.Errorf("two steps share the state key %s", a)
	}
	if cfg := backendConfig(map[string]string{"bucket": "tf"}, "n"); cfg["key"] != "n.tfstate" {
		t.Errorf("key without a prefix = %q", cfg["key"])
	}
	if cfg, err := parseBackend(nil); cfg != nil || err != nil || backendConfig(cfg, "n") != nil {
		t.Errorf("no backend input gave %v, %v", cfg, err)
	}
	for _, c := range []struct {
		with any
		want string
	}{
		{map[string]any{"bucket": "tf", "key": "shared.tfstate"}, "with.backend.key"},
		{map[string]any{"bucket": "tf", "secret_key": "s"}, "with.backend.secret_key"},
		{map[string]any{"region": "eu-west-1"}, "with.backend.bucket"},
		{map[string]any{"bucket": "tf", "endpoints": map[string]any{"s3": "x"}}, "with.backend.endpoints"},
		{"not json", "with.backend"},
	} {
		_, err := parseBackend(c.with)
		wantPermanent(t, err, c.want)
	}
}

// The node's state goes to S3 (a real S3 protocol server) under a key of
// its own, node.json records the backend, and destroy, which reopens the
// workspace from node.json alone, finds the state there.
func TestProvisionLocalNodeStateInS3(t *testing.T) {
	bin := terraformForTest(t)
	s3 := s3mem.New()
	if err := s3.CreateBucket("tfstate"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(s3, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(srv.Close)
	script, _ := fakeWorker(t)
	t.Setenv(EnvWorkerBinary, script)
	t.Setenv("AWS_ACCESS_KEY_ID", "test")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "test")
	state := t.TempDir()
	env := newEnv(t, state)
	id := nodeID("run-1", "gpu")
	killNodeOnCleanup(t, id)

	backend := map[string]any{"bucket": "tfstate", "key_prefix": "gauntlet", "region": "us-east-1", "endpoint": srv.URL,
		"force_path_style": true, "skip_credentials_validation": true, "skip_metadata_api_check": true, "skip_region_validation": true}
	// Terraform 1.6 and OpenTofu ask AWS for the account id unless told
	// not to; 1.5 refuses the setting.
	if testkit.TerraformAtLeast(t, bin, 1, 6) {
		backend["skip_requesting_account_id"] = true
	}
	mustRun(t, env, "provision", "gpu", map[string]any{"module": "local-node", "backend": backend,
		"vars": map[string]any{"stop_timeout_seconds": 5}})
	workdir := nodeWorkdir(state, "run-1", "gpu")
	key := "gauntlet/" + id + ".tfstate"
	if obj, err := s3.HeadObject("tfstate", key); err != nil || obj.Size == 0 {
		t.Fatalf("no state at s3://tfstate/%s after apply: %v", key, err)
	}
	if _, err := os.Stat(filepath.Join(workdir, "terraform.tfstate")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("local state beside an S3 backend: %v", err)
	}
	rec, err := loadNodeRecord(context.Background(), env.Artifacts().Store(), id)
	if err != nil || rec == nil {
		t.Fatalf("node record: %v %v", rec, err)
	}
	if rec.Backend["key"] != key || rec.Backend["endpoint"] != srv.URL || rec.Backend["force_path_style"] != "true" {
		t.Errorf("node record's backend = %v", rec.Backend)
	}
	pids := nodeProcesses(t, id)
	if len(pids) != 1 {
		t.Fatalf("node workers %v, want one", pids)
	}

	d := mustRun(t, env, "destroy", "teardown", map[string]any{"node": "gpu"})
	if d["destroyed"] != true || d["node_id"] != id {
		t.Errorf("destroy = %v", d)
	}
	if testkit.Alive(pids[0]) {
		t.Errorf("worker %d still running after destroy", pids[0])
	}
	again := mustRun(t, env, "destroy", "teardown", map[string]any{"node": "gpu"})
	if again["destroyed"] != false || !strings.Contains(fmt.Sprint(again["reason"]), "already destroyed") {
		t.Errorf("destroy again = %v", again)
	}
}

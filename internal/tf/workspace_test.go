package tf

import (
	"bytes"
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

	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"

	"github.com/gauntlet-ml/gauntlet/internal/testkit"
)

// terraformForTest finds the pinned terraform the way the worker does, or
// skips: these tests run the real binary and nothing stands in for it.
func terraformForTest(t *testing.T) string {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("the local-node tests read /proc, which only Linux has")
	}
	bin, err := Find("")
	if errors.Is(err, ErrNotFound) {
		testkit.Need(t, "needs terraform: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return bin
}

// standIn writes a script that plays the worker: it records its arguments
// one a line, then idles until stopped. obeyTERM false makes it ignore
// SIGTERM so only SIGKILL stops it.
func standIn(t *testing.T, dir string, obeyTERM bool) (script, argsFile string) {
	t.Helper()
	argsFile = filepath.Join(dir, "worker-args")
	trap := `trap 'exit 0' TERM`
	if !obeyTERM {
		trap = `trap '' TERM`
	}
	body := fmt.Sprintf("#!/bin/sh\nprintf '%%s\\n' \"$@\" > %s\n%s\nwhile :; do sleep 0.1; done\n", strconv.Quote(argsFile), trap)
	script = filepath.Join(dir, "fake-worker")
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	return script, argsFile
}

func localNode(t *testing.T, bin string) (*Workspace, map[string]any, string) {
	t.Helper()
	root := t.TempDir()
	script, argsFile := standIn(t, root, true)
	ws, err := New(Config{Terraform: bin, Module: "../../infra/modules/local-node", Dir: filepath.Join(root, "run")})
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]any{
		"node_id":          "node-1",
		"task_queue":       "run-42-gpu",
		"worker_binary":    script,
		"temporal_address": "127.0.0.1:7233",
		"namespace":        "gauntlet",
		"state_dir":        filepath.Join(root, "state"),
		"log_file":         filepath.Join(root, "state", "worker.log"),
		"extra_args":       []string{"--metrics-addr", "127.0.0.1:0", "an arg with spaces"},
	}
	return ws, vars, argsFile
}

func readPid(t *testing.T, pidFile string) int {
	t.Helper()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s holds %q", pidFile, b)
	}
	// Whatever a failing test leaves running is stopped here.
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL) })
	return pid
}

func TestLocalNodeApplyDestroy(t *testing.T) {
	bin := terraformForTest(t)
	ws, vars, argsFile := localNode(t, bin)
	ctx := context.Background()

	out, err := ws.Apply(ctx, vars)
	if err != nil {
		t.Fatal(err)
	}
	state := vars["state_dir"].(string)
	wantPidFile := filepath.Join(state, "worker-node-1.pid")
	for k, want := range map[string]any{
		"task_queue":      "run-42-gpu",
		"node_id":         "node-1",
		"gpu_description": "none (local CPU node)",
		"pid_file":        wantPidFile,
	} {
		if out[k] != want {
			t.Errorf("output %s = %v, want %v", k, out[k], want)
		}
	}
	pid := readPid(t, wantPidFile)
	if !testkit.Alive(pid) {
		t.Fatalf("worker pid %d is not running after apply", pid)
	}
	args, err := os.ReadFile(argsFile)
	if err != nil {
		t.Fatal(err)
	}
	wantArgs := []string{
		"--task-queue", "run-42-gpu", "--node-id", "node-1", "--address", "127.0.0.1:7233",
		"--namespace", "gauntlet", "--state-dir", state,
		"--metrics-addr", "127.0.0.1:0", "an arg with spaces",
	}
	if got := strings.Split(strings.TrimSuffix(string(args), "\n"), "\n"); !slices.Equal(got, wantArgs) {
		t.Errorf("worker args:\n got %q\nwant %q", got, wantArgs)
	}
	// The worker outlives the terraform process that started it.
	if ppid := parentOf(t, pid); ppid == os.Getpid() {
		t.Errorf("worker is a child of the test, not detached")
	}

	if err := ws.Destroy(ctx); err != nil {
		t.Fatal(err)
	}
	if testkit.Alive(pid) {
		t.Errorf("worker pid %d still running after destroy", pid)
	}
	if _, err := os.Stat(wantPidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after destroy: %v, want it gone", err)
	}
	if err := ws.Destroy(ctx); err != nil {
		t.Errorf("second destroy: %v", err)
	}
	log, err := os.ReadFile(ws.LogPath())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"=== terraform init", "=== terraform apply", "=== terraform destroy", "started as pid", "stopped"} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("terraform log lacks %q", want)
		}
	}
}

func parentOf(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	ppid, err := strconv.Atoi(f[1])
	if err != nil {
		t.Fatal(err)
	}
	return ppid
}

// A worker that was already gone (crashed, killed by hand, machine
// rebooted) must not make teardown fail.
func TestLocalNodeDestroyAfterWorkerDied(t *testing.T) {
	bin := terraformForTest(t)
	ws, vars, _ := localNode(t, bin)
	out, err := ws.Apply(context.Background(), vars)
	if err != nil {
		t.Fatal(err)
	}
	pidFile := out["pid_file"].(string)
	pid := readPid(t, pidFile)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := ws.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(pidFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("pid file after destroy: %v, want it gone", err)
	}
}

func TestLocalNodeKillsWorkerThatIgnoresTERM(t *testing.T) {
	bin := terraformForTest(t)
	ws, vars, _ := localNode(t, bin)
	script, _ := standIn(t, filepath.Dir(ws.Dir()), false)
	vars["worker_binary"] = script
	vars["stop_timeout_seconds"] = 1
	out, err := ws.Apply(context.Background(), vars)
	if err != nil {
		t.Fatal(err)
	}
	pid := readPid(t, out["pid_file"].(string))
	if err := ws.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if testkit.Alive(pid) {
		t.Errorf("worker %d survived destroy", pid)
	}
	log, _ := os.ReadFile(ws.LogPath())
	if !bytes.Contains(log, []byte("sending SIGKILL")) {
		t.Errorf("destroy did not escalate to SIGKILL; log:\n%s", log)
	}
}

func TestLocalNodeChangedQueueRestartsWorker(t *testing.T) {
	bin := terraformForTest(t)
	ws, vars, _ := localNode(t, bin)
	out, err := ws.Apply(context.Background(), vars)
	if err != nil {
		t.Fatal(err)
	}
	first := readPid(t, out["pid_file"].(string))
	vars["task_queue"] = "run-42-gpu-retry"
	out, err = ws.Apply(context.Background(), vars)
	if err != nil {
		t.Fatal(err)
	}
	second := readPid(t, out["pid_file"].(string))
	if first == second || testkit.Alive(first) || !testkit.Alive(second) {
		t.Errorf("after a queue change: old pid %d running=%v, new pid %d running=%v", first, testkit.Alive(first), second, testkit.Alive(second))
	}
	if out["task_queue"] != "run-42-gpu-retry" {
		t.Errorf("task_queue output = %v", out["task_queue"])
	}
	if err := ws.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if testkit.Alive(second) {
		t.Errorf("worker %d running after destroy", second)
	}
}

func TestLocalNodeWorkerThatExitsFailsApply(t *testing.T) {
	bin := terraformForTest(t)
	ws, vars, _ := localNode(t, bin)
	bad := filepath.Join(filepath.Dir(ws.Dir()), "bad-worker")
	if err := os.WriteFile(bad, []byte("#!/bin/sh\necho 'cannot reach temporal' >&2\nexit 6\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	vars["worker_binary"] = bad
	_, err := ws.Apply(context.Background(), vars)
	if err == nil {
		t.Fatal("apply succeeded with a worker that exits at once")
	}
	log, _ := os.ReadFile(ws.LogPath())
	if !bytes.Contains(log, []byte("exited at once")) || !bytes.Contains(log, []byte("cannot reach temporal")) {
		t.Errorf("log does not show why:\n%s", log)
	}
	if err := ws.Destroy(context.Background()); err != nil {
		t.Errorf("destroy after a failed apply: %v", err)
	}
}

func TestDestroyNeverApplied(t *testing.T) {
	// Nothing runs terraform here, so any existing file serves as the binary.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for name, cfg := range map[string]Config{
		"module copied": {Terraform: self, Module: "../../infra/modules/local-node", Dir: filepath.Join(t.TempDir(), "a")},
		"bare dir":      {Terraform: self, Dir: filepath.Join(t.TempDir(), "b")},
	} {
		ws, err := New(cfg)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := ws.Destroy(context.Background()); err != nil {
			t.Errorf("%s: destroy of a never-applied workspace: %v", name, err)
		}
	}
	ws, err := New(Config{Terraform: self, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ws.Apply(context.Background(), nil); err == nil || !strings.Contains(err.Error(), "no module") {
		t.Errorf("apply with no module: %v", err)
	}
}

func TestModuleNeedingProviderFailsFast(t *testing.T) {
	bin := terraformForTest(t)
	mod := t.TempDir()
	tf := `terraform {
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.0"
    }
  }
}
`
	if err := os.WriteFile(filepath.Join(mod, "main.tf"), []byte(tf), 0o644); err != nil {
		t.Fatal(err)
	}
	ws, err := New(Config{Terraform: bin, Module: mod, Dir: filepath.Join(t.TempDir(), "run")})
	if err != nil {
		t.Fatal(err)
	}
	_, err = ws.Apply(context.Background(), nil)
	var pe *ProviderError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v, want a ProviderError", err)
	}
	for _, want := range []string{"hashicorp/aws", "provider mirror", filepath.Join(ws.Dir(), emptyMirror)} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestCancelInterruptsTerraform(t *testing.T) {
	bin := terraformForTest(t)
	mod := t.TempDir()
	marker := filepath.Join(t.TempDir(), "started")
	tf := fmt.Sprintf(`resource "terraform_data" "slow" {
  provisioner "local-exec" {
    command = "touch %s && exec sleep 300"
  }
}
`, marker)
	if err := os.WriteFile(filepath.Join(mod, "main.tf"), []byte(tf), 0o644); err != nil {
		t.Fatal(err)
	}
	ws, err := New(Config{Terraform: bin, Module: mod, Dir: filepath.Join(t.TempDir(), "run")})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		for {
			if _, err := os.Stat(marker); err == nil {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	_, err = ws.Apply(ctx, nil)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want context.Canceled", err)
	}
}

func TestEncodeVars(t *testing.T) {
	got, err := encodeVars(map[string]any{
		"s": "plain [not parsed]",
		"n": 30,
		"l": []string{"a b", `c"d`},
		"m": map[string]string{"k": "v"},
		"b": true,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{`b=true`, `l=["a b","c\"d"]`, `m={"k":"v"}`, `n=30`, `s=plain [not parsed]`}
	if flags := varFlags(got); !slices.Equal(flags, want) {
		t.Errorf("flags = %q, want %q", flags, want)
	}
	for _, bad := range []string{"", "a=b", "a b"} {
		if _, err := encodeVars(map[string]any{bad: "x"}); err == nil {
			t.Errorf("variable name %q accepted", bad)
		}
	}
}

// With a backend config the state goes to S3 (a real S3 protocol server
// here), not the working directory, and destroy finds it there.
func TestLocalNodeStateInS3(t *testing.T) {
	bin := terraformForTest(t)
	backend := s3mem.New()
	if err := backend.CreateBucket("tfstate"); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(gofakes3.New(backend, gofakes3.WithLogger(gofakes3.DiscardLog())).Server())
	t.Cleanup(srv.Close)

	root := t.TempDir()
	script, _ := standIn(t, root, true)
	cfg := Config{
		Terraform: bin,
		Module:    "../../infra/modules/local-node",
		Dir:       filepath.Join(root, "run"),
		Backend: map[string]string{
			"bucket":                      "tfstate",
			"key":                         "runs/42/node-1.tfstate",
			"region":                      "us-east-1",
			"endpoint":                    srv.URL,
			"force_path_style":            "true",
			"skip_credentials_validation": "true",
			"skip_metadata_api_check":     "true",
			"skip_region_validation":      "true",
		},
		Env: map[string]string{"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"},
	}
	// Terraform 1.6 and later ask AWS for the account id unless told not
	// to; 1.5 refuses the setting.
	if testkit.TerraformAtLeast(t, bin, 1, 6) {
		cfg.Backend["skip_requesting_account_id"] = "true"
	}
	ws, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	out, err := ws.Apply(context.Background(), map[string]any{
		"node_id": "node-1", "task_queue": "q", "worker_binary": script, "temporal_address": "127.0.0.1:7233",
		"state_dir": filepath.Join(root, "state"), "log_file": filepath.Join(root, "state", "worker.log"),
	})
	if err != nil {
		t.Fatal(err)
	}
	pid := readPid(t, out["pid_file"].(string))
	obj, err := backend.HeadObject("tfstate", "runs/42/node-1.tfstate")
	if err != nil || obj.Size == 0 {
		t.Fatalf("no state in S3 after apply: %v", err)
	}
	if _, err := os.Stat(filepath.Join(ws.Dir(), "terraform.tfstate")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("local state file exists beside an S3 backend: %v", err)
	}
	if err := ws.Destroy(context.Background()); err != nil {
		t.Fatal(err)
	}
	if testkit.Alive(pid) {
		t.Errorf("worker %d running after destroy", pid)
	}
}

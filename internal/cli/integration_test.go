package cli

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/searchattr"
	"github.com/gauntlet-ml/gauntlet/internal/tclient"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
	"github.com/gauntlet-ml/gauntlet/workflows"
)

// The integration tests run `gauntlet dev` as a real subprocess: the test
// binary re-executes itself as the CLI, so no separate build is needed.
const asCLI = "GAUNTLET_TEST_AS_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(asCLI) == "1" {
		os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr, os.Getenv))
	}
	os.Exit(m.Run())
}

func freeAddr(t *testing.T) (string, int) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String(), l.Addr().(*net.TCPAddr).Port
}

// devProcess is a `gauntlet dev` subprocess.
type devProcess struct {
	cmd    *exec.Cmd
	output *bytes.Buffer
}

func startDev(t *testing.T, args ...string) *devProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0], append([]string{"dev"}, args...)...)
	cmd.Env = append(os.Environ(), asCLI+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &devProcess{cmd: cmd, output: &bytes.Buffer{}}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		sent := false
		for sc.Scan() {
			p.output.WriteString(sc.Text() + "\n")
			if !sent && strings.HasPrefix(sc.Text(), "Ready in") {
				ready <- true
				sent = true
			}
		}
		if !sent {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			t.Fatalf("gauntlet dev exited before ready: %s", stderr.String())
		}
	case <-time.After(90 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("gauntlet dev not ready in 90s: %s", stderr.String())
	}
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	return p
}

func waitSignal(ctx workflow.Context) (string, error) {
	var v string
	workflow.GetSignalChannel(ctx, "go").Receive(ctx, &v)
	return "got " + v, nil
}

const echoPipeline = `name: itest
params:
  who: {type: string, default: world}
steps:
  - {id: hello, uses: echo, with: {text: "hello ${{ params.who }}"}}
  - {id: shout, uses: echo, needs: [hello], with: {text: "${{ upper(steps.hello.outputs.text) }}"}}
finally:
  - {id: done, uses: echo, with: {state: "${{ steps.shout.status }}"}}
`

func TestDevStackSurvivesKillAndRunsPipelines(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a real Temporal server twice; skipped with -short")
	}
	dir := t.TempDir()
	pipes := filepath.Join(dir, "pipelines")
	if err := os.MkdirAll(pipes, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(pipes, "itest.yaml"), []byte(echoPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	frontend, port := freeAddr(t)
	uiAddr, uiPort := freeAddr(t)
	db := filepath.Join(dir, "temporal.db")
	args := []string{"--db", db, "--port", fmt.Sprint(port), "--ui-port", fmt.Sprint(uiPort),
		"--log-file", filepath.Join(dir, "temporal.log"), "--pipelines", pipes, "--state-dir", filepath.Join(dir, "state")}
	began := time.Now()
	dev := startDev(t, args...)
	t.Logf("dev stack ready in %s", time.Since(began))

	// The UI serves its page and lists the namespace.
	assertHTTP(t, "http://"+uiAddr+"/", "")
	assertHTTP(t, "http://"+uiAddr+"/api/v1/namespaces", `"default"`)

	ctx := context.Background()
	c, err := tclient.Dial(ctx, tclient.Options{Address: frontend, Namespace: "default"}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Namespace retention and search attributes as the product needs them.
	ns, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: "default"})
	if err != nil {
		t.Fatal(err)
	}
	if got := ns.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration(); got != 7*24*time.Hour {
		t.Fatalf("retention %s", got)
	}
	attrs, err := c.OperatorService().ListSearchAttributes(ctx, nil)
	if err == nil {
		for name := range searchattr.Definitions() {
			if _, ok := attrs.GetCustomAttributes()[name]; !ok {
				t.Fatalf("search attribute %s missing", name)
			}
		}
	}

	// A pipeline through the CLI, as CI would run it.
	env := map[string]string{"TEMPORAL_ADDRESS": frontend, "GAUNTLET_PIPELINES": pipes, "GAUNTLET_USER": "ci"}
	code, out, stderr := runCLI(t, env, "run", "itest", "--param", "who=gauntlet", "--wait", "--output", "json", "--id", "itest-1")
	if code != ExitOK {
		t.Fatalf("run --wait exit %d: %s %s", code, out, stderr)
	}
	var rep RunReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("run --output json is not one JSON document: %v\n%s", err, out)
	}
	if rep.State != contract.RunSucceeded || rep.URL == "" || len(rep.Steps) != 3 {
		t.Fatalf("report: %+v", rep)
	}
	if got := rep.Steps[1].Outputs["text"]; got != "HELLO GAUNTLET" {
		t.Fatalf("shout output %v", got)
	}
	code, _, stderr = runCLI(t, env, "run", "itest", "--id", "itest-1")
	if code != ExitUsage || !strings.Contains(stderr, "already taken") {
		t.Fatalf("duplicate run id: exit %d %s", code, stderr)
	}
	recordHistory(t, c, "itest-1", "pipeline_echo.json")

	code, out, _ = runCLI(t, env, "list", "--pipeline", "itest", "--output", "json")
	if code != ExitOK || !strings.Contains(out, `"itest-1"`) {
		t.Fatalf("list: %d %s", code, out)
	}

	// A workflow waiting on a signal, on a worker of the test's own.
	w := worker.New(c, "itest-wait", worker.Options{})
	w.RegisterWorkflow(waitSignal)
	if err := w.Start(); err != nil {
		t.Fatal(err)
	}
	defer w.Stop()
	run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{ID: "waiter", TaskQueue: "itest-wait"}, waitSignal)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		d, err := c.DescribeWorkflowExecution(ctx, "waiter", "")
		return err == nil && d.GetWorkflowExecutionInfo().GetHistoryLength() >= 3
	})

	// SIGKILL: nothing gets to flush or close.
	if err := dev.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = dev.cmd.Wait()
	dev = startDev(t, args...)

	sctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	waitFor(t, func() bool { return c.SignalWorkflow(sctx, "waiter", "", "go", "after restart") == nil })
	var got string
	if err := run.Get(sctx, &got); err != nil {
		t.Fatal(err)
	}
	if got != "got after restart" {
		t.Fatalf("workflow result %q", got)
	}
	// The run finished before the kill is still there, with its record.
	code, out, stderr = runCLI(t, env, "status", "itest-1", "--output", "json")
	if code != ExitOK || !strings.Contains(out, `"succeeded"`) {
		t.Fatalf("status after restart: %d %s %s", code, out, stderr)
	}

	// SIGTERM stops it cleanly.
	if err := dev.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- dev.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("dev exited with %v after SIGTERM: %s", err, dev.output)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("dev did not stop within 60s of SIGTERM")
	}
}

func TestDevRefusesTakenPortAndCorruptDB(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := l.Addr().(*net.TCPAddr).Port
	dir := t.TempDir()
	code, _, stderr := runCLI(t, nil, "dev", "--ephemeral", "--port", fmt.Sprint(port), "--log-file", filepath.Join(dir, "log"))
	if code == ExitOK || !strings.Contains(stderr, fmt.Sprintf("127.0.0.1:%d is not available", port)) || !strings.Contains(stderr, "--port") {
		t.Fatalf("taken port: exit %d %q", code, stderr)
	}

	corrupt := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(corrupt, []byte("this is not a database at all, just text\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, p1 := freeAddr(t)
	_, p2 := freeAddr(t)
	code, _, stderr = runCLI(t, nil, "dev", "--db", corrupt, "--port", fmt.Sprint(p1), "--ui-port", fmt.Sprint(p2), "--log-file", filepath.Join(dir, "log"))
	if code == ExitOK || !strings.Contains(stderr, corrupt) || !strings.Contains(stderr, "not an SQLite database") {
		t.Fatalf("corrupt db: exit %d %q", code, stderr)
	}

	ro := filepath.Join(dir, "ro")
	if err := os.MkdirAll(ro, 0o555); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 { // root writes anywhere
		code, _, stderr = runCLI(t, nil, "dev", "--db", filepath.Join(ro, "t.db"), "--port", fmt.Sprint(p1), "--ui-port", fmt.Sprint(p2), "--log-file", filepath.Join(dir, "log"))
		if code == ExitOK || !strings.Contains(stderr, "not writable") {
			t.Fatalf("unwritable db: exit %d %q", code, stderr)
		}
	}
}

func assertHTTP(t *testing.T, url, want string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if want != "" && !strings.Contains(string(body), want) {
		t.Fatalf("GET %s: body lacks %s: %.300s", url, want, body)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 60s")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// recordHistory refreshes a committed history for the replay tests when
// GAUNTLET_RECORD_HISTORIES=1; otherwise it only checks the run replays.
func recordHistory(t *testing.T, c client.Client, id, name string) {
	t.Helper()
	hist, err := exportHistory(context.Background(), c, id)
	if err != nil {
		t.Fatal(err)
	}
	keepHistory(t, hist, name, id)
}

// keepHistory checks that a fresh history of workflow id replays and, when
// GAUNTLET_RECORD_HISTORIES=1 and it has a name, commits it for the replay
// tests as NAME@ID.json (workflows/replay_test.go replays it under that id).
func keepHistory(t *testing.T, hist []byte, name, id string) {
	t.Helper()
	file := strings.TrimSuffix(name, ".json") + "@" + id + ".json"
	if name == "" {
		file = "history@" + id + ".json"
	}
	path := filepath.Join(t.TempDir(), file)
	if os.Getenv("GAUNTLET_RECORD_HISTORIES") == "1" && name != "" {
		path = filepath.Join(repoRoot(t), "workflows", "testdata", "histories", file)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, hist, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h, err := client.HistoryFromJSON(f, client.HistoryJSONOptions{})
	if err != nil {
		t.Fatal(err)
	}
	replayer := worker.NewWorkflowReplayer()
	workflows.Register(replayer)
	if err := replayer.ReplayWorkflowHistoryWithOptions(nil, h, worker.ReplayWorkflowHistoryOptions{OriginalExecution: workflow.Execution{ID: id}}); err != nil {
		t.Fatalf("fresh history of %s does not replay: %v", id, err)
	}
}

const approvalPipeline = `name: gated
steps:
  - {id: train, uses: echo, with: {auc: 0.9}}
  - id: review
    uses: approval
    needs: [train]
    with: {reviewers: [alice, bob], required: 1, timeout: 1h, forbid_self_approval: true, evidence: {auc: "${{ steps.train.outputs.auc }}"}}
  - {id: ship, uses: echo, needs: [review], with: {by: "${{ steps.review.outputs.approvers }}"}}
`

// startEmbedded runs a dev stack inside the test process, for tests that
// need no restart.
func startEmbedded(t *testing.T, pipelines string, extra ...string) (frontend string) {
	t.Helper()
	frontend, port := freeAddr(t)
	_, uiPort := freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	out := &testkit.Buffer{}
	go func() {
		a := &app{stdout: out, stderr: out, getenv: func(string) string { return "" }}
		root := a.rootCommand()
		root.SetArgs(append([]string{"dev", "--ephemeral", "--headless", "--port", fmt.Sprint(port), "--ui-port", fmt.Sprint(uiPort),
			"--pipelines", pipelines, "--state-dir", t.TempDir(), "--log-file", filepath.Join(t.TempDir(), "log")}, extra...))
		root.SetOut(out)
		done <- codeOf(root.ExecuteContext(ctx))
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, func() bool {
		c, err := net.DialTimeout("tcp", frontend, 100*time.Millisecond)
		if err == nil {
			c.Close()
			return strings.Contains(out.String(), "Ready in")
		}
		return false
	})
	return frontend
}

func TestApprovalThroughTheCLI(t *testing.T) {
	pipes := t.TempDir()
	if err := os.WriteFile(filepath.Join(pipes, "gated.yaml"), []byte(approvalPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	frontend := startEmbedded(t, pipes)
	env := map[string]string{"TEMPORAL_ADDRESS": frontend, "GAUNTLET_PIPELINES": pipes}
	asUser := func(u string) map[string]string {
		m := map[string]string{"GAUNTLET_USER": u}
		for k, v := range env {
			m[k] = v
		}
		return m
	}

	for _, tc := range []struct {
		id, decision, reviewer string
		wantCode               int
	}{
		{"gated-approve", "approve", "bob", ExitOK},
		{"gated-reject", "reject", "bob", ExitRejected},
	} {
		t.Run(tc.decision, func(t *testing.T) {
			type result struct {
				code     int
				out, err string
			}
			waiting := make(chan result, 1)
			go func() {
				code, out, errs := runCLI(t, asUser("alice"), "run", "gated", "--id", tc.id, "--wait")
				waiting <- result{code, out, errs}
			}()
			// The run blocks at the gate until someone decides.
			waitFor(t, func() bool {
				code, out, _ := runCLI(t, env, "status", tc.id, "--output", "json")
				return code == ExitOK && strings.Contains(out, `"state": "waiting"`)
			})
			select {
			case r := <-waiting:
				t.Fatalf("run --wait returned before the decision: %+v", r)
			default:
			}
			// alice started the run: she may not approve it.
			code, _, stderr := runCLI(t, asUser("alice"), "approve", tc.id)
			if code == ExitOK || !strings.Contains(stderr, "may not approve") {
				t.Fatalf("self-approval: exit %d %s", code, stderr)
			}
			code, _, stderr = runCLI(t, asUser("mallory"), tc.decision, tc.id)
			if code == ExitOK || !strings.Contains(stderr, "not a reviewer") {
				t.Fatalf("unknown reviewer: exit %d %s", code, stderr)
			}
			code, out, stderr := runCLI(t, asUser(tc.reviewer), tc.decision, tc.id, "--comment", "looked at the evidence")
			if code != ExitOK || !strings.Contains(out, tc.decision+" recorded for "+tc.reviewer) {
				t.Fatalf("%s: exit %d %s %s", tc.decision, code, out, stderr)
			}
			select {
			case r := <-waiting:
				if r.code != tc.wantCode {
					t.Fatalf("run --wait exit %d, want %d: %s %s", r.code, tc.wantCode, r.out, r.err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("run --wait did not return after the decision")
			}
			c, err := tclient.Dial(context.Background(), tclient.Options{Address: frontend, Namespace: "default"}, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			recordHistory(t, c, tc.id, "pipeline_"+tc.decision+".json")
		})
	}
}

// TestTemporalUIInABrowser drives the real Temporal Web UI with Chromium
// (e2e/ui.test.mjs): start from the form, approve by signal, see it finish.
func TestTemporalUIInABrowser(t *testing.T) {
	root := repoRoot(t)
	chromium := "/usr/bin/chromium"
	testkit.Installed(t, chromium)
	testkit.Installed(t, filepath.Join(root, "e2e", "node_modules", "playwright-core"))
	node := testkit.Tool(t, "node")
	pipes := t.TempDir()
	if err := os.WriteFile(filepath.Join(pipes, "gated.yaml"), []byte(approvalPipeline), 0o644); err != nil {
		t.Fatal(err)
	}
	frontend, port := freeAddr(t)
	uiAddr, uiPort := freeAddr(t)
	dir := t.TempDir()
	dev := startDev(t, "--ephemeral", "--port", fmt.Sprint(port), "--ui-port", fmt.Sprint(uiPort),
		"--log-file", filepath.Join(dir, "temporal.log"), "--pipelines", pipes, "--state-dir", filepath.Join(dir, "state"))
	defer func() { _ = dev.cmd.Process.Signal(syscall.SIGTERM) }()

	cmd := exec.Command(node, "--test", "ui.test.mjs")
	cmd.Dir = filepath.Join(root, "e2e")
	cmd.Env = append(os.Environ(),
		"GAUNTLET_UI_URL=http://"+uiAddr, "GAUNTLET_RUN_ID=ui-approved", "GAUNTLET_PIPELINE=gated", "GAUNTLET_CHROMIUM="+chromium)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("browser test failed: %v\n%s", err, out)
	}
	// What the browser did, seen from the server: the decision came in by
	// signal, from the reviewer typed into the dialog.
	code, status, stderr := runCLI(t, map[string]string{"TEMPORAL_ADDRESS": frontend}, "status", "ui-approved", "--output", "json")
	if code != ExitOK {
		t.Fatalf("status: %d %s", code, stderr)
	}
	var rep RunReport
	if err := json.Unmarshal([]byte(status), &rep); err != nil {
		t.Fatal(err)
	}
	votes, _ := json.Marshal(rep.Steps[1].Outputs["votes"])
	if rep.State != contract.RunSucceeded || !strings.Contains(string(votes), `"via":"signal"`) || !strings.Contains(string(votes), `"reviewer":"bob"`) {
		t.Fatalf("run after the browser: %s %s", rep.State, votes)
	}
}

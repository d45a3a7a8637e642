package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"github.com/gauntlet-ml/gauntlet/internal/testkit"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
	"github.com/gauntlet-ml/gauntlet/internal/traffic"
)

// trainForServe trains a small logistic model with the step command and
// returns its model directory, fetched from the step's store.
func trainForServe(t *testing.T, out string, seed int) string {
	t.Helper()
	code, stdout, stderr := runCLI(t, nil, "step", "train",
		"--with", "data=builtin:credit-risk?rows=300&seed=1", "--with", "label=defaulted", "--with", "positive_label=yes",
		"--with", "model=logistic", "--with", fmt.Sprint("seed=", seed), "--out", out)
	if code != ExitOK {
		t.Fatalf("step train: exit %d\n%s\n%s", code, stdout, stderr)
	}
	b, err := os.ReadFile(filepath.Join(out, "outputs.json"))
	if err != nil {
		t.Fatal(err)
	}
	var outputs struct {
		Model string `json:"model"`
	}
	if err := json.Unmarshal(b, &outputs); err != nil || outputs.Model == "" {
		t.Fatalf("outputs.json has no model (%v): %s", err, b)
	}
	p, err := artifact.ParsePointer(outputs.Model)
	if err != nil {
		t.Fatal(err)
	}
	store, err := artifact.Open(context.Background(), p.Store)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), fmt.Sprint("model", seed))
	if err := artifact.FetchTree(context.Background(), store, p.Digest, dir); err != nil {
		t.Fatal(err)
	}
	return dir
}

// servedCLI is a `gauntlet serve` running in this process.
type servedCLI struct {
	addr        string
	out, errOut *testkit.Buffer
	stop        func() int
}

// startServe runs serve on a free port until the test ends or stop is
// called, and returns once /readyz answers 200.
func startServe(t *testing.T, args ...string) *servedCLI {
	t.Helper()
	return startServeUntil(t, "/readyz", args...)
}

// startServeUntil is startServe returning once path answers 200.
func startServeUntil(t *testing.T, path string, args ...string) *servedCLI {
	t.Helper()
	addr, _ := freeAddr(t)
	s := &servedCLI{addr: addr, out: &testkit.Buffer{}, errOut: &testkit.Buffer{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		a := &app{stdout: s.out, stderr: s.errOut, getenv: func(string) string { return "" }}
		root := a.rootCommand()
		root.SetArgs(append([]string{"serve", "--addr", addr}, args...))
		root.SetOut(s.out)
		root.SetErr(s.errOut)
		err := root.ExecuteContext(ctx)
		if err != nil {
			fmt.Fprintf(s.errOut, "gauntlet: %v\n", err)
		}
		done <- codeOf(err)
	}()
	exited, code := false, 0
	s.stop = func() int {
		if !exited {
			cancel()
			code, exited = <-done, true
		}
		return code
	}
	t.Cleanup(func() { s.stop() })
	waitFor(t, func() bool {
		select {
		case code, exited = <-done:
			t.Fatalf("serve exited %d before it was ready:\n%s", code, s.errOut.String())
		default:
		}
		resp, err := http.Get("http://" + addr + path)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	return s
}

type predictAnswer struct {
	Model struct {
		Name    string `json:"name"`
		Version string `json:"version"`
	} `json:"model"`
	Predictions []struct {
		Score float64 `json:"score"`
		Label string  `json:"label"`
	} `json:"predictions"`
}

// predictOne posts one record the way `gauntlet traffic` builds them.
func predictOne(t *testing.T, addr string) predictAnswer {
	t.Helper()
	recs, err := traffic.LoadRecords("builtin:credit-risk?rows=10&seed=2", "", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	body, err := json.Marshal(map[string]any{"records": recs[:1]})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr+"/v1/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ans predictAnswer
	if err := json.NewDecoder(resp.Body).Decode(&ans); err != nil {
		t.Fatalf("predict: status %d, undecodable answer: %v", resp.StatusCode, err)
	}
	if resp.StatusCode != http.StatusOK || len(ans.Predictions) != 1 {
		t.Fatalf("predict: status %d, %d predictions", resp.StatusCode, len(ans.Predictions))
	}
	p := ans.Predictions[0]
	if p.Score < 0 || p.Score > 1 || (p.Label != "yes" && p.Label != "not yes") {
		t.Fatalf("predict: score %v label %q, want a probability and yes or not yes", p.Score, p.Label)
	}
	return ans
}

func TestServeDirectoryAndTraffic(t *testing.T) {
	dir := trainForServe(t, t.TempDir(), 1)
	samples := t.TempDir()
	s := startServe(t, "--model", dir, "--sample-dir", samples)
	if out := s.out.String(); !strings.Contains(out, "Serving "+dir+" at http://"+s.addr) || !strings.Contains(out, "model digest ") {
		t.Fatalf("serve did not announce its URL and model:\n%s", out)
	}
	if ans := predictOne(t, s.addr); ans.Model.Version != "dir" || ans.Model.Name != filepath.Base(dir) {
		t.Fatalf("served %s %s, want %s dir", ans.Model.Name, ans.Model.Version, filepath.Base(dir))
	}

	code, stdout, stderr := runCLI(t, nil, "traffic", "--target", "http://"+s.addr, "--data", "builtin:credit-risk?rows=50",
		"--rate", "50", "--duration", "1s", "-o", "json")
	if code != ExitOK {
		t.Fatalf("traffic: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var rep trafficReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("traffic -o json: %v\n%s", err, stdout)
	}
	if rep.Sent == 0 || rep.OK != rep.Sent || len(rep.Errors) != 0 || rep.Records != rep.Sent || rep.Target != "http://"+s.addr+"/v1/predict" {
		t.Fatalf("traffic report: %+v", rep)
	}

	if code := s.stop(); code != ExitOK {
		t.Fatalf("serve stopped with exit %d:\n%s", code, s.errOut.String())
	}
	if !strings.Contains(s.errOut.String(), "msg=stopped") {
		t.Fatalf("serve did not report a graceful stop:\n%s", s.errOut.String())
	}
	// The sample log is flushed on the way out, so drift monitoring sees
	// every sampled prediction.
	if b, err := os.ReadFile(filepath.Join(samples, serving.SampleFile)); err != nil || bytes.Count(b, []byte("\n")) < rep.Records+1 {
		t.Fatalf("sample log after %d records: %v, %d lines", rep.Records+1, err, bytes.Count(b, []byte("\n")))
	}
}

func TestServeFollowsRegistryAlias(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	loc := filepath.Join(root, "registry")
	store, err := artifact.Open(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(store)
	for i := range 2 {
		dir := trainForServe(t, filepath.Join(root, fmt.Sprint("train", i)), i+1)
		dg, err := artifact.PutTree(ctx, store, os.DirFS(dir))
		if err != nil {
			t.Fatal(err)
		}
		req := registry.RegisterRequest{Model: "credit", Artifact: dg, Lineage: registry.Lineage{RunID: "r", StepID: fmt.Sprint("train", i)}, CreatedAt: time.Unix(0, 0).UTC()}
		if _, err := reg.Register(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	audit := registry.Audit{At: time.Unix(0, 0).UTC(), Actor: "test"}
	if err := reg.Promote(ctx, "credit", 1, 0, audit); err != nil {
		t.Fatal(err)
	}

	s := startServe(t, "--model", "credit", "--store", loc, "--cache-dir", filepath.Join(root, "cache"), "--poll", "20ms")
	if out := s.out.String(); !strings.Contains(out, "Serving credit v1 (credit@champion) at http://"+s.addr) {
		t.Fatalf("serve did not announce the champion:\n%s", out)
	}
	if ans := predictOne(t, s.addr); ans.Model.Name != "credit" || ans.Model.Version != "v1" {
		t.Fatalf("served %s %s, want credit v1", ans.Model.Name, ans.Model.Version)
	}
	if err := reg.Promote(ctx, "credit", 2, 1, audit); err != nil {
		t.Fatal(err)
	}
	// Every answer while the poll catches up must come from v1 or v2: a
	// swap never fails a request.
	waitFor(t, func() bool { return predictOne(t, s.addr).Model.Version == "v2" })
	if code := s.stop(); code != ExitOK {
		t.Fatalf("serve stopped with exit %d:\n%s", code, s.errOut.String())
	}
	if !strings.Contains(s.errOut.String(), "model swapped") {
		t.Fatalf("the swap was not logged:\n%s", s.errOut.String())
	}
}

func TestServeAndTrafficUsageErrors(t *testing.T) {
	empty := t.TempDir()
	reg := filepath.Join(t.TempDir(), "registry")
	send := func(extra ...string) []string {
		return append([]string{"traffic", "--target", "http://127.0.0.1:9", "--data", "builtin:credit-risk?rows=10", "--duration", "1s"}, extra...)
	}
	for _, tc := range []struct {
		name     string
		args     []string
		wantCode int
		wantErr  string
	}{
		{"missing model directory", []string{"serve", "--model", "/nope/model"}, ExitNotFound, "/nope/model"},
		{"not a model directory", []string{"serve", "--model", empty}, ExitFailed, empty},
		{"unknown registry model", []string{"serve", "--model", "ghost", "--store", reg}, ExitNotFound, "ghost@champion"},
		{"no model", []string{"serve"}, ExitUsage, "--model"},
		{"empty alias", []string{"serve", "--model", "credit@"}, ExitUsage, "--model"},
		{"sample rate", []string{"serve", "--model", empty, "--sample-rate", "2"}, ExitUsage, "--sample-rate"},
		{"bad addr", []string{"serve", "--model", empty, "--addr", "nowhere"}, ExitUsage, "--addr"},
		{"registry for a directory", []string{"serve", "--model", empty, "--registry", reg}, ExitUsage, "--registry"},
		{"replica without shipping", []string{"serve", "--model", empty, "--replica", "r1"}, ExitUsage, "--replica"},
		{"waiting for a directory", []string{"serve", "--model", empty, "--wait-for-alias"}, ExitUsage, "--wait-for-alias"},
		{"bad replica", []string{"serve", "--model", empty, "--ship-samples", "--replica", "a/b"}, ExitUsage, "--replica"},
		{"no ONNX Runtime there", []string{"serve", "--model", empty, "--onnxruntime-lib", "/nope/libonnxruntime.so.1"}, ExitUsage, "--onnxruntime-lib /nope/libonnxruntime.so.1"},
		{"step without ONNX Runtime", []string{"step", "evaluate", "--with", "model=" + empty, "--out", t.TempDir(), "--onnxruntime-lib", "/nope/libonnxruntime.so.1"}, ExitUsage, "--onnxruntime-lib /nope/libonnxruntime.so.1"},
		{"zero rate", send("--rate", "0"), ExitUsage, "--rate"},
		{"rate too low for the duration", send("--rate", "1"), ExitUsage, "--rate"},
		{"no target", []string{"traffic", "--data", "builtin:credit-risk", "--rate", "5", "--duration", "1s"}, ExitUsage, "--target"},
		{"bad drift", send("--rate", "5", "--drift", "age"), ExitUsage, "--drift"},
		{"bad header", send("--rate", "5", "--header", "nokv"), ExitUsage, "--header"},
		{"csv without label", []string{"traffic", "--target", "http://127.0.0.1:9", "--data", "x.csv", "--rate", "5", "--duration", "1s"}, ExitUsage, "--label"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := runCLI(t, nil, tc.args...)
			if code != tc.wantCode || !strings.Contains(stderr, tc.wantErr) {
				t.Fatalf("exit %d, want %d with %q in stderr:\n%s", code, tc.wantCode, tc.wantErr, stderr)
			}
			if strings.Contains(stderr, "goroutine ") || strings.Count(strings.TrimSpace(stderr), "\n") > 0 {
				t.Fatalf("want one line of error, got:\n%s", stderr)
			}
		})
	}
}

func TestTrafficFailsWhenNothingAnswers(t *testing.T) {
	closed, _ := freeAddr(t)
	code, stdout, stderr := runCLI(t, nil, "traffic", "--target", "http://"+closed, "--data", "builtin:credit-risk?rows=10",
		"--rate", "20", "--duration", "300ms", "-o", "json")
	if code != ExitFailed || !strings.Contains(stderr, "failed") {
		t.Fatalf("exit %d, want %d:\n%s", code, ExitFailed, stderr)
	}
	var rep trafficReport
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("the summary is printed even when all fail: %v\n%s", err, stdout)
	}
	if rep.Sent == 0 || rep.OK != 0 || rep.Errors[0] != rep.Sent {
		t.Fatalf("traffic report: %+v", rep)
	}
}

// A model step's output, an artifact pointer, is served from the store
// every worker shares; a pointer into another store is refused.
func TestServePointer(t *testing.T) {
	root := t.TempDir()
	store := "file://" + filepath.Join(root, "store")
	out := filepath.Join(root, "train")
	code, stdout, stderr := runCLI(t, map[string]string{"GAUNTLET_STORE": store}, "step", "train",
		"--with", "data=builtin:credit-risk?rows=300&seed=1", "--with", "label=defaulted", "--with", "positive_label=yes", "--out", out)
	if code != ExitOK {
		t.Fatalf("step train: exit %d\n%s\n%s", code, stdout, stderr)
	}
	var outputs struct {
		Model string `json:"model"`
	}
	b, err := os.ReadFile(filepath.Join(out, "outputs.json"))
	if err != nil || json.Unmarshal(b, &outputs) != nil || !strings.HasPrefix(outputs.Model, store+"/trees/sha256/") {
		t.Fatalf("outputs.json: %s (%v), want a model in %s", b, err, store)
	}
	s := startServe(t, "--model", outputs.Model, "--store", store, "--cache-dir", filepath.Join(root, "cache"))
	if ans := predictOne(t, s.addr); ans.Model.Version != "dir" {
		t.Fatalf("served %s %s", ans.Model.Name, ans.Model.Version)
	}
	if code := s.stop(); code != ExitOK {
		t.Fatalf("serve stopped with exit %d:\n%s", code, s.errOut.String())
	}
	code, _, stderr = runCLI(t, nil, "serve", "--model", outputs.Model, "--store", "file://"+filepath.Join(root, "other"))
	if code != ExitUsage || !strings.Contains(stderr, "same --store") {
		t.Errorf("a pointer into another store: exit %d\n%s", code, stderr)
	}
}

// A fleet's canary server: it waits for the challenger alias, serves it,
// keeps serving it when the canary's end removes the alias, and ships
// what it samples to the store.
func TestServeWaitsForItsAliasAndShipsSamples(t *testing.T) {
	root := t.TempDir()
	ctx := context.Background()
	loc := "file://" + filepath.Join(root, "store")
	store, err := artifact.Open(ctx, loc)
	if err != nil {
		t.Fatal(err)
	}
	reg := registry.New(store)
	for i := range 2 {
		dir := trainForServe(t, filepath.Join(root, fmt.Sprint("train", i)), i+1)
		dg, err := artifact.PutTree(ctx, store, os.DirFS(dir))
		if err != nil {
			t.Fatal(err)
		}
		req := registry.RegisterRequest{Model: "credit", Artifact: dg, Lineage: registry.Lineage{RunID: "r", StepID: fmt.Sprint("train", i)}, CreatedAt: time.Unix(0, 0).UTC()}
		if _, err := reg.Register(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	audit := registry.Audit{At: time.Unix(0, 0).UTC(), Actor: "test"}

	// While it waits the server is alive (healthz) but not ready.
	s := startServeUntil(t, "/healthz", "--model", "credit@challenger", "--wait-for-alias", "--store", loc, "--cache-dir", filepath.Join(root, "cache"),
		"--poll", "10ms", "--ship-samples", "--replica", "canary-1", "--ship-interval", "10ms")
	for _, path := range []string{"/readyz", "/v1/predict"} {
		resp, err := http.Get("http://" + s.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s while waiting for the alias: %d, want 503", path, resp.StatusCode)
		}
	}
	if err := reg.SetAlias(ctx, "credit", registry.Challenger, 2, 0, audit); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		resp, err := http.Get("http://" + s.addr + "/readyz")
		if err != nil {
			// A probe in the instant of the handover may be cut.
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	src := &waitingSource{RegistrySource: serving.RegistrySource{Registry: reg, Store: store, Model: "credit", Ref: registry.Challenger}}
	if err := src.wait(ctx, "credit@challenger", slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if ans := predictOne(t, s.addr); ans.Model.Version != "v2" {
			t.Fatalf("served %s, want v2", ans.Model.Version)
		}
	}
	if err := reg.SetAlias(ctx, "credit", registry.Challenger, 0, 2, audit); err != nil {
		t.Fatal(err)
	}
	if ref, err := src.Resolve(ctx); err != nil || ref.Version != "v2" {
		t.Fatalf("resolve after the alias was removed: %+v, %v; want the last version", ref, err)
	}
	if ans := predictOne(t, s.addr); ans.Model.Version != "v2" {
		t.Fatalf("served %s after the alias was removed, want v2", ans.Model.Version)
	}
	if code := s.stop(); code != ExitOK {
		t.Fatalf("serve stopped with exit %d:\n%s", code, s.errOut.String())
	}
	if strings.Contains(s.errOut.String(), "model poll") {
		t.Errorf("the removed alias made the poll fail:\n%s", s.errOut.String())
	}
	names, err := store.ListRefs(ctx, serving.SampleRefPrefix+"credit/")
	if err != nil {
		t.Fatal(err)
	}
	shipped := 0
	for _, name := range names {
		ref, err := store.GetRef(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		var c serving.SampleChunk
		if err := json.Unmarshal(ref.Data, &c); err != nil {
			t.Fatal(err)
		}
		if c.Replica != "canary-1" || !strings.Contains(name, "/canary-1/") {
			t.Errorf("chunk %s of replica %q", name, c.Replica)
		}
		shipped += c.Samples
	}
	if shipped != 4 {
		t.Fatalf("%d samples shipped to the store, want the 4 predicted", shipped)
	}
}

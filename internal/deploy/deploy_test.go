package deploy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/atomicfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
	"github.com/gauntlet-ml/gauntlet/internal/router"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

const modelName = "credit-risk"

// fixture is a file:// registry holding two versions of modelName, and a
// third model directory, never registered, to use as a candidate.
type fixture struct {
	state    string
	storeLoc string
	reg      *registry.Registry
	dirs     [3]string
	// ptrs are the dirs as artifacts in the store, which is how a
	// candidate is given.
	ptrs     [3]artifact.Pointer
	ws       *workspace.Workspace
	body     []byte
	logs     *bytes.Buffer
	logsMu   *sync.Mutex
	champion int
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	f := &fixture{state: filepath.Join(root, "state"), storeLoc: "file://" + filepath.Join(root, "store"), logs: &bytes.Buffer{}, logsMu: &sync.Mutex{}}
	store, err := artifact.Open(ctx, f.storeLoc)
	if err != nil {
		t.Fatal(err)
	}
	f.reg = registry.New(store)
	if f.ws, err = workspace.Open(ctx, workspace.Config{Store: f.storeLoc, StateDir: f.state}); err != nil {
		t.Fatal(err)
	}
	var d *dataset.Dataset
	for i := range f.dirs {
		f.dirs[i] = filepath.Join(root, fmt.Sprint("model", i+1))
		d = trainModel(t, f.dirs[i], i+1)
		if f.ptrs[i], err = artifact.Publish(ctx, store, f.dirs[i]); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			break
		}
		req := registry.RegisterRequest{Model: modelName, Artifact: f.ptrs[i].Digest, Lineage: registry.Lineage{RunID: "run", StepID: fmt.Sprint("train", i)}, CreatedAt: time.Unix(0, 0)}
		if _, err := f.reg.Register(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	b, err := json.Marshal(map[string]any{"records": records(d, 3)})
	if err != nil {
		t.Fatal(err)
	}
	f.body = b
	return f
}

func (f *fixture) promote(t *testing.T, version int) {
	t.Helper()
	err := f.reg.Promote(context.Background(), modelName, version, f.champion, registry.Audit{At: time.Unix(1, 0), Actor: "test"})
	if err != nil {
		t.Fatal(err)
	}
	f.champion = version
}

func (f *fixture) local(t *testing.T) *Local {
	t.Helper()
	l := NewLocal(Options{
		StateDir: f.state, Workspace: f.ws,
		Logger:  slog.New(slog.NewTextHandler(lockedWriter{f.logsMu, f.logs}, nil)),
		Serving: serving.Options{PollInterval: 20 * time.Millisecond},
	})
	t.Cleanup(func() {
		if err := l.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return l
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(b)
}

// trainModel saves a small logistic model of builtin:credit-risk under dir;
// different seeds give different weights and digests.
func trainModel(t *testing.T, dir string, seed int) *dataset.Dataset {
	t.Helper()
	return mltest.SaveLogReg(t, dir, seed, map[string]any{serving.NegativeLabelParam: "no"})
}

func records(d *dataset.Dataset, n int) []map[string]any { return mltest.Records(d, n) }

// answer is what a prediction through the router came back with.
type answer struct {
	code    int
	variant string
	version string
	digest  string
	err     string
}

func predict(url string, body []byte, pin string) (answer, error) {
	req, err := http.NewRequest(http.MethodPost, url+"/v1/predict", bytes.NewReader(body))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	if pin != "" {
		req.Header.Set(router.HeaderVariant, pin)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	var r struct {
		Model       struct{ Version, Digest string }
		Predictions []json.RawMessage
		Error       string
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return answer{}, fmt.Errorf("status %d: decode: %w", resp.StatusCode, err)
	}
	if resp.StatusCode == 200 && len(r.Predictions) != 3 {
		return answer{}, fmt.Errorf("%d predictions for 3 records", len(r.Predictions))
	}
	return answer{resp.StatusCode, resp.Header.Get(router.HeaderVariant), r.Model.Version, r.Model.Digest, r.Error}, nil
}

func (f *fixture) predict(t *testing.T, url, pin string) answer {
	t.Helper()
	a, err := predict(url, f.body, pin)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// expect checks that a request through env's router is answered by variant
// serving version.
func (f *fixture) expect(t *testing.T, env Environment, variant, version string) answer {
	t.Helper()
	a := f.predict(t, env.RouterURL, "")
	if a.code != 200 || a.variant != variant || a.version != version {
		t.Fatalf("answered %d by %q serving %q (%s); want 200 by %q serving %q", a.code, a.variant, a.version, a.err, variant, version)
	}
	return a
}

func wantWeights(t *testing.T, env Environment, want map[string]int) {
	t.Helper()
	if fmt.Sprint(env.Weights) != fmt.Sprint(want) {
		t.Fatalf("weights %v, want %v", env.Weights, want)
	}
	if len(env.Variants) != len(want) {
		t.Fatalf("variants %+v, want %v", env.Variants, want)
	}
	for name := range want {
		if _, ok := env.Variant(name); !ok {
			t.Fatalf("no variant %s in %+v", name, env.Variants)
		}
	}
}

func readDesired(t *testing.T, state string) desired {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(state, "deploy", modelName, DesiredFile))
	if err != nil {
		t.Fatal(err)
	}
	var d desired
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

// sampleVersions counts the sample log lines of a variant by model version.
func sampleVersions(t *testing.T, state, variant string) map[string]int {
	t.Helper()
	f, err := os.Open(filepath.Join(state, "deploy", modelName, variant, "samples", serving.SampleFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var s serving.Sample
		if err := json.Unmarshal(sc.Bytes(), &s); err != nil {
			t.Fatalf("sample line %q: %v", sc.Text(), err)
		}
		if s.Model != modelName || len(s.Features) == 0 {
			t.Fatalf("sample %+v", s)
		}
		out[s.Version]++
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestCanaryLifecycle(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.promote(t, 1)
	l := f.local(t)

	env, err := l.Ensure(ctx, modelName)
	if err != nil {
		t.Fatal(err)
	}
	wantWeights(t, env, map[string]int{Stable: 100})
	stable, _ := env.Variant(Stable)
	if stable.Model != registry.Champion || stable.Version != "v1" || stable.SampleDir != filepath.Join(f.state, "deploy", modelName, Stable, "samples") {
		t.Fatalf("stable %+v", stable)
	}
	f.expect(t, env, Stable, "v1")
	again, err := l.Ensure(ctx, modelName)
	if s, _ := again.Variant(Stable); err != nil || again.RouterURL != env.RouterURL || s.URL != stable.URL {
		t.Fatalf("second Ensure moved things: %+v, %v; first %+v", again, err, env)
	}

	if env, err = l.StartCanary(ctx, modelName, Candidate{Model: f.ptrs[2]}); err != nil {
		t.Fatal(err)
	}
	wantWeights(t, env, map[string]int{Stable: 100, Canary: 0})
	canary, _ := env.Variant(Canary)
	if canary.Model != f.ptrs[2].String() || canary.Version != "dir" {
		t.Fatalf("canary %+v", canary)
	}
	f.expect(t, env, Stable, "v1")
	if again, err := l.StartCanary(ctx, modelName, Candidate{Model: f.ptrs[2]}); err != nil || len(again.Variants) != 2 || again.Variants[1].URL != canary.URL {
		t.Fatalf("repeated StartCanary: %+v, %v", again, err)
	}
	if d := readDesired(t, f.state); d != (desired{Model: modelName, Candidate: f.ptrs[2].String()}) {
		t.Fatalf("desired state %+v", d)
	}

	if env, err = l.SetCanaryWeight(ctx, modelName, 100); err != nil {
		t.Fatal(err)
	}
	wantWeights(t, env, map[string]int{Stable: 0, Canary: 100})
	if a := f.expect(t, env, Canary, "dir"); a.digest != canary.Digest {
		t.Fatalf("canary answered with digest %s, want %s", a.digest, canary.Digest)
	}
	if env, err = l.SetCanaryWeight(ctx, modelName, 25); err != nil {
		t.Fatal(err)
	}
	wantWeights(t, env, map[string]int{Stable: 75, Canary: 25})
	if d := readDesired(t, f.state); d.Weight != 25 {
		t.Fatalf("desired state %+v", d)
	}
	// The weights send a request to either variant; a pin reaches each.
	for _, v := range []string{Stable, Canary} {
		if a := f.predict(t, env.RouterURL, v); a.code != 200 || a.variant != v {
			t.Fatalf("pinned to %s: %+v", v, a)
		}
	}

	if env, err = l.EndCanary(ctx, modelName); err != nil {
		t.Fatal(err)
	}
	wantWeights(t, env, map[string]int{Stable: 100})
	f.expect(t, env, Stable, "v1")
	if resp, err := http.Get(canary.URL + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatalf("the canary server still answers after EndCanary")
	}
	if d := readDesired(t, f.state); d != (desired{Model: modelName}) {
		t.Fatalf("desired state %+v", d)
	}
	if _, err := l.EndCanary(ctx, modelName); err != nil {
		t.Fatalf("repeated EndCanary: %v", err)
	}

	// Stable follows the champion alias by polling the registry.
	f.promote(t, 2)
	var a answer
	for range 2000 {
		if a = f.predict(t, env.RouterURL, ""); a.code != 200 || a.version == "v2" {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if a.code != 200 || a.variant != Stable || a.version != "v2" {
		t.Fatalf("after promoting v2: %+v", a)
	}
	if d, ok := l.Describe(modelName); !ok || d.Variants[0].Version != "v2" {
		t.Fatalf("Describe: %+v, %v", d, ok)
	}

	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Describe(modelName); ok {
		t.Fatal("Describe after Close reports an environment")
	}
	if _, err := l.Ensure(ctx, modelName); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ensure after Close: %v", err)
	}
	if got := sampleVersions(t, f.state, Stable); got["v1"] == 0 || got["v2"] == 0 {
		t.Fatalf("stable samples by version %v, want v1 and v2", got)
	}
	if got := sampleVersions(t, f.state, Canary); got["dir"] == 0 || len(got) != 1 {
		t.Fatalf("canary samples by version %v, want only dir", got)
	}
}

// A promotion followed by EndCanary serves the new champion at once, not
// after a poll.
func TestEndCanaryAfterPromotionReloads(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.promote(t, 1)
	l := NewLocal(Options{StateDir: f.state, Workspace: f.ws, Serving: serving.Options{PollInterval: -1}})
	defer l.Close(ctx)
	if _, err := l.StartCanary(ctx, modelName, Candidate{Model: f.ptrs[1]}); err != nil {
		t.Fatal(err)
	}
	f.promote(t, 2)
	env, err := l.EndCanary(ctx, modelName)
	if err != nil {
		t.Fatal(err)
	}
	wantWeights(t, env, map[string]int{Stable: 100})
	f.expect(t, env, Stable, "v2")
}

func TestFirstDeployment(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	l := f.local(t)

	env, err := l.Ensure(ctx, modelName)
	if err != nil {
		t.Fatal(err)
	}
	wantWeights(t, env, map[string]int{})
	if a := f.predict(t, env.RouterURL, ""); a.code != http.StatusServiceUnavailable || !strings.Contains(a.err, "nothing deployed") {
		t.Fatalf("with nothing deployed: %+v", a)
	}

	if env, err = l.StartCanary(ctx, modelName, Candidate{Model: f.ptrs[0]}); err != nil {
		t.Fatal(err)
	}
	wantWeights(t, env, map[string]int{Canary: 100})
	f.expect(t, env, Canary, "dir")
	if env, err = l.SetCanaryWeight(ctx, modelName, 10); err != nil {
		t.Fatal(err)
	}
	wantWeights(t, env, map[string]int{Canary: 100})

	// The workflow promotes the first model without analysis.
	f.promote(t, 1)
	if env, err = l.EndCanary(ctx, modelName); err != nil {
		t.Fatal(err)
	}
	wantWeights(t, env, map[string]int{Stable: 100})
	f.expect(t, env, Stable, "v1")
}

func TestRejectedFirstCandidateLeavesNothing(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	l := f.local(t)
	if _, err := l.StartCanary(ctx, modelName, Candidate{Model: f.ptrs[0]}); err != nil {
		t.Fatal(err)
	}
	env, err := l.EndCanary(ctx, modelName)
	if err != nil {
		t.Fatal(err)
	}
	wantWeights(t, env, map[string]int{})
	if a := f.predict(t, env.RouterURL, ""); a.code != http.StatusServiceUnavailable {
		t.Fatalf("after the rejected candidate: %+v", a)
	}
	// The next candidate gets a new router behind the same address.
	if env, err = l.StartCanary(ctx, modelName, Candidate{Model: f.ptrs[1]}); err != nil {
		t.Fatal(err)
	}
	f.expect(t, env, Canary, "dir")
}

func TestRestartRestoresDesiredState(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.promote(t, 1)
	l := f.local(t)
	if _, err := l.StartCanary(ctx, modelName, Candidate{Model: f.ptrs[2]}); err != nil {
		t.Fatal(err)
	}
	before, err := l.SetCanaryWeight(ctx, modelName, 30)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}

	l2 := f.local(t)
	if _, ok := l2.Describe(modelName); ok {
		t.Fatal("a new Local describes an environment before Ensure")
	}
	env, err := l2.Ensure(ctx, modelName)
	if err != nil {
		t.Fatal(err)
	}
	wantWeights(t, env, map[string]int{Stable: 70, Canary: 30})
	canary, _ := env.Variant(Canary)
	old, _ := before.Variant(Canary)
	if canary.Model != f.ptrs[2].String() || canary.Digest != old.Digest {
		t.Fatalf("restored canary %+v, was %+v", canary, old)
	}
	for v, version := range map[string]string{Stable: "v1", Canary: "dir"} {
		if a := f.predict(t, env.RouterURL, v); a.code != 200 || a.version != version {
			t.Fatalf("pinned to %s: %+v", v, a)
		}
	}
	// The same candidate is still idempotent; another is refused.
	if _, err := l2.StartCanary(ctx, modelName, Candidate{Model: f.ptrs[2]}); err != nil {
		t.Fatal(err)
	}
	if _, err := l2.StartCanary(ctx, modelName, Candidate{Model: f.ptrs[0]}); !errors.Is(err, ErrCanaryInProgress) {
		t.Fatalf("another candidate: %v", err)
	}
}

// A desired.json written before candidates were artifact pointers names
// the candidate's directory: a restarted worker still serves it.
func TestRestartRestoresDirectoryCandidate(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.promote(t, 1)
	path := filepath.Join(f.state, "deploy", modelName, DesiredFile)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	old := fmt.Sprintf(`{"model": %q, "candidate": %q, "canary_weight": 20}`, modelName, f.dirs[2])
	if err := atomicfile.Write(path, []byte(old)); err != nil {
		t.Fatal(err)
	}
	env, err := f.local(t).Ensure(ctx, modelName)
	if err != nil {
		t.Fatal(err)
	}
	wantWeights(t, env, map[string]int{Stable: 80, Canary: 20})
	if a := f.predict(t, env.RouterURL, Canary); a.code != 200 || a.version != "dir" {
		t.Fatalf("pinned to canary: %+v", a)
	}
}

func TestAdminTokenStaysSecret(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.promote(t, 1)
	l := f.local(t)
	if _, err := l.StartCanary(ctx, modelName, Candidate{Model: f.ptrs[2]}); err != nil {
		t.Fatal(err)
	}
	env, err := l.SetCanaryWeight(ctx, modelName, 40)
	if err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	token := l.envs[modelName].token
	l.mu.Unlock()
	if len(token) < 20 {
		t.Fatalf("token %q is too short to be a secret", token)
	}

	admin := func(tok string) int {
		req, _ := http.NewRequest(http.MethodPut, env.RouterURL+"/admin/weights", strings.NewReader(`{"canary":100}`))
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := admin(""); c != http.StatusUnauthorized {
		t.Fatalf("admin call without the token: %d", c)
	}
	if c := admin("guess"); c != http.StatusUnauthorized {
		t.Fatalf("admin call with a wrong token: %d", c)
	}
	if c := admin(token); c != http.StatusOK {
		t.Fatalf("admin call with the token: %d", c)
	}

	b, err := json.Marshal(env)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Close(ctx); err != nil {
		t.Fatal(err)
	}
	desiredJSON, err := os.ReadFile(filepath.Join(f.state, "deploy", modelName, DesiredFile))
	if err != nil {
		t.Fatal(err)
	}
	f.logsMu.Lock()
	logs := f.logs.String()
	f.logsMu.Unlock()
	for what, s := range map[string]string{"the environment": string(b), DesiredFile: string(desiredJSON), "the logs": logs} {
		if strings.Contains(s, token) {
			t.Errorf("the admin token appears in %s", what)
		}
	}
	if !strings.Contains(logs, "routing") {
		t.Errorf("the logs record no routing change:\n%s", logs)
	}
}

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.promote(t, 1)
	l := f.local(t)
	for _, name := range []string{"", "..", "../etc", "a/b", ".hidden", strings.Repeat("x", 200)} {
		if _, err := l.Ensure(ctx, name); err == nil {
			t.Errorf("Ensure(%q) succeeded", name)
		}
	}
	if _, err := l.SetCanaryWeight(ctx, modelName, 50); !errors.Is(err, ErrNoCanary) {
		t.Errorf("SetCanaryWeight without a canary: %v", err)
	}
	for _, p := range []int{-1, 101} {
		if _, err := l.SetCanaryWeight(ctx, modelName, p); err == nil {
			t.Errorf("SetCanaryWeight(%d) succeeded", p)
		}
	}
	if _, err := l.StartCanary(ctx, modelName, Candidate{Model: artifact.Pointer{}}); err == nil {
		t.Error("StartCanary without a candidate succeeded")
	}
	missingPtr := artifact.PointerTo(f.ws.Store(), artifact.KindTree, artifact.DigestBytes([]byte("no such model")))
	missing := missingPtr.String()
	if _, err := l.StartCanary(ctx, modelName, Candidate{Model: missingPtr}); !errors.Is(err, artifact.ErrNotFound) || !strings.Contains(err.Error(), missing) {
		t.Errorf("StartCanary of a candidate the store lacks: %v, want not found naming %s", err, missing)
	}
	env, ok := l.Describe(modelName)
	if !ok {
		t.Fatal("no environment after the failed calls")
	}
	wantWeights(t, env, map[string]int{Stable: 100})
	if b, err := os.ReadFile(filepath.Join(f.state, "deploy", modelName, DesiredFile)); err == nil && strings.Contains(string(b), missing) {
		t.Fatalf("a candidate that failed to start was recorded: %s", b)
	}
	// After the failure a good candidate starts.
	if _, err := l.StartCanary(ctx, modelName, Candidate{Model: f.ptrs[2]}); err != nil {
		t.Fatal(err)
	}

	if _, err := NewLocal(Options{}).Ensure(ctx, modelName); err == nil {
		t.Error("a Local without a state directory ran")
	}
	state := t.TempDir()
	path := filepath.Join(state, "deploy", modelName, DesiredFile)
	for _, content := range []string{"{", `{"model":"other"}`, `{"model":"credit-risk","candidate":"rel/dir"}`, `{"model":"credit-risk","canary_weight":5}`, `{"model":"credit-risk","x":1}`} {
		if err := atomicfile.Write(path, []byte(content)); err != nil {
			t.Fatal(err)
		}
		bad := NewLocal(Options{StateDir: state, Workspace: f.ws})
		if _, err := bad.Ensure(ctx, modelName); err == nil {
			t.Errorf("desired state %s accepted", content)
		}
		if err := bad.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// Without a workspace the steps' default store under the state
	// directory is used: empty, so there is no champion to serve.
	def := NewLocal(Options{StateDir: t.TempDir()})
	if env, err := def.Ensure(ctx, modelName); err != nil || len(env.Variants) != 0 {
		t.Errorf("a Local on the default store: %+v, %v", env, err)
	}
	if err := def.Close(ctx); err != nil {
		t.Fatal(err)
	}
}

// Weight changes are atomic in the router: requests running through them
// all succeed, and concurrent calls on one environment agree.
func TestConcurrentUse(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.promote(t, 1)
	l := f.local(t)

	urls := make(chan string, 8)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			env, err := l.Ensure(ctx, modelName)
			if err != nil {
				t.Error(err)
			}
			urls <- env.RouterURL
		})
	}
	wg.Wait()
	close(urls)
	first := ""
	for u := range urls {
		if first == "" {
			first = u
		}
		if u != first {
			t.Fatalf("concurrent Ensure calls started two routers: %s and %s", first, u)
		}
	}

	stop := make(chan struct{})
	stopLoad := sync.OnceFunc(func() {
		close(stop)
		wg.Wait()
	})
	defer stopLoad()
	var failed, served atomic.Int64
	var failure atomic.Value
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				a, err := predict(first, f.body, "")
				if err != nil || a.code != 200 {
					failed.Add(1)
					failure.Store(fmt.Sprintf("%+v %v", a, err))
					continue
				}
				served.Add(1)
			}
		})
	}
	if _, err := l.StartCanary(ctx, modelName, Candidate{Model: f.ptrs[2]}); err != nil {
		t.Fatal(err)
	}
	for _, p := range []int{10, 50, 100, 0, 75} {
		env, err := l.SetCanaryWeight(ctx, modelName, p)
		if err != nil {
			t.Fatal(err)
		}
		wantWeights(t, env, map[string]int{Stable: 100 - p, Canary: p})
		f.predict(t, env.RouterURL, "")
	}
	stopLoad()
	// A connection the client dialled but never used would hold the
	// router's drain for 5 seconds.
	http.DefaultClient.CloseIdleConnections()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed, e.g. %v", failed.Load(), failed.Load()+served.Load(), failure.Load())
	}
}

// A fault set through the admin API holds across weight changes and ends
// with the canary it was set on.
func TestSetFault(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	l := f.local(t)
	if _, err := l.SetFault(ctx, modelName, Stable, 10, 0); err == nil {
		t.Fatal("a fault was set with nothing deployed")
	}
	f.promote(t, 1)
	if _, err := l.StartCanary(ctx, modelName, Candidate{Model: f.ptrs[2]}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.SetFault(ctx, modelName, "ghost", 10, 0); err == nil || !strings.Contains(err.Error(), "ghost") {
		t.Fatalf("fault on an unknown variant: %v", err)
	}
	env, err := l.SetFault(ctx, modelName, Canary, 100, 0)
	if err != nil || env.Faults[Canary] != (router.Fault{AbortPercent: 100, Status: 503}) {
		t.Fatalf("set fault: %+v, %v", env.Faults, err)
	}
	if env, err = l.SetCanaryWeight(ctx, modelName, 50); err != nil || env.Faults[Canary].AbortPercent != 100 {
		t.Fatalf("the weight change lost the fault: %+v, %v", env.Faults, err)
	}
	if a := f.predict(t, env.RouterURL, Canary); a.code != 503 || a.variant != Canary || !strings.Contains(a.err, "fault injected") {
		t.Fatalf("canary with a fault answered %+v", a)
	}
	if a := f.predict(t, env.RouterURL, Stable); a.code != 200 {
		t.Fatalf("stable without a fault answered %+v", a)
	}
	if env, err = l.EndCanary(ctx, modelName); err != nil || env.Faults != nil {
		t.Fatalf("end canary kept its fault: %+v, %v", env.Faults, err)
	}
	f.expect(t, env, Stable, "v1")
}

// After a rollback moves the alias, FollowChampion has stable serve the
// champion without waiting for a poll (polling is off here); it starts
// nothing for a model not running in this Local.
func TestLocalFollowChampion(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	f.promote(t, 1)
	f.promote(t, 2)
	l := NewLocal(Options{StateDir: f.state, Workspace: f.ws, Serving: serving.Options{PollInterval: -1}})
	t.Cleanup(func() {
		if err := l.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	if _, err := l.FollowChampion(ctx, modelName); err != nil {
		t.Fatal(err)
	}
	if _, running := l.Describe(modelName); running {
		t.Fatal("FollowChampion started an environment")
	}
	env, err := l.Ensure(ctx, modelName)
	if err != nil {
		t.Fatal(err)
	}
	if a := f.predict(t, env.RouterURL, ""); a.version != "v2" {
		t.Fatalf("stable serves %s, want v2", a.version)
	}
	if err := f.reg.Rollback(ctx, modelName, 2, registry.Audit{At: time.Unix(2, 0), Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if a := f.predict(t, env.RouterURL, ""); a.version != "v2" {
		t.Fatalf("without polling stable moved to %s by itself", a.version)
	}
	if env, err = l.FollowChampion(ctx, modelName); err != nil {
		t.Fatal(err)
	}
	if a := f.predict(t, env.RouterURL, ""); a.version != "v1" {
		t.Fatalf("after FollowChampion stable serves %s, want v1", a.version)
	}
}

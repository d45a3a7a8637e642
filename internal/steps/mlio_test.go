package steps

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// testEnv is a steps.Env for tests: it records progress and can play back a
// previous attempt's last details.
type testEnv struct {
	dir, state string
	artifacts  *workspace.Session
	mu         sync.Mutex
	progress   []map[string]any
	resume     []byte
	// scoring is what Scoring reports: the host's ONNX Runtime.
	scoring scoring.Options
}

// newEnv's store is file://<state>/artifacts, so envs of one state share it.
func newEnv(t *testing.T, state string) *testEnv {
	t.Helper()
	ws, err := workspace.Open(context.Background(), workspace.Config{StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	session := ws.Session()
	t.Cleanup(session.Close)
	return &testEnv{dir: t.TempDir(), state: state, artifacts: session}
}

func (e *testEnv) Progress(details any) {
	b, _ := json.Marshal(details)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.progress = append(e.progress, m)
}

func (e *testEnv) Resume(v any) bool {
	if e.resume == nil {
		return false
	}
	return json.Unmarshal(e.resume, v) == nil
}

func (e *testEnv) Dir() string                   { return e.dir }
func (e *testEnv) StateDir() string              { return e.state }
func (e *testEnv) Artifacts() *workspace.Session { return e.artifacts }
func (e *testEnv) Logger() *slog.Logger          { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
func (e *testEnv) Scoring() scoring.Options      { return e.scoring }

func run(t *testing.T, env Env, typ, step string, with map[string]any) (map[string]any, error) {
	t.Helper()
	ty, ok := Lookup(typ)
	if !ok {
		t.Fatalf("type %q not registered", typ)
	}
	out, err := ty.Run(context.Background(), env, Input{RunID: "run-1", Pipeline: "p", StepID: step, Uses: typ, With: with})
	if err == nil {
		// Outputs cross Temporal history as JSON: they must survive it.
		b, jerr := json.Marshal(out)
		if jerr != nil {
			t.Fatalf("%s outputs are not JSON: %v", typ, jerr)
		}
		out = nil
		if jerr := json.Unmarshal(b, &out); jerr != nil {
			t.Fatal(jerr)
		}
	}
	return out, err
}

func mustRun(t *testing.T, env Env, typ, step string, with map[string]any) map[string]any {
	t.Helper()
	out, err := run(t, env, typ, step, with)
	if err != nil {
		t.Fatalf("%s: %v", typ, err)
	}
	return out
}

func wantPermanent(t *testing.T, err error, substr ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("want an error, got none")
	}
	if _, retryable := Classify(err); retryable {
		t.Fatalf("want a permanent error, got %T: %v", err, err)
	}
	for _, s := range substr {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}

const biased = "builtin:credit-risk?rows=3000&seed=7&bias=0.3"

// loadOut loads the model an output names.
func loadOut(t *testing.T, env Env, ptr any) *loadedModel {
	t.Helper()
	s, _ := ptr.(string)
	r, err := Ref(s)
	if err != nil {
		t.Fatal(err)
	}
	m, err := loadModel(context.Background(), env, "model", r)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// materialized is the local path of the artifact an output names; it
// fails the test unless the output is a pointer into env's store.
func materialized(t *testing.T, env Env, ptr any) string {
	t.Helper()
	s, _ := ptr.(string)
	p, err := artifact.ParsePointer(s)
	if err != nil {
		t.Fatalf("output %v: %v", ptr, err)
	}
	path, err := env.Artifacts().Materialize(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// fetchOut fetches the artifact an output names from the store the pointer
// names into a fresh directory, as a tool that never saw the worker would.
func fetchOut(t *testing.T, ptr any) string {
	t.Helper()
	s, _ := ptr.(string)
	p, err := artifact.ParsePointer(s)
	if err != nil {
		t.Fatalf("output %v: %v", ptr, err)
	}
	ctx := context.Background()
	store, err := artifact.Open(ctx, p.Store)
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "artifact")
	if p.Kind == artifact.KindTree {
		err = artifact.FetchTree(ctx, store, p.Digest, dst)
	} else {
		err = artifact.Fetch(ctx, store, p.Digest, dst)
	}
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// readOut reads the file an output names.
func readOut(t *testing.T, env Env, ptr any) []byte {
	t.Helper()
	b, err := os.ReadFile(materialized(t, env, ptr))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Every typed step decodes `with:` before it starts: a value of the wrong
// kind or a key it does not take fails permanently as BadInput, naming the
// key, whatever the type.
func TestTypedStepsRefuseBadInputsFirst(t *testing.T) {
	for _, ty := range All() {
		if ty.Kind != Activity || ty.Inputs == nil {
			continue
		}
		env := newEnv(t, t.TempDir())
		_, err := run(t, env, ty.Name, "s", map[string]any{"no_such_input": 1})
		wantPermanent(t, err, "with.no_such_input", "unknown input")
		if kind, _ := Classify(err); kind != kindBadInput {
			t.Errorf("%s: kind %q", ty.Name, kind)
		}
		if entries, _ := os.ReadDir(env.Dir()); len(entries) != 0 {
			t.Errorf("%s: a refused step wrote %v", ty.Name, entries)
		}
	}
	_, err := run(t, newEnv(t, t.TempDir()), "train", "train", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes", "epochs": "2.5"})
	wantPermanent(t, err, `with.epochs: want an integer, got "2.5"`)
}

// The held-out split written from a frame's rows, streamed, is byte for
// byte what writing those rows as a Dataset gives, and reads back as the
// same values: float32-stored and float64-stored numbers, missing values,
// categories and both labels.
func TestHoldoutFromFrameIsTheDatasetsCSV(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mixed.csv")
	body := "x,y,c,s,label\n1.5,0.1234567891234,a,f,no\n,3,,m,yes\n1e-7,-2.5e30,b,f,maybe\n16777217,4,a,m,no\n"
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		src  string
		opts []dataset.Option
	}{
		{"builtin:credit-risk?rows=3000&seed=7&bias=0.3", nil},
		{path, []dataset.Option{dataset.WithLabel("label", "yes"), dataset.WithSensitive("s")}},
	} {
		f, err := dataset.LoadFrame(c.src, c.opts...)
		if err != nil {
			t.Fatal(err)
		}
		idx := []int{}
		for i := f.Len() - 1; i >= 0; i -= 2 {
			idx = append(idx, i)
		}
		want, err := holdoutCSV(f.Subset(idx), f.NegativeLabel())
		if err != nil {
			t.Fatal(err)
		}
		got, err := frameCSV(f, idx)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != string(want) {
			t.Fatalf("%s: frame rows give\n%.300s\nthe Dataset gives\n%.300s", c.src, got, want)
		}
		file := filepath.Join(t.TempDir(), "holdout.csv")
		sum, err := writeHoldout(file, f, idx)
		if err != nil {
			t.Fatal(err)
		}
		onDisk, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		if h := sha256.Sum256(onDisk); string(onDisk) != string(want) || hex.EncodeToString(h[:]) != sum {
			t.Fatalf("%s: the streamed file differs or its digest %s is not its content's", c.src, sum)
		}
		back, err := dataset.Load(file, dataset.WithSchema(f.Schema), dataset.WithHeader(true))
		if err != nil {
			t.Fatal(err)
		}
		sub := f.Subset(idx)
		for name, col := range sub.Numeric {
			for r, v := range col {
				if w := back.Numeric[name][r]; v != w && !(math.IsNaN(v) && math.IsNaN(w)) {
					t.Fatalf("%s: %s row %d: wrote %v, read back %v", c.src, name, r, v, w)
				}
			}
		}
		if !slices.Equal(back.Y, sub.Y) {
			t.Fatalf("%s: labels do not read back", c.src)
		}
	}
}

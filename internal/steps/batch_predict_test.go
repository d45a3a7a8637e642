package steps

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/batch"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/registry"
)

// creditRows writes rows of builtin credit-risk (seed 11) as a CSV with a
// header and an id column, or as Parquet when the name says so.
func creditRows(t *testing.T, name string, rows int) string {
	t.Helper()
	header := []string{"id"}
	for _, c := range dataset.CreditRiskSchema.Columns {
		header = append(header, c.Name)
	}
	recs := dataset.CreditRisk(dataset.CreditRiskParams{Rows: rows, Seed: 11, Bias: 0.3})
	for i, r := range recs {
		recs[i] = append([]string{"c-" + strconv.Itoa(i)}, r...)
	}
	path := filepath.Join(t.TempDir(), name)
	if strings.HasSuffix(name, ".parquet") {
		mltest.WriteParquet(t, path, header, recs, 700)
		return path
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := csv.NewWriter(f)
	w.Write(header)
	w.WriteAll(recs)
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return path
}

// progressEnv is a test env that calls onProgress with each report.
type progressEnv struct {
	*testEnv
	onProgress func(details map[string]any)
}

func (e progressEnv) Progress(details any) {
	e.testEnv.Progress(details)
	if e.onProgress != nil {
		e.onProgress(details.(map[string]any))
	}
}

func runIn(ctx context.Context, env Env, typ, step string, with map[string]any) (map[string]any, error) {
	ty, _ := Lookup(typ)
	out, err := ty.Run(ctx, env, Input{RunID: "run-1", Pipeline: "p", StepID: step, Uses: typ, With: with})
	if err != nil {
		return out, err
	}
	b, _ := json.Marshal(out)
	var back map[string]any
	return back, json.Unmarshal(b, &back)
}

// predictions reads a predictions tree's rows, in order.
func predictions(t *testing.T, env Env, ptr any) (batch.Manifest, [][]string) {
	t.Helper()
	dir := materialized(t, env, ptr)
	var m batch.Manifest
	b, err := os.ReadFile(filepath.Join(dir, batch.ManifestFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	var rows [][]string
	for _, p := range m.Parts {
		f, err := os.Open(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		recs, err := csv.NewReader(f).ReadAll()
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		rows = append(rows, recs[1:]...)
	}
	return m, rows
}

// TestBatchPredictResumesAfterCancel: an attempt cancelled after two
// chunks, retried, scores only the chunks left, and the predictions are an
// uninterrupted run's, each the score the model gives that row.
func TestBatchPredictResumesAfterCancel(t *testing.T) {
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"})
	data := creditRows(t, "score.csv", 2600)
	with := map[string]any{"model": tr["model"], "data": data, "key": "id", "chunk_rows": 400}
	const chunks = 7

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := progressEnv{testEnv: newEnv(t, state), onProgress: func(p map[string]any) {
		if p["chunks"] == 2 {
			cancel()
		}
	}}
	if _, err := runIn(ctx, first, "batch-predict", "score", with); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled attempt: %v", err)
	}
	second := newEnv(t, state)
	out := mustRun(t, second, "batch-predict", "score", with)
	if out["resumed"] != 2.0 || out["scored"] != float64(chunks-2) || out["chunks"] != float64(chunks) || out["rows"] != 2600.0 {
		t.Fatalf("retried attempt: %v", out)
	}
	if len(second.progress) != chunks-2 || second.progress[0]["chunks"] != 3.0 {
		t.Errorf("heartbeats %v: want one per chunk scored, from chunk 3", second.progress)
	}
	whole := mustRun(t, newEnv(t, state), "batch-predict", "score-whole", with)
	if whole["predictions"] != out["predictions"] || whole["resumed"] != 0.0 {
		t.Fatalf("uninterrupted run: %v; resumed run's predictions %v", whole, out["predictions"])
	}
	if out["provider"] != "go" || out["format"] != "gauntlet" || out["model_digest"] != tr["model_digest"] {
		t.Errorf("outputs %v", out)
	}

	man, rows := predictions(t, second, out["predictions"])
	lm := loadOut(t, second, tr["model"])
	defer lm.Close()
	d, err := dataset.Load(data, dataset.WithSchema(lm.Info().Schema), dataset.WithHeader(true))
	if err == nil {
		var p []float64
		if p, err = lm.scores(d); err == nil && len(rows) == len(p) {
			for r, rec := range rows {
				score, _ := strconv.ParseFloat(rec[2], 64)
				if rec[0] != strconv.Itoa(r) || rec[1] != "c-"+strconv.Itoa(r) || math.Abs(score-p[r]) > 1e-12 {
					t.Fatalf("prediction %d: %v, want score %v", r, rec, p[r])
				}
			}
		}
	}
	if err != nil || len(rows) != 2600 || man.Rows != 2600 || man.Input.Name != data {
		t.Fatalf("%d predictions, manifest %+v, %v", len(rows), man, err)
	}
}

// Environment of TestBatchPredictKilled's child process.
const (
	envKillState = "GAUNTLET_TEST_BATCH_STATE"
	envKillWith  = "GAUNTLET_TEST_BATCH_WITH"
	envKillMark  = "GAUNTLET_TEST_BATCH_MARK"
)

// TestBatchPredictKilled: a worker process SIGKILLed in the middle of a
// batch-predict step (here a child process of the test, stopped after
// three chunks) leaves its recorded chunks in the store; the retry scores
// only the others and gives the uninterrupted run's predictions.
func TestBatchPredictKilled(t *testing.T) {
	if state := os.Getenv(envKillState); state != "" {
		killedChild(t, state)
		return
	}
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"})
	with := map[string]any{"model": tr["model"], "data": creditRows(t, "score.parquet", 3000), "chunk_rows": 300}
	enc, _ := json.Marshal(with)
	mark := filepath.Join(t.TempDir(), "three-chunks")
	cmd := exec.Command(os.Args[0], "-test.run=^TestBatchPredictKilled$", "-test.count=1")
	cmd.Env = append(os.Environ(), envKillState+"="+state, envKillWith+"="+string(enc), envKillMark+"="+mark)
	var log strings.Builder
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	for {
		if _, err := os.Stat(mark); err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("the child ended before three chunks: %v\n%s", err, log.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := <-exited; err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child: %v", err)
	}
	out := mustRun(t, newEnv(t, state), "batch-predict", "score", with)
	if out["resumed"] != 3.0 || out["scored"] != 7.0 || out["chunks"] != 10.0 {
		t.Fatalf("after the kill: %v", out)
	}
	whole := mustRun(t, newEnv(t, state), "batch-predict", "score-whole", with)
	if whole["predictions"] != out["predictions"] {
		t.Fatalf("predictions %v after the kill, %v uninterrupted", out["predictions"], whole["predictions"])
	}
}

// killedChild runs the step and, once three chunks are recorded, says so
// and waits to be killed.
func killedChild(t *testing.T, state string) {
	var with map[string]any
	if err := json.Unmarshal([]byte(os.Getenv(envKillWith)), &with); err != nil {
		t.Fatal(err)
	}
	env := progressEnv{testEnv: newEnv(t, state), onProgress: func(p map[string]any) {
		if p["chunks"] == 3 {
			if err := os.WriteFile(os.Getenv(envKillMark), nil, 0o644); err != nil {
				t.Error(err)
			}
			select {}
		}
	}}
	_, err := runIn(context.Background(), env, "batch-predict", "score", with)
	t.Fatalf("the step ended instead of waiting to be killed: %v", err)
}

// TestBatchPredictAlias: a registry alias scores with the version it
// names; a retry of the step keeps that version after the alias moved.
func TestBatchPredictAlias(t *testing.T) {
	state := t.TempDir()
	env := newEnv(t, state)
	ctx := context.Background()
	reg := registry.New(env.Artifacts().Store())
	var models []map[string]any
	for i, seed := range []int{1, 2} {
		tr := mustRun(t, newEnv(t, state), "train", "train"+strconv.Itoa(i), map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes", "seed": seed, "test_fraction": 0.3})
		p, err := artifact.ParsePointer(tr["model"].(string))
		if err != nil {
			t.Fatal(err)
		}
		mv, err := reg.Register(ctx, registry.RegisterRequest{Model: "credit", Artifact: p.Digest,
			Lineage: registry.Lineage{RunID: "r", StepID: "s" + strconv.Itoa(i)}, CreatedAt: time.Now()})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			if err := reg.Promote(ctx, "credit", mv.Version, 0, registry.Audit{At: time.Now(), Actor: "test"}); err != nil {
				t.Fatal(err)
			}
		}
		models = append(models, tr)
	}
	with := map[string]any{"model": "credit@champion", "data": "builtin:credit-risk?rows=900&seed=5", "chunk_rows": 500}
	out := mustRun(t, newEnv(t, state), "batch-predict", "score", with)
	if out["model"] != models[0]["model"] || out["model_version"] != 1.0 || out["rows"] != 900.0 || out["chunks"] != 2.0 {
		t.Fatalf("alias: %v", out)
	}
	if err := reg.Promote(ctx, "credit", 2, 1, registry.Audit{At: time.Now(), Actor: "test"}); err != nil {
		t.Fatal(err)
	}
	if again := mustRun(t, newEnv(t, state), "batch-predict", "score", with); again["model"] != models[0]["model"] || again["predictions"] != out["predictions"] {
		t.Errorf("the retried step took the moved alias: %v", again)
	}
	if fresh := mustRun(t, newEnv(t, state), "batch-predict", "score-v2", with); fresh["model"] != models[1]["model"] || fresh["model_version"] != 2.0 {
		t.Errorf("a new step: %v", fresh)
	}
	if v1 := mustRun(t, newEnv(t, state), "batch-predict", "score-v1", map[string]any{"model": "credit@v1", "data": with["data"]}); v1["model"] != models[0]["model"] {
		t.Errorf("credit@v1: %v", v1)
	}
	_, err := run(t, newEnv(t, state), "batch-predict", "nope", map[string]any{"model": "credit@staging", "data": with["data"]})
	wantPermanent(t, err, "with.model", "credit@staging", `alias "staging"`)
}

// TestBatchPredictONNXOnParquet: an ONNX model scores Parquet, its
// provider named, as its Gauntlet original scores the same rows as CSV.
func TestBatchPredictONNXOnParquet(t *testing.T) {
	onnxtest.Runtime(t)
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"})
	odir := exportONNX(t, newEnv(t, state), tr["model"])
	env := onnxEnv(t, state)
	o := mustRun(t, env, "batch-predict", "onnx", map[string]any{"model": odir, "data": creditRows(t, "s.parquet", 1500), "chunk_rows": 600, "key": "id"})
	g := mustRun(t, newEnv(t, state), "batch-predict", "gauntlet", map[string]any{"model": tr["model"], "data": creditRows(t, "s.csv", 1500), "chunk_rows": 600, "key": "id"})
	if o["provider"] != cpu || o["format"] != "onnx" || o["rows"] != 1500.0 {
		t.Fatalf("onnx: %v", o)
	}
	_, orows := predictions(t, env, o["predictions"])
	_, grows := predictions(t, env, g["predictions"])
	for r := range grows {
		os, _ := strconv.ParseFloat(orows[r][2], 64)
		gs, _ := strconv.ParseFloat(grows[r][2], 64)
		if orows[r][1] != grows[r][1] || math.Abs(os-gs) > 1e-5 {
			t.Fatalf("row %d: ONNX on Parquet %v, Gauntlet on CSV %v", r, orows[r], grows[r])
		}
	}
}

func TestBatchPredictRefusesBadInput(t *testing.T) {
	state := t.TempDir()
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"})
	noIncome := filepath.Join(t.TempDir(), "no-income.csv")
	if err := os.WriteFile(noIncome, []byte("age,purpose\n30,car\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		with map[string]any
		want []string
	}{
		{map[string]any{"model": tr["model"], "data": noIncome}, []string{noIncome, "the header lacks it"}},
		{map[string]any{"model": tr["model"], "data": noIncome, "chunk_rows": 0}, []string{"with.chunk_rows", "must be positive"}},
		{map[string]any{"model": tr["model"], "data": filepath.Join(t.TempDir(), "absent.csv")}, []string{"with.data", "absent.csv"}},
		{map[string]any{"model": "nobody@champion", "data": noIncome}, []string{"with.model", "nobody@champion"}},
	} {
		_, err := run(t, newEnv(t, state), "batch-predict", "bad", c.with)
		wantPermanent(t, err, c.want...)
	}
}

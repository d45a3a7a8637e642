package steps

import (
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
)

func TestSplitPartitionsTheRowsIntoStratifiedFolds(t *testing.T) {
	state := t.TempDir()
	env := newEnv(t, state)
	out := mustRun(t, env, "split", "split", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes", "folds": 4, "seed": 3, "sensitive": "sex"})
	if out["k"] != 4.0 || out["rows"] != 3000.0 {
		t.Fatalf("outputs %v", out)
	}
	full, err := dataset.Load(biased, dataset.WithLabel("defaulted", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	share := positives(full.Y) / float64(full.Len())
	tests := 0
	for k, raw := range out["folds"].([]any) {
		f := raw.(map[string]any)
		if f["index"] != float64(k) || f["train_rows"].(float64)+f["test_rows"].(float64) != 3000 {
			t.Fatalf("fold %d: %v", k, f)
		}
		for _, part := range []string{"train", "test"} {
			p, err := artifact.ParsePointer(f[part].(string))
			if err != nil || p.Kind != artifact.KindBlob {
				t.Fatalf("fold %d %s is not a blob pointer: %v %v", k, part, f[part], err)
			}
			path, err := localData(t.Context(), newEnv(t, state), "data", f[part].(string))
			if err != nil {
				t.Fatal(err)
			}
			d, err := dataset.Load(path, dataset.WithLabel("defaulted", "yes"), dataset.WithSensitive("sex"))
			if err != nil {
				t.Fatal(err)
			}
			if float64(d.Len()) != f[part+"_rows"].(float64) {
				t.Fatalf("fold %d %s has %d rows, says %v", k, part, d.Len(), f[part+"_rows"])
			}
			if part == "test" {
				tests += d.Len()
				// Stratified: each fold's share of positives is the data's,
				// within one row.
				if got := positives(d.Y); math.Abs(got-share*float64(d.Len())) > 1.5 {
					t.Errorf("fold %d has %v positives of %d, want about %.1f", k, got, d.Len(), share*float64(d.Len()))
				}
			}
		}
	}
	if tests != 3000 {
		t.Fatalf("the test folds hold %d rows, want every row once", tests)
	}
	again := mustRun(t, newEnv(t, state), "split", "split", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes", "folds": 4, "seed": 3, "sensitive": "sex"})
	if !reflect.DeepEqual(again["folds"], out["folds"]) {
		t.Fatal("the same seed split differently")
	}
	other := mustRun(t, newEnv(t, state), "split", "split", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes", "folds": 4, "seed": 4, "sensitive": "sex"})
	if reflect.DeepEqual(other["folds"], out["folds"]) {
		t.Fatal("another seed split the same way")
	}
}

func positives(y []float64) float64 {
	n := 0.0
	for _, v := range y {
		n += v
	}
	return n
}

func TestTrainAndEvaluateReadAFold(t *testing.T) {
	state := t.TempDir()
	sp := mustRun(t, newEnv(t, state), "split", "split", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes", "folds": 3})
	fold := sp["folds"].([]any)[1].(map[string]any)
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{"data": fold["train"], "label": "defaulted", "positive_label": "yes", "sensitive": "sex,age_group"})
	if tr["rows"] != fold["train_rows"] {
		t.Fatalf("train read %v rows of a fold of %v", tr["rows"], fold["train_rows"])
	}
	ev := mustRun(t, newEnv(t, state), "evaluate", "evaluate", map[string]any{"model": tr["model"], "data": fold["test"], "fail_on_regression": false})
	if auc := ev["metrics"].(map[string]any)["roc_auc"].(float64); auc < 0.6 {
		t.Fatalf("roc_auc %v on the fold's test rows", auc)
	}
}

func TestLocalDataRefusesPointersItCannotRead(t *testing.T) {
	state := t.TempDir()
	env := newEnv(t, state)
	missing := "file://" + state + "/artifacts/blobs/sha256/" + strings.Repeat("ab", 32)
	_, err := localData(t.Context(), env, "data", missing)
	wantPermanent(t, err, "with.data", "not found")
	other := "file:///elsewhere/artifacts/blobs/sha256/" + strings.Repeat("ab", 32)
	_, err = localData(t.Context(), env, "data", other)
	wantPermanent(t, err, "with.data", "another store")
	tree := "file://" + state + "/artifacts/trees/sha256/" + strings.Repeat("ab", 32)
	_, err = localData(t.Context(), env, "data", tree)
	wantPermanent(t, err, "with.data", "is a directory artifact")
	if got, err := localData(t.Context(), env, "data", biased); err != nil || got != biased {
		t.Fatalf("a builtin source is not a pointer: %v %v", got, err)
	}
}

func TestSplitRefusesTooFewFolds(t *testing.T) {
	_, err := run(t, newEnv(t, t.TempDir()), "split", "split", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes", "folds": 1})
	wantPermanent(t, err, "with.folds", "at least 2")
	_, err = run(t, newEnv(t, t.TempDir()), "split", "split", map[string]any{"data": "builtin:credit-risk?rows=10", "label": "defaulted", "positive_label": "yes", "folds": 11})
	wantPermanent(t, err, "with.folds", "11 folds of 10 rows")
}

func TestSelectPicksTheBestAndBreaksTiesByItemOrder(t *testing.T) {
	metrics := []any{
		map[string]any{"roc_auc": 0.81, "log_loss": 0.40},
		nil, // a failed item
		map[string]any{"roc_auc": 0.86, "log_loss": 0.35},
		map[string]any{"roc_auc": 0.86, "log_loss": 0.33},
		map[string]any{"roc_auc": nil, "log_loss": 0.31},
	}
	models := []any{"m0", nil, "m2", "m3", "m4"}
	cands := []any{map[string]any{"lr": 0.1}, map[string]any{"lr": 0.2}, map[string]any{"lr": 0.3}, map[string]any{"lr": 0.4}, map[string]any{"lr": 0.5}}
	env := newEnv(t, t.TempDir())
	out := mustRun(t, env, "select", "best", map[string]any{"metric": "roc_auc", "metrics": metrics, "models": models, "candidates": cands})
	if out["model"] != "m2" || out["index"] != 2.0 || out["value"] != 0.86 || out["considered"] != 3.0 {
		t.Fatalf("roc_auc: %v", out)
	}
	if !reflect.DeepEqual(out["ranking"], []any{2.0, 3.0, 0.0}) || !reflect.DeepEqual(out["candidate"], map[string]any{"lr": 0.3}) {
		t.Fatalf("ranking or candidate: %v", out)
	}
	// Lower is better for log loss, without being told.
	out = mustRun(t, env, "select", "best", map[string]any{"metric": "log_loss", "metrics": metrics, "models": models})
	if out["model"] != "m4" {
		t.Fatalf("log_loss: %v", out)
	}
	out = mustRun(t, env, "select", "best", map[string]any{"metric": "log_loss", "goal": "max", "metrics": metrics, "models": models})
	if out["model"] != "m0" {
		t.Fatalf("log_loss, goal max: %v", out)
	}
	// Reordering equal candidates changes the winner only by position.
	swapped := mustRun(t, env, "select", "best", map[string]any{"metric": "roc_auc", "metrics": []any{metrics[3], metrics[2]}, "models": []any{"m3", "m2"}})
	if swapped["model"] != "m3" {
		t.Fatalf("tie: %v", swapped)
	}
}

func TestSelectRefusesWhatItCannotDecide(t *testing.T) {
	env := newEnv(t, t.TempDir())
	_, err := run(t, env, "select", "best", map[string]any{"metric": "auc", "metrics": []any{map[string]any{"roc_auc": 0.8}}, "models": []any{"m"}})
	wantPermanent(t, err, "with.metric", `no candidate has metric "auc" (they have roc_auc)`)
	_, err = run(t, env, "select", "best", map[string]any{"metric": "roc_auc", "metrics": []any{map[string]any{"roc_auc": 0.8}}, "models": []any{"a", "b"}})
	wantPermanent(t, err, "with.models", "2 entries for 1 metrics")
	_, err = run(t, env, "select", "best", map[string]any{"metric": "roc_auc", "metrics": []any{nil, nil}, "models": []any{nil, nil}})
	wantPermanent(t, err, "with.metrics", "did every item fail")
	_, err = run(t, env, "select", "best", map[string]any{"metric": "roc_auc", "goal": "best", "metrics": []any{nil}, "models": []any{nil}})
	wantPermanent(t, err, "with.goal")
}

func TestAggregateSummarisesAMetric(t *testing.T) {
	env := newEnv(t, t.TempDir())
	out := mustRun(t, env, "aggregate", "cv", map[string]any{"metric": "roc_auc", "metrics": []any{
		map[string]any{"roc_auc": 0.8, "accuracy": 0.7},
		map[string]any{"roc_auc": 0.9, "accuracy": 0.8},
		nil,
		map[string]any{"roc_auc": 0.7, "accuracy": 0.9, "f1": 0.5},
	}})
	// numpy: np.mean([.8, .9, .7]) = 0.8, np.std([.8, .9, .7]) = 0.0816496580927726
	if math.Abs(out["mean"].(float64)-0.8) > 1e-12 || math.Abs(out["std"].(float64)-0.0816496580927726) > 1e-12 {
		t.Fatalf("mean %v std %v", out["mean"], out["std"])
	}
	if out["min"] != 0.7 || out["max"] != 0.9 || out["n"] != 3.0 || out["missing"] != 1.0 {
		t.Fatalf("outputs %v", out)
	}
	all := out["all"].(map[string]any)
	if _, ok := all["f1"]; ok || all["accuracy"].(map[string]any)["max"] != 0.9 {
		t.Fatalf("all: %v", all)
	}
	_, err := run(t, env, "aggregate", "cv", map[string]any{"metric": "roc_auc", "metrics": []any{nil}})
	wantPermanent(t, err, "with.metrics", "none of the 1 items")
	_, err = run(t, env, "aggregate", "cv", map[string]any{"metric": "auc", "metrics": []any{map[string]any{"roc_auc": 0.8}}})
	wantPermanent(t, err, "with.metric", `"auc"`)
}

package steps

import (
	"encoding/csv"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
)

// plantedCSV writes builtin credit-risk rows with an extra column computed
// from each row, and keeps one positive row in every keepPositive.
func plantedCSV(t *testing.T, name string, keepPositive int, extra func(row []string) string) string {
	t.Helper()
	var header []string
	for _, c := range dataset.CreditRiskSchema.Columns {
		header = append(header, c.Name)
	}
	label := len(header) - 1
	if extra != nil {
		header = append(header, "extra")
	}
	path := filepath.Join(t.TempDir(), name)
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := csv.NewWriter(f)
	w.Write(header)
	pos := 0
	for _, r := range dataset.CreditRisk(dataset.CreditRiskParams{Rows: 3000, Seed: 4}) {
		if r[label] == "yes" {
			if pos++; pos%keepPositive != 0 {
				continue
			}
		}
		if extra != nil {
			r = append(r, extra(r))
		}
		w.Write(r)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestValidateDataPassesAndComparesWithReference(t *testing.T) {
	state := t.TempDir()
	with := map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes", "sensitive": "sex,age_group"}
	out := mustRun(t, newEnv(t, state), "validate-data", "v", with)
	if out["passed"] != true || out["stats"] == nil || out["imbalance_severity"] == nil {
		t.Fatalf("outputs %v", out)
	}
	with["reference_stats"] = out["stats"]
	with["data"] = "builtin:credit-risk?rows=3000&seed=8&bias=0.3"
	if out := mustRun(t, newEnv(t, state), "validate-data", "v2", with); out["passed"] != true {
		t.Errorf("second sample failed against the first: %v", out)
	}
}

func TestValidateDataStopsOnLeak(t *testing.T) {
	leak := plantedCSV(t, "leak.csv", 1, func(r []string) string {
		return map[bool]string{true: "written_off", false: "open"}[r[len(r)-1] == "yes"]
	})
	_, err := run(t, newEnv(t, t.TempDir()), "validate-data", "v", map[string]any{"data": leak, "label": "defaulted", "positive_label": "yes"})
	wantPermanent(t, err, "extra", "leaks the label")
	if se := err.(*Error); se.Kind != kindValidationFailed {
		t.Errorf("kind %q", se.Kind)
	}
}

func TestValidateDataRemedy(t *testing.T) {
	state := t.TempDir()
	skewed := plantedCSV(t, "skewed.csv", 6, nil)
	out := mustRun(t, newEnv(t, state), "validate-data", "v", map[string]any{
		"data": skewed, "label": "defaulted", "positive_label": "yes", "imbalance_remedy": "oversample",
		"eval_data": "builtin:credit-risk?rows=2000&seed=9"})
	if out["data"] == nil || out["remedy_effect"] == nil {
		t.Fatalf("outputs %v", out)
	}
	delta := out["remedy_effect"].(map[string]any)["delta"].(map[string]any)
	if delta["recall"].(float64) <= 0 {
		t.Errorf("oversampling did not raise recall: %v", delta)
	}
	// The rebalanced file is ordinary training data.
	tr := mustRun(t, newEnv(t, state), "train", "train", map[string]any{"data": out["data"], "label": "defaulted", "positive_label": "yes"})
	if tr["rows"].(float64) <= 3000*0.5 {
		t.Errorf("trained on %v rows", tr["rows"])
	}
	cw := mustRun(t, newEnv(t, state), "validate-data", "v2", map[string]any{
		"data": skewed, "label": "defaulted", "positive_label": "yes", "imbalance_remedy": "class_weight"})
	if cw["class_weight"] != "balanced" || cw["data"] != nil {
		t.Errorf("class_weight outputs %v", cw)
	}
	_, err := run(t, newEnv(t, state), "validate-data", "v3", map[string]any{
		"data": skewed, "label": "defaulted", "positive_label": "yes", "imbalance_remedy": "smote"})
	wantPermanent(t, err, "numeric features only")
	_, err = run(t, newEnv(t, state), "validate-data", "v4", map[string]any{
		"data": skewed, "label": "defaulted", "positive_label": "yes", "imbalance_remedy": "magic"})
	wantPermanent(t, err, "imbalance_remedy")
}

// Parquet data gets the remedy too: the rebalanced CSV names the negative
// class as the data does, which the frame knows and the old reader of CSV
// text could not tell.
func TestValidateDataRemedyOnParquet(t *testing.T) {
	var header []string
	for _, c := range dataset.CreditRiskSchema.Columns {
		header = append(header, c.Name)
	}
	rows := dataset.CreditRisk(dataset.CreditRiskParams{Rows: 3000, Seed: 4})
	for _, r := range rows {
		if r[len(r)-1] == "no" {
			r[len(r)-1] = "repaid"
		}
	}
	pq := filepath.Join(t.TempDir(), "credit.parquet")
	mltest.WriteParquet(t, pq, header, rows, 1000)
	state := t.TempDir()
	env := newEnv(t, state)
	out := mustRun(t, env, "validate-data", "v", map[string]any{
		"data": pq, "label": "defaulted", "positive_label": "yes", "imbalance_remedy": "undersample"})
	body := string(readOut(t, env, out["data"]))
	if !strings.Contains(body, ",repaid\n") || !strings.Contains(body, ",yes\n") || strings.Contains(body, ",no\n") {
		t.Errorf("rebalanced CSV does not write the labels as the data does: %.300s", body)
	}
}

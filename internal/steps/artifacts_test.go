package steps

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/artifact"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/artifacttest"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/cache"
	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
)

// writeCSV writes the builtin credit-risk rows as a CSV file.
func writeCSV(t *testing.T, rows int) (string, []byte) {
	t.Helper()
	var b strings.Builder
	names := make([]string, len(dataset.CreditRiskSchema.Columns))
	for i, c := range dataset.CreditRiskSchema.Columns {
		names[i] = c.Name
	}
	b.WriteString(strings.Join(names, ",") + "\n")
	for _, r := range dataset.CreditRisk(dataset.CreditRiskParams{Rows: rows, Seed: 3, Bias: 0.3}) {
		b.WriteString(strings.Join(r, ",") + "\n")
	}
	path := filepath.Join(t.TempDir(), "credit.csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, []byte(b.String())
}

// Every output that is a file or directory is a pointer into the store,
// and the steps after it take the pointers.
func TestOutputsArePointers(t *testing.T) {
	state := t.TempDir()
	env := newEnv(t, state)
	csvPath, body := writeCSV(t, 1500)
	val := mustRun(t, env, "validate-data", "v", map[string]any{"data": csvPath, "label": "defaulted", "positive_label": "yes", "imbalance_remedy": "oversample"})
	tr := mustRun(t, env, "train", "t", map[string]any{"data": val["data"], "label": "defaulted", "positive_label": "yes", "sensitive": "sex"})
	ev := mustRun(t, env, "evaluate", "e", map[string]any{"model": tr["model"]})
	fg := mustRun(t, env, "fairness-gate", "f", map[string]any{"model": tr["model"], "sensitive": "sex", "max": map[string]any{"demographic_parity_difference": 1}})
	ex := mustRun(t, env, "explain", "x", map[string]any{"model": tr["model"], "samples": 20, "repeats": 1, "records": 1})
	dr := mustRun(t, env, "drift", "d", map[string]any{"reference": csvPath, "current": val["data"], "exclude": "defaulted"})
	for _, o := range []struct {
		step, key string
		value     any
		kind      artifact.Kind
	}{
		{"validate-data", "report", val["report"], artifact.KindBlob},
		{"validate-data", "stats", val["stats"], artifact.KindBlob},
		{"validate-data", "data", val["data"], artifact.KindBlob},
		{"train", "model", tr["model"], artifact.KindTree},
		{"train", "holdout", tr["holdout"], artifact.KindBlob},
		{"evaluate", "evaluation", ev["evaluation"], artifact.KindBlob},
		{"fairness-gate", "model", fg["model"], artifact.KindTree},
		{"fairness-gate", "report", fg["report"], artifact.KindBlob},
		{"explain", "explanation", ex["explanation"], artifact.KindBlob},
		{"drift", "report", dr["report"], artifact.KindBlob},
	} {
		s, _ := o.value.(string)
		p, err := artifact.ParsePointer(s)
		if err != nil || p.Kind != o.kind || p.Store != env.Artifacts().Store().Location() {
			t.Errorf("%s output %s = %v (%v), want a %s pointer into the store", o.step, o.key, o.value, err, o.kind)
		}
	}
	if fg["model"] != tr["model"] {
		t.Errorf("an unmitigated gate hands on %v, not the model %v", fg["model"], tr["model"])
	}
	// The validation's stats are the reference of a later validation.
	mustRun(t, env, "validate-data", "v2", map[string]any{"data": csvPath, "label": "defaulted", "positive_label": "yes", "reference_stats": val["stats"]})

	// Lineage: where the data came from and the SHA-256 of its bytes.
	direct := mustRun(t, env, "train", "t2", map[string]any{"data": "file://" + csvPath, "label": "defaulted", "positive_label": "yes"})
	m := loadOut(t, env, direct["model"])
	sum := sha256.Sum256(body)
	rec, _ := m.Info().Lineage.Params[paramData].(map[string]any)
	if m.Info().Lineage.DataSource != csvPath || rec["source"] != csvPath || rec["sha256"] != "sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("lineage data source %q, record %v", m.Info().Lineage.DataSource, rec)
	}
}

// `gauntlet step` and a pipeline may name a model directory of the host:
// it is published first, and what the step records is the stored model.
func TestLocalModelDirectoryIsPublished(t *testing.T) {
	state := t.TempDir()
	env := newEnv(t, state)
	tr := mustRun(t, env, "train", "t", map[string]any{"data": biased, "label": "defaulted", "positive_label": "yes"})
	dir := fetchOut(t, tr["model"])
	ev := mustRun(t, newEnv(t, t.TempDir()), "evaluate", "e", map[string]any{"model": dir})
	if ev["metrics"].(map[string]any)["roc_auc"] != tr["metrics"].(map[string]any)["roc_auc"] {
		t.Errorf("the published copy scores %v, the model %v", ev["metrics"], tr["metrics"])
	}
	for name, with := range map[string]map[string]any{
		"missing":        {"model": filepath.Join(t.TempDir(), "none")},
		"not a pointer":  {"model": "s3://bucket/models/m1"},
		"blob as model":  {"model": tr["holdout"]},
		"other store":    {"model": strings.Replace(tr["model"].(string), state, t.TempDir(), 1)},
		"malformed hash": {"model": env.Artifacts().Store().Location() + "/trees/sha256/xyz"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := run(t, env, "evaluate", "e2", with)
			wantPermanent(t, err, "with.model")
		})
	}
	// A step never names the cache's path: what it read is the pointer.
	if _, err := Ref("/some/dir"); err != nil {
		t.Fatal(err)
	}
	if r, err := Ref(tr["model"].(string)); err != nil || r.ptr.Digest == "" {
		t.Fatalf("pointer ref %+v, %v", r, err)
	}
}

// Data is read where it lives: an object of an S3 bucket (the store's or
// another) and an https URL give the same model as the file, and the
// lineage names the URL without its query.
func TestTrainOnDataFromURLs(t *testing.T) {
	csvPath, body := writeCSV(t, 800)
	fake := artifacttest.NewFakeS3(t)
	t.Setenv("AWS_ENDPOINT_URL_S3", fake.Server.URL)
	t.Setenv("AWS_REGION", "us-east-1")
	if _, err := fake.Backend.PutObject(artifacttest.Bucket, "datasets/credit.csv", map[string]string{}, bytes.NewReader(body), int64(len(body)), nil); err != nil {
		t.Fatal(err)
	}
	web := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("token") != "t0ken" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		w.Write(body)
	}))
	defer web.Close()
	c, err := cache.Open(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	env := newEnv(t, t.TempDir())
	env.artifacts = workspace.New(fake.Open(t, "fleet"), c, web.Client(), 0).Session()
	defer env.artifacts.Close()

	with := func(data string) map[string]any {
		return map[string]any{"data": data, "label": "defaulted", "positive_label": "yes"}
	}
	want := mustRun(t, env, "train", "file", with(csvPath))
	for _, src := range []string{"s3://" + artifacttest.Bucket + "/datasets/credit.csv", web.URL + "/credit.csv?token=t0ken"} {
		got := mustRun(t, env, "train", "url", with(src))
		if got["data_digest"] != want["data_digest"] || !reflect.DeepEqual(got["metrics"], want["metrics"]) {
			t.Errorf("%s: data digest %v metrics %v, the file gave %v %v", src, got["data_digest"], got["metrics"], want["data_digest"], want["metrics"])
		}
		m := loadOut(t, env, got["model"])
		if ds := m.Info().Lineage.DataSource; strings.Contains(ds, "t0ken") || !strings.HasSuffix(ds, "credit.csv") {
			t.Errorf("lineage names %q", ds)
		}
	}
	_, err = run(t, env, "train", "denied", with(web.URL+"/credit.csv?token=wrong"))
	if kind, retryable := Classify(err); kind != workspace.KindDenied || retryable || strings.Contains(err.Error(), "wrong") {
		t.Errorf("denied: %s %v: %v", kind, retryable, err)
	}
	_, err = run(t, env, "train", "missing", with("s3://"+artifacttest.Bucket+"/datasets/none.csv"))
	if kind, retryable := Classify(err); kind != workspace.KindNotFound || retryable || !strings.Contains(err.Error(), "datasets/none.csv") {
		t.Errorf("missing object: %s %v: %v", kind, retryable, err)
	}
}

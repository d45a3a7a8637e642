package activities

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/contract"
	"github.com/gauntlet-ml/gauntlet/internal/deploy"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/monitor"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

// Delayed labels written to the store (here as an artifact pointer, as a
// labelling job that publishes them would give) are fetched by the pass
// and joined with what the champion served.
func TestMonitorCheckReadsLabelsFromTheStore(t *testing.T) {
	ctx := context.Background()
	f := newRegistryFixture(t)
	f.promote(t, 1, 0)
	local := deploy.NewLocal(deploy.Options{StateDir: f.state, Workspace: f.ws, Serving: serving.Options{PollInterval: 20 * time.Millisecond}})
	t.Cleanup(func() {
		if err := local.Close(context.Background()); err != nil {
			t.Error(err)
		}
	})
	env, _ := testEnv(t, Config{PipelinesDir: t.TempDir(), StateDir: f.state, Workspace: f.ws, Deploy: embeddedOnly(t, local)})
	de, err := local.Ensure(ctx, modelName)
	if err != nil {
		t.Fatal(err)
	}
	d, err := dataset.Load("builtin:credit-risk?rows=200&seed=5&bias=0.3")
	if err != nil {
		t.Fatal(err)
	}
	recs := mltest.Records(d, d.Len())
	body, err := json.Marshal(map[string]any{"records": recs})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(de.RouterURL+"/v1/predict", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("predict: %s", resp.Status)
	}
	stable, _ := de.Variant(deploy.Stable)
	for {
		b, _ := os.ReadFile(filepath.Join(stable.SampleDir, serving.SampleFile))
		if bytes.Count(b, []byte("\n")) >= len(recs) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}

	var labels bytes.Buffer
	for i, rec := range recs {
		row := map[string]any{"defaulted": "no"}
		if d.Y[i] == 1 {
			row["defaulted"] = "yes"
		}
		for k, v := range rec {
			row[k] = v
		}
		b, err := json.Marshal(row)
		if err != nil {
			t.Fatal(err)
		}
		labels.Write(append(b, '\n'))
	}
	path := filepath.Join(t.TempDir(), "labels.jsonl")
	if err := os.WriteFile(path, labels.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	session := f.ws.Session()
	defer session.Close()
	ptr, err := session.Publish(ctx, path)
	if err != nil {
		t.Fatal(err)
	}

	v, err := env.ExecuteActivity(contract.MonitorCheckName, contract.MonitorCheckInput{
		Name: modelName, Config: monitor.Config{MinSamples: 50}, Reference: "builtin:credit-risk?rows=600&seed=1&bias=0.3", Labels: ptr.String(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var res contract.MonitorCheckResult
	if err := v.Get(&res); err != nil {
		t.Fatal(err)
	}
	if res.Report.Samples != len(recs) || res.Report.Labelled != len(recs) || res.Report.Accuracy == nil {
		t.Fatalf("report: %d samples, %d labelled, accuracy %v; want every record labelled", res.Report.Samples, res.Report.Labelled, res.Report.Accuracy)
	}
}

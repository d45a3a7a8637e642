package watch

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/canary"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/monitor"
	"github.com/gauntlet-ml/gauntlet/internal/serving"
)

// refURI is the training data of the test model and so the reference.
const refURI = "builtin:credit-risk?rows=5000&seed=1"

var trained struct {
	once sync.Once
	dir  string
	m    *modelfile.Manifest
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if trained.dir != "" {
		os.RemoveAll(trained.dir)
	}
	os.Exit(code)
}

// trainedModel is a small logistic model of the reference, trained once
// for the package, saved the way the train step saves one (data source and
// digest in the lineage, held-out accuracy in the metrics) and read back
// as a monitor's caller would.
func trainedModel(t *testing.T) (string, *modelfile.Manifest) {
	t.Helper()
	trained.once.Do(func() {
		trained.dir, trained.m, trained.err = train()
	})
	if trained.err != nil {
		t.Fatal(trained.err)
	}
	return filepath.Join(trained.dir, "model"), trained.m
}

func train() (string, *modelfile.Manifest, error) {
	root, err := os.MkdirTemp("", "monitor-test-")
	if err != nil {
		return "", nil, err
	}
	d, err := dataset.Load(refURI)
	if err != nil {
		return root, nil, err
	}
	enc, err := dataset.FitEncoder(d, dataset.EncoderOptions{Unseen: dataset.UnseenOther})
	if err != nil {
		return root, nil, err
	}
	x, err := enc.Transform(d)
	if err != nil {
		return root, nil, err
	}
	net, err := model.Train(context.Background(), x, d.Y, model.Config{Kind: model.LogReg, MaxIter: 30})
	if err != nil {
		return root, nil, err
	}
	scores, err := net.PredictProba(x)
	if err != nil {
		return root, nil, err
	}
	correct := 0
	for i, s := range scores {
		if (s >= 0.5) == (d.Y[i] == 1) {
			correct++
		}
	}
	m := &modelfile.Manifest{
		Kind: model.LogReg, Schema: d.Schema, Features: enc.FeatureNames(), Preprocessing: enc, Threshold: 0.5,
		Metrics: map[string]float64{"accuracy": float64(correct) / float64(len(scores))},
		Lineage: modelfile.Lineage{
			DataDigest: d.Digest, DataSource: refURI,
			Params:    map[string]any{serving.NegativeLabelParam: "no"},
			CreatedAt: time.Unix(0, 0).UTC(),
		},
	}
	dir := filepath.Join(root, "model")
	if _, err := modelfile.Save(dir, m, net.Tensors()); err != nil {
		return root, nil, err
	}
	a, err := modelfile.Load(dir)
	if err != nil {
		return root, nil, err
	}
	return root, a.Manifest, nil
}

// replica is a real model server with its sample log on.
type replica struct {
	s      *serving.Server
	ts     *httptest.Server
	logDir string
	closed bool
}

func startReplica(t *testing.T, modelDir string, maxBytes int64) *replica {
	t.Helper()
	logDir := t.TempDir()
	s, err := serving.New(context.Background(), serving.DirSource{Dir: modelDir, Name: "credit"}, serving.Options{
		PollInterval: -1,
		Sample:       serving.SampleOptions{Dir: logDir, Rate: 1, MaxBytes: maxBytes, Keep: 1000, Buffer: 1 << 16},
	})
	if err != nil {
		t.Fatal(err)
	}
	r := &replica{s: s, ts: httptest.NewServer(s.Handler()), logDir: logDir}
	t.Cleanup(r.close)
	return r
}

// close flushes the sample log, so every record posted is on disk.
func (r *replica) close() {
	if !r.closed {
		r.closed = true
		r.ts.Close()
		r.s.Close()
	}
}

// post scores recs and returns whether each prediction was positive.
func (r *replica) post(t *testing.T, recs []map[string]any) []bool {
	t.Helper()
	var out []bool
	for start := 0; start < len(recs); start += 500 {
		b, err := json.Marshal(map[string]any{"records": recs[start:min(start+500, len(recs))]})
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post(r.ts.URL+"/v1/predict", "application/json", bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		var body struct {
			Predictions []struct{ Label string }
			Error       string
		}
		err = json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("predict: status %d, error %q, decode %v", resp.StatusCode, body.Error, err)
		}
		for _, p := range body.Predictions {
			out = append(out, p.Label == "yes")
		}
	}
	return out
}

func load(t *testing.T, src string) *dataset.Dataset {
	t.Helper()
	d, err := dataset.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// records turns rows of d into request records: every schema column but the
// label, the sensitive ones too, as a client sends them.
func records(d *dataset.Dataset) []map[string]any {
	out := make([]map[string]any, d.Len())
	for r := range out {
		rec := map[string]any{}
		for name, col := range d.Numeric {
			rec[name] = col[r]
		}
		for _, m := range []map[string][]string{d.Categorical, d.Sensitive} {
			for name, col := range m {
				rec[name] = col[r]
			}
		}
		out[r] = rec
	}
	return out
}

func check(t *testing.T, cfg monitor.Config, in Input) monitor.Report {
	t.Helper()
	rep, err := Check(context.Background(), cfg, in)
	if err != nil {
		t.Fatal(err)
	}
	// The report is a workflow payload: it must survive JSON.
	if _, err := json.Marshal(rep); err != nil {
		t.Fatalf("report does not encode: %v", err)
	}
	return rep
}

func kinds(bs []monitor.Breach) []string {
	var out []string
	for _, b := range bs {
		s := string(b.Kind)
		if b.Feature != "" {
			s += ":" + b.Feature
		}
		out = append(out, s)
	}
	return out
}

func TestNoDriftNoBreach(t *testing.T) {
	dir, m := trainedModel(t)
	// Two replicas with small files, so the pass reads rotated logs from
	// more than one directory.
	a, b := startReplica(t, dir, 32<<10), startReplica(t, dir, 32<<10)
	recs := records(load(t, "builtin:credit-risk?rows=1200&seed=2"))
	a.post(t, recs[:600])
	b.post(t, recs[600:])
	a.close()
	b.close()
	rotated, _ := filepath.Glob(filepath.Join(a.logDir, "samples-*.jsonl"))
	if len(rotated) == 0 {
		t.Fatal("no rotated sample log; the test should read some")
	}

	rep := check(t, monitor.Config{}, Input{Model: m, SampleDirs: []string{a.logDir, b.logDir}})
	if rep.Samples != 1200 || rep.PartialLines != 0 {
		t.Fatalf("%d samples, %d partial lines; want 1200 and 0", rep.Samples, rep.PartialLines)
	}
	if len(rep.Breaches) != 0 || rep.DataDrifted || rep.Inconclusive != "" {
		t.Fatalf("breaches %v, data drifted %v, inconclusive %q; want none", rep.Breaches, rep.DataDrifted, rep.Inconclusive)
	}
	if len(rep.Features) != len(m.Preprocessing.Numeric)+len(m.Preprocessing.Categorical) {
		t.Fatalf("features %v; want every model input", rep.Features)
	}
	if f := rep.Features["income"]; f.Kind != "numeric" || f.PSI == nil || f.KSPValue == nil || f.ChiSquarePValue != nil || f.Drifted {
		t.Fatalf("income %+v", f)
	}
	if f := rep.Features["purpose"]; f.Kind != "categorical" || f.CramersV == nil || f.KSStatistic != nil || f.Drifted {
		t.Fatalf("purpose %+v", f)
	}
	if rep.Window.From.IsZero() || rep.Window.To.Before(rep.Window.From) {
		t.Fatalf("window %+v", rep.Window)
	}
	if rep.Config.MinSamples != monitor.DefaultMinSamples || rep.Config.PSIThreshold != 0.2 || rep.Config.Alpha != 0.05 {
		t.Fatalf("config %+v; want the defaults filled in", rep.Config)
	}
}

func TestDriftBreachNamesTheFeature(t *testing.T) {
	dir, m := trainedModel(t)
	t.Run("population", func(t *testing.T) {
		r := startReplica(t, dir, 0)
		r.post(t, records(load(t, "builtin:credit-risk?rows=1000&seed=3&drift=1.5")))
		r.close()
		rep := check(t, monitor.Config{}, Input{Model: m, SampleDirs: []string{r.logDir}})
		if !rep.DataDrifted {
			t.Fatalf("data set not drifted: %v", rep.Features)
		}
		found := false
		for _, b := range rep.Breaches {
			if b.Kind != monitor.BreachDrift || !strings.Contains(b.Detail, strconv.Quote(b.Feature)) || !(b.Value >= b.Threshold) {
				t.Fatalf("breach %+v", b)
			}
			found = found || b.Feature == "age"
		}
		if !found {
			t.Fatalf("breaches %v; want age among them", kinds(rep.Breaches))
		}
	})
	t.Run("one feature", func(t *testing.T) {
		r := startReplica(t, dir, 0)
		recs := records(load(t, "builtin:credit-risk?rows=1000&seed=4"))
		for _, rec := range recs {
			rec["debt_ratio"] = rec["debt_ratio"].(float64) + 0.15
		}
		r.post(t, recs)
		r.close()
		rep := check(t, monitor.Config{}, Input{Model: m, SampleDirs: []string{r.logDir}})
		if got := kinds(rep.Breaches); len(got) != 1 || got[0] != "drift:debt_ratio" {
			t.Fatalf("breaches %v; want only drift:debt_ratio", got)
		}
		if rep.DataDrifted {
			t.Fatal("one feature of eleven flagged the data set")
		}
	})
	t.Run("feature gone", func(t *testing.T) {
		r := startReplica(t, dir, 0)
		recs := records(load(t, "builtin:credit-risk?rows=600&seed=13"))
		for _, rec := range recs {
			rec["loan_amount"] = nil
		}
		r.post(t, recs)
		r.close()
		rep := check(t, monitor.Config{}, Input{Model: m, SampleDirs: []string{r.logDir}})
		if got := kinds(rep.Breaches); len(got) != 1 || got[0] != "drift:loan_amount" {
			t.Fatalf("breaches %v; want only drift:loan_amount", got)
		}
		if f := rep.Features["loan_amount"]; !f.Drifted || f.PSI != nil || f.KSPValue != nil {
			t.Fatalf("loan_amount %+v; want drifted with no statistic", f)
		}
	})
}

func TestSinceLeavesOutOlderSamples(t *testing.T) {
	dir, m := trainedModel(t)
	r := startReplica(t, dir, 64<<10)
	r.post(t, records(load(t, "builtin:credit-risk?rows=1000&seed=5&drift=2")))
	cut := time.Now()
	// Samples carry the wall-clock time their request started; the next
	// request must start strictly after the cut.
	for !time.Now().After(cut) {
	}
	r.post(t, records(load(t, "builtin:credit-risk?rows=1000&seed=6")))
	r.close()

	all := check(t, monitor.Config{}, Input{Model: m, SampleDirs: []string{r.logDir}})
	if all.Samples != 2000 || len(all.Breaches) == 0 {
		t.Fatalf("without Since: %d samples, breaches %v; want 2000 and drift", all.Samples, kinds(all.Breaches))
	}
	after := check(t, monitor.Config{}, Input{Model: m, SampleDirs: []string{r.logDir}, Since: cut})
	if after.Samples != 1000 || len(after.Breaches) != 0 {
		t.Fatalf("since the cut: %d samples, breaches %v; want 1000 and none", after.Samples, kinds(after.Breaches))
	}
	if !after.Window.From.After(cut) {
		t.Fatalf("window %+v starts before the cut %v", after.Window, cut)
	}
}

func TestTooFewSamplesIsInconclusive(t *testing.T) {
	dir, m := trainedModel(t)
	r := startReplica(t, dir, 0)
	r.post(t, records(load(t, "builtin:credit-risk?rows=100&seed=7&drift=3")))
	r.close()
	rep := check(t, monitor.Config{}, Input{Model: m, SampleDirs: []string{r.logDir}})
	if len(rep.Breaches) != 0 || rep.Features != nil {
		t.Fatalf("breaches %v, features %v; want no verdict", rep.Breaches, rep.Features)
	}
	if want := "drift: 100 samples in the window, 500 needed"; rep.Inconclusive != want {
		t.Fatalf("inconclusive %q, want %q", rep.Inconclusive, want)
	}
	if acts, _ := (monitor.Policy{OnBreach: []monitor.Action{monitor.Rollback}}).Decide(monitor.Ledger{}, rep, time.Unix(0, 0)); acts != nil {
		t.Fatalf("an inconclusive pass called for %v", acts)
	}
}

func TestHealthBreaches(t *testing.T) {
	_, m := trainedModel(t)
	empty := t.TempDir()
	cfg := monitor.Config{MaxErrorRate: 0.05, MaxP99Latency: 250 * time.Millisecond}
	rep := check(t, cfg, Input{Model: m, SampleDirs: []string{empty},
		Health: &canary.Sample{Variant: "v3", Requests: 2000, Errors: 160, P99Latency: 0.3}})
	if got := kinds(rep.Breaches); len(got) != 2 || got[0] != "error_rate" || got[1] != "latency" {
		t.Fatalf("breaches %v; want error_rate and latency", got)
	}
	if b := rep.Breaches[0]; b.Value != 0.08 || b.Threshold != 0.05 {
		t.Fatalf("error rate breach %+v", b)
	}
	if b := rep.Breaches[1]; b.Value != 0.3 || b.Threshold != 0.25 {
		t.Fatalf("latency breach %+v", b)
	}
	if *rep.ErrorRate != 0.08 || *rep.P99LatencySeconds != 0.3 {
		t.Fatalf("error rate %v, p99 %v", *rep.ErrorRate, *rep.P99LatencySeconds)
	}

	healthy := check(t, cfg, Input{Model: m, SampleDirs: []string{empty},
		Health: &canary.Sample{Requests: 2000, Errors: 100, P99Latency: 0.25}})
	if len(healthy.Breaches) != 0 {
		t.Fatalf("breaches %v at the bounds; they are inclusive", healthy.Breaches)
	}

	idle := check(t, cfg, Input{Model: m, SampleDirs: []string{empty},
		Health: &canary.Sample{P99Latency: math.NaN()}})
	if len(idle.Breaches) != 0 || idle.ErrorRate != nil ||
		!strings.Contains(idle.Inconclusive, "error rate: no requests measured") || !strings.Contains(idle.Inconclusive, "latency: no p99 measured") {
		t.Fatalf("no requests: breaches %v, error rate %v, inconclusive %q", idle.Breaches, idle.ErrorRate, idle.Inconclusive)
	}

	if _, err := Check(context.Background(), cfg, Input{Model: m, SampleDirs: []string{empty},
		Health: &canary.Sample{Requests: 10, Errors: 11}}); err == nil {
		t.Fatal("more errors than requests was accepted")
	}
}

// writeLabels writes the raw rows of src with their outcome as a delayed
// labels file, with an application id the join must ignore; invert flips
// every outcome.
func writeLabels(t *testing.T, path string, p dataset.CreditRiskParams, rows int, invert bool) {
	t.Helper()
	all := dataset.CreditRisk(p)[:rows]
	names := []string{"application_id"}
	for _, c := range dataset.CreditRiskSchema.Columns {
		names = append(names, c.Name)
	}
	label := len(names) - 1
	var buf bytes.Buffer
	if strings.HasSuffix(path, ".csv") {
		w := csv.NewWriter(&buf)
		_ = w.Write(names)
		for i, row := range all {
			rec := append([]string{fmt.Sprint("app-", i)}, row...)
			if invert {
				rec[label] = map[string]string{"yes": "no", "no": "yes"}[rec[label]]
			}
			_ = w.Write(rec)
		}
		w.Flush()
	} else {
		schema := map[string]dataset.Kind{}
		for _, c := range dataset.CreditRiskSchema.Columns {
			schema[c.Name] = c.Kind
		}
		for i, row := range all {
			obj := map[string]any{"application_id": i}
			for j, v := range row {
				name := names[j+1]
				if schema[name] == dataset.Numeric {
					f, err := strconv.ParseFloat(v, 64)
					if err != nil {
						t.Fatal(err)
					}
					obj[name] = f
				} else {
					obj[name] = v
				}
			}
			if invert {
				obj["defaulted"] = map[string]string{"yes": "no", "no": "yes"}[row[label-1]]
			}
			b, _ := json.Marshal(obj)
			buf.Write(append(b, '\n'))
		}
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestAccuracyFromDelayedLabels(t *testing.T) {
	dir, m := trainedModel(t)
	p := dataset.CreditRiskParams{Rows: 800, Seed: 8}
	d := load(t, "builtin:credit-risk?rows=800&seed=8")
	r := startReplica(t, dir, 0)
	predicted := r.post(t, records(d))
	r.close()
	correct := 0
	for i, pos := range predicted {
		if pos == (d.Y[i] == 1) {
			correct++
		}
	}
	want := float64(correct) / 800
	labels := t.TempDir()

	for _, name := range []string{"labels.csv", "labels.jsonl"} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(labels, name)
			writeLabels(t, path, p, 800, false)
			rep := check(t, monitor.Config{MinAccuracy: 0.99}, Input{Model: m, SampleDirs: []string{r.logDir}, Labels: path})
			if rep.Labelled != 800 || rep.AmbiguousLabels != 0 || rep.Accuracy == nil || *rep.Accuracy != want {
				t.Fatalf("labelled %d, ambiguous %d, accuracy %v; want 800, 0, %v", rep.Labelled, rep.AmbiguousLabels, rep.Accuracy, want)
			}
			if got := kinds(rep.Breaches); len(got) != 1 || got[0] != "accuracy" || rep.Breaches[0].Value != want {
				t.Fatalf("breaches %+v; want accuracy %v below 0.99", rep.Breaches, want)
			}
		})
	}

	// Labels fetched from the store have no name: the content says which.
	for _, name := range []string{"labels.csv", "labels.jsonl"} {
		t.Run(name+" without its extension", func(t *testing.T) {
			named := filepath.Join(t.TempDir(), name)
			writeLabels(t, named, p, 800, false)
			path := strings.TrimSuffix(named, filepath.Ext(named))
			if err := os.Rename(named, path); err != nil {
				t.Fatal(err)
			}
			rep := check(t, monitor.Config{}, Input{Model: m, SampleDirs: []string{r.logDir}, Labels: path})
			if rep.Labelled != 800 || rep.Accuracy == nil || *rep.Accuracy != want {
				t.Fatalf("labelled %d, accuracy %v; want 800, %v", rep.Labelled, rep.Accuracy, want)
			}
		})
	}

	t.Run("drop", func(t *testing.T) {
		path := filepath.Join(labels, "inverted.csv")
		writeLabels(t, path, p, 800, true)
		rep := check(t, monitor.Config{MaxAccuracyDrop: 0.1}, Input{Model: m, SampleDirs: []string{r.logDir}, Labels: path})
		baseline := m.Metrics["accuracy"]
		if len(rep.Breaches) != 1 || rep.Breaches[0].Kind != monitor.BreachAccuracy || math.Abs(rep.Breaches[0].Value-(baseline-(1-want))) > 1e-12 {
			t.Fatalf("breaches %+v; want a drop of %v", rep.Breaches, baseline-(1-want))
		}
	})

	t.Run("few labels", func(t *testing.T) {
		path := filepath.Join(labels, "first.csv")
		writeLabels(t, path, p, 300, false)
		rep := check(t, monitor.Config{MinAccuracy: 0.99}, Input{Model: m, SampleDirs: []string{r.logDir}, Labels: path})
		if rep.Labelled != 300 || rep.Accuracy == nil || len(rep.Breaches) != 0 ||
			rep.Inconclusive != "accuracy: 300 labelled samples in the window, 500 needed" {
			t.Fatalf("labelled %d, accuracy %v, breaches %v, inconclusive %q", rep.Labelled, rep.Accuracy, rep.Breaches, rep.Inconclusive)
		}
	})

	t.Run("ambiguous", func(t *testing.T) {
		path := filepath.Join(labels, "twice.csv")
		writeLabels(t, path, p, 800, false)
		flipped := filepath.Join(labels, "flipped.csv")
		writeLabels(t, flipped, p, 10, true)
		b, err := os.ReadFile(flipped)
		if err != nil {
			t.Fatal(err)
		}
		_, rows, _ := bytes.Cut(b, []byte("\n"))
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(rows); err != nil {
			t.Fatal(err)
		}
		f.Close()
		rep := check(t, monitor.Config{}, Input{Model: m, SampleDirs: []string{r.logDir}, Labels: path})
		if rep.Labelled != 790 || rep.AmbiguousLabels != 10 || rep.Accuracy == nil {
			t.Fatalf("labelled %d, ambiguous %d; want 790 and the 10 labelled both ways", rep.Labelled, rep.AmbiguousLabels)
		}
	})

	t.Run("bad number", func(t *testing.T) {
		path := filepath.Join(labels, "text.csv")
		writeLabels(t, path, p, 5, false)
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		fields := strings.Split(lines[2], ",")
		fields[1] = "forty"
		lines[2] = strings.Join(fields, ",")
		if err := os.WriteFile(path, []byte(strings.Join(lines, "\n")), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = Check(context.Background(), monitor.Config{}, Input{Model: m, SampleDirs: []string{r.logDir}, Labels: path})
		if err == nil || !strings.Contains(err.Error(), path+" line 3: column \"age\": \"forty\" is not a number") {
			t.Fatalf("error %v; want the text in age on line 3", err)
		}
	})

	t.Run("missing column", func(t *testing.T) {
		path := filepath.Join(labels, "bad.csv")
		if err := os.WriteFile(path, []byte("age,defaulted\n30,yes\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := Check(context.Background(), monitor.Config{}, Input{Model: m, SampleDirs: []string{r.logDir}, Labels: path})
		if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "no column") {
			t.Fatalf("error %v; want one naming %s and the missing column", err, path)
		}
	})
}

func TestPartialLastLineIsTolerated(t *testing.T) {
	dir, m := trainedModel(t)
	r := startReplica(t, dir, 0)
	r.post(t, records(load(t, "builtin:credit-risk?rows=600&seed=9")))
	r.close()
	path := filepath.Join(r.logDir, serving.SampleFile)
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	first, _, _ := bytes.Cut(b, []byte("\n"))
	// A line the server is half-way through writing.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(first[:len(first)/2]); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rep := check(t, monitor.Config{}, Input{Model: m, SampleDirs: []string{r.logDir}})
	if rep.Samples != 600 || rep.PartialLines != 1 || len(rep.Breaches) != 0 {
		t.Fatalf("%d samples, %d partial, breaches %v; want 600, 1, none", rep.Samples, rep.PartialLines, rep.Breaches)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Check(ctx, monitor.Config{}, Input{Model: m, SampleDirs: []string{r.logDir}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pass: %v", err)
	}
}

func TestRotatedFilesBeforeSinceAreNotRead(t *testing.T) {
	dir := t.TempDir()
	since := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	name := func(t time.Time) string { return "samples-" + t.Format(rotatedLayout) + ".jsonl" }
	for _, n := range []string{
		name(since.Add(-time.Hour)), name(since), name(since.Add(time.Nanosecond)), name(since.Add(time.Hour)),
		"samples-copy.jsonl", serving.SampleFile, "notes.txt",
	} {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := logFiles(dir, since)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, p := range got {
		names = append(names, filepath.Base(p))
	}
	want := []string{name(since.Add(time.Nanosecond)), name(since.Add(time.Hour)), "samples-copy.jsonl", serving.SampleFile}
	if !slices.Equal(names, want) {
		t.Fatalf("read %v, want %v", names, want)
	}
}

func TestBadSampleLinesNameFileAndLine(t *testing.T) {
	dir, m := trainedModel(t)
	r := startReplica(t, dir, 0)
	r.post(t, records(load(t, "builtin:credit-risk?rows=20&seed=10")))
	r.close()
	b, err := os.ReadFile(filepath.Join(r.logDir, serving.SampleFile))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
	edit := func(f func(map[string]any)) string {
		var s map[string]any
		if err := json.Unmarshal([]byte(lines[2]), &s); err != nil {
			t.Fatal(err)
		}
		f(s["features"].(map[string]any))
		out, _ := json.Marshal(s)
		return string(out) + "\n"
	}
	cases := []struct {
		name, line, want string
	}{
		{"garbage", "not json\n", "invalid character"},
		{"no features", `{"time":"2026-01-01T00:00:00Z"}` + "\n", "not a sample"},
		{"missing feature", edit(func(f map[string]any) { delete(f, "income") }), `no feature "income"`},
		{"text for a number", edit(func(f map[string]any) { f["age"] = "forty" }), `feature "age" is the string "forty", want a number`},
		{"number for a category", edit(func(f map[string]any) { f["purpose"] = 3.0 }), `feature "purpose" is the number 3, want a string`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			logDir := t.TempDir()
			path := filepath.Join(logDir, serving.SampleFile)
			content := lines[0] + lines[1] + c.line + strings.Join(lines[3:], "")
			if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := Check(context.Background(), monitor.Config{}, Input{Model: m, SampleDirs: []string{logDir}})
			if err == nil {
				t.Fatal("no error")
			}
			if msg := err.Error(); !strings.Contains(msg, path+" line 3") || !strings.Contains(msg, c.want) {
				t.Fatalf("error %q; want %q at %s line 3", msg, c.want, path)
			}
		})
	}
}

func TestReference(t *testing.T) {
	_, m := trainedModel(t)
	empty := t.TempDir()
	changed := *m
	changed.Lineage.DataDigest = strings.Repeat("0", 64)
	_, err := Check(context.Background(), monitor.Config{}, Input{Model: &changed, SampleDirs: []string{empty}})
	if err == nil || !strings.Contains(err.Error(), "changed since training") {
		t.Fatalf("error %v; want the digest mismatch", err)
	}
	// Another reference is the caller's deliberate choice.
	if _, err := Check(context.Background(), monitor.Config{}, Input{Model: &changed, Reference: "builtin:credit-risk?rows=2000&seed=11", SampleDirs: []string{empty}}); err != nil {
		t.Fatal(err)
	}
	nosource := *m
	nosource.Lineage.DataSource = ""
	if _, err := Check(context.Background(), monitor.Config{}, Input{Model: &nosource, SampleDirs: []string{empty}}); err == nil || !strings.Contains(err.Error(), "data source") {
		t.Fatalf("error %v; want the missing data source", err)
	}
}

func TestInputErrors(t *testing.T) {
	_, m := trainedModel(t)
	empty := t.TempDir()
	nometric := *m
	nometric.Metrics = nil
	parquet := filepath.Join(empty, "l.parquet")
	if err := os.WriteFile(parquet, []byte("PAR1"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		cfg  monitor.Config
		in   Input
		want string
	}{
		{"no model", monitor.Config{}, Input{SampleDirs: []string{empty}}, "no model manifest"},
		{"no dirs", monitor.Config{}, Input{Model: m}, "no sample log directories"},
		{"missing dir", monitor.Config{}, Input{Model: m, SampleDirs: []string{filepath.Join(empty, "nope")}}, "nope"},
		{"bad config", monitor.Config{Alpha: 2, MinSamples: -1, MaxErrorRate: -0.1}, Input{Model: m, SampleDirs: []string{empty}}, "alpha 2"},
		{"no baseline", monitor.Config{MaxAccuracyDrop: 0.05}, Input{Model: &nometric, SampleDirs: []string{empty}}, `no "accuracy" metric`},
		{"labels format", monitor.Config{}, Input{Model: m, SampleDirs: []string{empty}, Labels: parquet}, "want a .csv or .jsonl file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Check(context.Background(), c.cfg, c.in)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v; want %q", err, c.want)
			}
		})
	}
}

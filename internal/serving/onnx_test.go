package serving

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

// onnxOptions are server options that find ONNX Runtime where the tests
// install it; without it the test skips (fails under CI=true).
func onnxOptions(t testing.TB) Options {
	t.Helper()
	onnxtest.Runtime(t)
	return Options{Scoring: scoring.Options{ONNXRuntime: onnxtest.LibraryPath(t)}}
}

// exportONNX writes the Gauntlet model in src as an ONNX model directory.
func exportONNX(t testing.TB, src, dst string) {
	t.Helper()
	a, err := modelfile.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := onnxmodel.Export(a, dst); err != nil {
		t.Fatal(err)
	}
}

// TestONNXServesAsGauntlet serves a model and its ONNX export side by side:
// the same predictions to float32 precision, the ONNX digest in responses,
// and explanations of the same method that agree and add up to the logit of
// the ONNX score.
func TestONNXServesAsGauntlet(t *testing.T) {
	opts := onnxOptions(t)
	for _, c := range []struct {
		name   string
		cfg    model.Config
		method string
	}{
		{"logreg", model.Config{Kind: model.LogReg, MaxIter: 50}, "linear"},
		{"mlp", model.Config{Kind: model.MLP, Hidden: []int{8}, Epochs: 3, Seed: 1}, "sampling_shapley"},
	} {
		t.Run(c.name, func(t *testing.T) {
			root := t.TempDir()
			gdir, odir := filepath.Join(root, "gauntlet"), filepath.Join(root, "onnx")
			test := trainExplainable(t, gdir, 1, c.cfg, false)
			exportONNX(t, gdir, odir)
			_, gts := newServer(t, DirSource{Dir: gdir, Name: "credit"}, opts)
			osrv, ots := newServer(t, DirSource{Dir: odir, Name: "credit"}, opts)
			info := osrv.Model().Scoring.Info()
			if info.Format != scoring.ONNX || info.Provider != ort.CPU {
				t.Fatalf("ONNX server: format %q, provider %q", info.Format, info.Provider)
			}

			b := body(t, records(test, 50))
			gcode, g, _ := post(t, gts.URL, b)
			ocode, o, _ := post(t, ots.URL, b)
			if gcode != 200 || ocode != 200 {
				t.Fatalf("status %d (%s), %d (%s)", gcode, g.Error, ocode, o.Error)
			}
			if o.Model.Digest != info.Digest || o.Model.Digest == g.Model.Digest {
				t.Fatalf("ONNX response digest %s, model %s, Gauntlet's %s", o.Model.Digest, info.Digest, g.Model.Digest)
			}
			for i := range g.Predictions {
				gp, op := g.Predictions[i], o.Predictions[i]
				if math.Abs(gp.Score-op.Score) > 1e-5 {
					t.Fatalf("record %d: ONNX %v, Gauntlet %v", i, op.Score, gp.Score)
				}
				if math.Abs(gp.Score-0.5) > 1e-5 && gp.Label != op.Label {
					t.Fatalf("record %d: ONNX label %q, Gauntlet %q", i, op.Label, gp.Label)
				}
			}

			eb := body(t, records(test, 3))
			gcode, ge := postExplain(t, gts.URL, eb)
			ocode, oe := postExplain(t, ots.URL, eb)
			if gcode != 200 || ocode != 200 {
				t.Fatalf("explain: status %d (%s), %d (%s)", gcode, ge.Error, ocode, oe.Error)
			}
			for i, e := range oe.Explanations {
				if e.Score != o.Predictions[i].Score {
					t.Fatalf("record %d: explained score %v, predicted %v", i, e.Score, o.Predictions[i].Score)
				}
				// float32 arithmetic in ONNX Runtime: the logit of its score
				// matches the attributions to about 1e-6.
				checkSumTo(t, i, e.Score, e.Attributions, c.method, columns(osrv), 1e-5)
				want := map[string]float64{}
				for _, a := range ge.Explanations[i].Attributions {
					want[a.Feature] = a.Value
				}
				for _, a := range e.Attributions {
					if math.Abs(a.Value-want[a.Feature]) > 1e-4 {
						t.Fatalf("record %d %s: ONNX %v, Gauntlet %v", i, a.Feature, a.Value, want[a.Feature])
					}
				}
			}
		})
	}
}

// saveRawONNX saves a logistic regression over the raw numeric columns of
// credit-risk as an ONNX model without preprocessing: a graph of this kind
// imputes nothing, so its signature makes every input non-nullable.
func saveRawONNX(t *testing.T, dir string) (*dataset.Dataset, []string, []float64) {
	t.Helper()
	d, err := dataset.Load("builtin:credit-risk?rows=50&seed=2")
	if err != nil {
		t.Fatal(err)
	}
	feats := d.Schema.Names(dataset.Numeric)
	w := make([]float64, len(feats))
	for j := range w {
		w[j] = 0.001 * float64(j+1)
	}
	net := &model.Network{Kind: model.LogReg, Layers: []model.Dense{{In: len(feats), Out: 1, W: w, B: []float64{-0.5}}}}
	graph, err := onnxmodel.Graph(net)
	if err != nil {
		t.Fatal(err)
	}
	g, err := onnx.Parse(graph)
	if err != nil {
		t.Fatal(err)
	}
	m := &onnxmodel.Manifest{Signature: onnxmodel.SignatureOf(g), Output: onnxmodel.Output{Name: onnxmodel.OutputName},
		Schema: d.Schema, Preprocessing: onnxmodel.Preprocessing{Kind: onnxmodel.Raw}, Features: feats, Threshold: 0.5,
		Lineage: modelfile.Lineage{DataDigest: d.Digest, Params: map[string]any{NegativeLabelParam: "no"}}}
	if _, err := onnxmodel.Save(dir, m, graph); err != nil {
		t.Fatal(err)
	}
	return d, feats, w
}

// TestONNXSignatureErrors: records that do not fit an ONNX model's signature
// are answered 400 naming the record and field, with MLflow's semantics —
// and a graph that imputes nothing refuses null where Gauntlet's
// preprocessing would impute it.
func TestONNXSignatureErrors(t *testing.T) {
	opts := onnxOptions(t)
	root := t.TempDir()
	gdir, odir, rdir := filepath.Join(root, "gauntlet"), filepath.Join(root, "onnx"), filepath.Join(root, "raw")
	d := trainModel(t, gdir, 1)
	exportONNX(t, gdir, odir)
	_, ots := newServer(t, DirSource{Dir: odir}, opts)
	mutate := func(d *dataset.Dataset, i int, f func(map[string]any)) []byte {
		recs := records(d, 5)
		f(recs[i])
		return body(t, recs)
	}
	for _, c := range []struct {
		name string
		body []byte
		want string
	}{
		{"missing", mutate(d, 3, func(r map[string]any) { delete(r, "income") }), `record 3: field "income": missing`},
		{"unknown", mutate(d, 1, func(r map[string]any) { r["colour"] = "red" }), `record 1: field "colour": not in the model's schema`},
		{"string for number", mutate(d, 3, func(r map[string]any) { r["age"] = "41" }), `record 3: field "age": want a number, got "41"`},
		{"number for string", mutate(d, 2, func(r map[string]any) { r["purpose"] = 7 }), `record 2: field "purpose": want a string, got 7`},
	} {
		t.Run("encoded/"+c.name, func(t *testing.T) {
			if code, r, _ := post(t, ots.URL, c.body); code != 400 || !strings.Contains(r.Error, c.want) {
				t.Fatalf("status %d, error %q; want 400 with %q", code, r.Error, c.want)
			}
		})
	}
	// Gauntlet's preprocessing, which the export keeps, imputes null.
	recs := records(d, 2)
	recs[0]["income"] = nil
	if code, r, _ := post(t, ots.URL, body(t, recs)); code != 200 {
		t.Fatalf("null on the exported model: status %d: %s", code, r.Error)
	}

	rd, feats, w := saveRawONNX(t, rdir)
	rs, rts := newServer(t, DirSource{Dir: rdir}, opts)
	for _, in := range rs.Model().Scoring.Info().Signature.Inputs {
		if !in.Required || in.Nullable || in.Type != scoring.Double {
			t.Fatalf("raw graph's signature input %+v; want a required, non-nullable double", in)
		}
	}
	for _, c := range []struct {
		name string
		body []byte
		want string
	}{
		{"null", mutate(rd, 1, func(r map[string]any) { r[feats[2]] = nil }), fmt.Sprintf(`record 1: field %q: null, but this model imputes nothing for it`, feats[2])},
		{"missing", mutate(rd, 4, func(r map[string]any) { delete(r, feats[0]) }), fmt.Sprintf(`record 4: field %q: missing`, feats[0])},
		{"string for number", mutate(rd, 0, func(r map[string]any) { r[feats[1]] = "3" }), fmt.Sprintf(`record 0: field %q: want a number, got "3"`, feats[1])},
	} {
		t.Run("raw/"+c.name, func(t *testing.T) {
			if code, r, _ := post(t, rts.URL, c.body); code != 400 || !strings.Contains(r.Error, c.want) {
				t.Fatalf("status %d, error %q; want 400 with %q", code, r.Error, c.want)
			}
		})
	}
	// Categorical columns are not the graph's inputs: optional, and null
	// is fine there.
	good := records(rd, 5)
	good[0]["purpose"] = nil
	delete(good[1], "purpose")
	code, r, _ := post(t, rts.URL, body(t, good))
	if code != 200 {
		t.Fatalf("raw model: status %d: %s", code, r.Error)
	}
	for i, p := range r.Predictions {
		z := -0.5
		for j, f := range feats {
			z += w[j] * rd.Numeric[f][i]
		}
		if want := 1 / (1 + math.Exp(-z)); math.Abs(p.Score-want) > 1e-6 {
			t.Fatalf("record %d: score %v, want %v", i, p.Score, want)
		}
	}
}

// TestBadRecordsMatchScoring: the decoder's record errors are
// scoring.ErrBadRecord, naming the record and field as package scoring's
// own check does.
func TestBadRecordsMatchScoring(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	d := trainModel(t, dir, 1)
	m, err := LoadModel(Ref{Dir: dir}, "", scoring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.retire()
	recs := records(d, 3)
	recs[2]["age"] = "old"
	b := m.getBatch()
	defer m.putBatch(b)
	err = decodeRequest(body(t, recs), m, b, 10)
	var re *scoring.RecordError
	if !errors.Is(err, scoring.ErrBadRecord) || !errors.As(err, &re) || re.Record != 2 || re.Field != "age" {
		t.Fatalf("decoder: %v (%#v)", err, re)
	}
	// The same record through package scoring's check of decoded JSON.
	var decoded []map[string]any
	raw, _ := json.Marshal(recs)
	if err := json.Unmarshal(raw, &decoded); err != nil {
		t.Fatal(err)
	}
	_, serr := scoring.Records(m.Scoring, decoded)
	var sre *scoring.RecordError
	if !errors.As(serr, &sre) || sre.Record != re.Record || sre.Field != re.Field {
		t.Fatalf("scoring.Records: %v; the decoder: %v", serr, err)
	}
}

// TestSwapBetweenFormatsUnderLoad flips between a Gauntlet model and an ONNX
// one under load: nothing fails, and each ONNX model swapped out has its
// ONNX Runtime session closed once its requests are done, so swaps leak
// nothing.
func TestSwapBetweenFormatsUnderLoad(t *testing.T) {
	opts := onnxOptions(t)
	root := t.TempDir()
	src := &flipSource{}
	var d *dataset.Dataset
	for i := range 2 {
		dir := filepath.Join(root, fmt.Sprint("v", i+1))
		d = trainModel(t, dir, i+1)
		if i == 1 {
			odir := filepath.Join(root, "v2-onnx")
			exportONNX(t, dir, odir)
			dir = odir
		}
		ref, err := DirSource{Dir: dir, Name: "credit"}.Resolve(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ref.Version = fmt.Sprint("v", i+1)
		src.refs[i] = ref
	}
	opts.MaxInFlight, opts.PollInterval = 64, -1
	s, ts := newServer(t, src, opts)
	b := body(t, records(d, 3))
	var failed, ok atomic.Int64
	var wg sync.WaitGroup
	client := ts.Client()
	for range 8 {
		wg.Go(func() {
			for range 200 {
				resp, err := client.Post(ts.URL+"/v1/predict", "application/json", bytes.NewReader(b))
				if err != nil {
					failed.Add(1)
					continue
				}
				var r response
				derr := json.NewDecoder(resp.Body).Decode(&r)
				resp.Body.Close()
				if resp.StatusCode != 200 || derr != nil || len(r.Predictions) != 3 {
					t.Errorf("status %d, %v: %s", resp.StatusCode, derr, r.Error)
					failed.Add(1)
					continue
				}
				ok.Add(1)
			}
		})
	}
	var served []*Model
	wg.Go(func() {
		// An odd number of flips ends on the ONNX model.
		for range 21 {
			src.flip()
			swapped, err := s.Reload(context.Background())
			if err != nil || !swapped {
				t.Errorf("reload: swapped %v, %v", swapped, err)
				return
			}
			served = append(served, s.Model())
		}
	})
	wg.Wait()
	if failed.Load() != 0 || ok.Load() != 1600 || len(served) != 21 {
		t.Fatalf("%d failed, %d ok, %d swaps; want 0, 1600, 21", failed.Load(), ok.Load(), len(served))
	}
	x := mat.NewDense(1, len(s.Model().Scoring.Info().Signature.Features), nil)
	closed := func(m *Model) bool {
		_, err := m.Scoring.PredictProba(x)
		return errors.Is(err, ort.ErrClosed)
	}
	onnxSeen := 0
	for _, m := range served[:len(served)-1] {
		if m.Scoring.Info().Format == scoring.ONNX {
			onnxSeen++
			if !closed(m) {
				t.Fatalf("ONNX model %s swapped out and idle, but its session is open", m.Ref.Version)
			}
		}
	}
	cur := s.Model()
	if onnxSeen != 10 || cur.Scoring.Info().Format != scoring.ONNX || closed(cur) {
		t.Fatalf("%d retired ONNX models; the current one is %s, closed: %v", onnxSeen, cur.Ref.Version, closed(cur))
	}
	s.Close()
	if !closed(cur) {
		t.Fatal("Close left the ONNX model's session open")
	}
}

// TestONNXAgainstAFuzzingClient runs the hostile client against an ONNX
// model.
func TestONNXAgainstAFuzzingClient(t *testing.T) {
	opts := onnxOptions(t)
	root := t.TempDir()
	gdir, odir := filepath.Join(root, "gauntlet"), filepath.Join(root, "onnx")
	d := trainModel(t, gdir, 1)
	exportONNX(t, gdir, odir)
	fuzzingClient(t, odir, d, opts)
}

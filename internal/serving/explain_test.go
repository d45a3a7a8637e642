package serving

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/explain"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/quantize"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

const holdoutName = "holdout.csv"

// trainExplainable saves a model of builtin:credit-risk under dir as the
// train step does: fitted on the training part of a split, with the held-out
// part written beside it and recorded in the manifest. It returns the
// held-out part.
func trainExplainable(t *testing.T, dir string, seed int, cfg model.Config, int8 bool) *dataset.Dataset {
	t.Helper()
	d, err := dataset.Load(fmt.Sprintf("builtin:credit-risk?rows=600&seed=%d&bias=0.3", seed))
	if err != nil {
		t.Fatal(err)
	}
	train, test, err := d.Split(0.3, uint64(seed))
	if err != nil {
		t.Fatal(err)
	}
	enc, err := dataset.FitEncoder(train, dataset.EncoderOptions{Unseen: dataset.UnseenOther})
	if err != nil {
		t.Fatal(err)
	}
	x, err := enc.Transform(train)
	if err != nil {
		t.Fatal(err)
	}
	net, err := model.Train(context.Background(), x, train.Y, cfg)
	if err != nil {
		t.Fatal(err)
	}
	holdout := holdoutCSV(t, test)
	sum := sha256.Sum256(holdout)
	m := &modelfile.Manifest{
		Kind: cfg.Kind, Schema: d.Schema, Features: enc.FeatureNames(), Preprocessing: enc, Threshold: 0.5,
		Lineage: modelfile.Lineage{DataDigest: d.Digest, CreatedAt: time.Unix(0, 0).UTC(), Params: map[string]any{
			NegativeLabelParam: "no",
			holdoutParam:       holdoutRecord{File: holdoutName, SHA256: hex.EncodeToString(sum[:]), Rows: test.Len()},
		}},
	}
	tensors := net.Tensors()
	if int8 {
		q, err := quantize.Quantize(net, x, quantize.Options{})
		if err != nil {
			t.Fatal(err)
		}
		m.Quantization, tensors = modelfile.Int8, q.Tensors()
	}
	if _, err := modelfile.Save(dir, m, tensors); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, holdoutName), holdout, 0o644); err != nil {
		t.Fatal(err)
	}
	return test
}

// holdoutCSV writes d as the train step writes its held-out split.
func holdoutCSV(t *testing.T, d *dataset.Dataset) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	rec := make([]string, len(d.Schema.Columns))
	for i, c := range d.Schema.Columns {
		rec[i] = c.Name
	}
	w.Write(rec)
	for r := range d.Len() {
		for i, c := range d.Schema.Columns {
			switch c.Kind {
			case dataset.Numeric:
				rec[i] = ""
				if v := d.Numeric[c.Name][r]; !math.IsNaN(v) {
					rec[i] = strconv.FormatFloat(v, 'g', -1, 64)
				}
			case dataset.Categorical:
				rec[i] = d.Categorical[c.Name][r]
			case dataset.Sensitive:
				rec[i] = d.Sensitive[c.Name][r]
			case dataset.Label:
				rec[i] = map[bool]string{true: "yes", false: "no"}[d.Y[r] == 1]
			default:
				rec[i] = ""
			}
		}
		w.Write(rec)
	}
	w.Flush()
	if err := w.Error(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

type explainReply struct {
	Model struct {
		Name, Version, Digest string
	}
	Explanations []struct {
		Score        float64
		Label        string
		Attributions []explain.Attribution
	}
	Error string
}

func postExplain(t *testing.T, url string, b []byte) (int, explainReply) {
	t.Helper()
	resp, err := http.Post(url+"/v1/explain", "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r explainReply
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		t.Fatalf("decode response (status %d): %v", resp.StatusCode, err)
	}
	return resp.StatusCode, r
}

func logit(p float64) float64 { return math.Log(p / (1 - p)) }

// linearWant computes, apart from the server, the exact attributions of the
// logistic model in dir for the first n rows of d, and the background the
// model's held-out split gives.
func linearWant(t *testing.T, dir string, d *dataset.Dataset, n int) ([]map[string]explain.Attribution, *mat.Dense) {
	t.Helper()
	a, err := modelfile.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	sc, err := a.Scorer()
	if err != nil {
		t.Fatal(err)
	}
	sm, err := scoring.Open(dir, scoring.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer sm.Close()
	bg, err := loadBackground(sm)
	if err != nil {
		t.Fatal(err)
	}
	idx := make([]int, n)
	for i := range idx {
		idx[i] = i
	}
	enc := a.Manifest.Preprocessing
	x, err := enc.Transform(d.Subset(idx))
	if err != nil {
		t.Fatal(err)
	}
	out := make([]map[string]explain.Attribution, n)
	for i := range n {
		attr, err := explain.Linear(sc.(*model.Network), enc, bg, x.RawRowView(i))
		if err != nil {
			t.Fatal(err)
		}
		out[i] = map[string]explain.Attribution{}
		for _, at := range attr {
			out[i][at.Feature] = at
		}
	}
	return out, bg
}

// checkSum checks that the attributions add up to the logit of the score
// relative to their base, sorted by |value|, and returns them by feature.
func checkSum(t *testing.T, i int, score float64, attr []explain.Attribution, method string, columns int) {
	t.Helper()
	checkSumTo(t, i, score, attr, method, columns, 1e-9)
}

// checkSumTo is checkSum with a tolerance.
func checkSumTo(t *testing.T, i int, score float64, attr []explain.Attribution, method string, columns int, tol float64) {
	t.Helper()
	if len(attr) != columns {
		t.Fatalf("record %d: %d attributions, want one per column (%d)", i, len(attr), columns)
	}
	var sum float64
	for j, at := range attr {
		sum += at.Value
		if at.Method != method || at.Base != attr[0].Base {
			t.Fatalf("record %d: attribution %+v, want method %s and base %v", i, at, method, attr[0].Base)
		}
		if j > 0 && math.Abs(at.Value) > math.Abs(attr[j-1].Value) {
			t.Fatalf("record %d: attributions not sorted by |value|: %+v", i, attr)
		}
	}
	if want := logit(score) - attr[0].Base; math.Abs(sum-want) > tol {
		t.Fatalf("record %d: attributions sum to %v, want logit(score) − base = %v", i, sum, want)
	}
}

func columns(s *Server) int {
	return len(s.Model().Scoring.Info().Signature.Inputs)
}

func TestExplainLogisticIsExact(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	test := trainExplainable(t, dir, 1, model.Config{Kind: model.LogReg, MaxIter: 50}, false)
	s, ts := newServer(t, DirSource{Dir: dir, Name: "credit"}, Options{})
	const n = 5
	b := body(t, records(test, n))
	code, r := postExplain(t, ts.URL, b)
	if code != 200 {
		t.Fatalf("status %d: %s", code, r.Error)
	}
	if r.Model.Name != "credit" || r.Model.Version != "dir" || r.Model.Digest != s.Model().Digest || len(r.Explanations) != n {
		t.Fatalf("response %+v", r)
	}
	_, p, _ := post(t, ts.URL, b)
	want, bg := linearWant(t, dir, test, n)
	for i, e := range r.Explanations {
		if e.Score != p.Predictions[i].Score || e.Label != p.Predictions[i].Label {
			t.Fatalf("record %d: score %v label %q, /v1/predict gives %v %q", i, e.Score, e.Label, p.Predictions[i].Score, p.Predictions[i].Label)
		}
		checkSum(t, i, e.Score, e.Attributions, "linear", columns(s))
		for _, at := range e.Attributions {
			w := want[i][at.Feature]
			if math.Abs(at.Value-w.Value) > 1e-12 || math.Abs(at.Base-w.Base) > 1e-12 {
				t.Fatalf("record %d %s: %+v, explain.Linear gives %+v", i, at.Feature, at, w)
			}
		}
	}
	// The background is the evenly spaced rows of the held-out split.
	rows := make([]int, backgroundRows)
	for j := range rows {
		rows[j] = j * test.Len() / backgroundRows
	}
	spaced, err := s.Model().Scoring.Encode(test.Subset(rows))
	if err != nil {
		t.Fatal(err)
	}
	if !mat.Equal(bg, spaced) || !mat.Equal(s.Model().explainer.Background, spaced) {
		t.Fatalf("background is not the %d evenly spaced rows of the %d held out", backgroundRows, test.Len())
	}
}

func TestExplainSampledShapley(t *testing.T) {
	mlp := model.Config{Kind: model.MLP, Hidden: []int{8}, Epochs: 3, Seed: 1}
	for _, c := range []struct {
		name string
		cfg  model.Config
		int8 bool
	}{
		{"mlp", mlp, false},
		{"int8 mlp", mlp, true},
		{"int8 logistic", model.Config{Kind: model.LogReg, MaxIter: 50}, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "m")
			test := trainExplainable(t, dir, 1, c.cfg, c.int8)
			s, ts := newServer(t, DirSource{Dir: dir}, Options{})
			b := body(t, records(test, 3))
			code, r := postExplain(t, ts.URL, b)
			if code != 200 {
				t.Fatalf("status %d: %s", code, r.Error)
			}
			_, p, _ := post(t, ts.URL, b)
			for i, e := range r.Explanations {
				if e.Score != p.Predictions[i].Score || e.Label != p.Predictions[i].Label {
					t.Fatalf("record %d: score %v label %q, /v1/predict gives %v %q", i, e.Score, e.Label, p.Predictions[i].Score, p.Predictions[i].Label)
				}
				checkSum(t, i, e.Score, e.Attributions, "sampling_shapley", columns(s))
			}
			// The sampling is seeded: the same record, the same answer.
			if _, again := postExplain(t, ts.URL, b); fmt.Sprint(again.Explanations) != fmt.Sprint(r.Explanations) {
				t.Fatalf("explaining twice differs:\n%v\n%v", r.Explanations, again.Explanations)
			}
		})
	}
}

func TestExplainRequestErrors(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "m")
	test := trainExplainable(t, dir, 1, model.Config{Kind: model.LogReg, MaxIter: 50}, false)
	_, ts := newServer(t, DirSource{Dir: dir}, Options{})
	mutate := func(i int, f func(map[string]any)) []byte {
		recs := records(test, 4)
		f(recs[i])
		return body(t, recs)
	}
	for _, c := range []struct {
		name string
		body []byte
		code int
		want string
	}{
		{"string for number", mutate(2, func(r map[string]any) { r["age"] = "abc" }), 400, `record 2: field "age": want a number, got "abc"`},
		{"unknown", mutate(1, func(r map[string]any) { r["colour"] = "red" }), 400, `record 1: field "colour": not in the model's schema`},
		{"missing", mutate(3, func(r map[string]any) { delete(r, "income") }), 400, `record 3: field "income": missing`},
		{"no records", []byte(`{"records": []}`), 400, "no records"},
		{"too many", body(t, records(test, 17)), 413, "/v1/explain takes at most 16"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, r := postExplain(t, ts.URL, c.body)
			if code != c.code || !strings.Contains(r.Error, c.want) {
				t.Fatalf("status %d, error %q; want %d with %q", code, r.Error, c.code, c.want)
			}
		})
	}
	resp, err := http.Get(ts.URL + "/v1/explain")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET: status %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	_, small := newServer(t, DirSource{Dir: dir}, Options{MaxExplainRecords: 2})
	if code, r := postExplain(t, small.URL, body(t, records(test, 3))); code != 413 || !strings.Contains(r.Error, "at most 2") {
		t.Fatalf("3 records over a limit of 2: status %d, error %q", code, r.Error)
	}
}

func TestExplainNeedsTheHeldOutSplit(t *testing.T) {
	bare := filepath.Join(t.TempDir(), "m")
	d := trainModel(t, bare, 1)
	tampered := filepath.Join(t.TempDir(), "m")
	trainExplainable(t, tampered, 1, model.Config{Kind: model.LogReg, MaxIter: 50}, false)
	f, err := os.OpenFile(filepath.Join(tampered, holdoutName), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("1,2,3\n")
	f.Close()
	for dir, want := range map[string]string{bare: "records no held-out split", tampered: "does not match the sha256"} {
		_, ts := newServer(t, DirSource{Dir: dir}, Options{})
		b := body(t, records(d, 1))
		code, r := postExplain(t, ts.URL, b)
		if code != 501 || !strings.Contains(r.Error, want) || !strings.Contains(r.Error, "Logistic regression, MLP and int8 models are all explainable") {
			t.Fatalf("status %d, error %q; want 501 saying %q and which models are explainable", code, r.Error, want)
		}
		if code, p, _ := post(t, ts.URL, b); code != 200 {
			t.Fatalf("predict on a model that cannot be explained: status %d: %s", code, p.Error)
		}
	}
}

func TestExplainFollowsSwap(t *testing.T) {
	root := t.TempDir()
	src := &flipSource{}
	var test *dataset.Dataset
	for i := range 2 {
		dir := filepath.Join(root, fmt.Sprint("v", i+1))
		test = trainExplainable(t, dir, i+1, model.Config{Kind: model.LogReg, MaxIter: 50}, false)
		ref, err := DirSource{Dir: dir, Name: "credit"}.Resolve(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		ref.Version = fmt.Sprint("v", i+1)
		src.refs[i] = ref
	}
	s, ts := newServer(t, src, Options{PollInterval: -1})
	const n = 2
	b := body(t, records(test, n))
	for i, ref := range src.refs {
		if i > 0 {
			src.flip()
			if swapped, err := s.Reload(context.Background()); err != nil || !swapped {
				t.Fatalf("reload: swapped %v, %v", swapped, err)
			}
		}
		code, r := postExplain(t, ts.URL, b)
		if code != 200 || r.Model.Version != ref.Version || r.Model.Digest != s.Model().Digest {
			t.Fatalf("serving %s: status %d, model %+v (%s)", ref.Version, code, r.Model, r.Error)
		}
		want, _ := linearWant(t, ref.Dir, test, n)
		other, _ := linearWant(t, src.refs[1-i].Dir, test, n)
		for k, e := range r.Explanations {
			for _, at := range e.Attributions {
				if w := want[k][at.Feature]; math.Abs(at.Value-w.Value) > 1e-12 || math.Abs(at.Base-w.Base) > 1e-12 {
					t.Fatalf("%s record %d %s: %+v, its model gives %+v", ref.Version, k, at.Feature, at, w)
				}
			}
			if top := e.Attributions[0]; top.Value == other[k][top.Feature].Value {
				t.Fatalf("%s record %d: %s attributed as by the other model", ref.Version, k, top.Feature)
			}
		}
	}
}

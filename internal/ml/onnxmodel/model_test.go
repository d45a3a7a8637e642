package onnxmodel_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gonum.org/v1/gonum/mat"
	"google.golang.org/protobuf/proto"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxpb"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxtest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
)

func options(t testing.TB) onnxmodel.Options {
	onnxtest.Runtime(t)
	return onnxmodel.Options{Library: onnxtest.LibraryPath(t)}
}

// saveMLP trains a small MLP on credit-risk data and saves it in
// Gauntlet's format.
func saveMLP(t *testing.T, dir string) *dataset.Dataset { return saveMLPWith(t, dir, nil) }

// saveMLPWith is saveMLP with lineage params.
func saveMLPWith(t *testing.T, dir string, params map[string]any) *dataset.Dataset {
	d, err := dataset.Load("builtin:credit-risk?rows=800&seed=3&bias=0.3")
	if err != nil {
		t.Fatal(err)
	}
	enc, err := dataset.FitEncoder(d, dataset.EncoderOptions{Unseen: dataset.UnseenOther})
	if err != nil {
		t.Fatal(err)
	}
	x, err := enc.Transform(d)
	if err != nil {
		t.Fatal(err)
	}
	net, err := model.Train(context.Background(), x, d.Y, model.Config{Kind: model.MLP, Hidden: []int{16, 8}, Epochs: 5, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	m := &modelfile.Manifest{Kind: model.MLP, Schema: d.Schema, Features: enc.FeatureNames(), Preprocessing: enc, Threshold: 0.5,
		Lineage: modelfile.Lineage{DataDigest: d.Digest, Params: params, CreatedAt: time.Unix(0, 0).UTC()}}
	if _, err := modelfile.Save(dir, m, net.Tensors()); err != nil {
		t.Fatal(err)
	}
	return d
}

// TestExportScoresAsGauntlet exports Gauntlet's own logistic regression
// and MLP to ONNX and checks that ONNX Runtime scores every row as the Go
// code does, to float32 precision.
func TestExportScoresAsGauntlet(t *testing.T) {
	opts := options(t)
	for _, kind := range []string{"logreg", "mlp"} {
		t.Run(kind, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "src")
			var d *dataset.Dataset
			if kind == "logreg" {
				d = mltest.SaveLogReg(t, src, 5, nil)
			} else {
				d = saveMLP(t, src)
			}
			a, err := modelfile.Load(src)
			if err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(t.TempDir(), "onnx")
			digest, err := onnxmodel.Export(a, dir)
			if err != nil {
				t.Fatal(err)
			}
			m, err := onnxmodel.Load(dir, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if m.Digest != digest || m.Manifest.Lineage.ParentModel != a.Digest || m.Provider() != "CPUExecutionProvider" {
				t.Errorf("digest %s (saved %s), parent %s (source %s), provider %s", m.Digest, digest, m.Manifest.Lineage.ParentModel, a.Digest, m.Provider())
			}
			x, err := m.Manifest.Encode(d)
			if err != nil {
				t.Fatal(err)
			}
			s, _ := a.Scorer()
			want, _ := s.PredictProba(x)
			got, err := m.PredictProba(x)
			if err != nil {
				t.Fatal(err)
			}
			worst := 0.0
			for i := range want {
				worst = max(worst, math.Abs(got[i]-want[i]))
			}
			if worst > 1e-5 {
				t.Errorf("largest |P_onnx − P_go| = %g over %d rows, want ≤ 1e-5", worst, len(want))
			}
			t.Logf("%d rows, largest |P_onnx − P_go| = %.2g", len(want), worst)
			// The logistic regression's graph is recognised as one, with the
			// exported (float32) weights; the MLP's is not.
			lin := m.Linear()
			if kind == "mlp" {
				if lin != nil {
					t.Fatalf("an MLP's graph read as a logistic regression: %+v", lin)
				}
				return
			}
			net := s.(*model.Network)
			if lin == nil || lin.Kind != model.LogReg || len(lin.Layers) != 1 || len(lin.Layers[0].W) != len(net.Layers[0].W) {
				t.Fatalf("logistic regression graph not recognised: %+v", lin)
			}
			for j, w := range net.Layers[0].W {
				if lin.Layers[0].W[j] != float64(float32(w)) {
					t.Fatalf("weight %d: %v, exported %v", j, lin.Layers[0].W[j], float32(w))
				}
			}
			if lin.Layers[0].B[0] != float64(float32(net.Layers[0].B[0])) {
				t.Fatalf("bias %v, exported %v", lin.Layers[0].B[0], float32(net.Layers[0].B[0]))
			}
			lp, err := lin.PredictProba(x)
			if err != nil {
				t.Fatal(err)
			}
			for i := range lp {
				if math.Abs(lp[i]-got[i]) > 1e-6 {
					t.Fatalf("row %d: the recognised network scores %v, ONNX Runtime %v", i, lp[i], got[i])
				}
			}
		})
	}
}

// writeRaw writes a model directory with correct digests but whatever
// manifest and graph it is given, as a hand-made or hostile one would be.
func writeRaw(t *testing.T, m *onnxmodel.Manifest, graph []byte) string {
	dir := filepath.Join(t.TempDir(), "m")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mb, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	sums := fmt.Sprintf("%x  %s\n%x  %s\n", sha256.Sum256(mb), onnxmodel.ManifestFile, sha256.Sum256(graph), onnxmodel.GraphFile)
	for name, b := range map[string][]byte{onnxmodel.ManifestFile: mb, onnxmodel.GraphFile: graph, onnxmodel.SumsFile: []byte(sums)} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// exported returns a valid exported MLP's manifest and graph.
func exported(t *testing.T) (*onnxmodel.Manifest, []byte) {
	src := filepath.Join(t.TempDir(), "src")
	saveMLP(t, src)
	a, err := modelfile.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "onnx")
	if _, err := onnxmodel.Export(a, dir); err != nil {
		t.Fatal(err)
	}
	mb, _ := os.ReadFile(filepath.Join(dir, onnxmodel.ManifestFile))
	m, err := onnxmodel.DecodeManifest(mb)
	if err != nil {
		t.Fatal(err)
	}
	graph, _ := os.ReadFile(filepath.Join(dir, onnxmodel.GraphFile))
	return m, graph
}

// edit applies f to a parsed copy of graph and returns the new bytes.
func edit(t *testing.T, graph []byte, f func(*onnxpb.ModelProto)) []byte {
	var m onnxpb.ModelProto
	if err := proto.Unmarshal(graph, &m); err != nil {
		t.Fatal(err)
	}
	f(&m)
	b, err := proto.Marshal(&m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBadModelsRefused(t *testing.T) {
	opts := options(t)
	m, graph := exported(t)
	md, err := onnxmodel.Load(writeRaw(t, m, graph), opts)
	if err != nil {
		t.Fatalf("the unedited model: %v", err)
	}
	md.Close()
	fixBatch := func(g *onnxpb.ModelProto) {
		g.Graph.Input[0].Type.GetTensorType().Shape.Dim[0].Value = &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: 1}
	}
	dropSigmoid := func(g *onnxpb.ModelProto) {
		n := len(g.Graph.Node)
		g.Graph.Node[n-2].Output[0] = onnxmodel.OutputName
		g.Graph.Node = g.Graph.Node[:n-1]
	}
	cases := []struct {
		name  string
		graph []byte
		sig   bool // record the edited graph's signature in the manifest
		want  string
	}{
		{"opset 99", edit(t, graph, func(g *onnxpb.ModelProto) { g.OpsetImport[0].Version = proto.Int64(99) }), false, "operator set 99 is not supported"},
		{"opset 5", edit(t, graph, func(g *onnxpb.ModelProto) { g.OpsetImport[0].Version = proto.Int64(5) }), false, "operator set 5 is not supported"},
		{"custom domain", edit(t, graph, func(g *onnxpb.ModelProto) {
			g.OpsetImport = append(g.OpsetImport, &onnxpb.OperatorSetIdProto{Domain: proto.String("com.example"), Version: proto.Int64(1)})
		}), false, `operator domain "com.example"`},
		{"no batch dimension", edit(t, graph, fixBatch), true, "no batch dimension"},
		{"logits, not probabilities", edit(t, graph, dropSigmoid), true, "not a probability"},
		{"dangling edge", edit(t, graph, func(g *onnxpb.ModelProto) { g.Graph.Node[1].Input[0] = "nowhere" }), false, `input "nowhere" is not`},
		{"signature differs from the manifest", edit(t, graph, func(g *onnxpb.ModelProto) {
			g.Graph.Input[0].Type.GetTensorType().Shape.Dim[0].Value = &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: "n"}
		}), false, "the manifest records inputs"},
		{"garbage", []byte("this is not protobuf at all, just text"), false, "not a valid ONNX protobuf"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			mm := *m
			if c.sig {
				g, err := onnx.Parse(c.graph)
				if err != nil {
					t.Fatal(err)
				}
				mm.Signature = onnxmodel.SignatureOf(g)
			}
			_, err := onnxmodel.Load(writeRaw(t, &mm, c.graph), opts)
			if err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, onnx.ErrBadModel) {
				t.Fatalf("err = %v, want one matching ErrBadModel saying %q", err, c.want)
			}
			t.Log(err)
			if _, err := onnxmodel.Save(filepath.Join(t.TempDir(), "s"), &mm, c.graph); err == nil {
				t.Error("Save accepted it")
			}
		})
	}
	// Every truncation of the file is refused, none panics: the checks
	// cover what protobuf decoding lets through.
	for n := 0; n < len(graph); n += 1 + n/8 {
		if md, err := onnxmodel.Load(writeRaw(t, m, graph[:n]), opts); err == nil {
			md.Close()
			t.Fatalf("graph truncated to %d of %d bytes loaded", n, len(graph))
		}
	}
	// A file changed after saving is refused by its digest.
	dir := writeRaw(t, m, graph)
	if err := os.WriteFile(filepath.Join(dir, onnxmodel.GraphFile), append(graph, 0), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := onnxmodel.Load(dir, opts); !errors.Is(err, modelfile.ErrTampered) {
		t.Errorf("tampered graph: %v", err)
	}
}

// TestRawFeatures: a graph that takes raw numeric columns gets them
// unchanged, and a missing value is refused naming its row and column.
func TestRawFeatures(t *testing.T) {
	opts := options(t)
	d, err := dataset.Load("builtin:credit-risk?rows=50&seed=2")
	if err != nil {
		t.Fatal(err)
	}
	feats := d.Schema.Names(dataset.Numeric)
	net := &model.Network{Kind: model.LogReg, Layers: []model.Dense{{In: len(feats), Out: 1, W: make([]float64, len(feats)), B: []float64{0}}}}
	net.Layers[0].W[0] = 0.01
	graph, err := onnxmodel.Graph(net)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := onnx.Parse(graph)
	m := &onnxmodel.Manifest{Signature: onnxmodel.SignatureOf(g), Output: onnxmodel.Output{Name: onnxmodel.OutputName},
		Schema: d.Schema, Preprocessing: onnxmodel.Preprocessing{Kind: onnxmodel.Raw}, Features: feats, Threshold: 0.5,
		Lineage: modelfile.Lineage{DataDigest: d.Digest}}
	dir := filepath.Join(t.TempDir(), "raw")
	if _, err := onnxmodel.Save(dir, m, graph); err != nil {
		t.Fatal(err)
	}
	md, err := onnxmodel.Load(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer md.Close()
	x, err := md.Manifest.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	p, err := md.PredictProba(x)
	if err != nil {
		t.Fatal(err)
	}
	for r := range 5 {
		want := 1 / (1 + math.Exp(-0.01*d.Numeric[feats[0]][r]))
		if math.Abs(p[r]-want) > 1e-6 {
			t.Errorf("row %d: %v, want %v", r, p[r], want)
		}
	}
	d.Numeric[feats[1]][3] = math.NaN()
	_, err = md.Manifest.Encode(d)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("row 4 column %q", feats[1])) {
		t.Errorf("missing raw value: %v", err)
	}
}

// TestExportCarriesTheHeldOutSplit: the held-out split a model's lineage
// records comes along into its export, checked against the recorded digest
// on the way.
func TestExportCarriesTheHeldOutSplit(t *testing.T) {
	opts := options(t)
	holdout := []byte("age,income\n1,2\n")
	sum := sha256.Sum256(holdout)
	rec := map[string]any{"file": "holdout.csv", "sha256": fmt.Sprintf("%x", sum), "rows": 1}
	src := filepath.Join(t.TempDir(), "src")
	saveMLPWith(t, src, map[string]any{onnxmodel.HoldoutParam: rec})
	if err := os.WriteFile(filepath.Join(src, "holdout.csv"), holdout, 0o644); err != nil {
		t.Fatal(err)
	}
	a, err := modelfile.Load(src)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "onnx")
	if _, err := onnxmodel.Export(a, dir); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(dir, "holdout.csv")); err != nil || string(b) != string(holdout) {
		t.Fatalf("exported held-out split: %q, %v", b, err)
	}
	if _, err := onnxmodel.Load(dir, opts); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "holdout.csv"), []byte("age,income\n9,9\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = onnxmodel.Export(a, filepath.Join(t.TempDir(), "tampered"))
	if !errors.Is(err, modelfile.ErrTampered) || !strings.Contains(err.Error(), "holdout.csv") {
		t.Fatalf("export with a tampered held-out split: %v", err)
	}
}

// TestSmallAndLargeCallsAgree: calls of few rows (pooled slots, from many
// goroutines at once) score as one call over all rows (the caller's
// buffers lent to the runtime) does.
func TestSmallAndLargeCallsAgree(t *testing.T) {
	opts := options(t)
	src := filepath.Join(t.TempDir(), "src")
	d := saveMLP(t, src)
	m := exportLoad(t, src, opts)
	x, err := m.Manifest.Encode(d)
	if err != nil {
		t.Fatal(err)
	}
	all, err := m.PredictProba(x)
	if err != nil {
		t.Fatal(err)
	}
	rows, cols := x.Dims()
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Go(func() {
			step := 1 + g // calls of 1 to 8 rows
			for start := 0; start+step <= rows; start += step {
				p, err := m.PredictProba(mat.DenseCopyOf(x.Slice(start, start+step, 0, cols)))
				if err != nil {
					errs <- err
					return
				}
				for i, v := range p {
					if math.Abs(v-all[start+i]) > 1e-6 {
						errs <- fmt.Errorf("row %d in a call of %d: %v, one call over all rows: %v", start+i, step, v, all[start+i])
						return
					}
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

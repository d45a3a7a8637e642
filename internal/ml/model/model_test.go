package model_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"slices"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"gonum.org/v1/gonum/mat"
)

func TestLogRegMatchesSklearn(t *testing.T) {
	b, err := os.ReadFile(mltest.Fixture(t, "logreg_reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		X       [][]float64
		Y       []float64
		Weights []float64
		Fits    []struct {
			C         float64
			Weighted  bool
			Coef      []float64
			Intercept float64
		}
	}
	if err := json.Unmarshal(b, &ref); err != nil {
		t.Fatal(err)
	}
	x := mat.NewDense(len(ref.X), len(ref.X[0]), slices.Concat(ref.X...))
	for _, fit := range ref.Fits {
		var opts []model.TrainOption
		if fit.Weighted {
			opts = append(opts, model.WithSampleWeights(ref.Weights))
		}
		net, err := model.Train(context.Background(), x, ref.Y, model.Config{Kind: model.LogReg, C: fit.C, Tol: 1e-10}, opts...)
		if err != nil {
			t.Fatal(err)
		}
		// scipy's L-BFGS-B inside sklearn stops on a relative objective
		// change of about 2e-9, so its coefficients carry errors near 1e-5:
		// compare at 1e-4 and also require our optimum to be at least as low.
		l := net.Layers[0]
		for j, want := range fit.Coef {
			if math.Abs(l.W[j]-want) > 1e-4 {
				t.Errorf("C=%v weighted=%v coef[%d] = %.8f, sklearn %.8f", fit.C, fit.Weighted, j, l.W[j], want)
			}
		}
		if math.Abs(l.B[0]-fit.Intercept) > 1e-4 {
			t.Errorf("C=%v weighted=%v intercept = %.8f, sklearn %.8f", fit.C, fit.Weighted, l.B[0], fit.Intercept)
		}
		w := ref.Weights
		if !fit.Weighted {
			w = nil
		}
		ours := objective(ref.X, ref.Y, w, fit.C, l.W, l.B[0])
		theirs := objective(ref.X, ref.Y, w, fit.C, fit.Coef, fit.Intercept)
		if ours > theirs+1e-12 {
			t.Errorf("C=%v weighted=%v objective %.15g above sklearn's %.15g", fit.C, fit.Weighted, ours, theirs)
		}
	}
}

// objective is sklearn's: C·Σ wᵢ·logloss + ‖β‖²/2.
func objective(x [][]float64, y, w []float64, c float64, beta []float64, b float64) float64 {
	var loss, reg float64
	for i, row := range x {
		z := b
		for j, v := range row {
			z += v * beta[j]
		}
		p := 1 / (1 + math.Exp(-z))
		l := -math.Log(1 - p)
		if y[i] == 1 {
			l = -math.Log(p)
		}
		wi := 1.0
		if w != nil {
			wi = w[i]
		}
		loss += wi * l
	}
	for _, v := range beta {
		reg += v * v
	}
	return c*loss + reg/2
}

// creditRisk returns a small encoded builtin data set for fast tests.
func creditRisk(t testing.TB, rows int) (*mat.Dense, []float64) {
	t.Helper()
	d, err := dataset.Load("builtin:credit-risk?rows=" + itoa(rows) + "&seed=3")
	if err != nil {
		t.Fatal(err)
	}
	enc, err := dataset.FitEncoder(d, dataset.EncoderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	x, err := enc.Transform(d)
	if err != nil {
		t.Fatal(err)
	}
	return x, d.Y
}

func itoa(n int) string { return string(must(json.Marshal(n))) }

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

func flat(n *model.Network) []float64 {
	var out []float64
	for _, t := range n.Tensors() {
		out = append(out, t.Data...)
	}
	return out
}

func sameBits(a, b []float64) bool {
	return slices.EqualFunc(a, b, func(x, y float64) bool { return math.Float64bits(x) == math.Float64bits(y) })
}

func TestMLPDeterministicPerSeed(t *testing.T) {
	x, y := creditRisk(t, 1500)
	cfg := model.Config{Kind: model.MLP, Seed: 11, Epochs: 3, Hidden: []int{16, 8}}
	a := must(model.Train(context.Background(), x, y, cfg))
	b := must(model.Train(context.Background(), x, y, cfg))
	if !sameBits(flat(a), flat(b)) {
		t.Fatal("two runs with the same seed differ")
	}
	cfg.Seed = 12
	c := must(model.Train(context.Background(), x, y, cfg))
	if sameBits(flat(a), flat(c)) {
		t.Fatal("different seeds gave identical weights")
	}
}

func TestMLPCheckpointResumeIsBitIdentical(t *testing.T) {
	x, y := creditRisk(t, 1500)
	cfg := model.Config{Kind: model.MLP, Seed: 5, Epochs: 6, Hidden: []int{16}, BatchSize: 64}
	w := make([]float64, len(y))
	for i := range w {
		w[i] = 0.5 + float64(i%3)
	}
	whole := must(model.Train(context.Background(), x, y, cfg, model.WithSampleWeights(w)))

	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	var seen []int
	_, err := model.Train(ctx, x, y, cfg, model.WithSampleWeights(w), model.WithCheckpointDir(dir),
		model.WithProgress(func(p model.Progress) {
			seen = append(seen, p.Epoch)
			if p.Epoch == 3 {
				cancel() // the worker dies after epoch 3
			}
		}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: err = %v, want context.Canceled", err)
	}
	if !slices.Equal(seen, []int{1, 2, 3}) {
		t.Fatalf("progress epochs %v", seen)
	}
	var resumedFrom []int
	resumed, err := model.Train(context.Background(), x, y, cfg, model.WithSampleWeights(w), model.WithCheckpointDir(dir),
		model.WithProgress(func(p model.Progress) { resumedFrom = append(resumedFrom, p.Epoch) }))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(resumedFrom, []int{4, 5, 6}) {
		t.Fatalf("resumed run reported epochs %v, want 4..6", resumedFrom)
	}
	if !sameBits(flat(whole), flat(resumed)) {
		t.Fatal("resumed run differs from the uninterrupted one")
	}

	// A checkpoint from other settings is refused, not silently reused.
	cfg.Seed = 6
	if _, err := model.Train(context.Background(), x, y, cfg, model.WithSampleWeights(w), model.WithCheckpointDir(dir)); err == nil {
		t.Fatal("resumed from a checkpoint written for another seed")
	}
}

// The callbacks see each epoch's state once it is complete in the
// directory, and the epoch a resumed run starts after; an error from Saved
// stops training with it.
func TestCheckpointCallbacks(t *testing.T) {
	x, y := creditRisk(t, 600)
	cfg := model.Config{Kind: model.MLP, Seed: 5, Epochs: 4, Hidden: []int{8}, BatchSize: 64}
	dir := t.TempDir()
	stop := errors.New("store gone")
	var saved []int
	_, err := model.Train(context.Background(), x, y, cfg, model.WithCheckpoints(model.Checkpoints{
		Dir: dir,
		Saved: func(epoch int) error {
			var st struct{ Epoch int }
			if ok, err := model.LoadState(dir, "mlp-checkpoint.json", &st); err != nil || !ok || st.Epoch != epoch {
				t.Errorf("Saved(%d) before the state was complete: %+v %v %v", epoch, st, ok, err)
			}
			saved = append(saved, epoch)
			if epoch == 2 {
				return stop
			}
			return nil
		},
		Resumed: func(epoch int) { t.Errorf("a fresh directory resumed from epoch %d", epoch) },
	}))
	if !errors.Is(err, stop) || !slices.Equal(saved, []int{1, 2}) {
		t.Fatalf("Saved stopping training: err %v, saved %v", err, saved)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("checkpoint directory holds %d entries, want the state file alone (no temporary file)", len(entries))
	}
	resumed := -1
	if _, err := model.Train(context.Background(), x, y, cfg, model.WithCheckpoints(model.Checkpoints{
		Dir: dir, Resumed: func(epoch int) { resumed = epoch },
	})); err != nil {
		t.Fatal(err)
	}
	if resumed != 2 {
		t.Errorf("Resumed(%d), want 2", resumed)
	}
}

// A weight of 2 must act like a duplicated row.
func TestSampleWeightsActLikeDuplicates(t *testing.T) {
	x, y := creditRisk(t, 400)
	n, d := x.Dims()
	w := make([]float64, n)
	dup := mat.NewDense(n+n/2, d, nil)
	ydup := slices.Clone(y)
	for i := range n {
		w[i] = 1
		dup.SetRow(i, x.RawRowView(i))
		if i%2 == 0 {
			w[i] = 2
			dup.SetRow(n+i/2, x.RawRowView(i))
			ydup = append(ydup, y[i])
		}
	}
	cfg := model.Config{Kind: model.LogReg, Tol: 1e-10}
	a := must(model.Train(context.Background(), x, y, cfg, model.WithSampleWeights(w)))
	b := must(model.Train(context.Background(), dup, ydup, cfg))
	for i, v := range flat(a) {
		if math.Abs(v-flat(b)[i]) > 1e-6 {
			t.Fatalf("param %d: weighted %v, duplicated %v", i, v, flat(b)[i])
		}
	}
}

func TestClassWeightsShiftPredictions(t *testing.T) {
	x, y := creditRisk(t, 1000)
	mean := func(opts ...model.TrainOption) float64 {
		n := must(model.Train(context.Background(), x, y, model.Config{Kind: model.LogReg}, opts...))
		p := must(n.PredictProba(x))
		var s float64
		for _, v := range p {
			s += v
		}
		return s / float64(len(p))
	}
	plain, balanced, heavy := mean(), mean(model.WithBalancedClassWeights()), mean(model.WithClassWeights(1, 5))
	if !(plain < balanced && balanced < heavy) {
		t.Fatalf("mean scores plain %v balanced %v pos×5 %v: weighting positives should raise them", plain, balanced, heavy)
	}
}

func TestFromTensorsRoundTrip(t *testing.T) {
	x, y := creditRisk(t, 500)
	net := must(model.Train(context.Background(), x, y, model.Config{Kind: model.MLP, Epochs: 1, Hidden: []int{8, 4}}))
	back, err := model.FromTensors(model.MLP, net.Tensors())
	if err != nil {
		t.Fatal(err)
	}
	if !sameBits(must(net.PredictProba(x)), must(back.PredictProba(x))) {
		t.Fatal("rebuilt network scores differently")
	}
	ts := net.Tensors()
	if _, err := model.FromTensors(model.MLP, ts[:3]); err == nil {
		t.Error("accepted a network missing a bias")
	}
	if _, err := model.FromTensors(model.LogReg, ts); err == nil {
		t.Error("accepted a three-layer logistic regression")
	}
	if _, err := net.PredictProba(mat.NewDense(1, 3, nil)); err == nil {
		t.Error("scored a matrix of the wrong width")
	}
}

func TestTrainRejectsBadInput(t *testing.T) {
	x := mat.NewDense(3, 2, []float64{1, 2, 3, 4, 5, 6})
	ctx := context.Background()
	for name, tc := range map[string]struct {
		y    []float64
		cfg  model.Config
		opts []model.TrainOption
	}{
		"one class":     {[]float64{1, 1, 1}, model.Config{Kind: model.LogReg}, nil},
		"label 2":       {[]float64{0, 1, 2}, model.Config{Kind: model.LogReg}, nil},
		"short labels":  {[]float64{0, 1}, model.Config{Kind: model.LogReg}, nil},
		"kind":          {[]float64{0, 1, 0}, model.Config{Kind: "forest"}, nil},
		"three hidden":  {[]float64{0, 1, 0}, model.Config{Kind: model.MLP, Hidden: []int{2, 2, 2}}, nil},
		"neg weight":    {[]float64{0, 1, 0}, model.Config{Kind: model.LogReg}, []model.TrainOption{model.WithSampleWeights([]float64{1, -1, 1})}},
		"zero weights":  {[]float64{0, 1, 0}, model.Config{Kind: model.LogReg}, []model.TrainOption{model.WithSampleWeights([]float64{0, 0, 0})}},
		"weight length": {[]float64{0, 1, 0}, model.Config{Kind: model.MLP}, []model.TrainOption{model.WithSampleWeights([]float64{1})}},
	} {
		if _, err := model.Train(ctx, x, tc.y, tc.cfg, tc.opts...); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	nan := mat.NewDense(2, 1, []float64{math.NaN(), 1})
	if _, err := model.Train(ctx, nan, []float64{0, 1}, model.Config{Kind: model.LogReg}); err == nil {
		t.Error("NaN feature: no error")
	}
}

func TestLogRegCancelled(t *testing.T) {
	x, y := creditRisk(t, 500)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := model.Train(ctx, x, y, model.Config{Kind: model.LogReg}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
}

func TestAdult(t *testing.T) {
	a := mltest.LoadAdult(t)
	score := func(net *model.Network) (acc, auc float64) {
		p := must(net.PredictProba(a.XTest))
		r, err := evaluate.Evaluate(a.Test.Y, p, evaluate.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return r.Metrics[evaluate.Accuracy], r.Metrics[evaluate.ROCAUC]
	}
	var progress int
	lr := must(model.Train(context.Background(), a.XTrain, a.Train.Y, model.Config{Kind: model.LogReg},
		model.WithProgress(func(model.Progress) { progress++ })))
	lrAcc, lrAUC := score(lr)
	t.Logf("logreg: accuracy %.4f ROC AUC %.4f (%d iterations)", lrAcc, lrAUC, progress)
	if lrAcc < 0.85 || lrAUC < 0.90 {
		t.Errorf("logreg accuracy %.4f (want ≥ 0.85), ROC AUC %.4f (want ≥ 0.90)", lrAcc, lrAUC)
	}
	if progress == 0 {
		t.Error("no progress reported")
	}
	epochs := 12
	if testing.Short() {
		epochs = 6
	}
	mlp := must(model.Train(context.Background(), a.XTrain, a.Train.Y, model.Config{Kind: model.MLP, Seed: 1, Epochs: epochs, Hidden: []int{32}}))
	mlpAcc, mlpAUC := score(mlp)
	t.Logf("mlp (%d epochs): accuracy %.4f ROC AUC %.4f", epochs, mlpAcc, mlpAUC)
	if mlpAcc < lrAcc || mlpAUC < lrAUC {
		t.Errorf("mlp accuracy %.4f ROC AUC %.4f is worse than logreg's %.4f / %.4f", mlpAcc, mlpAUC, lrAcc, lrAUC)
	}
}

func BenchmarkTrainLogRegAdult(b *testing.B) {
	a := mltest.LoadAdult(b)
	for b.Loop() {
		if _, err := model.Train(context.Background(), a.XTrain, a.Train.Y, model.Config{Kind: model.LogReg}); err != nil {
			b.Fatal(err)
		}
	}
}

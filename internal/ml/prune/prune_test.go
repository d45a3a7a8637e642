package prune

import (
	"context"
	"math"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"gonum.org/v1/gonum/mat"
)

func setup(t *testing.T) (*model.Network, *mat.Dense, []float64) {
	t.Helper()
	d, err := dataset.Load("builtin:credit-risk?rows=3000&seed=5")
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
	net, err := model.Train(context.Background(), x, d.Y, model.Config{Kind: model.MLP, Seed: 1, Hidden: []int{32}, Epochs: 30})
	if err != nil {
		t.Fatal(err)
	}
	return net, x, d.Y
}

func accuracy(t *testing.T, net *model.Network, x *mat.Dense, y []float64) float64 {
	p, err := net.PredictProba(x)
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for i := range p {
		if (p[i] >= 0.5) == (y[i] == 1) {
			ok++
		}
	}
	return float64(ok) / float64(len(y))
}

// expected is the overall sparsity when the hidden layers reach target and
// the output layer is kept.
func expected(net *model.Network, target float64) float64 {
	hidden, all := 0, 0
	for i, l := range net.Layers {
		all += len(l.W)
		if i < len(net.Layers)-1 {
			hidden += len(l.W)
		}
	}
	return target * float64(hidden) / float64(all)
}

func TestCubicSchedule(t *testing.T) {
	want := []float64{0, 0.8 * (1 - 0.729), 0.8 * (1 - 0.343), 0.8 * (1 - 0.125), 0.8 * (1 - 0.001), 0.8}
	for i, w := range []int{0, 1, 3, 5, 9, 10} {
		if got := CubicSparsity(0, 0.8, w, 10); math.Abs(got-want[i]) > 1e-12 {
			t.Errorf("step %d: %v, want %v", w, got, want[i])
		}
	}
}

func TestOneShotKeepsMaskThroughFineTuning(t *testing.T) {
	net, x, y := setup(t)
	base := accuracy(t, net, x, y)
	masks, err := MagnitudeMasks(net, 0.8)
	if err != nil {
		t.Fatal(err)
	}
	pruned, err := Prune(context.Background(), net, x, y, Options{Sparsity: 0.8, Epochs: 3, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range pruned.Layers {
		for j, keep := range masks[i] {
			if !keep && l.W[j] != 0 {
				t.Fatalf("layer %d weight %d was pruned but is %v after fine-tuning", i, j, l.W[j])
			}
		}
	}
	changed := false
	for i, l := range pruned.Layers {
		for j, keep := range masks[i] {
			changed = changed || keep && l.W[j] != net.Layers[i].W[j]
		}
	}
	if !changed {
		t.Error("fine-tuning changed no surviving weight")
	}
	s := Measure(pruned)
	if math.Abs(s.Sparsity-expected(net, 0.8)) > 0.002 || s.SparseBytes >= s.DenseBytes {
		t.Errorf("stats %+v", s)
	}
	if acc := accuracy(t, pruned, x, y); acc < base-0.03 {
		t.Errorf("accuracy %.4f after pruning, %.4f before", acc, base)
	}
	if Measure(net).Sparsity != 0 {
		t.Error("Prune changed its input network")
	}
}

func TestGradualReachesTarget(t *testing.T) {
	net, x, y := setup(t)
	base := accuracy(t, net, x, y)
	pruned, err := Prune(context.Background(), net, x, y, Options{Sparsity: 0.9, Schedule: Gradual, Epochs: 4, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	if s := Measure(pruned); math.Abs(s.Sparsity-expected(net, 0.9)) > 0.002 {
		t.Errorf("sparsity %v, want %v", s.Sparsity, expected(net, 0.9))
	}
	oneShot, err := Prune(context.Background(), net, x, y, Options{Sparsity: 0.9})
	if err != nil {
		t.Fatal(err)
	}
	g, o := accuracy(t, pruned, x, y), accuracy(t, oneShot, x, y)
	t.Logf("accuracy: dense %.4f, 90%% one-shot without fine-tuning %.4f, gradual %.4f", base, o, g)
	if g < o-0.005 || g < base-0.03 {
		t.Errorf("gradual pruning accuracy %.4f, one-shot %.4f, dense %.4f", g, o, base)
	}
}

func TestRejects(t *testing.T) {
	net, x, y := setup(t)
	for _, o := range []Options{{Sparsity: 1}, {Sparsity: -0.1}, {Sparsity: 0.5, Schedule: "random"}, {Sparsity: 0.5, Schedule: Gradual}, {Sparsity: 0.5, InitialSparsity: 0.7, Epochs: 1}} {
		if _, err := Prune(context.Background(), net, x, y, o); err == nil {
			t.Errorf("accepted %+v", o)
		}
	}
}

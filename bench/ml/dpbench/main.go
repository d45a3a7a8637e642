// Command dpbench shows what differential privacy costs on UCI Adult: it
// trains logistic regression (and optionally the MLP) without DP and with
// DP-SGD at several target ε, and prints test accuracy and ROC AUC.
//
// The noise is DP-SGD's default, drawn afresh for every run from a
// generator keyed by crypto/rand, so the scores differ from run to run:
// each ε is trained -runs times and the median is printed with the range.
// -reproducible draws the noise from the model's seed instead
// (insecure_reproducible), which repeats the numbers exactly but certifies
// nothing: use it only to compare changes to the training code.
//
// Usage: go run ./bench/ml/dpbench -adult ../shared/datasets/adult [-mlp] [-runs 5] [-reproducible]
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dp"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"gonum.org/v1/gonum/mat"
)

func main() {
	dir := flag.String("adult", "../shared/datasets/adult", "directory holding adult.data and adult.test")
	eps := flag.String("eps", "8,3,1,0.3,0.1", "target ε values, comma-separated")
	mlp := flag.Bool("mlp", false, "also train the MLP")
	epochs := flag.Int("epochs", 10, "DP-SGD epochs")
	runs := flag.Int("runs", 5, "DP-SGD runs per ε, each with fresh noise")
	reproducible := flag.Bool("reproducible", false, "draw the noise from the model's seed (insecure_reproducible: no privacy, same numbers every time)")
	flag.Parse()
	if *runs < 1 {
		fmt.Fprintln(os.Stderr, "dpbench: -runs must be at least 1")
		os.Exit(2)
	}
	if err := run(*dir, *eps, *mlp, *epochs, *runs, *reproducible); err != nil {
		fmt.Fprintln(os.Stderr, "dpbench:", err)
		os.Exit(1)
	}
}

func run(dir, epsList string, mlp bool, epochs, runs int, reproducible bool) error {
	opts := []dataset.Option{dataset.WithLabel("Y", ">50K,>50K."), dataset.WithSensitive("sex", "race"), dataset.WithIgnored("fnlwgt")}
	tr, err := dataset.Load(filepath.Join(dir, "adult.data"), opts...)
	if err != nil {
		return err
	}
	te, err := dataset.Load(filepath.Join(dir, "adult.test"), opts...)
	if err != nil {
		return err
	}
	enc, err := dataset.FitEncoder(tr, dataset.EncoderOptions{})
	if err != nil {
		return err
	}
	x, err := enc.Transform(tr)
	if err != nil {
		return err
	}
	xt, err := enc.Transform(te)
	if err != nil {
		return err
	}
	var targets []float64
	for _, s := range strings.Split(epsList, ",") {
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return fmt.Errorf("-eps: %w", err)
		}
		targets = append(targets, f)
	}
	kinds := []model.Kind{model.LogReg}
	if mlp {
		kinds = append(kinds, model.MLP)
	}
	noise := fmt.Sprintf("fresh noise (%s), median [min, max] of %d runs", dp.SecureRandomness, runs)
	if reproducible {
		noise, runs = "seeded noise (insecure_reproducible: no privacy guarantee), one run", 1
	}
	fmt.Printf("UCI Adult: %d train rows, %d test rows, %d features; DP-SGD: batch 256 (Poisson), clip 1, %d epochs, δ=1e-5; %s\n",
		tr.Len(), te.Len(), enc.Width(), epochs, noise)
	fmt.Printf("%-7s %-8s %8s %8s %-24s %-24s %8s\n", "model", "target ε", "σ", "ε spent", "accuracy", "roc_auc", "seconds")
	ctx := context.Background()
	for _, k := range kinds {
		cfg := model.Config{Kind: k, Seed: 1}
		start := time.Now()
		net, err := model.Train(ctx, x, tr.Y, cfg)
		if err != nil {
			return err
		}
		acc, auc, err := score(net, xt, te.Y)
		if err != nil {
			return err
		}
		row(k, "∞ (no DP)", math.NaN(), math.Inf(1), []float64{acc}, []float64{auc}, time.Since(start))
		for _, e := range targets {
			var accs, aucs []float64
			var g *dp.Guarantee
			start := time.Now()
			for range runs {
				var net *model.Network
				net, g, err = dp.Train(ctx, x, tr.Y, cfg, dp.Options{Epsilon: e, Epochs: epochs, InsecureReproducible: reproducible})
				if err != nil {
					return err
				}
				acc, auc, err := score(net, xt, te.Y)
				if err != nil {
					return err
				}
				accs, aucs = append(accs, acc), append(aucs, auc)
			}
			row(k, strconv.FormatFloat(e, 'g', -1, 64), g.NoiseMultiplier, g.Epsilon, accs, aucs, time.Since(start)/time.Duration(runs))
		}
	}
	return nil
}

func score(net *model.Network, xt *mat.Dense, y []float64) (acc, auc float64, err error) {
	p, err := net.PredictProba(xt)
	if err != nil {
		return 0, 0, err
	}
	rep, err := evaluate.Evaluate(y, p, evaluate.Options{})
	if err != nil {
		return 0, 0, err
	}
	return rep.Metrics[evaluate.Accuracy], rep.Metrics[evaluate.ROCAUC], nil
}

// row prints one ε's scores: the median with the range when there were
// several runs. took is the time of one run.
func row(k model.Kind, target string, sigma, spent float64, accs, aucs []float64, took time.Duration) {
	s := "-"
	if !math.IsNaN(sigma) {
		s = strconv.FormatFloat(sigma, 'f', 3, 64)
	}
	fmt.Printf("%-7s %-8s %8s %8.3f %-24s %-24s %8.1f\n", k, target, s, spent, spread(accs), spread(aucs), took.Seconds())
}

func spread(v []float64) string {
	v = slices.Clone(v)
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	if len(v) == 1 {
		return strconv.FormatFloat(med, 'f', 4, 64)
	}
	return fmt.Sprintf("%.4f [%.4f, %.4f]", med, v[0], v[len(v)-1])
}

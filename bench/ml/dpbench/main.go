// Command dpbench shows what differential privacy costs on UCI Adult: it
// trains logistic regression (and optionally the MLP) without DP and with
// DP-SGD at several target ε, and prints test accuracy and ROC AUC.
//
// Usage: go run ./bench/ml/dpbench -adult ../shared/datasets/adult [-mlp]
package main

import (
	"context"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
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
	flag.Parse()
	if err := run(*dir, *eps, *mlp, *epochs); err != nil {
		fmt.Fprintln(os.Stderr, "dpbench:", err)
		os.Exit(1)
	}
}

func run(dir, epsList string, mlp bool, epochs int) error {
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
	fmt.Printf("UCI Adult: %d train rows, %d test rows, %d features; DP-SGD: batch 256 (Poisson), clip 1, %d epochs, δ=1e-5\n",
		tr.Len(), te.Len(), enc.Width(), epochs)
	fmt.Printf("%-7s %-8s %8s %8s %9s %9s %8s\n", "model", "target ε", "σ", "ε spent", "accuracy", "roc_auc", "seconds")
	ctx := context.Background()
	for _, k := range kinds {
		cfg := model.Config{Kind: k, Seed: 1}
		start := time.Now()
		net, err := model.Train(ctx, x, tr.Y, cfg)
		if err != nil {
			return err
		}
		if err := row(k, "∞ (no DP)", math.NaN(), math.Inf(1), net, xt, te.Y, time.Since(start)); err != nil {
			return err
		}
		for _, e := range targets {
			start := time.Now()
			net, g, err := dp.Train(ctx, x, tr.Y, cfg, dp.Options{Epsilon: e, Epochs: epochs})
			if err != nil {
				return err
			}
			if err := row(k, strconv.FormatFloat(e, 'g', -1, 64), g.NoiseMultiplier, g.Epsilon, net, xt, te.Y, time.Since(start)); err != nil {
				return err
			}
		}
	}
	return nil
}

func row(k model.Kind, target string, sigma, spent float64, net *model.Network, xt *mat.Dense, y []float64, took time.Duration) error {
	p, err := net.PredictProba(xt)
	if err != nil {
		return err
	}
	rep, err := evaluate.Evaluate(y, p, evaluate.Options{})
	if err != nil {
		return err
	}
	s := "-"
	if !math.IsNaN(sigma) {
		s = strconv.FormatFloat(sigma, 'f', 3, 64)
	}
	fmt.Printf("%-7s %-8s %8s %8.3f %9.4f %9.4f %8.1f\n", k, target, s, spent, rep.Metrics[evaluate.Accuracy], rep.Metrics[evaluate.ROCAUC], took.Seconds())
	return nil
}

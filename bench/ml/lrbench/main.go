// Command lrbench times Gauntlet's logistic regression on UCI Adult and
// writes the encoded matrix so bench/ml/lr_vs_sklearn.py can time
// scikit-learn on exactly the same numbers.
package main

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"gonum.org/v1/gonum/mat"
)

func main() {
	adult := flag.String("adult", "../shared/datasets/adult", "directory holding adult.data")
	out := flag.String("out", "", "directory for X.f64, y.f64 and go.json")
	runs := flag.Int("runs", 5, "timed training runs (the median is reported)")
	flag.Parse()
	if err := run(*adult, *out, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "lrbench:", err)
		os.Exit(1)
	}
}

func run(adult, out string, runs int) error {
	d, err := dataset.Load(filepath.Join(adult, "adult.data"),
		dataset.WithLabel("Y", ">50K,>50K."), dataset.WithSensitive("sex", "race"), dataset.WithIgnored("fnlwgt"))
	if err != nil {
		return err
	}
	enc, err := dataset.FitEncoder(d, dataset.EncoderOptions{})
	if err != nil {
		return err
	}
	x, err := enc.Transform(d)
	if err != nil {
		return err
	}
	if err := writeF64(filepath.Join(out, "X.f64"), x.RawMatrix().Data); err != nil {
		return err
	}
	if err := writeF64(filepath.Join(out, "y.f64"), d.Y); err != nil {
		return err
	}
	var times []float64
	var net *model.Network
	for range runs {
		start := time.Now()
		net, err = model.Train(context.Background(), x, d.Y, model.Config{Kind: model.LogReg})
		if err != nil {
			return err
		}
		times = append(times, time.Since(start).Seconds())
	}
	slices.Sort(times)
	rows, cols := x.Dims()
	res := map[string]any{
		"rows": rows, "cols": cols, "median_seconds": times[len(times)/2],
		"train_accuracy": accuracy(net, x, d.Y), "coef": net.Layers[0].W, "intercept": net.Layers[0].B[0],
	}
	b, err := json.Marshal(res)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(out, "go.json"), b, 0o644)
}

func accuracy(net *model.Network, x *mat.Dense, y []float64) float64 {
	p, _ := net.PredictProba(x)
	var ok float64
	for i := range y {
		if (p[i] >= 0.5) == (y[i] == 1) {
			ok++
		}
	}
	return ok / float64(len(y))
}

func writeF64(path string, v []float64) error {
	b := make([]byte, 0, 8*len(v))
	for _, f := range v {
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
	}
	return os.WriteFile(path, b, 0o644)
}

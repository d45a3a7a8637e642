// Command fitbench is Gauntlet's side of bench/ml/lr_vs_sklearn.sh and
// bench/ml/mlp_vs_torch.sh: one run loads a data set into a frame, encodes
// it to a float32 matrix and fits logistic regression or the MLP, and prints
// one JSON line of timings for bench/lib/pairs.py. With -prepare it instead
// writes the encoded matrix for the peer's side: float64 for scikit-learn
// (its lbfgs solver converts to float64 anyway), float32 for PyTorch.
//
// Usage: fitbench -data adult:DIR | builtin:credit-risk?rows=N [-model mlp -epochs E -hidden H -batch B] [-prepare DIR -dtype f64|f32]
package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/matrix"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
)

func main() {
	data := flag.String("data", "adult:../shared/datasets/adult", "adult:DIR (DIR/adult.data) or a builtin: URI")
	prepare := flag.String("prepare", "", "write X.<dtype>, y.<dtype> and meta.json here and exit")
	dtype := flag.String("dtype", "f64", "f64 or f32: the type -prepare writes")
	kind := flag.String("model", "logreg", "logreg or mlp")
	epochs := flag.Int("epochs", 3, "MLP epochs")
	hidden := flag.Int("hidden", 32, "MLP hidden width (one layer)")
	batch := flag.Int("batch", 128, "MLP batch size")
	profile := flag.String("cpuprofile", "", "write a CPU profile of the fit here")
	flag.Parse()
	if *profile != "" {
		f, err := os.Create(*profile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "fitbench:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	cfg := model.Config{Kind: model.Kind(*kind), Seed: 1}
	if cfg.Kind == model.MLP {
		cfg.Epochs, cfg.Hidden, cfg.BatchSize = *epochs, []int{*hidden}, *batch
	}
	if err := run(*data, *prepare, *dtype, cfg); err != nil {
		fmt.Fprintln(os.Stderr, "fitbench:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

func load(data string) (*dataset.Frame, error) {
	if dir, ok := strings.CutPrefix(data, "adult:"); ok {
		return dataset.LoadFrame(filepath.Join(dir, "adult.data"),
			dataset.WithLabel("Y", ">50K,>50K."), dataset.WithSensitive("sex", "race"), dataset.WithIgnored("fnlwgt"))
	}
	return dataset.LoadFrame(data)
}

func run(data, prepare, dtype string, cfg model.Config) error {
	start := time.Now()
	f, err := load(data)
	if err != nil {
		return err
	}
	loaded := time.Now()
	enc, err := dataset.FitEncoderFrame(f, nil, dataset.EncoderOptions{})
	if err != nil {
		return err
	}
	x, err := enc.TransformFrame(f, nil)
	if err != nil {
		return err
	}
	y := f.LabelsOf(nil)
	f = nil // the matrix is all the fit needs
	encoded := time.Now()
	if prepare != "" {
		return write(prepare, dtype, x, y)
	}
	iters, loss := 0, 0.0
	net, err := model.TrainF32(context.Background(), x, y, cfg,
		model.WithProgress(func(p model.Progress) { iters, loss = p.Epoch, p.Loss }))
	if err != nil {
		return err
	}
	fit := time.Since(encoded)
	rows, cols := x.Dims()
	out := map[string]any{
		"seconds": fit.Seconds(), "load_seconds": loaded.Sub(start).Seconds(), "encode_seconds": encoded.Sub(loaded).Seconds(),
		"train_accuracy": accuracy(net, x, y), "rows": rows, "cols": cols,
	}
	if cfg.Kind == model.MLP {
		out["epoch_seconds"] = fit.Seconds() / float64(cfg.Epochs)
		out["final_loss"] = loss
	} else {
		out["iterations"] = iters
	}
	return json.NewEncoder(os.Stdout).Encode(out)
}

func accuracy(net *model.Network, x *matrix.Dense32, y []float32) float64 {
	p, err := net.PredictProbaF32(x)
	if err != nil {
		return math.NaN()
	}
	var ok float64
	for i := range y {
		if (p[i] >= 0.5) == (y[i] == 1) {
			ok++
		}
	}
	return ok / float64(len(y))
}

func write(dir, dtype string, x *matrix.Dense32, y []float32) error {
	rows, cols := x.Dims()
	if dtype != "f64" && dtype != "f32" {
		return fmt.Errorf("-dtype %q: want f64 or f32", dtype)
	}
	if err := writeFloats(filepath.Join(dir, "X."+dtype), x.Raw(), dtype == "f64"); err != nil {
		return err
	}
	if err := writeFloats(filepath.Join(dir, "y."+dtype), y, dtype == "f64"); err != nil {
		return err
	}
	b, err := json.Marshal(map[string]int{"rows": rows, "cols": cols})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "meta.json"), b, 0o644)
}

// writeFloats writes v little-endian, widened to float64 when wide.
func writeFloats(path string, v []float32, wide bool) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	var buf [8]byte
	for _, x := range v {
		if wide {
			binary.LittleEndian.PutUint64(buf[:], math.Float64bits(float64(x)))
			w.Write(buf[:])
		} else {
			binary.LittleEndian.PutUint32(buf[:4], math.Float32bits(x))
			w.Write(buf[:4])
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

package onnxmodel_test

import (
	"path/filepath"
	"testing"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
)

// BenchmarkPredictOneRow scores one row, what a model server does per
// request, with ONNX Runtime and with Gauntlet's own Go code, serially and
// from many goroutines.
func BenchmarkPredictOneRow(b *testing.B) {
	src := filepath.Join(b.TempDir(), "src")
	mltest.SaveLogReg(b, src, 1, nil)
	a, err := modelfile.Load(src)
	if err != nil {
		b.Fatal(err)
	}
	sc, err := a.Scorer()
	if err != nil {
		b.Fatal(err)
	}
	// One thread per call, as a model server runs it.
	opts := options(b)
	opts.Session.IntraOpThreads = 1
	m := exportLoad(b, src, opts)
	w := len(m.Manifest.Features)
	for _, c := range []struct {
		name    string
		predict func(*mat.Dense) ([]float64, error)
	}{{"onnx", m.PredictProba}, {"go", sc.PredictProba}} {
		b.Run(c.name, func(b *testing.B) {
			x := mat.NewDense(1, w, nil)
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.predict(x); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(c.name+"-parallel", func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				x := mat.NewDense(1, w, nil)
				for pb.Next() {
					if _, err := c.predict(x); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

package quantize_test

import (
	"context"
	"testing"

	"github.com/gauntlet-ml/gauntlet/internal/ml/mltest"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/quantize"
)

// BenchmarkPredict scores Adult's test set with the float MLP and its int8
// version; rows/s is the throughput to compare.
func BenchmarkPredict(b *testing.B) {
	a := mltest.LoadAdult(b)
	net, err := model.Train(context.Background(), a.XTrain, a.Train.Y, model.Config{Kind: model.MLP, Seed: 1, Epochs: 2, Hidden: []int{64, 32}})
	if err != nil {
		b.Fatal(err)
	}
	q, err := quantize.Quantize(net, a.XTrain, quantize.Options{})
	if err != nil {
		b.Fatal(err)
	}
	rows, _ := a.XTest.Dims()
	for name, s := range map[string]model.Scorer{"float64": net, "int8": q} {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				if _, err := s.PredictProba(a.XTest); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(rows)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

package mltest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
)

// SaveLogReg trains a small logistic regression on
// builtin:credit-risk?rows=600&seed=SEED&bias=0.3 and saves it under dir
// as a model directory, with params in its lineage (a server's negative
// label, say). Different seeds give different weights and digests. It
// returns the data it was trained on.
func SaveLogReg(t testing.TB, dir string, seed int, params map[string]any) *dataset.Dataset {
	t.Helper()
	d, err := dataset.Load(fmt.Sprintf("builtin:credit-risk?rows=600&seed=%d&bias=0.3", seed))
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
	net, err := model.Train(context.Background(), x, d.Y, model.Config{Kind: model.LogReg, MaxIter: 50})
	if err != nil {
		t.Fatal(err)
	}
	m := &modelfile.Manifest{
		Kind: model.LogReg, Schema: d.Schema, Features: enc.FeatureNames(), Preprocessing: enc, Threshold: 0.5,
		Lineage: modelfile.Lineage{DataDigest: d.Digest, Params: params, CreatedAt: time.Unix(0, 0).UTC()},
	}
	if _, err := modelfile.Save(dir, m, net.Tensors()); err != nil {
		t.Fatal(err)
	}
	return d
}

// Records rebuilds the first n rows of d as request records, without the
// label.
func Records(d *dataset.Dataset, n int) []map[string]any {
	out := make([]map[string]any, n)
	for r := range n {
		rec := map[string]any{}
		for name, col := range d.Numeric {
			rec[name] = col[r]
		}
		for name, col := range d.Categorical {
			rec[name] = col[r]
		}
		for name, col := range d.Sensitive {
			rec[name] = col[r]
		}
		out[r] = rec
	}
	return out
}

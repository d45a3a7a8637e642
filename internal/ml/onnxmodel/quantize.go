package onnxmodel

import (
	"fmt"
	"math"
	"os"
	"path/filepath"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/qdq"
)

// QuantizeReport compares the int8 model with the float one on labelled
// rows, as package quantize's report does for Gauntlet's own models.
type QuantizeReport struct {
	SizeBefore     int       `json:"size_before"` // model.onnx bytes
	SizeAfter      int       `json:"size_after"`
	AccuracyBefore float64   `json:"accuracy_before"`
	AccuracyAfter  float64   `json:"accuracy_after"`
	AccuracyDelta  float64   `json:"accuracy_delta"` // after − before
	Agreement      float64   `json:"agreement"`      // share of rows with the same decision
	MaxAbsDiff     float64   `json:"max_abs_diff"`   // largest |P_float − P_int8|
	Weights        qdq.Stats `json:"weights"`
	Digest         string    `json:"digest"` // of the int8 model, when saved
}

// Quantize writes an int8 copy of m into dir (which must not exist) when it
// passes the accuracy guard: on the encoded rows x with labels y, its
// accuracy at the manifest's threshold may fall by at most maxDrop. A model
// that fails the guard is not written; the report says by how much.
func Quantize(m *Model, dir string, x *mat.Dense, y []float64, maxDrop float64, o Options) (*QuantizeReport, error) {
	if m.Manifest.Quantization != modelfile.Float {
		return nil, fmt.Errorf("onnxmodel: quantize %s: already %s", m.Dir, m.Manifest.Quantization)
	}
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("onnxmodel: quantize %s: %s already exists", m.Dir, dir)
	}
	if rows, _ := x.Dims(); rows != len(y) || rows == 0 {
		return nil, fmt.Errorf("onnxmodel: quantize %s: %d labels for %d rows", m.Dir, len(y), rows)
	}
	before, err := m.Graph.Marshal()
	if err != nil {
		return nil, err
	}
	qg, st, err := qdq.Quantize(m.Graph)
	if err != nil {
		return nil, fmt.Errorf("onnxmodel: quantize %s: %w", m.Dir, err)
	}
	after, err := qg.Marshal()
	if err != nil {
		return nil, err
	}
	mf := *m.Manifest
	mf.Quantization = modelfile.Int8
	mf.Signature = SignatureOf(qg)
	mf.Lineage.ParentModel = m.Digest
	// Staged beside dir and renamed only once it passes the guard.
	stage := filepath.Join(filepath.Dir(dir), "."+filepath.Base(dir)+".quantize")
	os.RemoveAll(stage)
	extra, err := companions(m.Dir, mf.Lineage)
	if err != nil {
		return nil, fmt.Errorf("onnxmodel: quantize %s: %w", m.Dir, err)
	}
	digest, err := save(stage, &mf, after, extra)
	if err != nil {
		return nil, fmt.Errorf("onnxmodel: quantize %s: %w", m.Dir, err)
	}
	defer os.RemoveAll(stage)
	q, err := Load(stage, o)
	if err != nil {
		return nil, fmt.Errorf("onnxmodel: quantize %s: the int8 graph: %w", m.Dir, err)
	}
	defer q.Close()
	pf, err := m.PredictProba(x)
	if err != nil {
		return nil, err
	}
	pq, err := q.PredictProba(x)
	if err != nil {
		return nil, err
	}
	r := &QuantizeReport{SizeBefore: len(before), SizeAfter: len(after), Weights: *st}
	th := m.Manifest.Threshold
	var agree, cf, cq float64
	for i := range y {
		df, dq := pf[i] >= th, pq[i] >= th
		if df == dq {
			agree++
		}
		if df == (y[i] == 1) {
			cf++
		}
		if dq == (y[i] == 1) {
			cq++
		}
		r.MaxAbsDiff = max(r.MaxAbsDiff, math.Abs(pf[i]-pq[i]))
	}
	n := float64(len(y))
	r.Agreement, r.AccuracyBefore, r.AccuracyAfter = agree/n, cf/n, cq/n
	r.AccuracyDelta = r.AccuracyAfter - r.AccuracyBefore
	if -r.AccuracyDelta > maxDrop {
		return r, fmt.Errorf("onnxmodel: quantize %s: accuracy falls by %.4f (%.4f → %.4f), more than the %.4f allowed; the int8 model was not written", m.Dir, -r.AccuracyDelta, r.AccuracyBefore, r.AccuracyAfter, maxDrop)
	}
	if err := os.Rename(stage, dir); err != nil {
		return nil, fmt.Errorf("onnxmodel: quantize %s: %w", m.Dir, err)
	}
	r.Digest = digest
	return r, nil
}

package onnxmodel

import (
	"fmt"

	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/qdq"
)

// Int8 returns an int8 copy of m (QDQ weights, see package qdq), running
// but not saved: the caller scores it against m and saves it with SaveWith
// (GraphBytes, Manifest) only when it is good enough. Its manifest is m's
// with the quantization, the new graph's signature and m as the parent.
func Int8(m *Model, o Options) (*Model, *qdq.Stats, error) {
	if m.Manifest.Quantization != modelfile.Float {
		return nil, nil, fmt.Errorf("onnxmodel: quantize %s: already %s", m.Dir, m.Manifest.Quantization)
	}
	qg, st, err := qdq.Quantize(m.Graph)
	if err != nil {
		return nil, nil, fmt.Errorf("onnxmodel: quantize %s: %w", m.Dir, err)
	}
	raw, err := qg.Marshal()
	if err != nil {
		return nil, nil, fmt.Errorf("onnxmodel: quantize %s: %w", m.Dir, err)
	}
	mf := *m.Manifest
	mf.Quantization = modelfile.Int8
	mf.Signature = SignatureOf(qg)
	mf.Lineage.ParentModel = m.Digest
	if err := Check(&mf, qg); err != nil {
		return nil, nil, fmt.Errorf("onnxmodel: quantize %s: the int8 graph: %w", m.Dir, err)
	}
	q, err := start("", "", &mf, qg, raw, o)
	if err != nil {
		return nil, nil, fmt.Errorf("onnxmodel: quantize %s: the int8 graph: %w", m.Dir, err)
	}
	return q, st, nil
}

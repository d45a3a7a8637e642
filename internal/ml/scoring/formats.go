package scoring

import (
	"fmt"

	"gonum.org/v1/gonum/mat"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnxmodel"
)

// GauntletModel is a model in Gauntlet's own format. Format-specific tools
// (quantization, coefficients) reach the artifact through it.
type GauntletModel struct {
	Artifact *modelfile.Artifact
	scorer   model.Scorer
	info     *Info
}

func newGauntlet(a *modelfile.Artifact) (*GauntletModel, error) {
	s, err := a.Scorer()
	if err != nil {
		return nil, fmt.Errorf("scoring: %s: %w", a.Dir, err)
	}
	mf := a.Manifest
	return &GauntletModel{Artifact: a, scorer: s, info: &Info{
		Format: Gauntlet, Dir: a.Dir, Digest: a.Digest, Kind: string(mf.Kind), Quantization: mf.Quantization,
		Schema: mf.Schema, Signature: signature(mf.Preprocessing, mf.Features, true, mf.Schema),
		Threshold: mf.Threshold, Metrics: mf.Metrics, Lineage: mf.Lineage, Provider: "go", WeightsFile: modelfile.WeightsFile,
	}}, nil
}

// Info describes the model.
func (g *GauntletModel) Info() *Info { return g.info }

// Encoder is the manifest's preprocessing.
func (g *GauntletModel) Encoder() *dataset.Encoder { return g.Artifact.Manifest.Preprocessing }

// Encode standardises and one-hot encodes d as the model was trained.
func (g *GauntletModel) Encode(d *dataset.Dataset) (*mat.Dense, error) {
	return g.Artifact.Manifest.Preprocessing.Transform(d)
}

// PredictProba scores encoded rows.
func (g *GauntletModel) PredictProba(x *mat.Dense) ([]float64, error) {
	if _, c := x.Dims(); c != len(g.info.Signature.Features) {
		return nil, fmt.Errorf("scoring: %s: rows have %d features, the model takes %d", g.info.Dir, c, len(g.info.Signature.Features))
	}
	return g.scorer.PredictProba(x)
}

// Linear is the network of a float logistic regression.
func (g *GauntletModel) Linear() *model.Network {
	if n, ok := g.scorer.(*model.Network); ok && n.Kind == model.LogReg && len(n.Layers) == 1 {
		return n
	}
	return nil
}

// Close does nothing: the model lives in Go's heap.
func (g *GauntletModel) Close() error { return nil }

// ONNXModel is an ONNX model run by ONNX Runtime.
type ONNXModel struct {
	Model *onnxmodel.Model
	info  *Info
}

func newONNX(m *onnxmodel.Model) *ONNXModel {
	info := onnxInfo(m.Dir, m.Digest, m.Manifest)
	info.Provider, info.ProviderNote = m.Provider(), m.ProviderFallback()
	return &ONNXModel{Model: m, info: info}
}

func onnxInfo(dir, digest string, mf *onnxmodel.Manifest) *Info {
	return &Info{
		Format: ONNX, Dir: dir, Digest: digest, Kind: ONNX, Quantization: mf.Quantization, Schema: mf.Schema,
		Signature: signature(mf.Encoder(), mf.Features, mf.Preprocessing.Kind == onnxmodel.Encode, mf.Schema),
		Threshold: mf.Threshold, Metrics: mf.Metrics, Lineage: mf.Lineage, WeightsFile: onnxmodel.GraphFile,
	}
}

// Info describes the model.
func (o *ONNXModel) Info() *Info { return o.info }

// Encoder is the manifest's preprocessing as an encoder.
func (o *ONNXModel) Encoder() *dataset.Encoder { return o.Model.Manifest.Encoder() }

// Encode applies the manifest's preprocessing to d.
func (o *ONNXModel) Encode(d *dataset.Dataset) (*mat.Dense, error) { return o.Model.Manifest.Encode(d) }

// PredictProba scores encoded rows with ONNX Runtime.
func (o *ONNXModel) PredictProba(x *mat.Dense) ([]float64, error) { return o.Model.PredictProba(x) }

// Linear is the graph as a logistic regression when it is exactly one.
func (o *ONNXModel) Linear() *model.Network { return o.Model.Linear() }

// Close ends the ONNX Runtime session.
func (o *ONNXModel) Close() error { return o.Model.Close() }

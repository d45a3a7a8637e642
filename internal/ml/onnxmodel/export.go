package onnxmodel

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxpb"
	"github.com/gauntlet-ml/gauntlet/internal/ml/onnx/ort"
)

// Names of the graph's input and output in exported models, as the PyTorch
// example exports them too.
const (
	InputName  = "features"
	OutputName = "probability"
)

// Graph builds the ONNX graph of a float network: Gemm (weights [out, in],
// transB=1, as PyTorch's Linear exports) and Relu per hidden layer, then
// Sigmoid, over float32 weights; input [batch features], output [batch 1].
func Graph(net *model.Network) ([]byte, error) {
	if len(net.Layers) == 0 || net.Layers[len(net.Layers)-1].Out != 1 {
		return nil, fmt.Errorf("onnxmodel: export: a network ending in one output unit is needed")
	}
	g := &onnxpb.GraphProto{Name: proto.String("gauntlet_" + string(net.Kind))}
	prev := InputName
	for i, l := range net.Layers {
		w := make([]float32, len(l.W))
		for j, v := range l.W {
			w[j] = float32(v)
		}
		b := make([]float32, len(l.B))
		for j, v := range l.B {
			b[j] = float32(v)
		}
		wn, bn, out := fmt.Sprintf("layers.%d.weight", i), fmt.Sprintf("layers.%d.bias", i), fmt.Sprintf("layers.%d.out", i)
		g.Initializer = append(g.Initializer,
			onnx.TensorToProto(wn, ort.NewFloat([]int64{int64(l.Out), int64(l.In)}, w)),
			onnx.TensorToProto(bn, ort.NewFloat([]int64{int64(l.Out)}, b)))
		g.Node = append(g.Node, &onnxpb.NodeProto{
			Name: proto.String(fmt.Sprintf("gemm_%d", i)), OpType: proto.String("Gemm"),
			Input: []string{prev, wn, bn}, Output: []string{out},
			Attribute: []*onnxpb.AttributeProto{{Name: proto.String("transB"), Type: onnxpb.AttributeProto_INT.Enum(), I: proto.Int64(1)}},
		})
		prev = out
		if i < len(net.Layers)-1 {
			act := fmt.Sprintf("layers.%d.relu", i)
			g.Node = append(g.Node, &onnxpb.NodeProto{Name: proto.String(fmt.Sprintf("relu_%d", i)), OpType: proto.String("Relu"), Input: []string{prev}, Output: []string{act}})
			prev = act
		}
	}
	g.Node = append(g.Node, &onnxpb.NodeProto{Name: proto.String("sigmoid"), OpType: proto.String("Sigmoid"), Input: []string{prev}, Output: []string{OutputName}})
	g.Input = []*onnxpb.ValueInfoProto{matrix(InputName, onnx.Dim{Size: int64(net.NumFeatures()), Fixed: true})}
	g.Output = []*onnxpb.ValueInfoProto{matrix(OutputName, onnx.Dim{Size: 1, Fixed: true})}
	m := &onnxpb.ModelProto{
		IrVersion:    proto.Int64(8),
		ProducerName: proto.String("gauntlet"),
		OpsetImport:  []*onnxpb.OperatorSetIdProto{{Domain: proto.String(""), Version: proto.Int64(13)}},
		Graph:        g,
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// matrix declares a float tensor [batch cols].
func matrix(name string, cols onnx.Dim) *onnxpb.ValueInfoProto {
	dim := func(d onnx.Dim) *onnxpb.TensorShapeProto_Dimension {
		if d.Fixed {
			return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimValue{DimValue: d.Size}}
		}
		return &onnxpb.TensorShapeProto_Dimension{Value: &onnxpb.TensorShapeProto_Dimension_DimParam{DimParam: d.Param}}
	}
	return &onnxpb.ValueInfoProto{Name: proto.String(name), Type: &onnxpb.TypeProto{Value: &onnxpb.TypeProto_TensorType{
		TensorType: &onnxpb.TypeProto_Tensor{ElemType: proto.Int32(int32(ort.Float)), Shape: &onnxpb.TensorShapeProto{
			Dim: []*onnxpb.TensorShapeProto_Dimension{dim(onnx.Dim{Param: "batch"}), dim(cols)}}}}}}
}

// Export writes a float Gauntlet model as an ONNX model directory with the
// same schema, preprocessing, threshold, metrics and lineage; the lineage's
// parent is the source model's digest; the held-out split the source
// carries comes along. It returns the new digest.
func Export(a *modelfile.Artifact, dir string) (string, error) {
	if a.Manifest.Quantization != modelfile.Float {
		return "", fmt.Errorf("onnxmodel: export %s: a %s model; export the float model and quantize the ONNX one", a.Dir, a.Manifest.Quantization)
	}
	net, err := model.FromTensors(a.Manifest.Kind, a.Tensors)
	if err != nil {
		return "", fmt.Errorf("onnxmodel: export %s: %w", a.Dir, err)
	}
	graph, err := Graph(net)
	if err != nil {
		return "", err
	}
	g, err := onnx.Parse(graph)
	if err != nil {
		return "", fmt.Errorf("onnxmodel: export %s: %w", a.Dir, err)
	}
	src := a.Manifest
	lineage := src.Lineage
	lineage.ParentModel = a.Digest
	m := &Manifest{
		Signature:     SignatureOf(g),
		Output:        Output{Name: OutputName},
		Schema:        src.Schema,
		Preprocessing: Preprocessing{Kind: Encode, Encoder: src.Preprocessing},
		Features:      src.Features,
		Threshold:     src.Threshold,
		Metrics:       src.Metrics,
		Lineage:       lineage,
	}
	extra, err := companions(a.Dir, src.Lineage)
	if err != nil {
		return "", fmt.Errorf("onnxmodel: export %s: %w", a.Dir, err)
	}
	return save(dir, m, graph, extra)
}

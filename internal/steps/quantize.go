package steps

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
)

func init() {
	Register(Define(Type{
		Name: "quantize",
		Doc: "Converts a float model into an INT8 model of the same format, published to the artifact store: Gauntlet's own networks with " +
			"activation scales calibrated on data (default: the model's held-out split), ONNX graphs with int8 weights per output " +
			"channel (QDQ, which ONNX Runtime executes). Compares the two models' decisions on the same rows and fails, " +
			"permanently, when accuracy drops by more than max_accuracy_drop.",
		Kind: Activity,
	}, quantizeInputs{Scheme: modelfile.Int8}, runQuantize))
}

type quantizeInputs struct {
	Model           ArtifactRef `json:"model" required:"true" doc:"the float model, in Gauntlet's format or ONNX: an artifact pointer (a model step's output) or a model directory on the worker"`
	Data            string      `json:"data" doc:"calibration and check data: a path, file://, s3:// or https:// URL, an artifact pointer, or a builtin: URI (default: the model's held-out split)"`
	Scheme          string      `json:"scheme" doc:"int8 (the only scheme)"`
	MaxAccuracyDrop *float64    `json:"max_accuracy_drop" doc:"largest accepted accuracy loss, e.g. 0.005 (with prune: of pruning and quantization together)"`
	Prune           *float64    `json:"prune" doc:"magnitude-prune the hidden layers of an MLP in Gauntlet's format to this sparsity (e.g. 0.5) before quantizing"`
}

// QuantizeOutputs are the outputs of a quantize step.
type QuantizeOutputs struct {
	Model          string  `json:"model" doc:"the int8 model: an artifact pointer"`
	ModelDigest    string  `json:"model_digest" doc:"sha256 of the int8 model's SHA256SUMS, the digest serving reports"`
	Format         string  `json:"format" doc:"the model format, kept from the float model: gauntlet or onnx"`
	Provider       string  `json:"provider" doc:"what scored both models: go for Gauntlet's own format, the ONNX Runtime execution provider for an ONNX graph"`
	SizeBefore     int64   `json:"size_before" doc:"bytes of the float weights (model.onnx for an ONNX graph)"`
	SizeAfter      int64   `json:"size_after" doc:"bytes of the int8 weights (model.onnx for an ONNX graph)"`
	AccuracyBefore float64 `json:"accuracy_before" doc:"accuracy of the float model's decisions on the data"`
	AccuracyAfter  float64 `json:"accuracy_after" doc:"accuracy of the int8 model's decisions on the same rows"`
	Agreement      float64 `json:"agreement" doc:"share of rows on which both models decide alike"`
	MaxAbsDiff     float64 `json:"max_abs_diff" doc:"largest difference of the two models' scores"`
	Sparsity       float64 `json:"sparsity" doc:"share of zero hidden-layer weights"`
}

func runQuantize(ctx context.Context, env Env, in Input, a quantizeInputs) (*QuantizeOutputs, error) {
	if a.Scheme != modelfile.Int8 {
		return nil, badInput("scheme", "unsupported scheme %q (supported: %s)", a.Scheme, modelfile.Int8)
	}
	hasMax, hasPrune := a.MaxAccuracyDrop != nil, a.Prune != nil && *a.Prune > 0
	var maxDrop, sparsity float64
	if hasMax {
		maxDrop = *a.MaxAccuracyDrop
	}
	if a.Prune != nil {
		sparsity = *a.Prune
	}
	if !(sparsity >= 0 && sparsity < 1) {
		return nil, badInput("prune", "sparsity must be in [0, 1), got %v", sparsity)
	}
	lm, err := loadModel(ctx, env, "model", a.Model)
	if err != nil {
		return nil, err
	}
	defer lm.Close()
	if q := lm.Info().Quantization; q != modelfile.Float {
		return nil, badInput("model", "%s is already quantized (%s)", lm.Name, q)
	}
	d, _, err := lm.loadData(ctx, env, "data", a.Data)
	if err != nil {
		return nil, err
	}
	x, err := lm.encode(d)
	if err != nil {
		return nil, err
	}
	// Calibrating and checking on the same rows is the usual post-training
	// quantization practice: the scales are a handful of maxima, not
	// parameters that can overfit the labels. A pruned network is what
	// gets quantized, while the guard below compares with the original
	// float model: one check covers both.
	q, err := scoring.QuantizeInt8(ctx, lm.Model, x, scoring.QuantizeOptions{Prune: sparsity, Scoring: scoringOptions(env)})
	switch {
	case errors.Is(err, scoring.ErrNoRuntime):
		return nil, Permanent(kindNoRuntime, fmt.Errorf("quantize %s: %w", lm.Name, err))
	case err != nil && hasPrune:
		return nil, badInput("prune", "%v", err)
	case err != nil:
		return nil, Permanent(kindBadInput, fmt.Errorf("quantize %s: %w", lm.Name, err))
	}
	defer q.Close()
	pf, err := lm.predict(x)
	if err != nil {
		return nil, err
	}
	pq, err := q.PredictProba(x)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("quantize %s: the int8 copy: %w", lm.Name, err))
	}
	// Decisions go through the manifest, so a fairness policy the model
	// carries is part of what is compared.
	df, err := lm.decide(d, pf)
	if err != nil {
		return nil, err
	}
	dq, err := lm.decide(d, pq)
	if err != nil {
		return nil, err
	}
	y := labels(d)
	agree, maxDiff := 0, 0.0
	for i := range df {
		if df[i] == dq[i] {
			agree++
		}
		maxDiff = math.Max(maxDiff, math.Abs(pf[i]-pq[i]))
	}
	accBefore, accAfter := accuracy(y, df), accuracy(y, dq)
	if hasMax && accBefore-accAfter > maxDrop {
		what := "int8"
		if hasPrune {
			what = fmt.Sprintf("int8 pruned to sparsity %g", sparsity)
		}
		return nil, Permanent(kindGateFailed, fmt.Errorf("quantize: %s accuracy %.4f is %.4f below float %.4f on %s, more than max_accuracy_drop %g",
			what, accAfter, accBefore-accAfter, accBefore, d.Source, maxDrop))
	}

	saved, ok, err := earlierModel(ctx, env, in)
	if err != nil {
		return nil, fmt.Errorf("quantize: %w", err)
	}
	if ok {
		defer saved.Close()
	} else {
		info := lm.Info()
		rep, err := evaluate.Evaluate(d.Y, pq, evaluate.Options{Threshold: info.Threshold})
		if err != nil {
			return nil, Permanent(kindBadInput, fmt.Errorf("quantize: evaluate int8 model on %s: %w", d.Source, err))
		}
		metrics := finiteMetrics(rep.Metrics)
		metrics[evaluate.Accuracy] = accAfter
		lineage := q.Info().Lineage
		lineage.Params = derivedParams(info.Lineage.Params)
		rec := map[string]any{"scheme": modelfile.Int8, "calibration_data": d.Source, "calibration_rows": d.Len()}
		if q.Weights != nil {
			rec["weights"] = q.Weights
		}
		lineage.Params["quantization"] = rec
		if q.Pruning != nil {
			lineage.Params["pruning"] = q.Pruning
		}
		lineage.ParentModel = lm.digest()
		lineage.CreatedAt = time.Now().UTC()
		var done func()
		saved, _, done, err = publishModel(ctx, env, in, func(dir string) error {
			return saveDerived(dir, lm, q, metrics, lineage)
		})
		defer done()
		if err != nil {
			return nil, fmt.Errorf("quantize: %w", err)
		}
	}
	before, err := weightsSize(lm)
	if err != nil {
		return nil, err
	}
	after, err := weightsSize(saved)
	if err != nil {
		return nil, err
	}
	return &QuantizeOutputs{
		Model:          saved.Name,
		ModelDigest:    saved.digest(),
		Format:         saved.Info().Format,
		Provider:       lm.Info().Provider,
		SizeBefore:     before,
		SizeAfter:      after,
		AccuracyBefore: accBefore,
		AccuracyAfter:  accAfter,
		Agreement:      float64(agree) / float64(len(df)),
		MaxAbsDiff:     maxDiff,
		Sparsity:       q.Sparsity,
	}, nil
}

// weightsSize is the size of the file holding m's weights (its graph, for
// ONNX).
func weightsSize(m *loadedModel) (int64, error) {
	return fileSize(filepath.Join(m.Info().Dir, m.Info().WeightsFile))
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

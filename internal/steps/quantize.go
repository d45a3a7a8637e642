package steps

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/prune"
	"github.com/gauntlet-ml/gauntlet/internal/ml/quantize"
)

func init() {
	Register(Define(Type{
		Name: "quantize",
		Doc: "Converts a float model into an INT8 model, published to the artifact store, calibrating activation scales on data (default: the " +
			"model's held-out split) and comparing the two models' decisions on the same rows. Fails, permanently, when " +
			"accuracy drops by more than max_accuracy_drop.",
		Kind: Activity,
	}, quantizeInputs{Scheme: modelfile.Int8}, runQuantize))
}

type quantizeInputs struct {
	Model           ArtifactRef `json:"model" required:"true" doc:"the float model: an artifact pointer (a model step's output) or a model directory on the worker"`
	Data            string      `json:"data" doc:"calibration and check data: a path, file://, s3:// or https:// URL, an artifact pointer, or a builtin: URI (default: the model's held-out split)"`
	Scheme          string      `json:"scheme" doc:"int8 (the only scheme)"`
	MaxAccuracyDrop *float64    `json:"max_accuracy_drop" doc:"largest accepted accuracy loss, e.g. 0.005 (with prune: of pruning and quantization together)"`
	Prune           *float64    `json:"prune" doc:"magnitude-prune an MLP's hidden layers to this sparsity (e.g. 0.5) before quantizing"`
}

// QuantizeOutputs are the outputs of a quantize step.
type QuantizeOutputs struct {
	Model          string  `json:"model" doc:"the int8 model: an artifact pointer"`
	ModelDigest    string  `json:"model_digest" doc:"sha256 of the int8 model's SHA256SUMS, the digest serving reports"`
	SizeBefore     int64   `json:"size_before" doc:"bytes of the float weights"`
	SizeAfter      int64   `json:"size_after" doc:"bytes of the int8 weights"`
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
	hasMax, hasPrune := a.MaxAccuracyDrop != nil, a.Prune != nil
	var maxDrop, sparsity float64
	if hasMax {
		maxDrop = *a.MaxAccuracyDrop
	}
	if hasPrune {
		sparsity = *a.Prune
	}
	if hasPrune && !(sparsity >= 0 && sparsity < 1) {
		return nil, badInput("prune", "sparsity must be in [0, 1), got %v", sparsity)
	}
	lm, err := loadModel(ctx, env, "model", a.Model)
	if err != nil {
		return nil, err
	}
	if lm.Manifest.Quantization != modelfile.Float {
		return nil, badInput("model", "%s is already quantized (%s)", lm.Name, lm.Manifest.Quantization)
	}
	d, _, err := lm.loadData(ctx, env, "data", a.Data)
	if err != nil {
		return nil, err
	}
	x, err := lm.Manifest.Preprocessing.Transform(d)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("with.data %s: %w", d.Source, err))
	}
	net, err := model.FromTensors(lm.Manifest.Kind, lm.Tensors)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("with.model %s: %w", lm.Name, err))
	}
	// The pruned network is what gets quantized, while the guard below
	// compares with the original float model: one check covers both steps.
	qnet := net
	if hasPrune {
		if net.Kind != model.MLP {
			return nil, badInput("prune", "%s is %s; pruning applies to MLPs", lm.Name, net.Kind)
		}
		if qnet, err = prune.Prune(ctx, net, nil, nil, prune.Options{Sparsity: sparsity}); err != nil {
			return nil, Permanent(kindBadInput, fmt.Errorf("with.prune: %w", err))
		}
	}
	// Calibrating and checking on the same rows is the usual post-training
	// quantization practice: the scales are a handful of maxima, not
	// parameters that can overfit the labels.
	q, err := quantize.Quantize(qnet, x, quantize.Options{})
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("quantize %s: %w", lm.Name, err))
	}
	pf, err := net.PredictProba(x)
	if err != nil {
		return nil, err
	}
	pq, err := q.PredictProba(x)
	if err != nil {
		return nil, err
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
	if !ok {
		rep, err := evaluate.Evaluate(d.Y, pq, evaluate.Options{Threshold: lm.Manifest.Threshold})
		if err != nil {
			return nil, Permanent(kindBadInput, fmt.Errorf("quantize: evaluate int8 model on %s: %w", d.Source, err))
		}
		mf := *lm.Manifest
		mf.Quantization = modelfile.Int8
		mf.Metrics = finiteMetrics(rep.Metrics)
		mf.Metrics[evaluate.Accuracy] = accAfter
		mf.Lineage.Params = derivedParams(lm.Manifest.Lineage.Params)
		mf.Lineage.Params["quantization"] = map[string]any{"scheme": modelfile.Int8, "calibration_data": d.Source, "calibration_rows": d.Len()}
		if hasPrune {
			mf.Lineage.Params["pruning"] = map[string]any{"target_sparsity": sparsity, "schedule": prune.OneShot, "stats": prune.Measure(qnet)}
		}
		mf.Lineage.ParentModel = lm.digest()
		mf.Lineage.CreatedAt = time.Now().UTC()
		holdout, rows, err := parentHoldout(lm)
		if err != nil {
			return nil, err
		}
		var done func()
		saved, _, done, err = publishModel(ctx, env, in, func(dir string) error {
			_, err := saveModelDir(dir, &mf, q.Tensors(), holdout, rows)
			return err
		})
		defer done()
		if err != nil {
			return nil, fmt.Errorf("quantize: %w", err)
		}
	}
	before, err := fileSize(filepath.Join(lm.Dir, modelfile.WeightsFile))
	if err != nil {
		return nil, err
	}
	after, err := fileSize(filepath.Join(saved.Dir, modelfile.WeightsFile))
	if err != nil {
		return nil, err
	}
	return &QuantizeOutputs{
		Model:          saved.Name,
		ModelDigest:    saved.digest(),
		SizeBefore:     before,
		SizeAfter:      after,
		AccuracyBefore: accBefore,
		AccuracyAfter:  accAfter,
		Agreement:      float64(agree) / float64(len(df)),
		MaxAbsDiff:     maxDiff,
		Sparsity:       prune.Measure(qnet).Sparsity,
	}, nil
}

func fileSize(path string) (int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return fi.Size(), nil
}

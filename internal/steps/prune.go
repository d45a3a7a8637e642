package steps

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/ml/prune"
	"gonum.org/v1/gonum/mat"
)

func init() {
	Register(Type{
		Name: "prune",
		Doc: "Magnitude-prunes a float MLP's hidden layers to a target sparsity, in one shot or gradually (cubic schedule) " +
			"over fine-tuning epochs on train_data, pruned weights held at zero. Reports sparsity, size and the accuracy " +
			"change on data (default: the held-out split); fails permanently when accuracy drops by more than max_accuracy_drop.",
		Kind: Activity,
		Inputs: []InputSpec{
			{Name: "model", Required: true, Doc: "float MLP model directory"},
			{Name: "sparsity", Required: true, Doc: "share of hidden-layer weights to remove, e.g. 0.8"},
			{Name: "schedule", Doc: "oneshot (default) or gradual"},
			{Name: "epochs", Doc: "fine-tuning epochs (default 0 for oneshot, 3 for gradual)"},
			{Name: "train_data", Doc: "fine-tuning data: CSV path or builtin: URI (required with epochs)"},
			{Name: "data", Doc: "check data (default: the model's held-out split)"},
			{Name: "max_accuracy_drop", Doc: "largest accepted accuracy loss, e.g. 0.01"},
			{Name: "seed", Doc: "seed of fine-tuning (default 1)"},
		},
		Outputs: []string{"model", "model_digest", "sparsity", "nonzero", "weights", "size_dense_bytes", "size_sparse_bytes",
			"accuracy_before", "accuracy_after", "accuracy_change"},
		Run: runPrune,
	})
}

func runPrune(ctx context.Context, env Env, in Input) (map[string]any, error) {
	path, err := requireString(in, "model")
	if err != nil {
		return nil, err
	}
	var o prune.Options
	if o.Sparsity, err = floatOr(in, "sparsity", -1); err != nil {
		return nil, err
	}
	if !(o.Sparsity >= 0 && o.Sparsity < 1) {
		return nil, badInput("sparsity", "required, in [0, 1)")
	}
	if o.Schedule, err = stringOr(in, "schedule", prune.OneShot); err != nil {
		return nil, err
	}
	defEpochs := 0
	if o.Schedule == prune.Gradual {
		defEpochs = 3
	}
	if o.Epochs, err = intOr(in, "epochs", defEpochs); err != nil {
		return nil, err
	}
	seed, err := intOr(in, "seed", 1)
	if err != nil {
		return nil, err
	}
	o.Seed = uint64(max(seed, 0))
	maxDrop, hasMax, err := argFloat(in, "max_accuracy_drop")
	if err != nil {
		return nil, err
	}
	trainSrc, _, err := argString(in, "train_data")
	if err != nil {
		return nil, err
	}
	src, _, err := argString(in, "data")
	if err != nil {
		return nil, err
	}
	lm, err := loadModel("model", path)
	if err != nil {
		return nil, err
	}
	if lm.Manifest.Quantization != modelfile.Float {
		return nil, badInput("model", "%s is quantized (%s); prune the float model", lm.Dir, lm.Manifest.Quantization)
	}
	net, err := model.FromTensors(lm.Manifest.Kind, lm.Tensors)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("with.model %s: %w", lm.Dir, err))
	}
	if net.Kind != model.MLP {
		return nil, badInput("model", "%s is %s; pruning applies to MLPs", lm.Dir, net.Kind)
	}
	enc := lm.Manifest.Preprocessing
	var tx *mat.Dense
	var ty []float64
	if o.Epochs > 0 {
		if trainSrc == "" {
			return nil, badInput("train_data", "required to fine-tune (epochs %d)", o.Epochs)
		}
		td, err := lm.loadData("train_data", trainSrc)
		if err != nil {
			return nil, err
		}
		if tx, err = enc.Transform(td); err != nil {
			return nil, Permanent(kindBadInput, fmt.Errorf("with.train_data %s: %w", td.Source, err))
		}
		ty = td.Y
	}
	pruned, err := prune.Prune(ctx, net, tx, ty, o)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, Permanent(kindBadInput, fmt.Errorf("prune %s: %w", lm.Dir, err))
	}
	d, err := lm.loadData("data", src)
	if err != nil {
		return nil, err
	}
	x, err := enc.Transform(d)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("with.data %s: %w", d.Source, err))
	}
	pf, err := net.PredictProba(x)
	if err != nil {
		return nil, err
	}
	pp, err := pruned.PredictProba(x)
	if err != nil {
		return nil, err
	}
	df, err := lm.decide(d, pf)
	if err != nil {
		return nil, err
	}
	dp, err := lm.decide(d, pp)
	if err != nil {
		return nil, err
	}
	y := labels(d)
	accBefore, accAfter := accuracy(y, df), accuracy(y, dp)
	if hasMax && accBefore-accAfter > maxDrop {
		return nil, Permanent(kindGateFailed, fmt.Errorf("prune: accuracy %.4f at sparsity %g is %.4f below %.4f on %s, more than max_accuracy_drop %g",
			accAfter, o.Sparsity, accBefore-accAfter, accBefore, d.Source, maxDrop))
	}
	stats := prune.Measure(pruned)
	dir, err := filepath.Abs(filepath.Join(env.StateDir(), "models", safeName(in.RunID)+"-"+safeName(in.StepID)+"-"+inputsDigest(in)))
	if err != nil {
		return nil, err
	}
	var digest string
	if saved, err := loadModel("model", dir); err == nil {
		digest = saved.Digest
	} else if _, serr := os.Stat(dir); serr == nil {
		return nil, fmt.Errorf("prune: an earlier attempt's model %s: %w", dir, err)
	} else {
		rep, err := evaluate.Evaluate(d.Y, pp, evaluate.Options{Threshold: lm.Manifest.Threshold})
		if err != nil {
			return nil, Permanent(kindBadInput, fmt.Errorf("prune: evaluate pruned model on %s: %w", d.Source, err))
		}
		mf := *lm.Manifest
		mf.Metrics = finiteMetrics(rep.Metrics)
		mf.Metrics[evaluate.Accuracy] = accAfter
		mf.Lineage.Params = derivedParams(lm.Manifest.Lineage.Params)
		mf.Lineage.Params["pruning"] = map[string]any{"target_sparsity": o.Sparsity, "schedule": o.Schedule, "epochs": o.Epochs,
			"train_data": trainSrc, "stats": stats}
		mf.Lineage.ParentModel = lm.Digest
		mf.Lineage.CreatedAt = time.Now().UTC()
		holdout, rows, err := parentHoldout(lm)
		if err != nil {
			return nil, err
		}
		if digest, err = saveModelDir(dir, &mf, pruned.Tensors(), holdout, rows); err != nil {
			return nil, fmt.Errorf("prune: save %s: %w", dir, err)
		}
	}
	return map[string]any{
		"model":             dir,
		"model_digest":      digest,
		"sparsity":          stats.Sparsity,
		"nonzero":           float64(stats.NonZero),
		"weights":           float64(stats.Weights),
		"size_dense_bytes":  float64(stats.DenseBytes),
		"size_sparse_bytes": float64(stats.SparseBytes),
		"accuracy_before":   accBefore,
		"accuracy_after":    accAfter,
		"accuracy_change":   accAfter - accBefore,
	}, nil
}

package steps

import (
	"context"
	"fmt"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/artifact/workspace"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/prune"
	"github.com/gauntlet-ml/gauntlet/internal/ml/scoring"
	"gonum.org/v1/gonum/mat"
)

func init() {
	Register(Define(Type{
		Name: "prune",
		Doc: "Magnitude-prunes a float MLP's hidden layers to a target sparsity, in one shot or gradually (cubic schedule) " +
			"over fine-tuning epochs on train_data, pruned weights held at zero. Reports sparsity, size and the accuracy " +
			"change on data (default: the held-out split); fails permanently when accuracy drops by more than max_accuracy_drop.",
		Kind: Activity,
	}, pruneInputs{Schedule: prune.OneShot, Seed: 1}, runPrune))
}

type pruneInputs struct {
	Model           ArtifactRef `json:"model" required:"true" doc:"the float MLP: an artifact pointer (a model step's output) or a model directory on the worker"`
	Sparsity        *float64    `json:"sparsity" required:"true" doc:"share of hidden-layer weights to remove, e.g. 0.8"`
	Schedule        string      `json:"schedule" doc:"oneshot (default) or gradual"`
	Epochs          *int        `json:"epochs" doc:"fine-tuning epochs (default 0 for oneshot, 3 for gradual)"`
	TrainData       string      `json:"train_data" doc:"fine-tuning data: a path, file://, s3:// or https:// URL, an artifact pointer, or a builtin: URI (required with epochs)"`
	Data            string      `json:"data" doc:"check data, given as train_data is (default: the model's held-out split)"`
	MaxAccuracyDrop *float64    `json:"max_accuracy_drop" doc:"largest accepted accuracy loss, e.g. 0.01"`
	Seed            int         `json:"seed" doc:"seed of fine-tuning (default 1)"`
}

// PruneOutputs are the outputs of a prune step.
type PruneOutputs struct {
	Model           string  `json:"model" doc:"the pruned model: an artifact pointer"`
	ModelDigest     string  `json:"model_digest" doc:"sha256 of the pruned model's SHA256SUMS, the digest serving reports"`
	Sparsity        float64 `json:"sparsity" doc:"share of zero hidden-layer weights"`
	NonZero         int     `json:"nonzero" doc:"hidden-layer weights left"`
	Weights         int     `json:"weights" doc:"hidden-layer weights in all"`
	SizeDenseBytes  int64   `json:"size_dense_bytes" doc:"bytes of the weights stored dense"`
	SizeSparseBytes int64   `json:"size_sparse_bytes" doc:"bytes of the weights stored sparse"`
	AccuracyBefore  float64 `json:"accuracy_before" doc:"accuracy of the float model on the data"`
	AccuracyAfter   float64 `json:"accuracy_after" doc:"accuracy of the pruned model on the same rows"`
	AccuracyChange  float64 `json:"accuracy_change" doc:"after minus before"`
}

func runPrune(ctx context.Context, env Env, in Input, a pruneInputs) (*PruneOutputs, error) {
	o := prune.Options{Sparsity: *a.Sparsity, Schedule: a.Schedule, Seed: uint64(max(a.Seed, 0))}
	if !(o.Sparsity >= 0 && o.Sparsity < 1) {
		return nil, badInput("sparsity", "required, in [0, 1)")
	}
	if a.Epochs != nil {
		o.Epochs = *a.Epochs
	} else if o.Schedule == prune.Gradual {
		o.Epochs = 3
	}
	hasMax := a.MaxAccuracyDrop != nil
	var maxDrop float64
	if hasMax {
		maxDrop = *a.MaxAccuracyDrop
	}
	trainSrc, src := a.TrainData, a.Data
	lm, err := loadModel(ctx, env, "model", a.Model)
	if err != nil {
		return nil, err
	}
	defer lm.Close()
	net, err := scoring.Network(lm.Model)
	if err != nil {
		return nil, badInput("model", "%s: %v", lm.Name, err)
	}
	if net.Kind != model.MLP {
		return nil, badInput("model", "%s is %s; pruning applies to MLPs", lm.Name, net.Kind)
	}
	var tx *mat.Dense
	var ty []float64
	if o.Epochs > 0 {
		if trainSrc == "" {
			return nil, badInput("train_data", "required to fine-tune (epochs %d)", o.Epochs)
		}
		td, _, err := lm.loadData(ctx, env, "train_data", trainSrc)
		if err != nil {
			return nil, err
		}
		if tx, err = lm.Encode(td); err != nil {
			return nil, Permanent(kindBadInput, fmt.Errorf("with.train_data %s: %w", td.Source, err))
		}
		ty = td.Y
	}
	pruned, err := prune.Prune(ctx, net, tx, ty, o)
	if err != nil {
		if ctx.Err() != nil {
			return nil, err
		}
		return nil, Permanent(kindBadInput, fmt.Errorf("prune %s: %w", lm.Name, err))
	}
	d, _, err := lm.loadData(ctx, env, "data", src)
	if err != nil {
		return nil, err
	}
	x, err := lm.encode(d)
	if err != nil {
		return nil, err
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
	saved, ok, err := earlierModel(ctx, env, in)
	if err != nil {
		return nil, fmt.Errorf("prune: %w", err)
	}
	if ok {
		defer saved.Close()
	} else {
		info := lm.Info()
		rep, err := evaluate.Evaluate(d.Y, pp, evaluate.Options{Threshold: info.Threshold})
		if err != nil {
			return nil, Permanent(kindBadInput, fmt.Errorf("prune: evaluate pruned model on %s: %w", d.Source, err))
		}
		metrics := finiteMetrics(rep.Metrics)
		metrics[evaluate.Accuracy] = accAfter
		lineage := info.Lineage
		lineage.Params = derivedParams(info.Lineage.Params)
		lineage.Params["pruning"] = map[string]any{"target_sparsity": o.Sparsity, "schedule": o.Schedule, "epochs": o.Epochs,
			"train_data": workspace.Redact(trainSrc), "stats": stats}
		lineage.ParentModel = lm.digest()
		lineage.CreatedAt = time.Now().UTC()
		pm, err := scoring.Reweighted(lm.Model, pruned)
		if err != nil {
			return nil, Permanent(kindBadInput, fmt.Errorf("prune %s: %w", lm.Name, err))
		}
		var done func()
		saved, _, done, err = publishModel(ctx, env, in, func(dir string) error {
			return saveDerived(dir, lm, pm, metrics, lineage)
		})
		defer done()
		if err != nil {
			return nil, fmt.Errorf("prune: %w", err)
		}
	}
	return &PruneOutputs{
		Model:           saved.Name,
		ModelDigest:     saved.digest(),
		Sparsity:        stats.Sparsity,
		NonZero:         stats.NonZero,
		Weights:         stats.Weights,
		SizeDenseBytes:  int64(stats.DenseBytes),
		SizeSparseBytes: int64(stats.SparseBytes),
		AccuracyBefore:  accBefore,
		AccuracyAfter:   accAfter,
		AccuracyChange:  accAfter - accBefore,
	}, nil
}

package steps

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/gauntlet-ml/gauntlet/internal/checkpoint"
	"github.com/gauntlet-ml/gauntlet/internal/gpu"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/dp"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/fairness"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"github.com/gauntlet-ml/gauntlet/internal/ml/modelfile"
	"github.com/gauntlet-ml/gauntlet/internal/stepio"
)

func init() {
	Register(Define(Type{
		Name: "train",
		Doc: "Trains a binary classifier (logistic regression or MLP) on tabular data and publishes it to the artifact store " +
			"as a model directory, with the held-out split as " + HoldoutFile + " inside it; outputs its pointer. A retry of " +
			"the same run, step and inputs, on any worker, reuses the published model. MLP and DP-SGD training publish a " +
			"checkpoint to the store after every epoch, and an interrupted run (a lost node replaced on another host) " +
			"resumes from the last one.",
		Kind: Activity,
	}, trainInputs{Model: "logistic", Seed: 1, TestFraction: 0.2, ClassWeight: "none"}, runTrain))
}

type trainInputs struct {
	Data          string    `json:"data" required:"true" doc:"the data: a path, file://, s3:// or https:// URL, an artifact pointer, or a builtin: URI"`
	Label         string    `json:"label" required:"true" doc:"label column"`
	PositiveLabel []string  `json:"positive_label" required:"true" doc:"label values of the positive class (list or comma-separated)"`
	Model         string    `json:"model" doc:"logistic (default) or mlp"`
	Sensitive     []string  `json:"sensitive" doc:"sensitive columns (list or comma-separated): kept for fairness, not used as features"`
	Ignore        []string  `json:"ignore" doc:"columns to drop from the features (list or comma-separated)"`
	Seed          int       `json:"seed" doc:"seed of the split and of training (default 1)"`
	Epochs        int       `json:"epochs" doc:"MLP epochs (default 20)"`
	Hidden        []int     `json:"hidden" doc:"MLP hidden layer widths, e.g. 32,16 (default 32)"`
	MaxIter       int       `json:"max_iter" doc:"logistic regression iterations (default 1000)"`
	TestFraction  float64   `json:"test_fraction" doc:"share of rows held out for evaluation (default 0.2)"`
	ClassWeight   string    `json:"class_weight" doc:"balanced or none (default none)"`
	Reweigh       bool      `json:"reweigh" doc:"weight training rows by sensitive group × label (Kamiran–Calders) so the label is independent of the group"`
	DP            *dpInputs `json:"dp" doc:"train with DP-SGD: {epsilon, delta (1e-5), clip (1), noise_multiplier, batch_size (256), learning_rate, insecure_reproducible (false)}; epsilon alone finds the noise for it, noise_multiplier alone reports the ε spent, both refuse a run over budget. The noise is fresh for every run; insecure_reproducible: true draws it from seed instead, which repeats a run exactly but voids the guarantee (the manifest and the report say so)"`
	DPEpsilon     *float64  `json:"dp_epsilon" doc:"flat form of dp.epsilon"`
	DPDelta       *float64  `json:"dp_delta" doc:"flat form of dp.delta"`
	DPClip        *float64  `json:"dp_clip" doc:"flat form of dp.clip"`
	DPNoise       *float64  `json:"dp_noise_multiplier" doc:"flat form of dp.noise_multiplier"`
}

type dpInputs struct {
	Epsilon         *float64 `json:"epsilon"`
	Delta           *float64 `json:"delta"`
	Clip            *float64 `json:"clip"`
	NoiseMultiplier *float64 `json:"noise_multiplier"`
	BatchSize       *int     `json:"batch_size"`
	LearningRate    *float64 `json:"learning_rate"`
	// InsecureReproducible is dp.Options.InsecureReproducible.
	InsecureReproducible bool `json:"insecure_reproducible"`
}

// TrainOutputs are the outputs of a train step.
type TrainOutputs struct {
	Model            string                  `json:"model" doc:"the model: an artifact pointer to its directory in the store"`
	ModelDigest      string                  `json:"model_digest" doc:"sha256 of the model's SHA256SUMS (covering manifest and weights), the digest serving reports"`
	DataDigest       string                  `json:"data_digest" doc:"digest of the training data's content (columns and values)"`
	Rows             int                     `json:"rows" doc:"rows of data, held-out ones included"`
	Features         int                     `json:"features" doc:"encoded feature columns"`
	Holdout          string                  `json:"holdout" doc:"the held-out split (holdout.csv of the model directory): an artifact pointer"`
	Metrics          map[string]stepio.Float `json:"metrics" doc:"metrics on the held-out split"`
	Reused           bool                    `json:"reused" doc:"an earlier attempt's saved model was returned"`
	Privacy          any                     `json:"privacy,omitempty" doc:"the DP-SGD guarantee (ε, δ), with dp"`
	ResumedFromEpoch *int                    `json:"resumed_from_epoch,omitempty" doc:"MLP and DP-SGD: the epochs earlier attempts had completed, on any host, when this one resumed from their checkpoint in the store; 0: trained from scratch (logistic regression keeps no checkpoints and reports none)"`
	Checkpoint       string                  `json:"checkpoint,omitempty" doc:"MLP and DP-SGD: the ref of the step's checkpoint in the artifact store (checkpoints/RUN/STEP/KEY), moved after every epoch"`
}

type trainArgs struct {
	data, label                 string
	positive, sensitive, ignore []string
	cfg                         model.Config
	testFraction                float64
	balanced, reweigh           bool
	dp                          *dp.Options
}

func parseTrain(in trainInputs) (*trainArgs, error) {
	a := &trainArgs{data: in.Data, label: in.Label, positive: in.PositiveLabel, sensitive: in.Sensitive, ignore: in.Ignore,
		testFraction: in.TestFraction, reweigh: in.Reweigh}
	switch in.Model {
	case "logistic", "logreg":
		a.cfg.Kind = model.LogReg
	case "mlp":
		a.cfg.Kind = model.MLP
	default:
		return nil, badInput("model", "unknown model %q (known: logistic, mlp)", in.Model)
	}
	if in.Seed < 0 {
		return nil, badInput("seed", "must not be negative")
	}
	a.cfg.Seed = uint64(in.Seed)
	a.cfg.Epochs, a.cfg.MaxIter = in.Epochs, in.MaxIter
	for _, h := range in.Hidden {
		if h <= 0 {
			return nil, badInput("hidden", "want positive integers such as 32,16, got %d", h)
		}
	}
	a.cfg.Hidden = in.Hidden
	if a.testFraction <= 0 || a.testFraction >= 1 {
		return nil, badInput("test_fraction", "must be in (0, 1), got %v", a.testFraction)
	}
	switch in.ClassWeight {
	case "balanced":
		a.balanced = true
	case "none":
	default:
		return nil, badInput("class_weight", "unknown value %q (known: balanced, none)", in.ClassWeight)
	}
	var err error
	if a.dp, err = parseDP(in); err != nil {
		return nil, err
	}
	if a.dp != nil && (a.balanced || a.reweigh) {
		// Row weights scale per-example gradients past the clip norm the
		// accountant assumes.
		return nil, badInput("dp", "cannot be combined with class_weight or reweigh")
	}
	return a, nil
}

// parseDP reads the dp mapping or the flat dp_* inputs (not both); nil
// means no differential privacy.
func parseDP(in trainInputs) (*dp.Options, error) {
	flat := in.DPEpsilon != nil || in.DPDelta != nil || in.DPClip != nil || in.DPNoise != nil
	d := in.DP
	switch {
	case d != nil && flat:
		return nil, badInput("dp", "give either dp or the dp_* inputs, not both")
	case d == nil && !flat:
		return nil, nil
	case d == nil:
		d = &dpInputs{Epsilon: in.DPEpsilon, Delta: in.DPDelta, Clip: in.DPClip, NoiseMultiplier: in.DPNoise}
	}
	var batch *float64
	if d.BatchSize != nil {
		b := float64(*d.BatchSize)
		batch = &b
	}
	var o dp.Options
	for _, f := range []struct {
		key string
		v   *float64
		dst *float64
	}{{"epsilon", d.Epsilon, &o.Epsilon}, {"delta", d.Delta, &o.Delta}, {"clip", d.Clip, &o.Clip},
		{"noise_multiplier", d.NoiseMultiplier, &o.NoiseMultiplier}, {"batch_size", batch, nil}, {"learning_rate", d.LearningRate, &o.LearningRate}} {
		if f.v == nil {
			continue
		}
		if !(*f.v > 0) {
			return nil, badInput("dp."+f.key, "want a positive number, got %v", *f.v)
		}
		if f.dst != nil {
			*f.dst = *f.v
		}
	}
	if o.Epsilon == 0 && o.NoiseMultiplier == 0 {
		return nil, badInput("dp", "needs epsilon or noise_multiplier")
	}
	if d.BatchSize != nil {
		o.BatchSize = *d.BatchSize
	}
	o.InsecureReproducible = d.InsecureReproducible
	return &o, nil
}

func runTrain(ctx context.Context, env Env, in Input, args trainInputs) (*TrainOutputs, error) {
	a, err := parseTrain(args)
	if err != nil {
		return nil, err
	}
	// A previous attempt got as far as publishing: training again would
	// only produce a second model for the same step.
	if m, ok, err := earlierModel(ctx, env, in); err != nil {
		return nil, err
	} else if ok {
		env.Logger().Info("train: reusing the model an earlier attempt published", "model", m.Name)
		return trainOutputs(m, true)
	}

	opts := []dataset.Option{dataset.WithLabel(a.label, a.positive...)}
	if len(a.sensitive) > 0 {
		opts = append(opts, dataset.WithSensitive(a.sensitive...))
	}
	if len(a.ignore) > 0 {
		opts = append(opts, dataset.WithIgnored(a.ignore...))
	}
	// A frame keeps the data column-wise in float32 and codes, and the
	// split is two index lists, so large data sets fit in memory.
	d, data, err := loadFrame(ctx, env, "data", a.data, opts...)
	if err != nil {
		return nil, err
	}
	trainRows, testRows, err := d.Split(a.testFraction, a.cfg.Seed)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("with.test_fraction: split %s: %w", data.Source, err))
	}
	enc, err := dataset.FitEncoderFrame(d, trainRows, dataset.EncoderOptions{})
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("with.data %s: %w", data.Source, err))
	}
	x, err := enc.TransformFrame(d, trainRows)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("with.data %s: %w", data.Source, err))
	}

	gpus := newGPUSampler(trainGPU())
	defer gpus.close()
	progress := func(p model.Progress) {
		d := map[string]any{"epoch": p.Epoch, "epochs": p.Epochs, "loss": num(p.Loss)}
		if g := gpus.summary(p.Epoch); g != "" {
			d["gpu"] = g
		}
		env.Progress(d)
	}
	topts := []model.TrainOption{model.WithProgress(progress)}
	// MLP and DP-SGD training keep a checkpoint per epoch in the store:
	// the attempt that replaces a lost node resumes from it on any host.
	var ckpt *checkpoint.Dir
	resumedFrom := 0
	checkpoints := model.Checkpoints{}
	if a.cfg.Kind == model.MLP || a.dp != nil {
		if ckpt, err = openCheckpoint(ctx, env, in, filepath.Join(env.Dir(), "checkpoints")); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		checkpoints = model.Checkpoints{
			Dir: ckpt.Path(),
			Saved: func(epoch int) error {
				return publishCheckpoint(ctx, env, ckpt, fmt.Sprintf("epoch %d", epoch))
			},
			Resumed: func(epoch int) {
				resumedFrom = epoch
				env.Logger().Info("train: resuming from the checkpoint", "epoch", epoch, "ref", ckpt.Name())
			},
		}
		topts = append(topts, model.WithCheckpoints(checkpoints))
	}
	if a.balanced {
		topts = append(topts, model.WithBalancedClassWeights())
	}
	if a.reweigh {
		w, err := reweighing(d.Subset(trainRows), a.sensitive)
		if err != nil {
			return nil, err
		}
		topts = append(topts, model.WithSampleWeights(w))
	}
	var net *model.Network
	var guarantee *dp.Guarantee
	if a.dp != nil {
		o := *a.dp
		o.Progress = progress
		o.Checkpoints = checkpoints
		net, guarantee, err = dp.Train(ctx, x.Float64(), d.Subset(trainRows).Y, a.cfg, o)
		if errors.Is(err, dp.ErrBudget) {
			return nil, Permanent(kindPrivacyBudget, fmt.Errorf("train on %s: %w", data.Source, err))
		}
	} else {
		net, err = model.TrainF32(ctx, x, d.LabelsOf(trainRows), a.cfg, topts...)
	}
	var stepErr *Error
	switch {
	case err == nil:
	case ctx.Err() != nil:
		return nil, err
	case errors.As(err, &stepErr):
		// A checkpoint that could not be kept says for itself.
		return nil, fmt.Errorf("train: %w", err)
	default:
		return nil, Permanent(kindBadInput, fmt.Errorf("train on %s: %w", data.Source, err))
	}

	xt, err := enc.TransformFrame(d, testRows)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("with.data %s: held-out rows: %w", data.Source, err))
	}
	scores, err := net.PredictProbaF32(xt)
	if err != nil {
		return nil, err
	}
	yTest := make([]float64, len(testRows))
	for i, r := range testRows {
		yTest[i] = float64(d.Y[r])
	}
	rep, err := evaluate.Evaluate(yTest, scores, evaluate.Options{})
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("evaluate held-out rows of %s: %w", data.Source, err))
	}

	m := &modelfile.Manifest{
		Kind:          a.cfg.Kind,
		Schema:        d.Schema,
		Features:      enc.FeatureNames(),
		Preprocessing: enc,
		Threshold:     0.5,
		Metrics:       finiteMetrics(rep.Metrics),
		Lineage: modelfile.Lineage{
			DataDigest: d.Digest,
			DataSource: data.Source,
			Params: map[string]any{
				// The file's bytes as read, beside the content digest
				// above, which ignores formatting.
				paramData:       dataRecord{Source: data.Source, SHA256: string(data.Digest)},
				"config":        a.cfg,
				"test_fraction": a.testFraction,
				"class_weight":  map[bool]string{true: "balanced", false: "none"}[a.balanced],
				"reweigh":       a.reweigh,
				"sensitive":     d.Schema.Names(dataset.Sensitive),
				"rows":          d.Len(),
				"train_rows":    len(trainRows),
				"run_id":        in.RunID,
				"step_id":       in.StepID,
			},
			CreatedAt: time.Now().UTC(),
		},
	}
	if guarantee != nil {
		m.Lineage.Params[paramPrivacy] = guarantee
	}
	saved, reused, done, err := publishModel(ctx, env, in, func(dir string) error {
		_, err := saveTrainedModel(dir, m, net.Tensors(), d, testRows)
		return err
	})
	defer done()
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	out, err := trainOutputs(saved, reused)
	if err == nil && ckpt != nil && !reused {
		out.ResumedFromEpoch = &resumedFrom
		out.Checkpoint = ckpt.Name()
	}
	return out, err
}

// kindPrivacyBudget is the error kind of a DP run whose noise cannot keep
// it within its ε.
const kindPrivacyBudget = "PrivacyBudgetExceeded"

// paramPrivacy is the manifest's record of a DP guarantee (dp.Guarantee).
const paramPrivacy = "differential_privacy"

// paramData is the manifest's record of the training data file.
const paramData = "data"

// dataRecord names the data a model was trained on and the SHA-256 of its
// bytes (empty for generated data).
type dataRecord struct {
	Source string `json:"source"`
	SHA256 string `json:"sha256,omitempty"`
}

// trainOutputs reads the outputs back from the saved model, so a fresh run
// and a reused one report the same values.
func trainOutputs(m *loadedModel, reused bool) (*TrainOutputs, error) {
	_, holdout, err := m.holdout()
	if err != nil {
		return nil, fmt.Errorf("train: saved model: %w", err)
	}
	info := m.Info()
	rows, _ := stepio.Int(info.Lineage.Params["rows"])
	return &TrainOutputs{
		Model:       m.Name,
		ModelDigest: m.digest(),
		DataDigest:  info.Lineage.DataDigest,
		Rows:        rows,
		Features:    len(info.Signature.Features),
		Holdout:     holdout.String(),
		Metrics:     stepio.Floats(info.Metrics),
		Reused:      reused,
		Privacy:     info.Lineage.Params[paramPrivacy],
	}, nil
}

// finiteMetrics drops undefined metrics, which a manifest cannot hold as
// JSON numbers.
func finiteMetrics(m map[string]float64) map[string]float64 {
	out := make(map[string]float64, len(m))
	for k, v := range m {
		if num(v) != nil {
			out[k] = v
		}
	}
	return out
}

// reweighing returns Kamiran–Calders weights over the intersection of the
// sensitive columns (all of the data's sensitive columns when none were
// named).
func reweighing(d *dataset.Dataset, names []string) ([]float64, error) {
	if len(names) == 0 {
		names = d.Schema.Names(dataset.Sensitive)
	}
	if len(names) == 0 {
		return nil, badInput("reweigh", "needs sensitive columns: set with.sensitive")
	}
	groups, err := groupKeys(d, names)
	if err != nil {
		return nil, err
	}
	w, err := fairness.Reweigh(labels(d), groups)
	if err != nil {
		return nil, Permanent(kindBadInput, fmt.Errorf("with.reweigh over %s: %w", strings.Join(names, ","), err))
	}
	return w, nil
}

// trainGPU opens the source training heartbeats read the node's GPUs from;
// tests stand a fake in. NVML loads nothing until the first snapshot, and
// without a driver it reports NoNVIDIAGPU, so opening it costs nothing on
// a CPU node.
var trainGPU = func() gpu.Source { return gpu.NewNVML() }

// gpuSampler adds a GPU summary to training heartbeats. It reads the
// source at most once per epoch, since a snapshot is a round of driver
// calls and heartbeats may come more often than epochs, and never again
// once the source says there is no GPU.
type gpuSampler struct {
	src   gpu.Source
	epoch int
	last  string
	off   bool
}

func newGPUSampler(src gpu.Source) *gpuSampler {
	return &gpuSampler{src: src, epoch: -1, off: src == nil}
}

// summary is "<index>: <util>% <used>/<total> GiB" per device, joined
// by "; ", or empty without GPUs. A failed read leaves the epoch without
// a summary rather than failing training over telemetry.
func (s *gpuSampler) summary(epoch int) string {
	if s.off || epoch == s.epoch {
		return s.last
	}
	s.epoch = epoch
	snap, err := s.src.Snapshot()
	if err != nil {
		s.last = ""
		return ""
	}
	if snap.State != gpu.Available || len(snap.Devices) == 0 {
		s.off, s.last = true, ""
		return ""
	}
	parts := make([]string, len(snap.Devices))
	for i, d := range snap.Devices {
		parts[i] = fmt.Sprintf("%d: %.0f%% %.1f/%.1f GiB", d.Index, d.UtilizationPercent,
			float64(d.MemoryUsedBytes)/(1<<30), float64(d.MemoryTotalBytes)/(1<<30))
	}
	s.last = strings.Join(parts, "; ")
	return s.last
}

// close releases the driver when the source holds it (NVML does).
func (s *gpuSampler) close() {
	if c, ok := s.src.(interface{ Close() error }); ok {
		_ = c.Close()
	}
}

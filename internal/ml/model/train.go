package model

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"gonum.org/v1/gonum/mat"
	"gonum.org/v1/gonum/optimize"

	"github.com/gauntlet-ml/gauntlet/internal/ml/matrix"
)

// Config holds the hyperparameters; zero fields take the defaults in
// (Config).withDefaults. It is recorded in the model's lineage.
type Config struct {
	Kind Kind   `json:"kind"`
	Seed uint64 `json:"seed"`

	// Logistic regression: C is the inverse L2 strength as in scikit-learn
	// (default 1); training stops when the gradient's largest component
	// falls below Tol (default 1e-5) or after MaxIter iterations (default 1000).
	C       float64 `json:"c,omitempty"`
	Tol     float64 `json:"tol,omitempty"`
	MaxIter int     `json:"max_iter,omitempty"`

	// MLP: Hidden layer widths (default [32]; one or two layers), Epochs
	// (default 20), BatchSize (default 128), Adam LearningRate (default 1e-3)
	// and L2 weight decay (default 1e-4).
	Hidden       []int   `json:"hidden,omitempty"`
	Epochs       int     `json:"epochs,omitempty"`
	BatchSize    int     `json:"batch_size,omitempty"`
	LearningRate float64 `json:"learning_rate,omitempty"`
	L2           float64 `json:"l2,omitempty"`
}

func (c Config) withDefaults() Config {
	switch c.Kind {
	case LogReg:
		c.C = cmp(c.C, 1)
		c.Tol = cmp(c.Tol, 1e-5)
		c.MaxIter = int(cmp(float64(c.MaxIter), 1000))
	case MLP:
		if len(c.Hidden) == 0 {
			c.Hidden = []int{32}
		}
		c.Epochs = int(cmp(float64(c.Epochs), 20))
		c.BatchSize = int(cmp(float64(c.BatchSize), 128))
		c.LearningRate = cmp(c.LearningRate, 1e-3)
		c.L2 = cmp(c.L2, 1e-4)
	}
	return c
}

func cmp(v, def float64) float64 {
	if v == 0 {
		return def
	}
	return v
}

func (c Config) validate() error {
	switch c.Kind {
	case LogReg:
		if !(c.C > 0) || !(c.Tol > 0) || c.MaxIter < 0 {
			return fmt.Errorf("model: logreg: want C > 0, Tol > 0, MaxIter ≥ 0 (got %v, %v, %d)", c.C, c.Tol, c.MaxIter)
		}
	case MLP:
		if len(c.Hidden) > 2 || slices.ContainsFunc(c.Hidden, func(h int) bool { return h <= 0 }) {
			return fmt.Errorf("model: mlp: want one or two positive hidden widths, got %v", c.Hidden)
		}
		if c.Epochs < 0 || c.BatchSize < 0 || !(c.LearningRate > 0) || c.L2 < 0 {
			return fmt.Errorf("model: mlp: want Epochs ≥ 0, BatchSize ≥ 0, LearningRate > 0, L2 ≥ 0")
		}
	default:
		return fmt.Errorf("model: unknown kind %q (want %q or %q)", c.Kind, LogReg, MLP)
	}
	return nil
}

// Progress is reported after each epoch (MLP) or iteration (logistic
// regression); Loss is the training objective.
type Progress struct {
	Epoch, Epochs int
	Loss          float64
}

// TrainOption configures Train.
type TrainOption func(*trainOptions)

type trainOptions struct {
	sampleWeights []float64
	classWeights  *[2]float64
	balanced      bool
	progress      func(Progress)
	checkpoints   Checkpoints
	initial       *Network
	stepHook      func(epoch int, params [][]float64)
	workers       int
}

// WithSampleWeights weights each row's loss (fairness reweighing passes these).
func WithSampleWeights(w []float64) TrainOption {
	return func(o *trainOptions) { o.sampleWeights = w }
}

// WithClassWeights multiplies the loss of negative and positive rows.
func WithClassWeights(negative, positive float64) TrainOption {
	return func(o *trainOptions) { o.classWeights = &[2]float64{negative, positive} }
}

// WithBalancedClassWeights weights classes by n / (2 · class count), as
// scikit-learn's class_weight="balanced".
func WithBalancedClassWeights() TrainOption {
	return func(o *trainOptions) { o.balanced = true }
}

// WithProgress calls fn after each epoch or iteration.
func WithProgress(fn func(Progress)) TrainOption {
	return func(o *trainOptions) { o.progress = fn }
}

// WithCheckpointDir makes MLP training save its state to dir after each epoch
// and resume from the state found there, so an interrupted run ends exactly
// as an uninterrupted one. Logistic regression ignores it: L-BFGS finishes in
// seconds and its history is not exposed by gonum.
func WithCheckpointDir(dir string) TrainOption {
	return WithCheckpoints(Checkpoints{Dir: dir})
}

// WithCheckpoints is WithCheckpointDir with callbacks: after each epoch's
// save, and when training resumes.
func WithCheckpoints(c Checkpoints) TrainOption {
	return func(o *trainOptions) { o.checkpoints = c }
}

// WithWorkers sets how many goroutines compute gradients (default
// GOMAXPROCS). The result is the same for any number: rows are cut into
// fixed blocks whose sums are added in block order.
func WithWorkers(n int) TrainOption {
	return func(o *trainOptions) { o.workers = n }
}

// Train fits a model of cfg.Kind to rows x and labels y (0 or 1). It returns
// ctx.Err() (wrapped) when cancelled.
func Train(ctx context.Context, x *mat.Dense, y []float64, cfg Config, opts ...TrainOption) (*Network, error) {
	return train(ctx, viewDense(x), y, cfg, opts)
}

// TrainF32 is Train on a float32 matrix, the encoding of large data sets;
// it computes in float64 like Train.
func TrainF32(ctx context.Context, x *matrix.Dense32, y []float32, cfg Config, opts ...TrainOption) (*Network, error) {
	return train(ctx, view32(x), y, cfg, opts)
}

func train[T float](ctx context.Context, x rows[T], y []T, cfg Config, opts []TrainOption) (*Network, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	var o trainOptions
	for _, opt := range opts {
		opt(&o)
	}
	w, err := rowWeights(x, y, &o)
	if err != nil {
		return nil, err
	}
	if cfg.Kind == LogReg {
		return trainLogReg(ctx, x, y, w, cfg, &o)
	}
	return trainMLP(ctx, x, y, w, cfg, &o)
}

// rowWeights checks the data and returns each row's loss weight, or nil when
// every row weighs 1 (a large data set then needs no weight column).
func rowWeights[T float](x rows[T], y []T, o *trainOptions) ([]float64, error) {
	n := x.n
	if n != len(y) {
		return nil, fmt.Errorf("model: %d rows but %d labels", n, len(y))
	}
	for r := range n {
		for _, v := range x.row(r) {
			if f := float64(v); math.IsNaN(f) || math.IsInf(f, 0) {
				return nil, fmt.Errorf("model: row %d has a non-finite feature", r)
			}
		}
	}
	var count [2]float64
	for i, v := range y {
		if v != 0 && v != 1 {
			return nil, fmt.Errorf("model: label %d is %v, want 0 or 1", i, v)
		}
		count[int(v)]++
	}
	if count[0] == 0 || count[1] == 0 {
		return nil, fmt.Errorf("model: labels have one class")
	}
	cw := [2]float64{1, 1}
	switch {
	case o.classWeights != nil:
		cw = *o.classWeights
	case o.balanced:
		cw = [2]float64{float64(n) / (2 * count[0]), float64(n) / (2 * count[1])}
	}
	if !(cw[0] >= 0 && cw[1] >= 0) || math.IsInf(cw[0], 0) || math.IsInf(cw[1], 0) {
		return nil, fmt.Errorf("model: class weights %v must be finite and ≥ 0", cw)
	}
	if o.sampleWeights != nil && len(o.sampleWeights) != n {
		return nil, fmt.Errorf("model: %d sample weights for %d rows", len(o.sampleWeights), n)
	}
	if cw == [2]float64{1, 1} && o.sampleWeights == nil {
		return nil, nil
	}
	w := make([]float64, n)
	var total float64
	for i := range w {
		w[i] = cw[int(y[i])]
		if o.sampleWeights != nil {
			s := o.sampleWeights[i]
			if !(s >= 0) || math.IsInf(s, 0) {
				return nil, fmt.Errorf("model: sample weight %d is %v, want finite and ≥ 0", i, s)
			}
			w[i] *= s
		}
		total += w[i]
	}
	if !(total > 0) {
		return nil, fmt.Errorf("model: weights sum to zero")
	}
	return w, nil
}

// weightOf is row i's loss weight; nil weights are all 1.
func weightOf(w []float64, i int) float64 {
	if w == nil {
		return 1
	}
	return w[i]
}

// trainLogReg minimises (1/S)·Σ wᵢ·logloss + ‖β‖²/(2·C·S), S = Σ wᵢ, which has
// the same minimiser as scikit-learn's C·Σ wᵢ·logloss + ‖β‖²/2; the intercept
// is not penalised.
func trainLogReg[T float](ctx context.Context, x rows[T], y []T, w []float64, cfg Config, o *trainOptions) (*Network, error) {
	d := x.d
	lp := newLogRegProblem(x, y, w)
	tm := newTeam(o.workers, func(_, b int) { lp.block(b) })
	defer tm.close()
	eval := func(theta []float64, grad []float64) float64 {
		lp.theta = theta
		tm.run(lp.blocks)
		loss, gsum := lp.reduce()
		reg := 1 / (cfg.C * lp.sumW)
		var bb float64
		for _, v := range theta[:d] {
			bb += v * v
		}
		loss = loss/lp.sumW + 0.5*reg*bb
		if grad != nil {
			for j := range d {
				grad[j] = gsum[j]/lp.sumW + reg*theta[j]
			}
			grad[d] = gsum[d] / lp.sumW
		}
		return loss
	}
	// gonum asks for the value and the gradient at the same point in two
	// calls; one pass computes both, and the second call reuses it.
	cacheX := make([]float64, d+1)
	cacheG := make([]float64, d+1)
	cached := false
	problem := optimize.Problem{
		Func: func(theta []float64) float64 {
			copy(cacheX, theta)
			cached = true
			return eval(theta, cacheG)
		},
		Grad: func(grad, theta []float64) {
			if cached && slices.Equal(theta, cacheX) {
				copy(grad, cacheG)
				return
			}
			eval(theta, grad)
		},
		Status: func() (optimize.Status, error) {
			if err := ctx.Err(); err != nil {
				return optimize.Failure, err
			}
			return optimize.NotTerminated, nil
		},
	}
	settings := &optimize.Settings{
		GradientThreshold: cfg.Tol,
		MajorIterations:   cfg.MaxIter,
		Converger:         optimize.NeverTerminate{},
		Recorder:          &progressRecorder{fn: o.progress, epochs: cfg.MaxIter},
	}
	res, err := optimize.Minimize(problem, make([]float64, d+1), settings, &optimize.LBFGS{})
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("model: logreg: %w", ctxErr)
		}
		// A line search that can make no more progress has still reached
		// the optimum to machine precision; anything else is a failure.
		if res == nil || !errors.Is(err, optimize.ErrLinesearcherFailure) && !errors.Is(err, optimize.ErrNoProgress) {
			return nil, fmt.Errorf("model: logreg: %w", err)
		}
	}
	theta := res.X
	return &Network{Kind: LogReg, Layers: []Dense{{In: d, Out: 1, W: slices.Clone(theta[:d]), B: []float64{theta[d]}}}}, nil
}

type progressRecorder struct {
	fn     func(Progress)
	epochs int
	iter   int
}

func (r *progressRecorder) Init() error { return nil }

func (r *progressRecorder) Record(loc *optimize.Location, op optimize.Operation, _ *optimize.Stats) error {
	if op == optimize.MajorIteration && r.fn != nil {
		r.iter++
		r.fn(Progress{Epoch: r.iter, Epochs: r.epochs, Loss: loc.F})
	}
	return nil
}

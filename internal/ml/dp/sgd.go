package dp

import (
	"context"
	crand "crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"

	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
	"gonum.org/v1/gonum/mat"
)

// Options configure DP-SGD. Give Epsilon to have the noise multiplier found
// for it, NoiseMultiplier to have the ε it spends reported, or both to have
// the run refused when σ is too small for the budget.
type Options struct {
	Epsilon         float64 // target ε; 0 means none
	Delta           float64 // default 1e-5
	Clip            float64 // per-example gradient norm bound C, default 1
	NoiseMultiplier float64 // σ; the noise added to the summed gradient has std σ·C

	Epochs       int     // default the model config's epochs, else 10
	BatchSize    int     // expected batch size; the sampling rate is BatchSize/rows; default 256
	LearningRate float64 // Adam step size, default 0.01 for logistic regression, 0.003 for an MLP
	Progress     func(model.Progress)

	// InsecureReproducible draws the noise and the Poisson batches from
	// the model config's seed, so that a run can be repeated exactly. It
	// voids the guarantee: whoever knows the seed (a pipeline parameter,
	// default 1) regenerates the noise and subtracts it from the released
	// weights. For tests and benchmarks that compare runs; the guarantee
	// records it.
	InsecureReproducible bool

	// Checkpoints keep the training state after each epoch (the weights,
	// Adam's moments and the steps taken; the generator's state only
	// under InsecureReproducible, since a stored key would let whoever
	// reads the checkpoint replay the noise) and resume from it. A resumed
	// run draws fresh noise for the steps left and its guarantee counts
	// every step of every epoch, those before the interruption included:
	// the released weights are a function of all of them. A checkpoint
	// made with other data or settings is refused, not replaced: its
	// epochs may already have been read from where it was published.
	Checkpoints model.Checkpoints
}

// checkpointFile is the state file in Checkpoints.Dir.
const checkpointFile = "dp-sgd-checkpoint.json"

// state is what a checkpoint holds: enough to continue the run, and what
// the accounting counts.
type state struct {
	Fingerprint string      `json:"fingerprint"`
	Epoch       int         `json:"epoch"` // completed epochs
	Step        int         `json:"step"`  // noisy steps taken, all counted
	Params      [][]float64 `json:"params"`
	M           [][]float64 `json:"m"`
	V           [][]float64 `json:"v"`
	// RNG is the seeded generator's state (InsecureReproducible only).
	RNG []byte `json:"rng,omitempty"`
}

// Guarantee is the (ε, δ)-DP a run satisfies, with what the accountant
// needs to recompute it; it is what a model manifest records.
type Guarantee struct {
	Epsilon         float64 `json:"epsilon"`
	Delta           float64 `json:"delta"`
	TargetEpsilon   float64 `json:"target_epsilon,omitempty"`
	NoiseMultiplier float64 `json:"noise_multiplier"`
	Clip            float64 `json:"clip"`
	SamplingRate    float64 `json:"sampling_rate"`
	Steps           int     `json:"steps"`
	Epochs          int     `json:"epochs"`
	Order           float64 `json:"rdp_order"`
	Accountant      string  `json:"accountant"`
	Sampling        string  `json:"sampling"`
	// Scope says what the guarantee covers: the model's weights given the
	// preprocessing, whose means, deviations and vocabularies are fitted on
	// the same rows without noise.
	Scope string `json:"scope"`
	// Randomness says where the noise and the batches came from.
	Randomness string `json:"randomness"`
	// InsecureReproducible is set when they came from the run's seed: the
	// ε above is then what the accountant computes for noise nobody can
	// predict, which this noise is not, and it does not hold.
	InsecureReproducible bool `json:"insecure_reproducible,omitempty"`
	// ResumedFromEpoch is the epoch a checkpoint had completed when this
	// run resumed from it; Steps and Epsilon count those epochs too.
	ResumedFromEpoch int `json:"resumed_from_epoch,omitempty"`
}

// Where the noise and the batches come from, as Guarantee.Randomness
// records it.
const (
	SecureRandomness = "ChaCha8 keyed from crypto/rand for this run alone"
	SeededRandomness = "PCG seeded from the model config's seed (insecure_reproducible): " +
		"anyone who knows the seed can replay the noise, so the (ε, δ) guarantee does not hold"
)

func (o Options) withDefaults(kind model.Kind) Options {
	if o.Delta == 0 {
		o.Delta = 1e-5
	}
	if o.Clip == 0 {
		o.Clip = 1
	}
	if o.Epochs == 0 {
		o.Epochs = 10
	}
	if o.BatchSize == 0 {
		o.BatchSize = 256
	}
	if o.LearningRate == 0 {
		o.LearningRate = 0.01
		if kind == model.MLP {
			o.LearningRate = 0.003
		}
	}
	return o
}

// Plan works out the guarantee of a run over rows examples before any
// training: the noise multiplier for a target ε, or the ε of a given σ.
// A σ that overspends the target is an error wrapping ErrBudget that says
// how many epochs would fit.
func Plan(rows int, o Options) (*Guarantee, error) {
	o = o.withDefaults("")
	switch {
	case rows <= 0:
		return nil, fmt.Errorf("dp: no training rows")
	case !(o.Delta > 0 && o.Delta < 1):
		return nil, fmt.Errorf("dp: δ must be in (0, 1), got %v", o.Delta)
	case !(o.Clip > 0) || math.IsInf(o.Clip, 0):
		return nil, fmt.Errorf("dp: clip norm must be positive, got %v", o.Clip)
	case o.Epsilon < 0 || math.IsInf(o.Epsilon, 0) || math.IsNaN(o.Epsilon):
		return nil, fmt.Errorf("dp: ε must be positive, got %v", o.Epsilon)
	case o.NoiseMultiplier < 0 || math.IsInf(o.NoiseMultiplier, 0) || math.IsNaN(o.NoiseMultiplier):
		return nil, fmt.Errorf("dp: noise multiplier must be positive, got %v", o.NoiseMultiplier)
	case o.Epsilon == 0 && o.NoiseMultiplier == 0:
		return nil, fmt.Errorf("dp: give a target ε or a noise multiplier")
	case o.Epochs < 0 || o.BatchSize < 0:
		return nil, fmt.Errorf("dp: epochs and batch size must be positive")
	case o.BatchSize > rows:
		return nil, fmt.Errorf("dp: batch size %d exceeds the %d training rows", o.BatchSize, rows)
	}
	q := float64(o.BatchSize) / float64(rows)
	perEpoch := int(math.Ceil(float64(rows) / float64(o.BatchSize)))
	g := &Guarantee{Delta: o.Delta, TargetEpsilon: o.Epsilon, Clip: o.Clip, SamplingRate: q,
		Steps: perEpoch * o.Epochs, Epochs: o.Epochs, Accountant: "rdp (Mironov et al. 2019)", Sampling: "poisson",
		Scope:      "model weights; preprocessing statistics are fitted on the training rows without noise",
		Randomness: SecureRandomness, InsecureReproducible: o.InsecureReproducible}
	if o.InsecureReproducible {
		g.Randomness = SeededRandomness
	}
	sigma := o.NoiseMultiplier
	if sigma == 0 {
		var err error
		if sigma, err = NoiseMultiplier(o.Epsilon, o.Delta, q, g.Steps); err != nil {
			return nil, err
		}
	}
	eps, order, err := Epsilon(q, sigma, g.Steps, o.Delta)
	if err != nil {
		return nil, err
	}
	g.NoiseMultiplier, g.Epsilon, g.Order = sigma, eps, order
	if o.Epsilon > 0 && eps > o.Epsilon {
		fit := 0
		for e := o.Epochs - 1; e > 0; e-- {
			if spent, _, err := Epsilon(q, sigma, e*perEpoch, o.Delta); err == nil && spent <= o.Epsilon {
				fit = e
				break
			}
		}
		return nil, fmt.Errorf("dp: %d epochs at noise multiplier %g spend ε=%.3f, more than the budget ε=%g at δ=%g (at most %d epochs fit; or raise the noise multiplier): %w",
			o.Epochs, sigma, eps, o.Epsilon, o.Delta, fit, ErrBudget)
	}
	return g, nil
}

// Train fits a model of cfg.Kind (logistic regression too, as a one-layer
// network) with DP-SGD: each step Poisson-samples rows, clips each row's
// gradient to norm C, adds Gaussian noise of std σ·C to the sum and divides
// by the expected batch size (dividing by the drawn size would leak it),
// then takes an Adam step, which as post-processing costs no privacy.
func Train(ctx context.Context, x *mat.Dense, y []float64, cfg model.Config, o Options) (*model.Network, *Guarantee, error) {
	rows, d := x.Dims()
	if rows != len(y) {
		return nil, nil, fmt.Errorf("dp: %d rows but %d labels", rows, len(y))
	}
	if o.Epochs == 0 {
		o.Epochs = cfg.Epochs
	}
	o = o.withDefaults(cfg.Kind)
	g, err := Plan(rows, o)
	if err != nil {
		return nil, nil, err
	}
	net, err := model.New(d, cfg)
	if err != nil {
		return nil, nil, err
	}
	ps := net.Params()
	st := &state{Params: ps, M: zeros(ps), V: zeros(ps)}
	rng, pcg, err := noiseSource(o.InsecureReproducible, cfg.Seed)
	if err != nil {
		return nil, nil, err
	}
	ck := o.Checkpoints
	if ck.Dir != "" {
		st.Fingerprint = fingerprint(x, y, cfg, o, g)
		if err := resume(ck.Dir, st, pcg); err != nil {
			return nil, nil, err
		}
		if st.Epoch > 0 {
			g.ResumedFromEpoch = st.Epoch
			if ck.Resumed != nil {
				ck.Resumed(st.Epoch)
			}
		}
	}
	sum, m, v := zeros(ps), st.M, st.V
	perEpoch := g.Steps / g.Epochs
	noise := g.NoiseMultiplier * g.Clip
	batch := make([]int, 0, 2*o.BatchSize)
	for epoch := st.Epoch; epoch < g.Epochs; epoch++ {
		var lossSum float64
		var seen int
		for range perEpoch {
			if err := ctx.Err(); err != nil {
				return nil, nil, fmt.Errorf("dp: epoch %d: %w", epoch+1, err)
			}
			batch = batch[:0]
			for r := range rows {
				if rng.Float64() < g.SamplingRate {
					batch = append(batch, r)
				}
			}
			for _, s := range sum {
				clear(s)
			}
			err := net.ExampleGradients(x, y, batch, func(_ int, loss float64, grads [][]float64) {
				lossSum += loss
				seen++
				var norm float64
				for _, gr := range grads {
					for _, e := range gr {
						norm += e * e
					}
				}
				scale := 1.0
				if n := math.Sqrt(norm); n > g.Clip {
					scale = g.Clip / n
				}
				for i, gr := range grads {
					for j, e := range gr {
						sum[i][j] += scale * e
					}
				}
			})
			if err != nil {
				return nil, nil, err
			}
			st.Step++
			adamStep(ps, sum, m, v, st.Step, o.LearningRate, float64(o.BatchSize), noise, rng)
		}
		st.Epoch = epoch + 1
		if ck.Dir != "" {
			if err := save(ck, st, pcg); err != nil {
				return nil, nil, err
			}
		}
		if o.Progress != nil && seen > 0 {
			o.Progress(model.Progress{Epoch: epoch + 1, Epochs: g.Epochs, Loss: lossSum / float64(seen)})
		}
	}
	// The accountant was asked about g.Steps steps: every one of them was
	// taken, in this attempt or in the ones whose checkpoint it resumed.
	if st.Step != g.Steps {
		return nil, nil, fmt.Errorf("dp: took %d noisy steps, the guarantee counts %d", st.Step, g.Steps)
	}
	for _, p := range ps {
		for _, e := range p {
			if math.IsNaN(e) || math.IsInf(e, 0) {
				return nil, nil, errors.New("dp: training diverged (non-finite weights); lower the learning rate")
			}
		}
	}
	return net, g, nil
}

// noiseSource returns the generator of a run's noise and batches. The
// guarantee assumes nobody can predict them, so by default the generator is
// ChaCha8, a cryptographically strong stream cipher, under a 256-bit key
// read from crypto/rand for this run alone and never stored. Keyed once, it
// costs what a plain PRNG costs per draw (BenchmarkNoise), where reading
// crypto/rand for every one of the millions of draws a run makes would not.
//
// The seeded generator is returned on its own too, so that a checkpoint can
// keep its state; ChaCha8's never leaves the process, and a resumed run is
// keyed afresh.
func noiseSource(insecureReproducible bool, seed uint64) (*rand.Rand, *rand.PCG, error) {
	if insecureReproducible {
		pcg := rand.NewPCG(seed, 0xd9e5)
		return rand.New(pcg), pcg, nil
	}
	var key [32]byte
	if _, err := crand.Read(key[:]); err != nil {
		return nil, nil, fmt.Errorf("dp: key the noise generator from crypto/rand: %w", err)
	}
	return rand.New(rand.NewChaCha8(key)), nil, nil
}

// fingerprint ties a checkpoint to the data, the model config and every
// setting the accounting depends on.
func fingerprint(x *mat.Dense, y []float64, cfg model.Config, o Options, g *Guarantee) string {
	h := sha256.New()
	settings, _ := json.Marshal(struct {
		Config                    model.Config
		Sigma, Clip, Q, Delta, LR float64
		Steps, Epochs, Batch      int
		Reproducible              bool
	}{cfg, g.NoiseMultiplier, g.Clip, g.SamplingRate, g.Delta, o.LearningRate, g.Steps, g.Epochs, o.BatchSize, o.InsecureReproducible})
	h.Write(settings)
	var buf [8]byte
	put := func(v float64) {
		binary.LittleEndian.PutUint64(buf[:], math.Float64bits(v))
		h.Write(buf[:])
	}
	r, c := x.Dims()
	put(float64(r))
	put(float64(c))
	for i := range r {
		for _, v := range x.RawRowView(i) {
			put(v)
		}
		put(y[i])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// resume loads the checkpoint in dir into st, if there is one.
func resume(dir string, st *state, pcg *rand.PCG) error {
	var saved state
	ok, err := model.LoadState(dir, checkpointFile, &saved)
	if err != nil {
		return fmt.Errorf("dp: %w", err)
	}
	if !ok {
		return nil
	}
	path := filepath.Join(dir, checkpointFile)
	if saved.Fingerprint != st.Fingerprint {
		return fmt.Errorf("dp: checkpoint %s was written for other data or settings; it is not resumed, and not replaced, since what it holds may already have been released: remove it to train from scratch, and count its ε", path)
	}
	if len(saved.Params) != len(st.Params) || len(saved.M) != len(st.Params) || len(saved.V) != len(st.Params) {
		return fmt.Errorf("dp: checkpoint %s has %d tensors, want %d", path, len(saved.Params), len(st.Params))
	}
	for i := range st.Params {
		if len(saved.Params[i]) != len(st.Params[i]) || len(saved.M[i]) != len(st.Params[i]) || len(saved.V[i]) != len(st.Params[i]) {
			return fmt.Errorf("dp: checkpoint %s: tensor %d has the wrong size", path, i)
		}
		copy(st.Params[i], saved.Params[i])
		copy(st.M[i], saved.M[i])
		copy(st.V[i], saved.V[i])
	}
	if pcg != nil {
		if err := pcg.UnmarshalBinary(saved.RNG); err != nil {
			return fmt.Errorf("dp: checkpoint %s: generator state: %w", path, err)
		}
	}
	st.Epoch, st.Step = saved.Epoch, saved.Step
	return nil
}

// save writes st to the checkpoint directory and tells ck.Saved.
func save(ck model.Checkpoints, st *state, pcg *rand.PCG) error {
	st.RNG = nil
	if pcg != nil {
		b, err := pcg.MarshalBinary()
		if err != nil {
			return fmt.Errorf("dp: checkpoint: generator state: %w", err)
		}
		st.RNG = b
	}
	if err := model.SaveState(ck.Dir, checkpointFile, st); err != nil {
		return fmt.Errorf("dp: %w", err)
	}
	if ck.Saved != nil {
		return ck.Saved(st.Epoch)
	}
	return nil
}

func adamStep(ps, sum, m, v [][]float64, step int, lr, batch, noise float64, rng *rand.Rand) {
	const b1, b2, eps = 0.9, 0.999, 1e-8
	c1 := 1 - math.Pow(b1, float64(step))
	c2 := 1 - math.Pow(b2, float64(step))
	for i, p := range ps {
		for j := range p {
			gj := (sum[i][j] + noise*rng.NormFloat64()) / batch
			m[i][j] = b1*m[i][j] + (1-b1)*gj
			v[i][j] = b2*v[i][j] + (1-b2)*gj*gj
			p[j] -= lr * (m[i][j] / c1) / (math.Sqrt(v[i][j]/c2) + eps)
		}
	}
}

func zeros(ps [][]float64) [][]float64 {
	out := make([][]float64, len(ps))
	for i, p := range ps {
		out[i] = make([]float64, len(p))
	}
	return out
}

package model

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
)

const (
	adamBeta1 = 0.9
	adamBeta2 = 0.999
	adamEps   = 1e-8
)

// epochRNG gives each epoch its own stream derived from (seed, epoch), so the
// "RNG position" a checkpoint must restore is just the epoch number.
func epochRNG(seed uint64, epoch int) *rand.Rand {
	return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15^uint64(epoch)))
}

func initMLP(d int, cfg Config) *Network {
	rng := epochRNG(cfg.Seed, -1)
	widths := append(append([]int{d}, cfg.Hidden...), 1)
	n := &Network{Kind: MLP}
	for i := 1; i < len(widths); i++ {
		in, out := widths[i-1], widths[i]
		// He initialisation for ReLU layers, Glorot for the sigmoid output.
		scale := math.Sqrt(2 / float64(in))
		if i == len(widths)-1 {
			scale = math.Sqrt(2 / float64(in+out))
		}
		l := Dense{In: in, Out: out, W: make([]float64, in*out), B: make([]float64, out)}
		for j := range l.W {
			l.W[j] = scale * rng.NormFloat64()
		}
		n.Layers = append(n.Layers, l)
	}
	return n
}

// mlpState is everything a resumed run needs to continue bit-identically.
type mlpState struct {
	Fingerprint string      `json:"fingerprint"`
	Epoch       int         `json:"epoch"` // completed epochs
	Step        int         `json:"step"`  // Adam steps taken
	Params      [][]float64 `json:"params"`
	M           [][]float64 `json:"m"`
	V           [][]float64 `json:"v"`
	Losses      []float64   `json:"losses"`
}

// params lists the network's parameter slices in Tensors order.
func params(n *Network) [][]float64 {
	var ps [][]float64
	for i := range n.Layers {
		ps = append(ps, n.Layers[i].W, n.Layers[i].B)
	}
	return ps
}

func zerosLike(ps [][]float64) [][]float64 {
	out := make([][]float64, len(ps))
	for i, p := range ps {
		out[i] = make([]float64, len(p))
	}
	return out
}

// fingerprint ties a checkpoint to the config and training data, so a stale
// checkpoint from another run is refused rather than silently resumed.
func fingerprint[T float](x rows[T], y []T, w []float64, cfg Config) string {
	h := sha256.New()
	c, _ := json.Marshal(cfg)
	h.Write(c)
	var buf [8]byte
	put := func(v float64) {
		binary.LittleEndian.PutUint64(buf[:], math.Float64bits(v))
		h.Write(buf[:])
	}
	put(float64(x.n))
	put(float64(x.d))
	for r := range x.n {
		for _, v := range x.row(r) {
			put(float64(v))
		}
		put(float64(y[r]))
		put(weightOf(w, r))
	}
	return hex.EncodeToString(h.Sum(nil))
}

// mlpPart is the number of batch rows whose gradient one worker sums; the
// parts' sums are added in order, so a fit is bit-identical for any number
// of workers.
const mlpPart = 32

func trainMLP[T float](ctx context.Context, x rows[T], y []T, w []float64, cfg Config, o *trainOptions) (*Network, error) {
	n, d := x.n, x.d
	net := initMLP(d, cfg)
	if o.initial != nil {
		if err := startFrom(net, o.initial); err != nil {
			return nil, err
		}
	}
	st := &mlpState{Params: params(net)}
	st.M, st.V = zerosLike(st.Params), zerosLike(st.Params)
	var ck *checkpointer
	if o.checkpoints.Dir != "" {
		st.Fingerprint = fingerprint(x, y, w, cfg)
		if o.initial != nil {
			// Fine-tuning from other weights is another run.
			st.Fingerprint = fingerprintParams(st.Fingerprint, st.Params)
		}
		ck = &checkpointer{o.checkpoints}
		saved, err := ck.load()
		if err != nil {
			return nil, err
		}
		if saved != nil {
			if err := restore(st, saved); err != nil {
				return nil, fmt.Errorf("model: resume from %s: %w", ck.path(), err)
			}
			if ck.Resumed != nil {
				ck.Resumed(st.Epoch)
			}
		}
	}
	nparts := (cfg.BatchSize + mlpPart - 1) / mlpPart
	trainers := make([]*trainer[T], nparts)
	partGrads := make([][][]float64, nparts)
	partLoss := make([]float64, nparts)
	partWeight := make([]float64, nparts)
	for p := range nparts {
		trainers[p] = newTrainer[T](net, mlpPart)
		partGrads[p] = zerosLike(st.Params)
	}
	var batch []int
	tm := newTeam(o.workers, func(_, p int) {
		for _, g := range partGrads[p] {
			clear(g)
		}
		rows := batch[p*mlpPart : min((p+1)*mlpPart, len(batch))]
		partLoss[p], partWeight[p] = trainers[p].batch(x, y, w, rows, partGrads[p])
	})
	defer tm.close()
	grads := zerosLike(st.Params)
	perm := make([]int, n)
	for epoch := st.Epoch; epoch < cfg.Epochs; epoch++ {
		// The same order as rand.Perm, without a new slice per epoch.
		for i := range perm {
			perm[i] = i
		}
		epochRNG(cfg.Seed, epoch).Shuffle(n, func(i, j int) { perm[i], perm[j] = perm[j], perm[i] })
		var epochLoss, epochWeight float64
		for start := 0; start < n; start += cfg.BatchSize {
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("model: mlp epoch %d: %w", epoch+1, err)
			}
			batch = perm[start:min(start+cfg.BatchSize, n)]
			used := (len(batch) + mlpPart - 1) / mlpPart
			tm.run(used)
			for _, g := range grads {
				clear(g)
			}
			var weight float64
			for p := range used {
				epochLoss += partLoss[p]
				weight += partWeight[p]
				for i, g := range partGrads[p] {
					acc := grads[i]
					for j, v := range g {
						acc[j] += v
					}
				}
			}
			epochWeight += weight
			if weight == 0 {
				continue
			}
			st.Step++
			adam(st, grads, weight, cfg)
			if o.stepHook != nil {
				o.stepHook(epoch, st.Params)
			}
		}
		st.Epoch = epoch + 1
		mean := epochLoss / epochWeight
		st.Losses = append(st.Losses, mean)
		if ck != nil {
			if err := ck.save(st); err != nil {
				return nil, err
			}
		}
		if o.progress != nil {
			o.progress(Progress{Epoch: epoch + 1, Epochs: cfg.Epochs, Loss: mean})
		}
	}
	return net, nil
}

func fingerprintParams(base string, ps [][]float64) string {
	h := sha256.New()
	h.Write([]byte(base))
	var buf [8]byte
	for _, p := range ps {
		for _, v := range p {
			binary.LittleEndian.PutUint64(buf[:], math.Float64bits(v))
			h.Write(buf[:])
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

func restore(st, saved *mlpState) error {
	if saved.Fingerprint != st.Fingerprint {
		return fmt.Errorf("checkpoint was written for other data or settings")
	}
	if len(saved.Params) != len(st.Params) || len(saved.M) != len(st.Params) || len(saved.V) != len(st.Params) {
		return fmt.Errorf("checkpoint has %d tensors, want %d", len(saved.Params), len(st.Params))
	}
	for i := range st.Params {
		if len(saved.Params[i]) != len(st.Params[i]) || len(saved.M[i]) != len(st.Params[i]) || len(saved.V[i]) != len(st.Params[i]) {
			return fmt.Errorf("checkpoint tensor %d has the wrong size", i)
		}
		copy(st.Params[i], saved.Params[i])
		copy(st.M[i], saved.M[i])
		copy(st.V[i], saved.V[i])
	}
	st.Epoch, st.Step, st.Losses = saved.Epoch, saved.Step, saved.Losses
	return nil
}

// adam applies one step; grads hold weighted sums and are divided by the
// batch's total weight here, with L2 decay on weights (not biases).
func adam(st *mlpState, grads [][]float64, weight float64, cfg Config) {
	t := float64(st.Step)
	c1 := 1 - math.Pow(adamBeta1, t)
	c2 := 1 - math.Pow(adamBeta2, t)
	for i, p := range st.Params {
		m, v, g := st.M[i], st.V[i], grads[i]
		decay := cfg.L2
		if i%2 == 1 {
			decay = 0
		}
		for j := range p {
			gj := g[j]/weight + decay*p[j]
			m[j] = adamBeta1*m[j] + (1-adamBeta1)*gj
			v[j] = adamBeta2*v[j] + (1-adamBeta2)*gj*gj
			p[j] -= cfg.LearningRate * (m[j] / c1) / (math.Sqrt(v[j]/c2) + adamEps)
		}
	}
}

// trainer holds per-batch scratch space.
type trainer[T float] struct {
	net    *Network
	acts   [][]float64 // per layer, batch×width, after activation
	deltas [][]float64
	nz     [][]int // non-zero input columns per batch row (one-hot inputs are sparse)
}

func newTrainer[T float](net *Network, batch int) *trainer[T] {
	t := &trainer[T]{net: net, nz: make([][]int, batch)}
	for _, l := range net.Layers {
		t.acts = append(t.acts, make([]float64, batch*l.Out))
		t.deltas = append(t.deltas, make([]float64, batch*l.Out))
	}
	return t
}

// batch adds the weighted loss gradient of rows idx to grads and returns
// the weighted loss and total weight.
func (t *trainer[T]) batch(x rows[T], y []T, w []float64, idx []int, grads [][]float64) (loss, weight float64) {
	layers := t.net.Layers
	last := len(layers) - 1
	for b, r := range idx {
		xr := x.row(r)
		t.nz[b] = t.nz[b][:0]
		for j, v := range xr {
			if v != 0 {
				t.nz[b] = append(t.nz[b], j)
			}
		}
		var in []float64
		for li, l := range layers {
			out := t.acts[li][b*l.Out : (b+1)*l.Out]
			for o := range l.Out {
				row := l.W[o*l.In : (o+1)*l.In]
				s := l.B[o]
				if li == 0 {
					for _, j := range t.nz[b] {
						s += row[j] * float64(xr[j])
					}
				} else {
					s += dot(row, in)
				}
				if li < last {
					s = max(s, 0)
				}
				out[o] = s
			}
			in = out
		}
		z := in[0]
		wr := weightOf(w, r)
		yr := float64(y[r])
		loss += wr * logLoss(z, yr)
		weight += wr
		t.deltas[last][b] = wr * (Sigmoid(z) - yr)
	}
	for li := last; li >= 0; li-- {
		l := layers[li]
		gw, gb := grads[2*li], grads[2*li+1]
		for b, r := range idx {
			delta := t.deltas[li][b*l.Out : (b+1)*l.Out]
			var prevDelta []float64
			if li > 0 {
				prevDelta = t.deltas[li-1][b*l.In : (b+1)*l.In]
				clear(prevDelta)
			}
			for o, dv := range delta {
				if dv == 0 {
					continue
				}
				gb[o] += dv
				grow := gw[o*l.In : (o+1)*l.In]
				if li == 0 {
					xr := x.row(r)
					for _, j := range t.nz[b] {
						grow[j] += dv * float64(xr[j])
					}
					continue
				}
				in := t.acts[li-1][b*l.In : (b+1)*l.In]
				row := l.W[o*l.In : (o+1)*l.In]
				for j, a := range in {
					grow[j] += dv * a
					prevDelta[j] += dv * row[j]
				}
			}
			if li > 0 {
				act := t.acts[li-1][b*l.In : (b+1)*l.In]
				for j, a := range act {
					if a <= 0 {
						prevDelta[j] = 0
					}
				}
			}
		}
	}
	return loss, weight
}

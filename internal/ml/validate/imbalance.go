package validate

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/gauntlet-ml/gauntlet/internal/ml/dataset"
	"github.com/gauntlet-ml/gauntlet/internal/ml/evaluate"
	"github.com/gauntlet-ml/gauntlet/internal/ml/model"
)

// Imbalance severities, by the ratio of majority to minority rows:
// none up to 1.5:1, mild up to 3:1, moderate up to 10:1, severe beyond.
// Below 1.5:1 no learner needs help; by 10:1 accuracy is dominated by the
// majority class and an unweighted model often never predicts the minority.
const (
	None     = "none"
	Mild     = "mild"
	Moderate = "moderate"
	Severe   = "severe"
)

// Imbalance describes the label distribution.
type Imbalance struct {
	Positives int     `json:"positives"`
	Negatives int     `json:"negatives"`
	Ratio     float64 `json:"ratio"` // majority / minority; +Inf when a class is absent
	Minority  int     `json:"minority_label"`
	Severity  string  `json:"severity"`
}

// MeasureImbalance classifies labels y (0 or 1).
func MeasureImbalance(y []float64) Imbalance {
	var im Imbalance
	for _, v := range y {
		if v == 1 {
			im.Positives++
		} else {
			im.Negatives++
		}
	}
	lo, hi := min(im.Positives, im.Negatives), max(im.Positives, im.Negatives)
	if im.Positives <= im.Negatives {
		im.Minority = 1
	}
	im.Ratio = math.Inf(1)
	if lo > 0 {
		im.Ratio = float64(hi) / float64(lo)
	}
	switch {
	case im.Ratio <= 1.5:
		im.Severity = None
	case im.Ratio <= 3:
		im.Severity = Mild
	case im.Ratio <= 10:
		im.Severity = Moderate
	default:
		im.Severity = Severe
	}
	return im
}

func (im Imbalance) sentence() string {
	if math.IsInf(im.Ratio, 1) {
		return fmt.Sprintf("Only one class is present (%d positive, %d negative rows).", im.Positives, im.Negatives)
	}
	return fmt.Sprintf("Classes are %d positive to %d negative, a %.1f:1 ratio: %s imbalance.", im.Positives, im.Negatives, im.Ratio, im.Severity)
}

// Remedies.
const (
	ClassWeight = "class_weight"
	Oversample  = "oversample"
	Undersample = "undersample"
	SMOTE       = "smote"
)

// Rebalance returns d with balanced classes: Oversample repeats random
// minority rows, Undersample keeps a random subset of the majority, SMOTE
// adds minority rows interpolated between a minority row and one of its 5
// nearest minority neighbours (standardised Euclidean distance). SMOTE
// interpolates numbers only, so data with categorical or sensitive columns
// is refused: use Oversample there. ClassWeight leaves the rows alone (the
// trainer weighs them) and returns d.
func Rebalance(d *dataset.Dataset, remedy string, seed uint64) (*dataset.Dataset, error) {
	im := MeasureImbalance(d.Y)
	if math.IsInf(im.Ratio, 1) {
		return nil, fmt.Errorf("validate: cannot rebalance %s: only one class", d.Source)
	}
	var minority, majority []int
	for i, y := range d.Y {
		if int(y) == im.Minority {
			minority = append(minority, i)
		} else {
			majority = append(majority, i)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x5a3e))
	need := len(majority) - len(minority)
	switch remedy {
	case ClassWeight:
		return d, nil
	case Oversample:
		idx := make([]int, 0, d.Len()+need)
		for i := range d.Len() {
			idx = append(idx, i)
		}
		for range need {
			idx = append(idx, minority[rng.IntN(len(minority))])
		}
		return d.Subset(idx), nil
	case Undersample:
		rng.Shuffle(len(majority), func(i, j int) { majority[i], majority[j] = majority[j], majority[i] })
		idx := append(slices.Clone(minority), majority[:len(minority)]...)
		slices.Sort(idx)
		return d.Subset(idx), nil
	case SMOTE:
		return smote(d, minority, need, im.Minority, rng)
	}
	return nil, fmt.Errorf("validate: unknown remedy %q (known: %s, %s, %s, %s)", remedy, ClassWeight, Oversample, Undersample, SMOTE)
}

func smote(d *dataset.Dataset, minority []int, need, label int, rng *rand.Rand) (*dataset.Dataset, error) {
	if len(d.Categorical)+len(d.Sensitive) > 0 {
		return nil, fmt.Errorf("validate: smote interpolates numeric features only, and %s has categorical columns; use oversample", d.Source)
	}
	if len(minority) < 2 {
		return nil, fmt.Errorf("validate: smote needs at least 2 minority rows, %s has %d", d.Source, len(minority))
	}
	names := d.Schema.Names(dataset.Numeric)
	if len(names) == 0 {
		return nil, fmt.Errorf("validate: smote: %s has no numeric features", d.Source)
	}
	// Standardised, mean-imputed minority points for the neighbour search.
	pts := make([][]float64, len(minority))
	for i := range pts {
		pts[i] = make([]float64, len(names))
	}
	for j, n := range names {
		col := imputed(d.Numeric[n])
		var mean, ss float64
		for _, r := range minority {
			mean += col[r]
		}
		mean /= float64(len(minority))
		for _, r := range minority {
			ss += (col[r] - mean) * (col[r] - mean)
		}
		sd := math.Sqrt(ss / float64(len(minority)))
		if sd == 0 {
			sd = 1
		}
		for i, r := range minority {
			pts[i][j] = (col[r] - mean) / sd
		}
	}
	const k = 5
	out := d.Subset(func() []int {
		idx := make([]int, d.Len())
		for i := range idx {
			idx[i] = i
		}
		return idx
	}())
	neighbours := make(map[int][]int)
	for range need {
		a := rng.IntN(len(minority))
		nb, ok := neighbours[a]
		if !ok {
			nb = nearest(pts, a, k)
			neighbours[a] = nb
		}
		b := nb[rng.IntN(len(nb))]
		gap := rng.Float64()
		ra, rb := minority[a], minority[b]
		for _, n := range names {
			col := d.Numeric[n]
			va, vb := col[ra], col[rb]
			var v float64
			switch {
			case math.IsNaN(va):
				v = vb
			case math.IsNaN(vb):
				v = va
			default:
				v = va + gap*(vb-va)
			}
			out.Numeric[n] = append(out.Numeric[n], v)
		}
		out.Y = append(out.Y, float64(label))
	}
	return out, nil
}

// nearest returns the indices of the k points closest to pts[a], a excluded.
func nearest(pts [][]float64, a, k int) []int {
	type cand struct {
		i int
		d float64
	}
	cs := make([]cand, 0, len(pts)-1)
	for i, p := range pts {
		if i == a {
			continue
		}
		var s float64
		for j, v := range p {
			s += (v - pts[a][j]) * (v - pts[a][j])
		}
		cs = append(cs, cand{i, s})
	}
	slices.SortFunc(cs, func(x, y cand) int {
		if x.d != y.d {
			if x.d < y.d {
				return -1
			}
			return 1
		}
		return x.i - y.i
	})
	out := make([]int, 0, k)
	for _, c := range cs[:min(k, len(cs))] {
		out = append(out, c.i)
	}
	return out
}

// Effect compares a quick logistic model trained without and with a remedy,
// both scored on the evaluation data at threshold 0.5.
type Effect struct {
	Remedy string             `json:"remedy"`
	Before map[string]float64 `json:"before"`
	After  map[string]float64 `json:"after"`
	Delta  map[string]float64 `json:"delta"`
}

var effectMetrics = []string{evaluate.Recall, evaluate.Precision, evaluate.F1, evaluate.ROCAUC}

// RemedyEffect trains logistic regression on train and on rebalanced (with
// balanced class weights for ClassWeight) and reports the metrics on eval.
func RemedyEffect(ctx context.Context, train, rebalanced, eval *dataset.Dataset, remedy string) (*Effect, error) {
	score := func(d *dataset.Dataset, opts ...model.TrainOption) (map[string]float64, error) {
		enc, err := dataset.FitEncoder(d, dataset.EncoderOptions{})
		if err != nil {
			return nil, err
		}
		x, err := enc.Transform(d)
		if err != nil {
			return nil, err
		}
		net, err := model.Train(ctx, x, d.Y, model.Config{Kind: model.LogReg, MaxIter: 200}, opts...)
		if err != nil {
			return nil, err
		}
		xe, err := enc.Transform(eval)
		if err != nil {
			return nil, err
		}
		p, err := net.PredictProba(xe)
		if err != nil {
			return nil, err
		}
		rep, err := evaluate.Evaluate(eval.Y, p, evaluate.Options{})
		if err != nil {
			return nil, err
		}
		out := map[string]float64{}
		for _, m := range effectMetrics {
			out[m] = rep.Metrics[m]
		}
		return out, nil
	}
	before, err := score(train)
	if err != nil {
		return nil, fmt.Errorf("validate: remedy effect, without %s: %w", remedy, err)
	}
	var opts []model.TrainOption
	if remedy == ClassWeight {
		opts = append(opts, model.WithBalancedClassWeights())
	}
	after, err := score(rebalanced, opts...)
	if err != nil {
		return nil, fmt.Errorf("validate: remedy effect, with %s: %w", remedy, err)
	}
	e := &Effect{Remedy: remedy, Before: before, After: after, Delta: map[string]float64{}}
	for _, m := range effectMetrics {
		e.Delta[m] = after[m] - before[m]
	}
	return e, nil
}

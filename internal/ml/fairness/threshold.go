package fairness

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Constraint is the parity a ThresholdPolicy aims for.
type Constraint string

// Supported constraints.
const (
	// DemographicParity equalises selection rates across groups.
	DemographicParity Constraint = "demographic_parity"
	// EqualizedOdds equalises both TPR and FPR across groups.
	EqualizedOdds Constraint = "equalized_odds"
)

// ThresholdOptions configure FitThresholds.
type ThresholdOptions struct {
	Constraint Constraint
	// Tolerance is the largest between-groups gap accepted as parity: the
	// selection-rate difference for DemographicParity, the larger of the TPR
	// and FPR differences for EqualizedOdds. Zero means DefaultTolerance.
	Tolerance float64
	// MaxCandidates caps the thresholds tried per group (evenly spaced over
	// the group's sorted distinct scores). Zero means DefaultMaxCandidates.
	MaxCandidates int
}

// Defaults of ThresholdOptions.
const (
	DefaultTolerance     = 0.02
	DefaultMaxCandidates = 256
)

// ThresholdPolicy holds one decision threshold per group: a row is
// predicted positive when its score >= its group's threshold. It is plain
// data so it can be stored as JSON next to the model and applied to any
// later data set.
type ThresholdPolicy struct {
	Constraint Constraint         `json:"constraint"`
	Thresholds map[string]float64 `json:"thresholds"`
	// Fallback is the single accuracy-maximising threshold over all training
	// rows; it serves groups that did not occur at fit time.
	Fallback float64 `json:"fallback"`
	// Gap and Accuracy are the achieved constraint gap and weighted accuracy
	// on the training data.
	Gap      float64 `json:"gap"`
	Accuracy float64 `json:"accuracy"`
	// Feasible reports whether Gap <= Tolerance was reached.
	Feasible  bool    `json:"feasible"`
	Tolerance float64 `json:"tolerance"`
}

// candidate is the outcome of one threshold within one group.
type candidate struct {
	threshold          float64
	rate, tpr, fpr     float64
	correct            float64
	tprDefined, fprDef bool
}

type groupCurve struct {
	name  string
	cands []candidate
}

// FitThresholds chooses per-group thresholds on scores so that the chosen
// constraint holds within Tolerance at the best accuracy.
//
// Fairlearn's ThresholdOptimizer reaches exact parity by randomising between
// two thresholds per group. Gauntlet needs reproducible decisions, so this
// is the deterministic variant: every group gets a single threshold. Each
// achievable operating point of any group (a selection rate, or an
// (FPR, TPR) pair for equalized odds) is tried as a common target; per
// group the most accurate threshold within Tolerance/2 of the target is
// taken (the nearest one when none is that close). Among targets whose
// resulting gap is within Tolerance, the most accurate wins; when no target
// reaches the tolerance, the smallest gap wins (ties: higher accuracy) and
// Feasible is false. Groups lacking positives (or negatives) do not
// constrain the TPR (FPR) side. Weights, when given, weight every rate and
// the accuracy.
func FitThresholds(scores []float64, yTrue []int, groups []string, weights []float64, opts ThresholdOptions) (*ThresholdPolicy, error) {
	if err := checkScored(scores, groups); err != nil {
		return nil, fmt.Errorf("fit thresholds: %w", err)
	}
	if len(yTrue) != len(scores) {
		return nil, fmt.Errorf("fit thresholds: y_true has %d rows, scores %d", len(yTrue), len(scores))
	}
	if err := checkBinary("y_true", yTrue); err != nil {
		return nil, fmt.Errorf("fit thresholds: %w", err)
	}
	if err := checkWeights(weights, len(scores)); err != nil {
		return nil, fmt.Errorf("fit thresholds: %w", err)
	}
	if opts.Constraint != DemographicParity && opts.Constraint != EqualizedOdds {
		return nil, fmt.Errorf("fit thresholds: unknown constraint %q", opts.Constraint)
	}
	tol := opts.Tolerance
	if tol == 0 {
		tol = DefaultTolerance
	}
	if !(tol > 0 && tol < 1) {
		return nil, fmt.Errorf("fit thresholds: tolerance must be in (0, 1), got %v", tol)
	}
	maxCand := opts.MaxCandidates
	if maxCand == 0 {
		maxCand = DefaultMaxCandidates
	}
	if maxCand < 2 {
		return nil, fmt.Errorf("fit thresholds: max candidates must be at least 2, got %d", maxCand)
	}

	rows := map[string][]int{}
	for i, g := range groups {
		rows[g] = append(rows[g], i)
	}
	names := make([]string, 0, len(rows))
	for g := range rows {
		names = append(names, g)
	}
	slices.Sort(names)
	curves := make([]groupCurve, len(names))
	var totalW float64
	for k, g := range names {
		curves[k] = groupCurve{name: g, cands: thresholdCurve(scores, yTrue, weights, rows[g], maxCand)}
		for _, i := range rows[g] {
			totalW += weightOf(weights, i)
		}
	}
	all := make([]int, len(scores))
	for i := range all {
		all[i] = i
	}
	fallback := bestAccuracy(thresholdCurve(scores, yTrue, weights, all, len(scores)+1))

	targets := operatingPoints(curves, opts.Constraint)
	best := struct {
		choice   []int
		gap, acc float64
		feasible bool
	}{gap: math.Inf(1), acc: -1}
	choice := make([]int, len(curves))
	for _, t := range targets {
		for k, c := range curves {
			choice[k] = pick(c.cands, t, opts.Constraint, tol/2)
		}
		gap, correct := evaluateChoice(curves, choice, opts.Constraint)
		acc := correct / totalW
		feasible := gap <= tol
		better := false
		switch {
		case feasible && !best.feasible:
			better = true
		case feasible:
			better = acc > best.acc
		case !best.feasible:
			better = gap < best.gap || (gap == best.gap && acc > best.acc)
		}
		if better {
			best.choice = slices.Clone(choice)
			best.gap, best.acc, best.feasible = gap, acc, feasible
		}
	}
	p := &ThresholdPolicy{
		Constraint: opts.Constraint,
		Thresholds: make(map[string]float64, len(curves)),
		Fallback:   fallback.threshold,
		Gap:        best.gap,
		Accuracy:   best.acc,
		Feasible:   best.feasible,
		Tolerance:  tol,
	}
	for k, c := range curves {
		p.Thresholds[c.name] = c.cands[best.choice[k]].threshold
	}
	return p, nil
}

func checkScored(scores []float64, groups []string) error {
	if len(scores) == 0 {
		return errors.New("no rows")
	}
	if len(groups) != len(scores) {
		return fmt.Errorf("groups have %d rows, scores %d", len(groups), len(scores))
	}
	for i, s := range scores {
		if math.IsNaN(s) || math.IsInf(s, 0) {
			return fmt.Errorf("score %d is not finite (%v)", i, s)
		}
	}
	return nil
}

// thresholdCurve lists, for the given rows, the outcome of each candidate
// threshold from "select nobody" (just above the highest score) down to
// "select everybody" (the lowest score).
func thresholdCurve(scores []float64, yTrue []int, weights []float64, rows []int, maxCand int) []candidate {
	idx := slices.Clone(rows)
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case scores[a] > scores[b]:
			return -1
		case scores[a] < scores[b]:
			return 1
		}
		return 0
	})
	var w, pos, neg float64
	for _, i := range idx {
		wi := weightOf(weights, i)
		w += wi
		if yTrue[i] == 1 {
			pos += wi
		} else {
			neg += wi
		}
	}
	mk := func(th, sel, tp, fp float64) candidate {
		c := candidate{threshold: th, tprDefined: pos > 0, fprDef: neg > 0}
		if w > 0 {
			c.rate = sel / w
		}
		if pos > 0 {
			c.tpr = tp / pos
		}
		if neg > 0 {
			c.fpr = fp / neg
		}
		c.correct = tp + (neg - fp)
		return c
	}
	out := []candidate{mk(math.Nextafter(scores[idx[0]], math.Inf(1)), 0, 0, 0)}
	var sel, tp, fp float64
	for j := 0; j < len(idx); {
		s := scores[idx[j]]
		for ; j < len(idx) && scores[idx[j]] == s; j++ {
			wi := weightOf(weights, idx[j])
			sel += wi
			if yTrue[idx[j]] == 1 {
				tp += wi
			} else {
				fp += wi
			}
		}
		out = append(out, mk(s, sel, tp, fp))
	}
	if len(out) <= maxCand {
		return out
	}
	thin := make([]candidate, maxCand)
	for k := range thin {
		thin[k] = out[k*(len(out)-1)/(maxCand-1)]
	}
	return thin
}

func bestAccuracy(cands []candidate) candidate {
	best := cands[0]
	for _, c := range cands[1:] {
		if c.correct > best.correct {
			best = c
		}
	}
	return best
}

type target struct{ rate, fpr, tpr float64 }

func operatingPoints(curves []groupCurve, c Constraint) []target {
	var ts []target
	for _, g := range curves {
		for _, cand := range g.cands {
			if c == DemographicParity {
				ts = append(ts, target{rate: cand.rate})
			} else {
				ts = append(ts, target{fpr: cand.fpr, tpr: cand.tpr})
			}
		}
	}
	slices.SortFunc(ts, func(a, b target) int {
		for _, d := range [3]float64{a.rate - b.rate, a.fpr - b.fpr, a.tpr - b.tpr} {
			if d < 0 {
				return -1
			}
			if d > 0 {
				return 1
			}
		}
		return 0
	})
	return slices.Compact(ts)
}

func distance(c candidate, t target, con Constraint) float64 {
	if con == DemographicParity {
		return math.Abs(c.rate - t.rate)
	}
	var d float64
	if c.fprDef {
		d = math.Abs(c.fpr - t.fpr)
	}
	if c.tprDefined {
		d = math.Max(d, math.Abs(c.tpr-t.tpr))
	}
	return d
}

// pick returns the index of the most accurate candidate within radius of
// the target, or of the nearest one when none is that close.
func pick(cands []candidate, t target, con Constraint, radius float64) int {
	best, nearest := -1, 0
	for k, c := range cands {
		d := distance(c, t, con)
		if d <= radius && (best < 0 || c.correct > cands[best].correct) {
			best = k
		}
		dn := distance(cands[nearest], t, con)
		if d < dn || (d == dn && c.correct > cands[nearest].correct) {
			nearest = k
		}
	}
	if best >= 0 {
		return best
	}
	return nearest
}

func evaluateChoice(curves []groupCurve, choice []int, con Constraint) (gap, correct float64) {
	var rates, tprs, fprs []Value
	for k, g := range curves {
		c := g.cands[choice[k]]
		correct += c.correct
		rates = append(rates, Value(c.rate))
		if c.tprDefined {
			tprs = append(tprs, Value(c.tpr))
		}
		if c.fprDef {
			fprs = append(fprs, Value(c.fpr))
		}
	}
	if con == DemographicParity {
		return float64(difference(rates)), correct
	}
	for _, d := range []Value{difference(tprs), difference(fprs)} {
		if d.Defined() {
			gap = math.Max(gap, float64(d))
		}
	}
	return gap, correct
}

// Predict applies the policy: 1 when a row's score >= its group's
// threshold. Groups unseen at fit time use Fallback.
func (p *ThresholdPolicy) Predict(scores []float64, groups []string) ([]int, error) {
	if p == nil || p.Thresholds == nil {
		return nil, errors.New("threshold policy: not fitted")
	}
	if err := checkScored(scores, groups); err != nil {
		return nil, fmt.Errorf("threshold policy: %w", err)
	}
	out := make([]int, len(scores))
	for i, s := range scores {
		th, ok := p.Thresholds[groups[i]]
		if !ok {
			th = p.Fallback
		}
		if s >= th {
			out[i] = 1
		}
	}
	return out, nil
}

package report

import (
	"fmt"
	"math"
	"sort"
)

// Curve is a ROC curve: false and true positive rates, from (0, 0) to (1, 1).
// Thresholds are left out on purpose: sklearn's first one is +Inf, which JSON
// cannot carry, and the plot does not need them.
type Curve struct {
	FPR []float64 `json:"fpr"`
	TPR []float64 `json:"tpr"`
}

// ROC computes the ROC curve as sklearn's roc_curve with drop_intermediate:
// one point per distinct score, in decreasing score order, keeping only the
// corners (collinear points add bytes to report.json and nothing to the plot).
// w may be nil (every row weighs 1).
func ROC(y, scores, w []float64) (Curve, error) {
	if len(y) == 0 {
		return Curve{}, fmt.Errorf("roc: no rows")
	}
	if len(scores) != len(y) || (w != nil && len(w) != len(y)) {
		return Curve{}, fmt.Errorf("roc: %d labels, %d scores, %d weights", len(y), len(scores), len(w))
	}
	weight := func(i int) float64 {
		if w == nil {
			return 1
		}
		return w[i]
	}
	for i := range y {
		if y[i] != 0 && y[i] != 1 {
			return Curve{}, fmt.Errorf("roc: label %d is %v, want 0 or 1", i, y[i])
		}
		if math.IsNaN(scores[i]) || math.IsInf(scores[i], 0) {
			return Curve{}, fmt.Errorf("roc: score %d is %v", i, scores[i])
		}
		if wi := weight(i); !(wi >= 0) || math.IsInf(wi, 0) {
			return Curve{}, fmt.Errorf("roc: weight %d is %v, want finite and ≥ 0", i, wi)
		}
	}
	idx := make([]int, len(y))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })

	var tps, fps []float64
	var tp, fp float64
	for k, i := range idx {
		tp += y[i] * weight(i)
		fp += (1 - y[i]) * weight(i)
		if k == len(idx)-1 || scores[idx[k+1]] != scores[i] {
			tps = append(tps, tp)
			fps = append(fps, fp)
		}
	}
	if !(tp > 0) || !(fp > 0) {
		return Curve{}, fmt.Errorf("roc: the curve needs both classes with positive weight")
	}

	c := Curve{FPR: []float64{0}, TPR: []float64{0}}
	for i := range tps {
		inner := i > 0 && i < len(tps)-1
		if inner && fps[i-1]+fps[i+1] == 2*fps[i] && tps[i-1]+tps[i+1] == 2*tps[i] {
			continue
		}
		c.FPR = append(c.FPR, fps[i]/fp)
		c.TPR = append(c.TPR, tps[i]/tp)
	}
	return c, nil
}

func (c Curve) validate() error {
	if len(c.FPR) != len(c.TPR) {
		return fmt.Errorf("roc curve has %d FPR but %d TPR values", len(c.FPR), len(c.TPR))
	}
	for i := range c.FPR {
		if !inUnit(c.FPR[i]) || !inUnit(c.TPR[i]) {
			return fmt.Errorf("roc point %d (%v, %v) is outside [0, 1]", i, c.FPR[i], c.TPR[i])
		}
	}
	return nil
}

func inUnit(v float64) bool { return v >= 0 && v <= 1 }

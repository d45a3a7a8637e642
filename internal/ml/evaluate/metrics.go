// Package evaluate computes binary classification metrics with the same
// definitions as scikit-learn (weighted where sklearn accepts weights), picks
// decision thresholds, and compares a candidate model with a baseline using
// MLflow MetricThreshold semantics.
package evaluate

import (
	"fmt"
	"math"
	"slices"
	"sort"
)

// Metric names, as used in Report.Metrics, manifests and thresholds.
const (
	Accuracy  = "accuracy"
	Precision = "precision"
	Recall    = "recall"
	F1        = "f1"
	ROCAUC    = "roc_auc"
	PRAUC     = "pr_auc" // average precision, as sklearn's average_precision_score
	LogLoss   = "log_loss"
	Brier     = "brier"
)

// Confusion holds weighted counts at a threshold.
type Confusion struct {
	TP, FP, TN, FN float64
}

// Bin is one calibration bin: scores in [Lo, Hi) (the last bin includes 1).
type Bin struct {
	Lo, Hi        float64
	Count         float64 // weighted
	MeanPredicted float64
	FractionTrue  float64
}

// Options configures Evaluate.
type Options struct {
	Weights   []float64 // per row; nil means 1
	Threshold float64   // predicted positive when score ≥ Threshold; 0 means 0.5
	Bins      int       // calibration bins; 0 means 10
}

// Report is the result of Evaluate.
type Report struct {
	N           int                `json:"n"`
	Threshold   float64            `json:"threshold"`
	Metrics     map[string]float64 `json:"metrics"`
	Confusion   Confusion          `json:"confusion"`
	Calibration []Bin              `json:"calibration"`
}

// check validates inputs shared by every metric and returns weights (1s if nil).
func check(y, scores, w []float64) ([]float64, error) {
	if len(y) == 0 {
		return nil, fmt.Errorf("evaluate: no rows")
	}
	if len(scores) != len(y) {
		return nil, fmt.Errorf("evaluate: %d labels but %d scores", len(y), len(scores))
	}
	if w == nil {
		w = make([]float64, len(y))
		for i := range w {
			w[i] = 1
		}
	} else if len(w) != len(y) {
		return nil, fmt.Errorf("evaluate: %d labels but %d weights", len(y), len(w))
	}
	var total float64
	for i := range y {
		if y[i] != 0 && y[i] != 1 {
			return nil, fmt.Errorf("evaluate: label %d is %v, want 0 or 1", i, y[i])
		}
		if math.IsNaN(scores[i]) || scores[i] < 0 || scores[i] > 1 {
			return nil, fmt.Errorf("evaluate: score %d is %v, want a probability", i, scores[i])
		}
		if !(w[i] >= 0) || math.IsInf(w[i], 0) {
			return nil, fmt.Errorf("evaluate: weight %d is %v, want finite and ≥ 0", i, w[i])
		}
		total += w[i]
	}
	if !(total > 0) {
		return nil, fmt.Errorf("evaluate: weights sum to zero")
	}
	return w, nil
}

// Evaluate computes every metric at once.
func Evaluate(y, scores []float64, opts Options) (*Report, error) {
	w, err := check(y, scores, opts.Weights)
	if err != nil {
		return nil, err
	}
	thr := opts.Threshold
	if thr == 0 {
		thr = 0.5
	}
	bins := opts.Bins
	if bins == 0 {
		bins = 10
	}
	c := ConfusionAt(y, scores, w, thr)
	curve, err := newCurve(y, scores, w)
	if err != nil {
		return nil, err
	}
	cal, err := Calibration(y, scores, w, bins)
	if err != nil {
		return nil, err
	}
	r := &Report{
		N:         len(y),
		Threshold: thr,
		Confusion: c,
		Metrics: map[string]float64{
			Accuracy:  c.Accuracy(),
			Precision: c.Precision(),
			Recall:    c.Recall(),
			F1:        c.F1(),
			ROCAUC:    curve.rocAUC(),
			PRAUC:     curve.averagePrecision(),
			LogLoss:   logLoss(y, scores, w),
			Brier:     brier(y, scores, w),
		},
		Calibration: cal,
	}
	return r, nil
}

// ConfusionAt counts weighted outcomes with positive meaning score ≥ thr.
// Inputs are assumed valid (see Evaluate).
func ConfusionAt(y, scores, w []float64, thr float64) Confusion {
	var c Confusion
	for i := range y {
		wi := 1.0
		if w != nil {
			wi = w[i]
		}
		switch pos := scores[i] >= thr; {
		case pos && y[i] == 1:
			c.TP += wi
		case pos:
			c.FP += wi
		case y[i] == 1:
			c.FN += wi
		default:
			c.TN += wi
		}
	}
	return c
}

// Accuracy is (TP+TN)/total.
func (c Confusion) Accuracy() float64 { return (c.TP + c.TN) / (c.TP + c.TN + c.FP + c.FN) }

// Precision is TP/(TP+FP), 0 when nothing is predicted positive (sklearn's
// zero_division=0 value).
func (c Confusion) Precision() float64 { return ratio(c.TP, c.TP+c.FP) }

// Recall is TP/(TP+FN), 0 when there are no positives.
func (c Confusion) Recall() float64 { return ratio(c.TP, c.TP+c.FN) }

// F1 is the harmonic mean of precision and recall, computed from them as
// sklearn does, 0 when both are 0.
func (c Confusion) F1() float64 {
	p, r := c.Precision(), c.Recall()
	return ratio(2*p*r, p+r)
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// curve holds cumulative weighted true and false positives at each distinct
// score, in decreasing score order (sklearn's _binary_clf_curve).
type curve struct {
	thresholds, tps, fps []float64
}

func newCurve(y, scores, w []float64) (*curve, error) {
	idx := make([]int, len(y))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return scores[idx[a]] > scores[idx[b]] })
	c := &curve{}
	var tp, fp float64
	for k, i := range idx {
		tp += y[i] * w[i]
		fp += (1 - y[i]) * w[i]
		if k == len(idx)-1 || scores[idx[k+1]] != scores[i] {
			c.thresholds = append(c.thresholds, scores[i])
			c.tps = append(c.tps, tp)
			c.fps = append(c.fps, fp)
		}
	}
	if tp == 0 || fp == 0 {
		return nil, fmt.Errorf("evaluate: ROC and PR curves need both classes with positive weight")
	}
	return c, nil
}

// rocAUC is the trapezoidal area under (FPR, TPR), starting at (0, 0).
func (c *curve) rocAUC() float64 {
	tpTotal, fpTotal := c.tps[len(c.tps)-1], c.fps[len(c.fps)-1]
	var area, prevX, prevY float64
	for i := range c.tps {
		x, y := c.fps[i]/fpTotal, c.tps[i]/tpTotal
		area += (x - prevX) * (y + prevY) / 2
		prevX, prevY = x, y
	}
	return area
}

// averagePrecision is Σ (Rₙ − Rₙ₋₁)·Pₙ over thresholds in decreasing order.
func (c *curve) averagePrecision() float64 {
	tpTotal := c.tps[len(c.tps)-1]
	var ap, prevR float64
	for i := range c.tps {
		r := c.tps[i] / tpTotal
		ap += (r - prevR) * ratio(c.tps[i], c.tps[i]+c.fps[i])
		prevR = r
	}
	return ap
}

// ROCAUCScore is the area under the ROC curve (sklearn's roc_auc_score).
func ROCAUCScore(y, scores, w []float64) (float64, error) {
	w, err := check(y, scores, w)
	if err != nil {
		return 0, err
	}
	c, err := newCurve(y, scores, w)
	if err != nil {
		return 0, err
	}
	return c.rocAUC(), nil
}

// AveragePrecisionScore is sklearn's average_precision_score (PR AUC).
func AveragePrecisionScore(y, scores, w []float64) (float64, error) {
	w, err := check(y, scores, w)
	if err != nil {
		return 0, err
	}
	c, err := newCurve(y, scores, w)
	if err != nil {
		return 0, err
	}
	return c.averagePrecision(), nil
}

// logEps is float64 machine epsilon, sklearn's eps="auto" clip for log_loss.
const logEps = 2.220446049250313e-16

func logLoss(y, p, w []float64) float64 {
	var sum, total float64
	for i := range y {
		q := math.Min(math.Max(p[i], logEps), 1-logEps)
		if y[i] == 0 {
			q = 1 - q
		}
		sum -= w[i] * math.Log(q)
		total += w[i]
	}
	return sum / total
}

func brier(y, p, w []float64) float64 {
	var sum, total float64
	for i := range y {
		sum += w[i] * (y[i] - p[i]) * (y[i] - p[i])
		total += w[i]
	}
	return sum / total
}

// Calibration bins scores into n equal-width bins as sklearn's
// calibration_curve(strategy="uniform"): a score on an inner edge falls in
// the lower bin. Empty bins have Count 0 (sklearn drops them).
func Calibration(y, scores, w []float64, n int) ([]Bin, error) {
	if n < 1 {
		return nil, fmt.Errorf("evaluate: calibration needs at least one bin, got %d", n)
	}
	w, err := check(y, scores, w)
	if err != nil {
		return nil, err
	}
	bins := make([]Bin, n)
	edges := make([]float64, n+1)
	for i := range edges {
		edges[i] = float64(i) / float64(n)
	}
	for i := range bins {
		bins[i].Lo, bins[i].Hi = edges[i], edges[i+1]
	}
	inner := edges[1:n]
	for i, s := range scores {
		// searchsorted(inner, s, side="left"): the count of inner edges < s.
		b, _ := slices.BinarySearch(inner, s)
		bins[b].Count += w[i]
		bins[b].MeanPredicted += w[i] * s
		bins[b].FractionTrue += w[i] * y[i]
	}
	for i := range bins {
		if bins[i].Count > 0 {
			bins[i].MeanPredicted /= bins[i].Count
			bins[i].FractionTrue /= bins[i].Count
		}
	}
	return bins, nil
}

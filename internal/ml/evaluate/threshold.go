package evaluate

import "fmt"

// Objective is what ChooseThreshold maximises.
type Objective string

const (
	// MaxF1 maximises F1.
	MaxF1 Objective = "f1"
	// Youden maximises Youden's J = TPR − FPR.
	Youden Objective = "youden"
)

// ChooseThreshold returns the score threshold (positive when score ≥ it) that
// maximises the objective, and the objective's value there. Ties keep the
// highest threshold, the more conservative choice.
func ChooseThreshold(y, scores, w []float64, obj Objective) (threshold, value float64, err error) {
	w, err = check(y, scores, w)
	if err != nil {
		return 0, 0, err
	}
	c, err := newCurve(y, scores, w)
	if err != nil {
		return 0, 0, err
	}
	tpTotal, fpTotal := c.tps[len(c.tps)-1], c.fps[len(c.fps)-1]
	best := -1.0
	for i, t := range c.thresholds {
		var v float64
		switch obj {
		case MaxF1:
			conf := Confusion{TP: c.tps[i], FP: c.fps[i], FN: tpTotal - c.tps[i]}
			v = conf.F1()
		case Youden:
			v = c.tps[i]/tpTotal - c.fps[i]/fpTotal
		default:
			return 0, 0, fmt.Errorf("evaluate: unknown threshold objective %q (want %q or %q)", obj, MaxF1, Youden)
		}
		if v > best {
			best, threshold = v, t
		}
	}
	return threshold, best, nil
}

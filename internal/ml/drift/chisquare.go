package drift

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/stat/distuv"
)

// ChiSquareResult is a chi-square test of homogeneity between two samples of
// a categorical variable.
type ChiSquareResult struct {
	Statistic float64 `json:"statistic"`
	PValue    float64 `json:"pvalue"`
	DoF       int     `json:"dof"`
	// CramersV is the effect size sqrt(chi2 / (N * (min(rows, cols) - 1))),
	// which unlike the p-value does not grow with the sample size.
	CramersV float64 `json:"cramers_v"`
}

// ChiSquare tests whether the category counts of reference and current come
// from the same distribution, as scipy.stats.chi2_contingency does on the
// 2 x K table [reference; current] with its defaults: Yates' continuity
// correction when the table has one degree of freedom, and statistic 0 with
// p-value 1 when it has none (a single category). Categories absent from
// both samples must not be passed (a zero column has no expected count).
func ChiSquare(reference, current []float64) (ChiSquareResult, error) {
	if len(reference) != len(current) {
		return ChiSquareResult{}, fmt.Errorf("chi-square: %d reference categories vs %d current", len(reference), len(current))
	}
	if len(reference) == 0 {
		return ChiSquareResult{}, errors.New("chi-square: no categories")
	}
	var rt, ct float64
	for i := range reference {
		r, c := reference[i], current[i]
		if !(r >= 0) || !(c >= 0) || math.IsInf(r, 0) || math.IsInf(c, 0) {
			return ChiSquareResult{}, fmt.Errorf("chi-square: category %d has a negative or non-finite count", i)
		}
		if r+c == 0 {
			return ChiSquareResult{}, fmt.Errorf("chi-square: category %d is empty in both samples", i)
		}
		rt += r
		ct += c
	}
	if rt == 0 || ct == 0 {
		return ChiSquareResult{}, errors.New("chi-square: a sample has no observations")
	}
	total := rt + ct
	dof := len(reference) - 1
	if dof == 0 {
		return ChiSquareResult{Statistic: 0, PValue: 1, DoF: 0}, nil
	}
	var stat float64
	for i := range reference {
		col := reference[i] + current[i]
		for _, cell := range [2][2]float64{{reference[i], rt}, {current[i], ct}} {
			obs, exp := cell[0], cell[1]*col/total
			if dof == 1 {
				diff := exp - obs
				obs += math.Copysign(math.Min(0.5, math.Abs(diff)), diff)
			}
			stat += (obs - exp) * (obs - exp) / exp
		}
	}
	p := distuv.ChiSquared{K: float64(dof)}.Survival(stat)
	return ChiSquareResult{
		Statistic: stat,
		PValue:    p,
		DoF:       dof,
		CramersV:  math.Sqrt(stat / total),
	}, nil
}

package drift

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// Column is one feature of a table: exactly one of Numeric or Categorical
// is set.
type Column struct {
	Numeric     []float64 `json:"numeric,omitempty"`
	Categorical []string  `json:"categorical,omitempty"`
}

// Table maps a column name to its values.
type Table map[string]Column

// Thresholds decide when a feature has drifted.
//
// Large samples make every p-value tiny, so significance alone is never
// enough: a test must also show an effect that matters. A numeric feature
// drifts when PSI >= PSI, or when the KS test rejects at Alpha AND its
// statistic is at least max(KSMinEffect, c(Alpha)*sqrt((n+m)/(n*m))), the
// classical two-sample critical value with c(a) = sqrt(-ln(a/2)/2). With
// small samples the critical value dominates (a large D is required before
// calling drift); with large samples it shrinks towards zero and the fixed
// effect floor takes over, so a statistically real but negligible shift in
// a million rows is not reported as drift. A categorical feature drifts when
// PSI over its categories >= PSI, or when the chi-square test rejects at
// Alpha AND Cramér's V >= CramersVMinEffect. The data set drifts when the
// share of drifted features is at least DatasetShare.
type Thresholds struct {
	PSI               float64 `json:"psi"`
	Alpha             float64 `json:"alpha"`
	KSMinEffect       float64 `json:"ks_min_effect"`
	CramersVMinEffect float64 `json:"cramers_v_min_effect"`
	DatasetShare      float64 `json:"dataset_share"`
	// Bins is the number of reference quantile bins for PSI and JS.
	Bins int `json:"bins"`
	// Epsilon floors empty PSI bins.
	Epsilon float64 `json:"epsilon"`
}

// DefaultThresholds: PSI 0.2 is the customary "significant shift" level;
// KS D >= 0.1 and Cramér's V >= 0.1 are the conventional "small effect"
// boundaries; half of the features drifting mirrors Evidently's data-set
// rule, so that one noisy feature does not flag a whole data set while each
// feature's own verdict still shows it.
func DefaultThresholds() Thresholds {
	return Thresholds{
		PSI:               0.2,
		Alpha:             0.05,
		KSMinEffect:       0.1,
		CramersVMinEffect: 0.1,
		DatasetShare:      0.5,
		Bins:              DefaultPSIBins,
		Epsilon:           DefaultPSIEpsilon,
	}
}

func (t Thresholds) validate() error {
	switch {
	case !(t.PSI > 0):
		return fmt.Errorf("psi threshold must be positive, got %v", t.PSI)
	case !(t.Alpha > 0 && t.Alpha < 1):
		return fmt.Errorf("alpha must be in (0, 1), got %v", t.Alpha)
	case !(t.KSMinEffect >= 0 && t.KSMinEffect <= 1):
		return fmt.Errorf("ks_min_effect must be in [0, 1], got %v", t.KSMinEffect)
	case !(t.CramersVMinEffect >= 0 && t.CramersVMinEffect <= 1):
		return fmt.Errorf("cramers_v_min_effect must be in [0, 1], got %v", t.CramersVMinEffect)
	case !(t.DatasetShare > 0 && t.DatasetShare <= 1):
		return fmt.Errorf("dataset_share must be in (0, 1], got %v", t.DatasetShare)
	case t.Bins < 2:
		return fmt.Errorf("bins must be at least 2, got %d", t.Bins)
	case !(t.Epsilon > 0):
		return fmt.Errorf("epsilon must be positive, got %v", t.Epsilon)
	}
	return nil
}

// KSCriticalValue is the asymptotic two-sample KS critical value at level
// alpha for sample sizes n and m.
func KSCriticalValue(alpha float64, n, m int) float64 {
	c := math.Sqrt(-math.Log(alpha/2) / 2)
	return c * math.Sqrt(float64(n+m)/(float64(n)*float64(m)))
}

// FeatureResult is the drift evidence for one column. Numeric columns fill
// KS and Wasserstein; categorical ones fill ChiSquare.
type FeatureResult struct {
	Name        string           `json:"name"`
	Kind        string           `json:"kind"`
	PSI         float64          `json:"psi"`
	JSDistance  float64          `json:"js_distance"`
	KS          *KSResult        `json:"ks,omitempty"`
	KSCritical  float64          `json:"ks_critical,omitempty"`
	Wasserstein float64          `json:"wasserstein,omitempty"`
	ChiSquare   *ChiSquareResult `json:"chi_square,omitempty"`
	Drifted     bool             `json:"drifted"`
	// Reason says which rule fired, or why none did.
	Reason string `json:"reason"`
}

// Report is the drift verdict for a whole table.
type Report struct {
	Features        []FeatureResult `json:"features"`
	DriftedFeatures int             `json:"drifted_features"`
	Share           float64         `json:"share"`
	Drifted         bool            `json:"drifted"`
	Thresholds      Thresholds      `json:"thresholds"`
}

// Compare tests every column of reference against the same column of
// current. Both tables must have the same columns of the same kind.
// Features are reported in name order.
func Compare(reference, current Table, th Thresholds) (*Report, error) {
	if err := th.validate(); err != nil {
		return nil, fmt.Errorf("drift: %w", err)
	}
	if len(reference) == 0 {
		return nil, errors.New("drift: reference table has no columns")
	}
	if len(reference) != len(current) {
		return nil, fmt.Errorf("drift: reference has %d columns, current %d", len(reference), len(current))
	}
	names := make([]string, 0, len(reference))
	for name := range reference {
		names = append(names, name)
	}
	slices.Sort(names)
	rep := &Report{Thresholds: th}
	for _, name := range names {
		cur, ok := current[name]
		if !ok {
			return nil, fmt.Errorf("drift: column %q missing from current table", name)
		}
		fr, err := compareColumn(name, reference[name], cur, th)
		if err != nil {
			return nil, fmt.Errorf("drift: column %q: %w", name, err)
		}
		if fr.Drifted {
			rep.DriftedFeatures++
		}
		rep.Features = append(rep.Features, fr)
	}
	rep.Share = float64(rep.DriftedFeatures) / float64(len(rep.Features))
	rep.Drifted = rep.Share >= th.DatasetShare
	return rep, nil
}

func compareColumn(name string, ref, cur Column, th Thresholds) (FeatureResult, error) {
	refNum, curNum := ref.Numeric != nil, cur.Numeric != nil
	refCat, curCat := ref.Categorical != nil, cur.Categorical != nil
	switch {
	case refNum == refCat || curNum == curCat:
		return FeatureResult{}, errors.New("each column must be exactly one of numeric or categorical")
	case refNum != curNum:
		return FeatureResult{}, errors.New("column kind differs between reference and current")
	case refNum:
		return NumericFeature(name, ref.Numeric, cur.Numeric, th)
	default:
		return CategoricalFeature(name, ref.Categorical, cur.Categorical, th)
	}
}

// NumericFeature computes PSI, JS distance (base 2, over the same reference
// quantile bins), KS and Wasserstein-1 for one numeric feature and applies
// the Thresholds rule.
func NumericFeature(name string, reference, current []float64, th Thresholds) (FeatureResult, error) {
	if err := th.validate(); err != nil {
		return FeatureResult{}, err
	}
	x, err := sortedFinite(reference)
	if err != nil {
		return FeatureResult{}, fmt.Errorf("reference: %w", err)
	}
	y, err := sortedFinite(current)
	if err != nil {
		return FeatureResult{}, fmt.Errorf("current: %w", err)
	}
	edges := edgesFrom(x, th.Bins)
	r, c := binProportions(x, edges), binProportions(y, edges)
	js, err := JensenShannon(r, c, 2)
	if err != nil {
		return FeatureResult{}, err
	}
	ks := ksSorted(x, y)
	fr := FeatureResult{
		Name:        name,
		Kind:        "numeric",
		PSI:         psiFromProportions(r, c, th.Epsilon),
		JSDistance:  js,
		KS:          &ks,
		KSCritical:  KSCriticalValue(th.Alpha, len(x), len(y)),
		Wasserstein: wassersteinSorted(x, y),
	}
	effect := math.Max(th.KSMinEffect, fr.KSCritical)
	switch {
	case fr.PSI >= th.PSI:
		fr.Drifted = true
		fr.Reason = fmt.Sprintf("PSI %.4f >= %.4f", fr.PSI, th.PSI)
	case ks.PValue < th.Alpha && ks.Statistic >= effect:
		fr.Drifted = true
		fr.Reason = fmt.Sprintf("KS D %.4f >= %.4f with p-value %.3g < %.3g", ks.Statistic, effect, ks.PValue, th.Alpha)
	case ks.PValue < th.Alpha:
		fr.Reason = fmt.Sprintf("KS significant (p-value %.3g) but D %.4f below effect threshold %.4f; PSI %.4f below %.4f", ks.PValue, ks.Statistic, effect, fr.PSI, th.PSI)
	default:
		fr.Reason = fmt.Sprintf("PSI %.4f below %.4f and KS not significant (p-value %.3g)", fr.PSI, th.PSI, ks.PValue)
	}
	return fr, nil
}

// CategoricalFeature computes PSI and JS distance (base 2) over the union of
// categories and the chi-square homogeneity test, and applies the
// Thresholds rule. Categories unseen in the reference count as their own
// bins, so a brand-new category shows up as drift.
func CategoricalFeature(name string, reference, current []string, th Thresholds) (FeatureResult, error) {
	if err := th.validate(); err != nil {
		return FeatureResult{}, err
	}
	if len(reference) == 0 || len(current) == 0 {
		return FeatureResult{}, errors.New("both samples must be non-empty")
	}
	idx := map[string]int{}
	for _, v := range reference {
		if _, ok := idx[v]; !ok {
			idx[v] = len(idx)
		}
	}
	for _, v := range current {
		if _, ok := idx[v]; !ok {
			idx[v] = len(idx)
		}
	}
	rc, cc := make([]float64, len(idx)), make([]float64, len(idx))
	for _, v := range reference {
		rc[idx[v]]++
	}
	for _, v := range current {
		cc[idx[v]]++
	}
	return CategoricalCounts(name, rc, cc, th)
}

// CategoricalCounts is CategoricalFeature from the number of rows of each
// category in the reference and current samples (the same categories in
// the same order), which is all it needs: a coded column gives the counts
// without building a string per row.
func CategoricalCounts(name string, rc, cc []float64, th Thresholds) (FeatureResult, error) {
	if err := th.validate(); err != nil {
		return FeatureResult{}, err
	}
	if len(rc) != len(cc) {
		return FeatureResult{}, fmt.Errorf("%d reference categories vs %d current", len(rc), len(cc))
	}
	var nr, nc float64
	for i := range rc {
		nr += rc[i]
		nc += cc[i]
	}
	if nr == 0 || nc == 0 {
		return FeatureResult{}, errors.New("both samples must be non-empty")
	}
	chi, err := ChiSquare(rc, cc)
	if err != nil {
		return FeatureResult{}, err
	}
	js, err := JensenShannon(rc, cc, 2)
	if err != nil {
		return FeatureResult{}, err
	}
	r, c := make([]float64, len(rc)), make([]float64, len(cc))
	for i := range rc {
		r[i] = rc[i] / nr
		c[i] = cc[i] / nc
	}
	fr := FeatureResult{
		Name:       name,
		Kind:       "categorical",
		PSI:        psiFromProportions(r, c, th.Epsilon),
		JSDistance: js,
		ChiSquare:  &chi,
	}
	switch {
	case fr.PSI >= th.PSI:
		fr.Drifted = true
		fr.Reason = fmt.Sprintf("PSI %.4f >= %.4f", fr.PSI, th.PSI)
	case chi.PValue < th.Alpha && chi.CramersV >= th.CramersVMinEffect:
		fr.Drifted = true
		fr.Reason = fmt.Sprintf("chi-square p-value %.3g < %.3g with Cramér's V %.4f >= %.4f", chi.PValue, th.Alpha, chi.CramersV, th.CramersVMinEffect)
	case chi.PValue < th.Alpha:
		fr.Reason = fmt.Sprintf("chi-square significant (p-value %.3g) but Cramér's V %.4f below %.4f; PSI %.4f below %.4f", chi.PValue, chi.CramersV, th.CramersVMinEffect, fr.PSI, th.PSI)
	default:
		fr.Reason = fmt.Sprintf("PSI %.4f below %.4f and chi-square not significant (p-value %.3g)", fr.PSI, th.PSI, chi.PValue)
	}
	return fr, nil
}

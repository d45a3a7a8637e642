package fairness

import "fmt"

// FeatureCost compares one feature's aggregates before and after mitigation.
type FeatureCost struct {
	Feature string     `json:"feature"`
	Before  Aggregates `json:"before"`
	After   Aggregates `json:"after"`
}

// MitigationCost is what a mitigation bought and what it cost: accuracy
// and fairness aggregates before and after, evaluated on the same rows.
type MitigationCost struct {
	AccuracyBefore Value         `json:"accuracy_before"`
	AccuracyAfter  Value         `json:"accuracy_after"`
	AccuracyDelta  Value         `json:"accuracy_delta"`
	Features       []FeatureCost `json:"features"`
}

// Cost compares two reports of the same data (for example predictions of a
// model before and after thresholds, or of models trained without and with
// Reweigh weights).
func Cost(before, after *Report) (MitigationCost, error) {
	if before == nil || after == nil {
		return MitigationCost{}, fmt.Errorf("mitigation cost: missing report")
	}
	if before.Rows != after.Rows {
		return MitigationCost{}, fmt.Errorf("mitigation cost: reports cover %d and %d rows", before.Rows, after.Rows)
	}
	mc := MitigationCost{
		AccuracyBefore: before.Accuracy,
		AccuracyAfter:  after.Accuracy,
		AccuracyDelta:  after.Accuracy - before.Accuracy,
	}
	for _, fb := range before.Features {
		fa, ok := after.Feature(fb.Feature)
		if !ok {
			return MitigationCost{}, fmt.Errorf("mitigation cost: feature %q missing after mitigation", fb.Feature)
		}
		mc.Features = append(mc.Features, FeatureCost{Feature: fb.Feature, Before: fb.Aggregates, After: fa.Aggregates})
	}
	return mc, nil
}

// Package fairness measures group fairness of a binary classifier, gates a
// model on limits, and mitigates unfairness (per-group thresholds after
// training, Kamiran–Calders reweighing before it).
//
// Metrics follow Fairlearn's definitions: per-group selection rate, TPR,
// FPR, FNR and precision; aggregates are between-groups differences
// (max - min) and ratios (min / max). Two deliberate departures, both so
// that nothing is silently wrong:
//
//   - A rate whose denominator is zero (TPR in a group without positives,
//     precision without predicted positives, ...) is undefined: it is NaN,
//     named in GroupMetrics.Undefined and serialised as JSON null.
//     Fairlearn (through scikit-learn) reports 0 there, which can fake or
//     hide a disparity. Aggregates use only the groups where the rate is
//     defined, and are themselves undefined when no group has it.
//   - Groups smaller than Options.MinGroupSize are flagged; by default
//     (DefaultOptions) they are also left out of the aggregates, because a
//     handful of rows makes max - min noise, not evidence. The zero Options
//     reproduces Fairlearn exactly: no group is flagged or excluded.
//
// The package is plain maths: no I/O and no Temporal.
package fairness

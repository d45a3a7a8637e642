// Package drift measures how far current data has moved from a reference
// sample: PSI over reference quantile bins, the two-sample Kolmogorov–Smirnov
// test (a port of scipy.stats.ks_2samp), a chi-square homogeneity test for
// categorical features, Jensen–Shannon and Wasserstein-1 distances, and a
// per-feature and per-data-set verdict whose thresholds account for sample
// size. It is plain maths: no I/O and no Temporal.
package drift

#!/usr/bin/env python3
"""Reference values from scikit-learn for the Go tests in internal/ml.

Run with Debian's interpreter (it has numpy/scipy/sklearn):
    /usr/bin/python3 testdata/ml/gen_reference.py
It rewrites metrics_reference.json and logreg_reference.json next to itself.
The Go tests read only the committed JSON; Python is not needed to test.
"""
import json
import os

import numpy as np
import sklearn
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (accuracy_score, average_precision_score,
                             brier_score_loss, f1_score, log_loss,
                             precision_score, recall_score, roc_auc_score)

HERE = os.path.dirname(os.path.abspath(__file__))


def metrics_case(name, y, s, w):
    pred = (s >= 0.5).astype(int)
    case = {
        "name": name,
        "y": y.tolist(),
        "scores": s.tolist(),
        "weights": None if w is None else w.tolist(),
        "accuracy": accuracy_score(y, pred, sample_weight=w),
        "precision": precision_score(y, pred, sample_weight=w, zero_division=0),
        "recall": recall_score(y, pred, sample_weight=w, zero_division=0),
        "f1": f1_score(y, pred, sample_weight=w, zero_division=0),
        "roc_auc": roc_auc_score(y, s, sample_weight=w),
        "pr_auc": average_precision_score(y, s, sample_weight=w),
        "log_loss": log_loss(y, s, sample_weight=w),
        "brier": brier_score_loss(y, s, sample_weight=w),
    }
    if w is None:
        prob_true, prob_pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
        case["calibration_true"] = prob_true.tolist()
        case["calibration_pred"] = prob_pred.tolist()
    return case


def main():
    rng = np.random.default_rng(20240611)
    cases = []
    n = 500
    y = rng.integers(0, 2, n)
    s = 1 / (1 + np.exp(-(1.2 * (2 * y - 1) + rng.normal(0, 1.5, n))))
    cases.append(metrics_case("continuous_unweighted", y, s, None))
    w = rng.uniform(0.1, 3.0, n)
    cases.append(metrics_case("continuous_weighted", y, s, w))
    # Rounded scores create ties, which the curve code must group; the
    # extremes 0 and 1 exercise log-loss clipping.
    st = np.round(s, 1)
    cases.append(metrics_case("ties_unweighted", y, st, None))
    cases.append(metrics_case("ties_weighted", y, st, w))
    with open(os.path.join(HERE, "metrics_reference.json"), "w") as f:
        json.dump({"sklearn": sklearn.__version__, "cases": cases}, f, indent=1)

    n, d = 400, 6
    X = rng.normal(0, 1, (n, d)) * np.array([1, 2, 0.5, 1, 3, 1])
    beta = np.array([1.5, -0.7, 2.0, 0.0, 0.3, -1.1])
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-(X @ beta - 0.4)))).astype(int)
    w = rng.uniform(0.2, 2.0, n)
    fits = []
    for C, weights in [(1.0, None), (0.05, None), (0.5, w)]:
        lr = LogisticRegression(C=C, solver="lbfgs", tol=1e-12, max_iter=100000)
        lr.fit(X, y, sample_weight=weights)
        fits.append({"C": C, "weighted": weights is not None,
                     "coef": lr.coef_[0].tolist(), "intercept": float(lr.intercept_[0])})
    with open(os.path.join(HERE, "logreg_reference.json"), "w") as f:
        json.dump({"sklearn": sklearn.__version__, "X": X.tolist(), "y": y.tolist(),
                   "weights": w.tolist(), "fits": fits}, f, indent=1)


if __name__ == "__main__":
    main()

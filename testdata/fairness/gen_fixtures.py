#!/usr/bin/python3
"""Reference values for internal/ml/fairness, computed with numpy.

Fairlearn is not installed; this follows its definitions independently:
per group selection_rate = sum(w*pred)/sum(w), TPR = sum(w*tp)/sum(w*pos),
FPR = sum(w*fp)/sum(w*neg), FNR = 1 - TPR computed as sum(w*fn)/sum(w*pos),
precision = sum(w*tp)/sum(w*pred); aggregates are between-groups
max - min (differences) and min / max (ratio); equalized odds difference is
max(TPR difference, FPR difference), equal opportunity difference the TPR
difference. Where a denominator is zero this script writes null (Gauntlet's
documented choice; Fairlearn would report 0) and aggregates ignore it.

Run: /usr/bin/python3 gen_fixtures.py  (writes metrics.json and
thresholds.json.gz next to this file).
"""
import gzip
import json
import os

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(7)


def nz(num, den):
    return None if den == 0 else float(num / den)


def group_metrics(yt, yp, w):
    pos, neg = w[yt == 1].sum(), w[yt == 0].sum()
    tp = w[(yt == 1) & (yp == 1)].sum()
    fp = w[(yt == 0) & (yp == 1)].sum()
    fn = w[(yt == 1) & (yp == 0)].sum()
    sel = w[yp == 1].sum()
    return {
        "count": int(len(yt)), "weight": float(w.sum()),
        "selection_rate": nz(sel, w.sum()), "true_positive_rate": nz(tp, pos),
        "false_positive_rate": nz(fp, neg), "false_negative_rate": nz(fn, pos),
        "precision": nz(tp, sel), "accuracy": nz(w[yt == yp].sum(), w.sum()),
    }


def diff(vals):
    v = [x for x in vals if x is not None]
    return None if not v else float(max(v) - min(v))


def aggregates(groups):
    sel = [g["selection_rate"] for g in groups]
    tpr = [g["true_positive_rate"] for g in groups]
    fpr = [g["false_positive_rate"] for g in groups]
    dsel = [x for x in sel if x is not None]
    ratio = None if not dsel or max(dsel) == 0 else float(min(dsel) / max(dsel))
    td, fd = diff(tpr), diff(fpr)
    return {
        "demographic_parity_difference": diff(sel), "demographic_parity_ratio": ratio,
        "equalized_odds_difference": None if td is None or fd is None else max(td, fd),
        "equal_opportunity_difference": td,
        "true_positive_rate_difference": td, "false_positive_rate_difference": fd,
    }


def evaluate(yt, yp, w, features, min_size):
    out = {}
    for name, col in features.items():
        groups = {}
        for g in sorted(set(col)):
            m = col == g
            groups[g] = group_metrics(yt[m], yp[m], w[m])
        used = [m for m in groups.values() if m["count"] >= min_size]
        out[name] = {"groups": groups, "aggregates": aggregates(used),
                     "excluded": sorted(g for g, m in groups.items() if m["count"] < min_size)}
    return out


# --- metrics fixture -------------------------------------------------------
n = 1500
sex = rng.choice(["female", "male"], n, p=[0.45, 0.55])
race = rng.choice(["asian", "black", "white"], n, p=[0.2, 0.3, 0.5])
# A tiny group with no positives: its TPR/FNR are undefined.
race[:12] = "other"
x = rng.normal(size=n)
y_true = (x + 0.3 * (sex == "male") + rng.normal(0, 0.7, n) > 0.2).astype(int)
y_true[:12] = 0
score = 1 / (1 + np.exp(-(1.5 * x + 0.6 * (sex == "male") - 0.4 * (race == "black"))))
y_pred = (score >= 0.5).astype(int)
weights = np.round(rng.uniform(0.5, 2.0, n), 3)

features = {"race": race, "sex": sex, "race&sex": np.array([f"{r}&{s}" for r, s in zip(race, sex)])}
ones = np.ones(n)
expected = {
    "unweighted_all": evaluate(y_true, y_pred, ones, features, 0),
    "weighted_all": evaluate(y_true, y_pred, weights, features, 0),
    "unweighted_min30": evaluate(y_true, y_pred, ones, features, 30),
}


def reweigh(yt, g):
    out = np.empty(len(yt))
    for gv in set(g):
        for yv in (0, 1):
            m = (g == gv) & (yt == yv)
            if m.any():
                p_g, p_y, p_gy = (g == gv).mean(), (yt == yv).mean(), m.mean()
                out[m] = p_g * p_y / p_gy
    return out


metrics = {
    "y_true": [int(v) for v in y_true], "y_pred": [int(v) for v in y_pred],
    "weights": [float(v) for v in weights], "sex": list(map(str, sex)), "race": list(map(str, race)),
    "accuracy": float((y_true == y_pred).mean()),
    "expected": expected,
    "reweigh_sex": [float(v) for v in reweigh(y_true, sex)],
    "reweigh_race_sex": [float(v) for v in reweigh(y_true, features["race&sex"])],
}
with open(os.path.join(HERE, "metrics.json"), "w") as f:
    json.dump(metrics, f, allow_nan=False)


# --- biased data for the threshold optimizer -------------------------------
def biased(n):
    g = rng.choice(["a", "b", "c"], n, p=[0.5, 0.35, 0.15])
    z = rng.normal(size=n)
    # Base rates differ a little by group; the scores add a large group
    # offset that has nothing to do with the label.
    y = (z + 0.2 * (g == "a") + rng.normal(0, 0.8, n) > 0).astype(int)
    offset = np.select([g == "a", g == "b"], [1.2, -0.6], -1.0)
    s = 1 / (1 + np.exp(-(1.8 * z + offset)))
    return {"scores": [float(v) for v in np.round(s, 6)], "y_true": [int(v) for v in y], "group": list(map(str, g))}


train, test = biased(6000), biased(6000)
before = {}
for name, d in [("train", train), ("test", test)]:
    s, y, g = np.array(d["scores"]), np.array(d["y_true"]), np.array(d["group"])
    p = (s >= 0.5).astype(int)
    rates = [p[g == k].mean() for k in sorted(set(g))]
    before[name] = {"dp_difference": float(max(rates) - min(rates)), "accuracy": float((p == y).mean())}
with gzip.open(os.path.join(HERE, "thresholds.json.gz"), "wt") as f:
    json.dump({"train": train, "test": test, "before_at_0_5": before}, f)
print(json.dumps(before))
print({k: v["aggregates"]["demographic_parity_difference"] for k, v in expected["unweighted_all"].items()})

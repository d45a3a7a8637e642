#!/usr/bin/python3
"""Reference values for internal/ml/drift, from scipy and numpy.

Run with Debian's interpreter (it has scipy): /usr/bin/python3 gen_fixtures.py
Writes ks_cases.json.gz and stats_cases.json.gz next to this file. The Go tests
read only these files.
"""
import gzip
import json
import os

import numpy as np
import scipy
from scipy import stats
from scipy.spatial import distance

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20240611)


def r(x, digits=5):
    # Rounded values keep the fixture small; rounding also creates ties.
    return [float(v) for v in np.round(np.asarray(x, dtype=float), digits)]


def ks_case(name, a, b):
    res = stats.ks_2samp(a, b)  # alternative='two-sided', method='auto'
    return {"name": name, "a": list(a), "b": list(b),
            "statistic": float(res.statistic), "pvalue": float(res.pvalue),
            "method": "exact" if max(len(a), len(b)) <= 10000 else "asymp"}


ks = []
# Exact path: small, equal sizes (square method) and unequal sizes.
ks.append(ks_case("exact_equal_20", r(rng.normal(size=20)), r(rng.normal(0.5, 1, 20))))
ks.append(ks_case("exact_unequal_7_13", r(rng.normal(size=7)), r(rng.normal(1, 1, 13))))
ks.append(ks_case("exact_unequal_100_37", r(rng.normal(size=100)), r(rng.standard_t(3, 37))))
ks.append(ks_case("exact_identical", [1.0, 2.0, 3.0, 4.0], [4.0, 3.0, 2.0, 1.0]))
ks.append(ks_case("exact_single", [0.5], [0.25, 0.75, 1.0]))
ks.append(ks_case("exact_ties_int", r(rng.poisson(3, 60), 0), r(rng.poisson(3.5, 45), 0)))
ks.append(ks_case("exact_ties_equal_n", r(rng.integers(0, 5, 50), 0), r(rng.integers(0, 6, 50), 0)))
ks.append(ks_case("exact_disjoint", r(rng.uniform(0, 1, 30)), r(rng.uniform(2, 3, 40))))
ks.append(ks_case("exact_large_shift", r(rng.normal(size=3000)), r(rng.normal(0.1, 1, 2000))))
ks.append(ks_case("exact_large_equal", r(rng.normal(size=2500)), r(rng.normal(0.0, 1.05, 2500))))
ks.append(ks_case("exact_max_10000_vs_999", r(rng.normal(size=10000), 3), r(rng.normal(0, 1, 999), 3)))
# Asymptotic path (max size > 10000): each case reaches a different branch
# of scipy's kstwo.sf (en = round(n1*n2/(n1+n2))).
ks.append(ks_case("asymp_small_en_durbin", r(rng.normal(size=10001), 3), r(rng.normal(0, 1, 40), 3)))
ks.append(ks_case("asymp_small_en_pomeranz", r(rng.normal(size=10500), 3), r(rng.normal(0.5, 1, 60), 3)))
ks.append(ks_case("asymp_small_en_smirnov_half", r(rng.normal(size=10200), 3), r(rng.normal(1.5, 1, 30), 3)))
ks.append(ks_case("asymp_pelzgood_null", r(rng.normal(size=12000), 4), r(rng.normal(size=11000), 4)))
# Nearly identical large samples: D*n^1.5 small enough for the Durbin matrix.
ks.append(ks_case("asymp_durbin_grid", r(np.linspace(0, 1, 12000), 6), r(np.linspace(0.003, 1.003, 11000), 6)))
# en = 100 with n*D^2 > 4 and D < 0.5: Smirnov tail in the small-n branch.
ks.append(ks_case("asymp_small_en_smirnov_mid", r(rng.normal(size=10100), 3), r(rng.normal(0.9, 1, 100), 3)))
ks.append(ks_case("asymp_pelzgood_small_shift", r(rng.normal(size=12000), 4), r(rng.normal(0.02, 1, 11000), 4)))
ks.append(ks_case("asymp_shift_smirnov", r(rng.normal(size=12000), 4), r(rng.normal(0.06, 1, 11000), 4)))
ks.append(ks_case("asymp_ties_smirnov", r(rng.poisson(4, 15000), 0), r(rng.poisson(4.05, 10500), 0)))
ks.append(ks_case("asymp_far_smirnov", r(rng.normal(size=11000), 3), r(rng.normal(0.3, 1, 10400), 3)))

with gzip.open(os.path.join(HERE, "ks_cases.json.gz"), "wt") as f:
    json.dump({"scipy": scipy.__version__, "cases": ks}, f)


# PSI: independent numpy implementation of the documented definition.
def psi_ref(ref, cur, bins=10, eps=1e-4):
    ref, cur = np.asarray(ref, float), np.asarray(cur, float)
    probs = [k / bins for k in range(1, bins)]
    edges = np.unique(np.quantile(ref, probs))  # numpy 'linear' method
    rp = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1) / len(ref)
    cp = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1) / len(cur)
    rp, cp = np.maximum(rp, eps), np.maximum(cp, eps)
    return float(np.sum((cp - rp) * np.log(cp / rp))), edges, rp, cp


def binned_js(ref, cur, bins=10):
    probs = [k / bins for k in range(1, bins)]
    edges = np.unique(np.quantile(np.asarray(ref, float), probs))
    rc = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1)
    cc = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1)
    return float(distance.jensenshannon(rc, cc, base=2))


psi = []
for name, a, b in [
    ("same", rng.normal(size=5000), rng.normal(size=4000)),
    ("shift", rng.normal(size=5000), rng.normal(0.5, 1, 4000)),
    ("outside_range", rng.uniform(0, 1, 2000), rng.uniform(0.5, 2, 2000)),
    # Mass piles up in the reference's top bin: current bins go empty, which
    # exercises the epsilon floor.
    ("empty_bins", rng.normal(size=3000), rng.normal(4, 0.1, 500)),
    ("ties_dedup_edges", rng.poisson(0.3, 4000).astype(float), rng.poisson(0.6, 3000).astype(float)),
]:
    a, b = r(a, 4), r(b, 4)
    v, edges, _, _ = psi_ref(a, b)
    psi.append({"name": name, "reference": a, "current": b, "psi": v, "edges": [float(e) for e in edges]})

js = []
for name, p, q, base in [
    ("doc_example_base2", [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], 2.0),
    ("doc_example_e", [1.0, 0.0], [0.5, 0.5], 0.0),
    ("unnormalised", [3, 5, 2, 0, 9], [1, 1, 4, 6, 1], 0.0),
    ("random_base2", list(rng.uniform(0, 1, 12)), list(rng.uniform(0, 1, 12)), 2.0),
    ("identical", [0.2, 0.3, 0.5], [0.2, 0.3, 0.5], 2.0),
]:
    val = distance.jensenshannon(p, q) if base == 0 else distance.jensenshannon(p, q, base=base)
    js.append({"name": name, "p": [float(x) for x in p], "q": [float(x) for x in q], "base": base, "distance": float(val)})

wd = []
for name, u, v in [
    ("doc_example", [0, 1, 3], [5, 6, 8]),
    ("unequal_ties", r(rng.poisson(2, 300), 0), r(rng.poisson(2.4, 170), 0)),
    ("normal", r(rng.normal(size=1000)), r(rng.normal(0.3, 1.2, 700))),
    ("single", [1.5], [1.5, 2.5]),
]:
    wd.append({"name": name, "u": [float(x) for x in u], "v": [float(x) for x in v],
               "distance": float(stats.wasserstein_distance(u, v))})

chi = []
for name, ref, cur in [
    ("two_categories_yates", [120, 80], [90, 110]),
    ("three_categories", [300, 150, 50], [280, 140, 80]),
    ("many_categories", list(rng.integers(10, 200, 8)), list(rng.integers(10, 200, 8))),
    ("new_category", [500, 300, 0], [450, 280, 70]),
    ("single_category", [40], [60]),
    ("large_tiny_shift", [500000, 300000, 200000], [498000, 301000, 201000]),
]:
    table = np.array([ref, cur], dtype=float)
    stat, p, dof, _ = stats.chi2_contingency(table)
    chi.append({"name": name, "reference": [float(x) for x in ref], "current": [float(x) for x in cur],
                "statistic": float(stat), "pvalue": float(p), "dof": int(dof),
                "cramers_v": float(np.sqrt(stat / table.sum()))})

# Data-set level: reference and current tables plus the expected values,
# with the verdict rule of drift.Thresholds re-implemented here.
ALPHA, PSI_T, KS_EFF, V_EFF, SHARE = 0.05, 0.2, 0.1, 0.1, 0.5
n_ref, n_cur = 4000, 3000
tables = {
    "reference": {
        "age": r(rng.normal(40, 10, n_ref), 2),
        "income": r(rng.lognormal(10, 0.5, n_ref), 2),
        "score": r(rng.uniform(0, 1, n_ref), 4),
        "region": [str(x) for x in rng.choice(["north", "south", "east", "west"], n_ref, p=[0.4, 0.3, 0.2, 0.1])],
        "plan": [str(x) for x in rng.choice(["basic", "pro"], n_ref, p=[0.7, 0.3])],
    },
    "current": {
        "age": r(rng.normal(40, 10, n_cur), 2),           # unchanged
        "income": r(rng.lognormal(10.4, 0.5, n_cur), 2),   # large shift
        "score": r(rng.uniform(0.03, 1.03, n_cur), 4),     # small, significant shift
        "region": [str(x) for x in rng.choice(["north", "south", "east", "west", "central"], n_cur, p=[0.25, 0.25, 0.2, 0.1, 0.2])],
        "plan": [str(x) for x in rng.choice(["basic", "pro"], n_cur, p=[0.69, 0.31])],
    },
}
expected = {}
for col in ["age", "income", "score"]:
    a, b = tables["reference"][col], tables["current"][col]
    k = stats.ks_2samp(a, b)
    p, _, _, _ = psi_ref(a, b)
    crit = np.sqrt(-np.log(ALPHA / 2) / 2) * np.sqrt((len(a) + len(b)) / (len(a) * len(b)))
    drifted = p >= PSI_T or (k.pvalue < ALPHA and k.statistic >= max(KS_EFF, crit))
    expected[col] = {"psi": p, "ks_statistic": float(k.statistic), "ks_pvalue": float(k.pvalue),
                     "js_distance": binned_js(a, b), "wasserstein": float(stats.wasserstein_distance(a, b)),
                     "drifted": bool(drifted)}
for col in ["region", "plan"]:
    a, b = tables["reference"][col], tables["current"][col]
    cats = sorted(set(a) | set(b))
    rc = np.array([a.count(c) for c in cats], float)
    cc = np.array([b.count(c) for c in cats], float)
    stat, pv, dof, _ = stats.chi2_contingency(np.array([rc, cc]))
    v = float(np.sqrt(stat / (rc.sum() + cc.sum())))
    rp, cp = np.maximum(rc / rc.sum(), 1e-4), np.maximum(cc / cc.sum(), 1e-4)
    p = float(np.sum((cp - rp) * np.log(cp / rp)))
    drifted = p >= PSI_T or (pv < ALPHA and v >= V_EFF)
    expected[col] = {"psi": p, "chi2_statistic": float(stat), "chi2_pvalue": float(pv), "dof": int(dof),
                     "cramers_v": v, "js_distance": float(distance.jensenshannon(rc, cc, base=2)),
                     "drifted": bool(drifted)}
share = sum(e["drifted"] for e in expected.values()) / len(expected)

with gzip.open(os.path.join(HERE, "stats_cases.json.gz"), "wt") as f:
    json.dump({"scipy": scipy.__version__, "numpy": np.__version__,
               "psi": psi, "jensenshannon": js, "wasserstein": wd, "chi2": chi,
               "dataset": {"tables": tables, "expected": expected, "drifted": bool(share >= SHARE)}}, f)
print("ks cases:", len(ks), "psi:", len(psi), "js:", len(js), "wasserstein:", len(wd), "chi2:", len(chi))
print({k: v["drifted"] for k, v in expected.items()})

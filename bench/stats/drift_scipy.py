#!/usr/bin/python3
"""scipy's and numpy's side of drift_vs_scipy.sh: the same sizes and
distributions as driftbench (each side draws its own data), timing
scipy.stats.ks_2samp, PSI over ten reference deciles in numpy (quantile,
searchsorted, bincount) and scipy.stats.chi2_contingency on the category
counts. Prints one JSON line for bench/lib/pairs.py. Usage: drift_scipy.py ROWS"""
import json
import sys
import time

import numpy as np
from scipy import stats
from threadpoolctl import threadpool_info

n = int(sys.argv[1])
rng = np.random.default_rng(1)
ref = rng.normal(size=n)
cur = rng.normal(0.01, 1.02, n)
refw = np.array([0.2, 0.15, 0.12, 0.1, 0.1, 0.09, 0.08, 0.07, 0.05, 0.04])
curw = np.array([0.19, 0.15, 0.12, 0.1, 0.1, 0.09, 0.08, 0.07, 0.055, 0.045])
ref_cat = np.searchsorted(np.cumsum(refw), rng.random(n), side="right").clip(0, 9).astype(np.uint8)
cur_cat = np.searchsorted(np.cumsum(curw), rng.random(n), side="right").clip(0, 9).astype(np.uint8)


def psi(ref, cur, bins=10, eps=1e-4):
    edges = np.unique(np.quantile(ref, [k / bins for k in range(1, bins)]))
    rp = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1) / len(ref)
    cp = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1) / len(cur)
    rp, cp = np.maximum(rp, eps), np.maximum(cp, eps)
    return float(np.sum((cp - rp) * np.log(cp / rp)))


start = time.perf_counter()
ks = stats.ks_2samp(ref, cur)
ks_done = time.perf_counter()
p = psi(ref, cur)
psi_done = time.perf_counter()
table = np.array([np.bincount(ref_cat, minlength=10), np.bincount(cur_cat, minlength=10)])
chi2 = stats.chi2_contingency(table)[0]
end = time.perf_counter()
blas = "; ".join(f"{i.get('internal_api')} {i.get('architecture') or ''} {i.get('num_threads')} threads" for i in threadpool_info())
print(json.dumps({"seconds": end - start, "ks_seconds": ks_done - start, "psi_seconds": psi_done - ks_done,
                  "chi2_seconds": end - psi_done, "ks_statistic": float(ks.statistic), "psi": p, "chi2": float(chi2),
                  "blas": blas}))

#!/usr/bin/env python3
"""Time scikit-learn's LogisticRegression(lbfgs) on the matrix lrbench wrote
and compare with Gauntlet's time. Usage: lr_vs_sklearn.py OUTDIR RUNS"""
import json
import os
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

out, runs = sys.argv[1], int(sys.argv[2])
go = json.load(open(os.path.join(out, "go.json")))
X = np.fromfile(os.path.join(out, "X.f64"), dtype="<f8").reshape(go["rows"], go["cols"])
y = np.fromfile(os.path.join(out, "y.f64"), dtype="<f8")
times = []
for _ in range(runs):
    # gtol 1e-5 on the mean-scaled gradient is Gauntlet's default stopping rule.
    lr = LogisticRegression(C=1.0, solver="lbfgs", tol=1e-5, max_iter=1000)
    start = time.perf_counter()
    lr.fit(X, y)
    times.append(time.perf_counter() - start)
sk = sorted(times)[len(times) // 2]
acc = lr.score(X, y)
diff = np.max(np.abs(lr.coef_[0] - np.array(go["coef"])))
print(f"Adult {go['rows']}x{go['cols']}, median of {runs} runs, single process")
print(f"gauntlet  logreg L-BFGS: {go['median_seconds']:.3f} s  train accuracy {go['train_accuracy']:.4f}")
print(f"sklearn   logreg lbfgs : {sk:.3f} s  train accuracy {acc:.4f}  (OMP/BLAS threads: {os.environ.get('OMP_NUM_THREADS', 'default')})")
print(f"max |coef difference|  : {diff:.2e}")
print(f"ratio gauntlet/sklearn : {go['median_seconds'] / sk:.2f}")

#!/usr/bin/python3
"""One timed scikit-learn LogisticRegression(lbfgs) fit on the matrix that
lrbench -prepare wrote (X.f64, y.f64, meta.json in DIR), with Gauntlet's
stopping rule (C=1, gtol 1e-5 on the mean-scaled gradient). Prints one JSON
line for bench/lib/pairs.py. Usage: sklearn_lr.py DIR"""
import json
import os
import sys
import time

import numpy as np
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_info

out = sys.argv[1]
meta = json.load(open(os.path.join(out, "meta.json")))
X = np.fromfile(os.path.join(out, "X.f64"), dtype="<f8").reshape(meta["rows"], meta["cols"])
y = np.fromfile(os.path.join(out, "y.f64"), dtype="<f8")
lr = LogisticRegression(C=1.0, solver="lbfgs", tol=1e-5, max_iter=1000)
start = time.perf_counter()
lr.fit(X, y)
seconds = time.perf_counter() - start
blas = "; ".join(f"{i.get('internal_api')} {i.get('architecture') or ''} {i.get('num_threads')} threads".replace("  ", " ")
                 for i in threadpool_info())
print(json.dumps({"seconds": seconds, "iterations": int(lr.n_iter_[0]), "train_accuracy": lr.score(X, y),
                  "blas": blas, "OPENBLAS_CORETYPE": os.environ.get("OPENBLAS_CORETYPE", "unset")}))

#!/usr/bin/env bash
# Times two-sample KS and PSI on 1M vs 1M rows in scipy/numpy and in Go
# (internal/ml/drift benchmarks) in one run, and prints Go/Python ratios.
# Same sizes and distributions (N(0,1) vs N(0.01, 1.02)); each side
# generates its own data. Needs Debian's /usr/bin/python3 with scipy.
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-/usr/bin/python3}
REPS=${REPS:-5}

py_out=$("$PY" - "$REPS" <<'PYEOF'
import sys, time
import numpy as np
from scipy import stats

reps = int(sys.argv[1])
rng = np.random.default_rng(1)
n = 1_000_000
ref = rng.normal(size=n)
cur = rng.normal(0.01, 1.02, n)

def psi(ref, cur, bins=10, eps=1e-4):
    edges = np.unique(np.quantile(ref, [k / bins for k in range(1, bins)]))
    rp = np.bincount(np.searchsorted(edges, ref, side="left"), minlength=len(edges) + 1) / len(ref)
    cp = np.bincount(np.searchsorted(edges, cur, side="left"), minlength=len(edges) + 1) / len(cur)
    rp, cp = np.maximum(rp, eps), np.maximum(cp, eps)
    return float(np.sum((cp - rp) * np.log(cp / rp)))

def best(f):
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); f(); ts.append(time.perf_counter() - t)
    return min(ts) * 1e9

print("ks", best(lambda: stats.ks_2samp(ref, cur)))
print("psi", best(lambda: psi(ref, cur)))
PYEOF
)

go_out=$(go test -run '^$' -bench '^Benchmark(KS2Samp|PSI)1M$' -benchtime "${REPS}x" -count 1 ./internal/ml/drift/)

echo "$go_out" | grep -E '^Benchmark' || true
awk -v py="$py_out" -v gobench="$go_out" 'BEGIN {
  n = split(py, l, "\n"); for (i = 1; i <= n; i++) { split(l[i], f, " "); p[f[1]] = f[2] }
  n = split(gobench, l, "\n")
  for (i = 1; i <= n; i++) {
    if (l[i] ~ /^BenchmarkKS2Samp1M/) { split(l[i], f, /[ \t]+/); g["ks"] = f[3] }
    if (l[i] ~ /^BenchmarkPSI1M/)     { split(l[i], f, /[ \t]+/); g["psi"] = f[3] }
  }
  printf "%-6s %14s %14s %10s\n", "op", "python ms", "go ms", "go/python"
  split("ks psi", ops, " ")
  for (k = 1; k <= 2; k++) { o = ops[k]
    printf "%-6s %14.1f %14.1f %10.2f\n", o, p[o] / 1e6, g[o] / 1e6, g[o] / p[o] }
}'

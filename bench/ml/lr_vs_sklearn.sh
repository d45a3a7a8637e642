#!/bin/sh
# Gauntlet's logistic regression (L-BFGS, float32 matrix, all cores) against
# scikit-learn's LogisticRegression(lbfgs) on the same encoded matrix,
# alternating the two run by run (bench/lib/pairs.py): fit time, peak
# memory of each process, iterations and training accuracy.
#
# Usage (from anywhere): bench/ml/lr_vs_sklearn.sh [DATA] [PAIRS]
#   DATA  adult:DIR (default adult:$GAUNTLET_DATASETS/adult, GAUNTLET_DATASETS
#         defaulting to ../shared/datasets) or builtin:credit-risk?rows=N
#   PAIRS number of run pairs (default 7)
# Needs Go, Debian's python3-sklearn and python3-threadpoolctl, GNU time.
# OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, where set for older OpenBLAS
# builds, are unset for scikit-learn's side only; the BLAS kernel it ran is
# printed. Each Gauntlet run loads and encodes the data itself (load and
# encode times are reported beside the fit); scikit-learn's reads the
# matrix Gauntlet encoded, as float64, which its lbfgs solver works in.
set -eu
cd "$(dirname "$0")/../.."
datasets=${GAUNTLET_DATASETS:-../shared/datasets}
data=${1:-adult:$datasets/adult}
pairs=${2:-7}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/fitbench" ./bench/ml/fitbench
"$work/fitbench" -data "$data" -prepare "$work" -dtype f64
/usr/bin/python3 bench/lib/pairs.py --title "logistic regression on $data" --pairs "$pairs" \
	--a-name gauntlet --a "'$work/fitbench' -data '$data'" \
	--b-name sklearn --b "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/ml/sklearn_lr.py '$work'" \
	--ratio seconds --ratio peak_rss_mb

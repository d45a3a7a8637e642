#!/bin/sh
# Times Gauntlet's logistic regression and scikit-learn's on the same encoded
# UCI Adult matrix, in one run, and prints the ratio.
# Usage: bench/ml/lr_vs_sklearn.sh [RUNS]   (from the repository root)
set -eu
runs=${1:-5}
datasets=${GAUNTLET_DATASETS:-../shared/datasets}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
go run ./bench/ml/lrbench -adult "$datasets/adult" -out "$out" -runs "$runs"
/usr/bin/python3 "$(dirname "$0")/lr_vs_sklearn.py" "$out" "$runs"

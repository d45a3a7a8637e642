#!/bin/sh
# Scoring throughput of an int8-quantized MLP against its float64 original
# on UCI Adult's test rows (internal/ml/quantize BenchmarkPredict),
# alternating the two run by run (bench/lib/pairs.py).
#
# Usage (from anywhere): bench/ml/int8_vs_f64.sh [PAIRS]   (default 7)
# Needs Go, GNU time (bench/lib/install-peers.sh), and Adult under GAUNTLET_DATASETS (default ../shared/datasets).
set -eu
cd "$(dirname "$0")/../.."
pairs=${1:-7}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/quantize.test" ./internal/ml/quantize
side() {
	echo "'$work/quantize.test' -test.run '^\$' -test.bench 'Predict/$1\$' -test.benchtime 2s | awk '/rows\\/s/ { for (i = 1; i < NF; i++) if (\$(i+1) == \"rows/s\") print \"{\\\"rows_per_second\\\": \" \$i \"}\" }'"
}
/usr/bin/python3 bench/lib/pairs.py --title "MLP 64-32 scoring on Adult's test rows, int8 vs float64" --pairs "$pairs" \
	--a-name int8 --a "$(side int8)" --b-name float64 --b "$(side float64)" --ratio rows_per_second

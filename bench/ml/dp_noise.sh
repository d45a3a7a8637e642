#!/bin/sh
# What unpredictable DP-SGD noise costs (internal/ml/dp BenchmarkNoise and
# BenchmarkTrain), alternating the two sides run by run (bench/lib/pairs.py):
#   1. a whole DP-SGD run (MLP 16, 4000 rows, 5 epochs) with ChaCha8 keyed
#      from crypto/rand (the default) against PCG seeded from the model's
#      seed (insecure_reproducible);
#   2. one Gaussian draw from each of the two;
#   3. one Gaussian draw reading crypto/rand every time against ChaCha8.
#
# Usage (from anywhere): bench/ml/dp_noise.sh [PAIRS]   (default 7)
# Needs Go and GNU time (bench/lib/install-peers.sh).
set -eu
cd "$(dirname "$0")/../.."
pairs=${1:-7}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go test -c -o "$work/dp.test" ./internal/ml/dp
# side BENCH METRIC: one benchmark run printing {"METRIC": ns/op}.
side() {
	echo "'$work/dp.test' -test.run '^\$' -test.bench '^$1\$' -test.benchtime 1s | awk '/ns\\/op/ { for (i = 1; i < NF; i++) if (\$(i+1) == \"ns/op\") print \"{\\\"$2\\\": \" \$i \"}\" }'"
}
/usr/bin/python3 bench/lib/pairs.py --title "DP-SGD run: ChaCha8 keyed from crypto/rand vs seeded PCG" --pairs "$pairs" \
	--a-name secure --a "$(side BenchmarkTrain/secure ns_per_run)" \
	--b-name seeded --b "$(side BenchmarkTrain/reproducible ns_per_run)" --ratio ns_per_run
/usr/bin/python3 bench/lib/pairs.py --title "One Gaussian draw: ChaCha8 keyed from crypto/rand vs seeded PCG" --pairs "$pairs" \
	--a-name chacha8 --a "$(side BenchmarkNoise/chacha8-keyed ns_per_draw)" \
	--b-name pcg --b "$(side BenchmarkNoise/pcg-seeded ns_per_draw)" --ratio ns_per_draw
/usr/bin/python3 bench/lib/pairs.py --title "One Gaussian draw: crypto/rand per draw vs ChaCha8 keyed once" --pairs "$pairs" \
	--a-name crypto-rand --a "$(side BenchmarkNoise/crypto-rand-per-draw ns_per_draw)" \
	--b-name chacha8 --b "$(side BenchmarkNoise/chacha8-keyed ns_per_draw)" --ratio ns_per_draw

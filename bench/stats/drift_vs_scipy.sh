#!/bin/sh
# Drift statistics on two samples of ROWS rows each, Gauntlet
# (internal/ml/drift) against scipy and numpy, alternating the two run by
# run (bench/lib/pairs.py): two-sample KS, PSI over ten reference deciles,
# chi-square on ten category counts; time of each and peak memory of each
# process. Each side draws the same distributions itself (numeric float64,
# categories as one-byte codes); generating them is not timed.
#
# Usage (from anywhere): bench/stats/drift_vs_scipy.sh [ROWS] [PAIRS]
#   ROWS default 10000000, PAIRS default 7.
# Needs Go, Debian's python3-scipy and python3-threadpoolctl, GNU time
# (bench/lib/install-peers.sh installs them).
set -eu
cd "$(dirname "$0")/../.."
rows=${1:-10000000}
pairs=${2:-7}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/driftbench" ./bench/stats/driftbench
/usr/bin/python3 bench/lib/pairs.py --title "drift statistics, $rows vs $rows rows" --pairs "$pairs" \
	--a-name gauntlet --a "'$work/driftbench' -rows $rows" \
	--b-name scipy --b "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE /usr/bin/python3 bench/stats/drift_scipy.py $rows" \
	--ratio seconds --ratio ks_seconds --ratio psi_seconds --ratio chi2_seconds --ratio peak_rss_mb

#!/bin/sh
# Peak memory of `gauntlet step train` on builtin:credit-risk of ROWS rows
# (logistic regression, 20 iterations: the data, its split and the held-out
# file dominate), two gauntlet binaries alternating run by run
# (bench/lib/pairs.py); each run's last line reports the held-out split's
# digest, which must be the same on both sides.
#
# Usage: bench/ml/train_rss.sh BEFORE AFTER [PAIRS] [ROWS]   (defaults 3, 10000000)
# Build each side with `go build -o BIN ./starter` at the commit to compare.
set -eu
before=$(realpath "$1")
after=$(realpath "$2")
pairs=${3:-3}
rows=${4:-10000000}
cd "$(dirname "$0")/../.."
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
side() {
	echo "rm -rf '$work/out' && '$1' step train --with 'data=builtin:credit-risk?rows=$rows&seed=7' --with label=defaulted --with positive_label=yes --with max_iter=20 --out '$work/out' >/dev/null && /usr/bin/python3 -c 'import json; o = json.load(open(\"$work/out/outputs.json\")); print(json.dumps({\"holdout\": o[\"holdout\"].rsplit(\"/\", 1)[1][:16]}))'"
}
/usr/bin/python3 bench/lib/pairs.py --title "gauntlet step train on $rows credit-risk rows: peak RSS" --pairs "$pairs" \
	--a-name before --a "$(side "$before")" --b-name after --b "$(side "$after")" --ratio peak_rss_mb --ratio process_seconds

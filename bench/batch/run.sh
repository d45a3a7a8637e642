#!/usr/bin/env bash
# Batch prediction of ROWS rows (default 1M) of credit-risk CSV with the
# logistic model in Gauntlet's format and as ONNX: each run a fresh process
# scoring the whole file into a fresh file store, the formats alternating
# run by run (PAIRS pairs). Prints a Markdown report on stdout.
#
# Usage (from anywhere): bench/batch/run.sh
# Environment: ROWS=1000000 PAIRS=3 CHUNK=10000, GAUNTLET_ONNXRUNTIME_LIB
# (default bin/onnxruntime/libonnxruntime.so.1)
set -euo pipefail
export GOTOOLCHAIN=local
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
ROWS=${ROWS:-1000000} PAIRS=${PAIRS:-3} CHUNK=${CHUNK:-10000}
export GAUNTLET_ONNXRUNTIME_LIB=${GAUNTLET_ONNXRUNTIME_LIB:-$root/bin/onnxruntime/libonnxruntime.so.1}
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
log "building bench/batch"
go build -o "$work/batch" ./bench/batch
log "writing $ROWS rows and the models"
features=$("$work/batch" prepare "$work/in" "$ROWS")
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
: >"$work/rows"
for pair in $(seq "$PAIRS"); do
	order="onnx gauntlet"
	((pair % 2 == 0)) && order="gauntlet onnx"
	for f in $order; do
		log "pair $pair/$PAIRS: $f"
		rm -rf "$work/store"
		printf '%d\t%s\t%s\n' "$pair" "$("$work/batch" run "$work/in/$f" "$work/in/data.csv" "$work/store" "$CHUNK")" "$(cut -d' ' -f1 /proc/loadavg)" >>"$work/rows"
	done
done
cat <<EOT
# Batch prediction: $ROWS rows, Gauntlet's format and ONNX

- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- command: \`bench/batch/run.sh\` (ROWS=$ROWS PAIRS=$PAIRS CHUNK=$CHUNK)
- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r); shared with other work
- load average (1/5/15 min): $load_start at start, $(cut -d' ' -f1-3 /proc/loadavg) at end
- data: builtin credit-risk rows as CSV ($(du -m "$work/in/data.csv" | cut -f1) MB, 13 columns and the label); model: logistic regression ($features encoded features), ONNX by onnxmodel.Export, ONNX Runtime with its default threads
- each run: \`bench/batch/batch run MODEL DATA STORE $CHUNK\` in a fresh process into a fresh file:// store: read, check, encode, score, write each chunk's CSV as a blob and record it in the progress ref (compare-and-swap), then the predictions tree; the input's sha256 (its identity for resuming) is timed apart

| pair | format | rows | chunks | hash s | score+store s | rows/s | peak RSS MiB | load1 after |
|---:|---|---:|---:|---:|---:|---:|---:|---:|
EOT
awk -F'\t' '{ printf "| %d | %s | %d | %d | %.2f | %.2f | %.0f | %.0f | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9 }' "$work/rows"
echo
echo "| format | rows/s min / median / max | peak RSS MiB min / median / max |"
echo "|---|---|---|"
for f in gauntlet onnx; do
	s() { awk -F'\t' -v f="$f" -v c="$1" '$2 == f { print $c }' "$work/rows" | sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.0f / %.0f / %.0f", v[1], m, v[NR] }'; }
	echo "| $f | $(s 7) | $(s 8) |"
done

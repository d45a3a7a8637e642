#!/usr/bin/env bash
# Serving the UCI Adult logistic model as ONNX (ONNX Runtime) against the same
# model in Gauntlet's own format, under wrk on loopback, in one run: both
# servers run side by side and the measured wrk runs alternate between them,
# PAIRS times, the side that goes first swapping each pair. Prints a Markdown
# report (every run, then min/median/max per side and the ratios) on stdout;
# progress and the raw wrk output go to stderr.
#
# On a machine of two cores or more both servers share SERVER_CPUS and wrk
# runs alone on WRK_CPUS, so that the load generator does not take its CPU
# from the server it measures (the latency tail is then the server's, not
# the scheduler's).
#
# Usage (from anywhere): bench/serve/formats.sh
# Environment:
#   PAIRS=7  DURATION=10  WARMUP=2  CONNS=16   wrk settings (seconds)
#   THREADS                        wrk threads (default: CPUs in WRK_CPUS)
#   SERVER_CPUS=0  WRK_CPUS=1      taskset CPU lists; empty: no pinning
#                                  (the default on a one-core machine)
#   BODY=one                       request body: one (1 record) or batch32
#   IDLE_WAIT=0                    seconds to wait first for load1 < 1.5 and no
#                                  go test / *.test process (then run anyway)
#   GAUNTLET_DATASETS              default ../shared/datasets
#   GAUNTLET_ONNXRUNTIME_LIB       default bin/onnxruntime/libonnxruntime.so.1
# Needs wrk (apt-get install wrk), python3 and ONNX Runtime
# (scripts/install-onnxruntime.sh). Servers listen on 127.0.0.1 only and are
# killed on exit.
set -euo pipefail
export GOTOOLCHAIN=local PYTHONDONTWRITEBYTECODE=1
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
here=bench/serve
. "$here/lib.sh"
PAIRS=${PAIRS:-7} DURATION=${DURATION:-10} WARMUP=${WARMUP:-2} CONNS=${CONNS:-16}
THREADS=${THREADS:-$(cpus "$WRK_CPUS")} BODY=${BODY:-one} IDLE_WAIT=${IDLE_WAIT:-0}
datasets=${GAUNTLET_DATASETS:-../shared/datasets}
export GAUNTLET_ONNXRUNTIME_LIB=${GAUNTLET_ONNXRUNTIME_LIB:-$root/bin/onnxruntime/libonnxruntime.so.1}

command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
[[ -f $GAUNTLET_ONNXRUNTIME_LIB ]] || die "no ONNX Runtime at $GAUNTLET_ONNXRUNTIME_LIB (scripts/install-onnxruntime.sh)"
adult=$(realpath "$datasets/adult/adult.data") adult_test=$(realpath "$datasets/adult/adult.test") ||
	die "UCI Adult not found under $datasets/adult"

work=$(mktemp -d)
trap 'stop_servers; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM HUP
wait_idle "$IDLE_WAIT"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
busy_start=$(busy && echo yes || echo no)

log "building bench/serve/formats"
go build -o "$work/formats" ./$here/formats
log "training the logistic model on $adult, exporting it to ONNX"
parity=$("$work/formats" prepare "$adult" "$adult_test" "$work/models")
log "parity: $parity"
python3 "$here/records.py" bodies "$adult_test" "$work"

declare -A port pid
url() { echo "http://127.0.0.1:${port[$1]}/v1/predict"; }
for side in gauntlet onnx; do
	port[$side]=$(free_port)
	start_server "$side" "$work/formats" serve "$work/models/$side" "127.0.0.1:${port[$side]}"
	wait_answer "$side"
	log "$(head -1 "$work/$side.log")"
done

alternate onnx gauntlet
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

cat <<EOF
# Serving the Adult logistic model: ONNX (ONNX Runtime) vs Gauntlet's own format

- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- command: \`bench/serve/formats.sh\` (PAIRS=$PAIRS DURATION=$DURATION WARMUP=$WARMUP THREADS=$THREADS CONNS=$CONNS BODY=$BODY SERVER_CPUS=$SERVER_CPUS WRK_CPUS=$WRK_CPUS)
- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r); shared with other work
- CPUs: servers on ${SERVER_CPUS:-all}, wrk on ${WRK_CPUS:-all}
- load average (1/5/15 min): $load_start at start, $load_end at end; go test running at start: $busy_start
- wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), \`wrk -t$THREADS -c$CONNS -d${DURATION}s --latency\` after ${WARMUP}s of warm-up, POST of $([[ $BODY == one ]] && echo 1 || echo 32) adult.test record(s) (all 14 fields)
- servers: \`bench/serve/formats serve DIR ADDR\` (package serving with its defaults, as \`gauntlet serve --model DIR\`; ONNX with one ONNX Runtime thread per request), both running throughout, GOMAXPROCS $(cpus "$SERVER_CPUS"); $(basename "$(realpath "$GAUNTLET_ONNXRUNTIME_LIB")") from $(cat "$(dirname "$GAUNTLET_ONNXRUNTIME_LIB")/VERSION" 2>/dev/null | cut -d' ' -f1-2 || echo "$GAUNTLET_ONNXRUNTIME_LIB")
- model: logistic regression on 80 % of adult.data (label Y, sex and race sensitive, fnlwgt ignored), saved in Gauntlet's format and exported with onnxmodel.Export (Gemm + Sigmoid, float32); parity on $parity

| pair | server | requests/s | p50 ms | p99 ms | errors | requests | server CPU µs/request | load1 after | go test after |
|---:|---|---:|---:|---:|---:|---:|---:|---:|---|
EOF
awk -F'\t' '{ printf "| %d | %s | %.0f | %.2f | %.2f | %d | %d | %.1f | %s | %s |\n", $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 }' "$work/rows"
cat <<EOF

Per server over the $PAIRS runs (min / median / max):

| server | requests/s | p99 ms | server CPU µs/request |
|---|---|---|---|
EOF
for side in gauntlet onnx; do
	echo "| $side | $(field 3 $side | spread) | $(field 5 $side | spread) | $(field 8 $side | spread) |"
done
cat <<EOF

- throughput ratio ONNX / Gauntlet, pair by pair (min / median / max): $(ratio 3 onnx gauntlet | spread); of the medians: $(awk -v a="$(field 3 onnx | median)" -v b="$(field 3 gauntlet | median)" 'BEGIN { printf "%.2f", a / b }') (goal ≥ 0.8)
- p99 at $CONNS connections, median of the runs: ONNX $(field 5 onnx | median) ms, Gauntlet $(field 5 gauntlet | median) ms (goal ≤ 5 ms)
EOF
errors_note

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
if (($(nproc) >= 2)); then
	SERVER_CPUS=${SERVER_CPUS-0} WRK_CPUS=${WRK_CPUS-1}
else
	SERVER_CPUS=${SERVER_CPUS-} WRK_CPUS=${WRK_CPUS-}
fi
cpus() { # CPU list -> count; empty: all
	[[ -z $1 ]] && { nproc; return; }
	taskset -c "$1" nproc
}
pin() { if [[ -n $1 ]]; then echo taskset -c "$1"; fi; }
PAIRS=${PAIRS:-7} DURATION=${DURATION:-10} WARMUP=${WARMUP:-2} CONNS=${CONNS:-16}
THREADS=${THREADS:-$(cpus "$WRK_CPUS")}
BODY=${BODY:-one} IDLE_WAIT=${IDLE_WAIT:-0}
datasets=${GAUNTLET_DATASETS:-../shared/datasets}
export GAUNTLET_ONNXRUNTIME_LIB=${GAUNTLET_ONNXRUNTIME_LIB:-$root/bin/onnxruntime/libonnxruntime.so.1}

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
[[ -f $GAUNTLET_ONNXRUNTIME_LIB ]] || die "no ONNX Runtime at $GAUNTLET_ONNXRUNTIME_LIB (scripts/install-onnxruntime.sh)"
adult=$(realpath "$datasets/adult/adult.data") adult_test=$(realpath "$datasets/adult/adult.test") ||
	die "UCI Adult not found under $datasets/adult"

work=$(mktemp -d)
pids=()
cleanup() {
	local p
	for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

busy() { pgrep -f 'go test|\.test( |$)' >/dev/null; }
load1() { cut -d' ' -f1 /proc/loadavg; }
if ((IDLE_WAIT > 0)); then
	deadline=$((SECONDS + IDLE_WAIT))
	until awk -v l="$(load1)" 'BEGIN{exit !(l < 1.5)}' && ! busy; do
		((SECONDS >= deadline)) && { log "machine still busy after ${IDLE_WAIT}s (load $(load1)); running anyway"; break; }
		log "waiting for an idle machine: load $(load1)"
		sleep 20
	done
fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
busy_start=$(busy && echo yes || echo no)

log "building bench/serve/formats"
go build -o "$work/formats" ./$here/formats
log "training the logistic model on $adult, exporting it to ONNX"
parity=$("$work/formats" prepare "$adult" "$adult_test" "$work/models")
log "parity: $parity"
python3 "$here/records.py" bodies "$adult_test" "$work"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A port pid
for side in gauntlet onnx; do
	port[$side]=$(free_port)
	(exec setsid $(pin "$SERVER_CPUS") "$work/formats" serve "$work/models/$side" "127.0.0.1:${port[$side]}" >"$work/$side.log" 2>&1) &
	pid[$side]=$!
	pids+=("${pid[$side]}")
	for _ in $(seq 100); do
		curl -sf -o /dev/null "http://127.0.0.1:${port[$side]}/readyz" && break
		kill -0 "${pid[$side]}" 2>/dev/null || { cat "$work/$side.log" >&2; die "$side server exited"; }
		sleep 0.1
	done
	log "$(head -1 "$work/$side.log")"
	curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary "@$work/$BODY.json" "http://127.0.0.1:${port[$side]}/v1/predict" ||
		die "$side does not answer 200 to $BODY.json"
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; } # clock ticks, user + system
tick=$(getconf CLK_TCK)
# measure PAIR SIDE: warm-up, then one measured wrk run; appends a row.
measure() {
	local pair=$1 side=$2 url="http://127.0.0.1:${port[$2]}/v1/predict" raw="$work/wrk-$1-$2.txt" c0 c1
	WRK_BODY="$work/$BODY.json" $(pin "$WRK_CPUS") wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$here/post.lua" "$url" >/dev/null
	c0=$(cpu "${pid[$side]}")
	WRK_BODY="$work/$BODY.json" $(pin "$WRK_CPUS") wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$here/post.lua" "$url" >"$raw"
	c1=$(cpu "${pid[$side]}")
	sed "s/^/    [$pair $side] /" "$raw" >&2
	awk -v pair="$pair" -v side="$side" -v load="$(load1)" -v busy="$(busy && echo yes || echo no)" -v ticks=$((c1 - c0)) -v tick="$tick" '
		function ms(v) {
			if (v ~ /us$/) return v / 1000
			if (v ~ /ms$/) return v + 0
			if (v ~ /m$/) return v * 60000
			if (v ~ /s$/) return v * 1000
			return v
		}
		/^ +50%/ { p50 = ms($2) } /^ +99%/ { p99 = ms($2) }
		/^Requests\/sec:/ { rps = $2 }
		/requests in/ { total = $1 }
		/Non-2xx or 3xx responses:/ { bad += $NF }
		/Socket errors:/ { for (i = 3; i <= NF; i++) if ($i ~ /^[0-9]+,?$/) bad += $i + 0 }
		END { printf "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%.1f\t%s\t%s\n", pair, side, rps, p50, p99, bad + 0, total,
			total ? ticks / tick * 1e6 / total : 0, load, busy }
	' "$raw" >>"$work/rows"
}

: >"$work/rows"
for pair in $(seq "$PAIRS"); do
	order="onnx gauntlet"
	((pair % 2 == 0)) && order="gauntlet onnx"
	for side in $order; do
		log "pair $pair/$PAIRS: $side"
		measure "$pair" "$side"
	done
done
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
stats() { # FIELD SIDE: "min / median / max"
	awk -F'\t' -v f="$1" -v s="$2" '$2 == s { print $f }' "$work/rows" | sort -g |
		awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
			printf (v[NR] >= 100 ? "%.0f / %.0f / %.0f" : "%.2f / %.2f / %.2f"), v[1], m, v[NR] }'
}
for side in gauntlet onnx; do
	echo "| $side | $(stats 3 $side) | $(stats 5 $side) | $(stats 8 $side) |"
done
ratios=$(awk -F'\t' '{ r[$1, $2] = $3 } END { for (p = 1; (p, "onnx") in r; p++) print r[p, "onnx"] / r[p, "gauntlet"] }' "$work/rows" | sort -g |
	awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f / %.2f / %.2f", v[1], m, v[NR] }')
med() { awk -F'\t' -v f="$1" -v s="$2" '$2 == s { print $f }' "$work/rows" | sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
cat <<EOF

- throughput ratio ONNX / Gauntlet, pair by pair (min / median / max): $ratios; of the medians: $(awk -v a="$(med 3 onnx)" -v b="$(med 3 gauntlet)" 'BEGIN { printf "%.2f", a / b }') (goal ≥ 0.8)
- p99 at $CONNS connections, median of the runs: ONNX $(med 5 onnx) ms, Gauntlet $(med 5 gauntlet) ms (goal ≤ 5 ms)
EOF
if awk -F'\t' '$6 > 0 { bad = 1 } END { exit !bad }' "$work/rows"; then
	echo
	echo "**Some runs had errors (non-2xx responses or socket errors): their numbers are not comparable.**"
fi

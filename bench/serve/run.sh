#!/usr/bin/env bash
# Throughput and latency of `gauntlet serve` against a FastAPI/uvicorn server
# of the same UCI Adult logistic model (scikit-learn), under wrk, on this
# machine, in one run: both servers run throughout and the measured wrk runs
# alternate between them, PAIRS times, the side that goes first swapping
# each pair. Prints a Markdown report (every run, then min/median/max per
# side and of the pair-by-pair ratios) on stdout; progress and the raw wrk
# output go to stderr.
#
# On a machine of two cores or more the servers share SERVER_CPUS and wrk
# runs alone on WRK_CPUS, so that the load generator does not take its CPU
# from the server it measures (the latency tail is then the server's, not
# the scheduler's); uvicorn gets one worker per server CPU, as it is deployed.
#
# Usage (from anywhere): bench/serve/run.sh
# Environment:
#   PAIRS=7  DURATION=10  WARMUP=2  CONNS=64   wrk settings (seconds)
#   THREADS                        wrk threads (default: CPUs in WRK_CPUS)
#   SERVER_CPUS=0  WRK_CPUS=1      taskset CPU lists; empty: no pinning
#                                  (the default on a one-core machine)
#   BODY=one                       request body: one (1 record) or batch32
#   IDLE_WAIT=0                    seconds to wait first for load1 < 1.5 and
#                                  no go test / *.test process (then run anyway)
#   GAUNTLET_DATASETS              default ../shared/datasets
# Needs wrk and, for /usr/bin/python3, python3-fastapi python3-uvicorn
# python3-sklearn python3-pandas (python3-uvloop python3-httptools are used
# when present). Every server listens on 127.0.0.1 and is killed on exit.
set -euo pipefail
export GOTOOLCHAIN=local PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the repository
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
here=bench/serve
. "$here/lib.sh"
PY=/usr/bin/python3
PAIRS=${PAIRS:-7} DURATION=${DURATION:-10} WARMUP=${WARMUP:-2} CONNS=${CONNS:-64}
THREADS=${THREADS:-$(cpus "$WRK_CPUS")} BODY=${BODY:-one} IDLE_WAIT=${IDLE_WAIT:-0}
workers=$(cpus "$SERVER_CPUS")
datasets=${GAUNTLET_DATASETS:-../shared/datasets}

command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
$PY -c 'import fastapi, uvicorn, sklearn, pandas' 2>/dev/null ||
	die "$PY lacks fastapi/uvicorn/sklearn/pandas (apt-get install python3-fastapi python3-uvicorn python3-sklearn python3-pandas)"
adult=$(realpath "$datasets/adult/adult.data") adult_test=$(realpath "$datasets/adult/adult.test") ||
	die "UCI Adult not found under $datasets/adult"

work=$(mktemp -d)
trap 'stop_servers; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM HUP
wait_idle "$IDLE_WAIT"
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
busy_start=$(busy && echo yes || echo no)

# --- build, train -------------------------------------------------------------
if [[ ! -x bin/gauntlet ]]; then
	log "building bin/gauntlet"
	go build -o bin/gauntlet ./starter
fi
store="file://$work/store"
log "training the Gauntlet model on $adult"
bin/gauntlet step train --store "$store" --with "data=$adult" --with label=Y --with 'positive_label=>50K' \
	--with model=logistic --with ignore=fnlwgt --with sensitive=sex,race \
	--out "$work/train" >"$work/train.log" 2>&1 || { cat "$work/train.log" >&2; die "train failed"; }
output() { $PY -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$work/train/outputs.json" "$1"; }
model=$(output model)
holdout=$(output holdout)
holdout=${holdout#file://} # a blob of the file store is the file itself
$PY "$here/records.py" bodies "$adult_test" "$work"

# --- serve, measure -----------------------------------------------------------
declare -A port pid
url() { echo "http://127.0.0.1:${port[$1]}/v1/predict"; }
port[gauntlet]=$(free_port) port[fastapi]=$(free_port)
start_server gauntlet "$root/bin/gauntlet" serve --model "$model" --store "$store" \
	--cache-dir "$work/cache" --poll 0 --addr "127.0.0.1:${port[gauntlet]}"
uv_opts=()
$PY -c 'import uvloop' 2>/dev/null && uv_opts+=(--loop uvloop)
$PY -c 'import httptools' 2>/dev/null && uv_opts+=(--http httptools)
: >"$work/ready"
log "uvicorn ($workers worker(s), ${uv_opts[*]:-defaults}): training scikit-learn at startup"
start_server fastapi env PEER_DATA="$adult" PEER_HOLDOUT="$holdout" PEER_READY="$work/ready" \
	"$PY" -m uvicorn peer:app --app-dir "$root/$here" --host 127.0.0.1 --port "${port[fastapi]}" \
	--workers "$workers" --no-access-log --log-level warning "${uv_opts[@]}"
for _ in $(seq 3000); do
	(($(wc -l <"$work/ready") >= workers)) && break
	kill -0 "${pid[fastapi]}" 2>/dev/null || { cat "$work/fastapi.log" >&2; die "uvicorn exited"; }
	sleep 0.1
done
(($(wc -l <"$work/ready") >= workers)) || die "uvicorn workers not ready after 300 s"
wait_answer gauntlet
wait_answer fastapi
parity=$($PY "$here/records.py" parity "$adult_test" "$(url gauntlet)" "$(url fastapi)")
log "parity: $parity"

alternate fastapi gauntlet
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report -------------------------------------------------------------------
records=$([[ $BODY == one ]] && echo 1 || echo 32)
gver=$(bin/gauntlet version 2>/dev/null | head -1 || true)
pyver=$($PY -c 'import sys, fastapi, uvicorn, sklearn, pandas, numpy, pydantic
print(f"Python {sys.version.split()[0]}, FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__}, pydantic {pydantic.VERSION}, scikit-learn {sklearn.__version__}, pandas {pandas.__version__}, numpy {numpy.__version__}")')
cat <<EOF
# gauntlet serve vs FastAPI/uvicorn + scikit-learn, UCI Adult logistic regression

- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- command: \`bench/serve/run.sh\` (PAIRS=$PAIRS DURATION=$DURATION WARMUP=$WARMUP THREADS=$THREADS CONNS=$CONNS BODY=$BODY SERVER_CPUS=$SERVER_CPUS WRK_CPUS=$WRK_CPUS)
- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r); shared with other work
- CPUs: servers on ${SERVER_CPUS:-all}, wrk on ${WRK_CPUS:-all}
- load average (1/5/15 min): $load_start at start, $load_end at end; go test running at start: $busy_start
- wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), \`wrk -t$THREADS -c$CONNS -d${DURATION}s --latency -s bench/serve/post.lua\` after ${WARMUP}s of warm-up, POST of $records adult.test record(s) (all 14 fields)
- gauntlet: ${gver:-bin/gauntlet} \`serve --model POINTER --store file://…\`, the model \`gauntlet step train\` published, defaults (GOMAXPROCS $workers)
- peer: $pyver; \`uvicorn peer:app --workers $workers --no-access-log ${uv_opts[*]}\`; \`async def\` endpoint, pydantic request model, pandas DataFrame, Pipeline(ColumnTransformer(StandardScaler, OneHotEncoder), LogisticRegression(lbfgs)).predict_proba
- models: both trained on the same 80 % of adult.data (Gauntlet's split), features = 5 numeric standardised + one-hot of 6 categorical (fnlwgt dropped, sex/race kept out as sensitive); parity on $parity

| pair | server | requests/s | records/s | p50 ms | p99 ms | errors | requests | server CPU µs/request | load1 after | go test after |
|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|
EOF
awk -F'\t' -v n="$records" '{ printf "| %d | %s | %.0f | %.0f | %.2f | %.2f | %d | %d | %.1f | %s | %s |\n", $1, $2, $3, $3 * n, $4, $5, $6, $7, $8, $9, $10 }' "$work/rows"
cat <<EOF

Per server over the $PAIRS runs (min / median / max):

| server | requests/s | p50 ms | p99 ms | server CPU µs/request |
|---|---|---|---|---|
EOF
for side in gauntlet fastapi; do
	echo "| $side | $(field 3 $side | spread) | $(field 4 $side | spread) | $(field 5 $side | spread) | $(field 8 $side | spread) |"
done
cat <<EOF

Ratios gauntlet / FastAPI, pair by pair (min / median / max):
- throughput: $(ratio 3 gauntlet fastapi | spread)
- p50: $(ratio 4 gauntlet fastapi | spread)
- p99: $(ratio 5 gauntlet fastapi | spread)
EOF
errors_note

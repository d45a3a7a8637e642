#!/usr/bin/env bash
# Throughput and latency of `gauntlet serve` against a FastAPI/uvicorn server
# of the same UCI Adult logistic model (scikit-learn), under wrk, on this
# machine, in one run. Prints a Markdown table with the ratios on stdout;
# progress and the raw wrk summaries go to stderr.
#
# Usage (from anywhere): bench/serve/run.sh
# Environment:
#   DURATION=15  THREADS=2  CONNS=64   wrk settings of each measured run (seconds)
#   WARMUP=3                           seconds of unmeasured load before each
#   WORKERS="1 2"                      uvicorn worker counts to measure
#   BODIES="one batch32"               request bodies: 1 or 32 records
#   IDLE_WAIT=0                        seconds to wait first for load1 < 1.5 and
#                                      no go test / *.test process (then run anyway)
#   GAUNTLET_DATASETS                  default ../shared/datasets
# Needs wrk and, for /usr/bin/python3, python3-fastapi python3-uvicorn
# python3-sklearn python3-pandas (python3-uvloop python3-httptools are used
# when present). Every server listens on 127.0.0.1 and is killed on exit.
set -euo pipefail
export GOTOOLCHAIN=local PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the repository
root=$(cd "$(dirname "$0")/../.." && pwd)
cd "$root"
here=bench/serve
PY=/usr/bin/python3
DURATION=${DURATION:-15} THREADS=${THREADS:-2} CONNS=${CONNS:-64} WARMUP=${WARMUP:-3}
WORKERS=${WORKERS:-1 2} BODIES=${BODIES:-one batch32} IDLE_WAIT=${IDLE_WAIT:-0}
datasets=${GAUNTLET_DATASETS:-../shared/datasets}
adult=$(realpath "$datasets/adult/adult.data")
adult_test=$(realpath "$datasets/adult/adult.test")

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

command -v wrk >/dev/null || die "wrk is not installed (apt-get install wrk)"
$PY -c 'import fastapi, uvicorn, sklearn, pandas' 2>/dev/null ||
	die "$PY lacks fastapi/uvicorn/sklearn/pandas (apt-get install python3-fastapi python3-uvicorn python3-sklearn python3-pandas)"

work=$(mktemp -d)
groups=() # process groups of the servers started, each its own session

stop_group() {
	local g=$1 i
	kill -TERM -- "-$g" 2>/dev/null || kill -TERM "$g" 2>/dev/null || return 0
	for i in $(seq 50); do
		kill -0 -- "-$g" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL -- "-$g" 2>/dev/null || true
}
cleanup() {
	local g
	[[ -n ${fg:-} ]] && kill -TERM "$fg" 2>/dev/null
	for g in "${groups[@]}"; do stop_group "$g"; done
	rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

# start LOG CMD...: runs CMD in a new session (so one kill reaches all its
# processes, uvicorn's workers included), in $work, and sets $started.
start() {
	local out=$1
	shift
	(cd "$work" && exec setsid "$@" >"$out" 2>&1) &
	started=$!
	groups+=("$started")
}
# fgrun CMD...: runs CMD in the background and waits, so that a signal to this
# script is acted on at once (bash holds traps while a foreground child runs).
fgrun() {
	"$@" &
	fg=$!
	local rc=0
	wait "$fg" || rc=$?
	fg=
	return "$rc"
}
stop() {
	local g=$1 keep=() x
	stop_group "$g"
	for x in "${groups[@]}"; do [[ $x == "$g" ]] || keep+=("$x"); done
	groups=("${keep[@]}")
}

free_port() { $PY -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

wait_url() { # URL SECONDS PID LOG
	local i
	for i in $(seq $(($2 * 10))); do
		curl -sf -o /dev/null "$1" && return 0
		kill -0 "$3" 2>/dev/null || { cat "$4" >&2; die "server exited before $1 answered"; }
		sleep 0.1
	done
	cat "$4" >&2
	die "$1 did not answer within $2 s"
}

# --- wait for a quiet machine -------------------------------------------------
busy() { pgrep -f 'go test|\.test( |$)' >/dev/null; }
load1() { cut -d' ' -f1 /proc/loadavg; }
if ((IDLE_WAIT > 0)); then
	deadline=$((SECONDS + IDLE_WAIT))
	until awk -v l="$(load1)" 'BEGIN{exit !(l < 1.5)}' && ! busy; do
		if ((SECONDS >= deadline)); then
			log "machine still busy after ${IDLE_WAIT}s (load $(load1)); running anyway"
			break
		fi
		log "waiting for an idle machine: load $(load1)$(busy && echo ', go test running' || true)"
		fgrun sleep 20
	done
fi
load_start=$(cut -d' ' -f1-3 /proc/loadavg)
busy_start=$(busy && echo yes || echo no)

# --- build, train -------------------------------------------------------------
if [[ ! -x bin/gauntlet ]]; then
	log "building bin/gauntlet"
	fgrun go build -o bin/gauntlet ./starter
fi
log "training the Gauntlet model on $adult"
fgrun bin/gauntlet step train --with "data=$adult" --with label=Y --with 'positive_label=>50K' \
	--with model=logistic --with ignore=fnlwgt --with sensitive=sex,race \
	--out "$work/train" >"$work/train.log" 2>&1 || { cat "$work/train.log" >&2; die "train failed"; }
model=$($PY -c 'import json,sys; print(json.load(open(sys.argv[1]))["model"])' "$work/train/outputs.json")
holdout=$model/holdout.csv
$PY "$here/records.py" bodies "$adult_test" "$work"

# --- measure ----------------------------------------------------------------------
# measure NAME URL BODY: warm-up, then one wrk run; appends a row to $work/rows.
measure() {
	local name=$1 url=$2 body=$3 raw="$work/wrk-$1-$3.txt"
	curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary "@$work/$body.json" "$url" ||
		die "$name does not answer 200 to $body.json: $(curl -s -H 'Content-Type: application/json' --data-binary "@$work/$body.json" "$url")"
	WRK_BODY="$work/$body.json" fgrun wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$here/post.lua" "$url" >/dev/null
	WRK_BODY="$work/$body.json" fgrun wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$here/post.lua" "$url" >"$raw"
	sed "s/^/    [$name $body] /" "$raw" >&2
	awk -v name="$name" -v body="$body" -v load="$(load1)" -v busy="$(busy && echo yes || echo no)" '
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
		END { printf "%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", name, body, rps, p50, p99, bad + 0, total, load, busy }
	' "$raw" >>"$work/rows"
}

: >"$work/rows"
gport=$(free_port)
gurl="http://127.0.0.1:$gport/v1/predict"
log "gauntlet serve on 127.0.0.1:$gport"
start "$work/gauntlet.log" "$root/bin/gauntlet" serve --model "$model" --addr "127.0.0.1:$gport"
gpid=$started
wait_url "http://127.0.0.1:$gport/readyz" 60 "$gpid" "$work/gauntlet.log"
for b in $BODIES; do
	log "wrk gauntlet $b"
	measure gauntlet "$gurl" "$b"
done

uv_opts=()
$PY -c 'import uvloop' 2>/dev/null && uv_opts+=(--loop uvloop)
$PY -c 'import httptools' 2>/dev/null && uv_opts+=(--http httptools)
parity=""
for w in $WORKERS; do
	port=$(free_port)
	ready="$work/ready-$w"
	: >"$ready"
	log "uvicorn (${w} worker(s), ${uv_opts[*]:-defaults}) on 127.0.0.1:$port: training scikit-learn at startup"
	start "$work/uvicorn-$w.log" env PEER_DATA="$adult" PEER_HOLDOUT="$holdout" PEER_READY="$ready" \
		"$PY" -m uvicorn peer:app --app-dir "$root/$here" --host 127.0.0.1 --port "$port" \
		--workers "$w" --no-access-log --log-level warning "${uv_opts[@]}"
	ppid_=$started
	for i in $(seq 3000); do
		(($(wc -l <"$ready") >= w)) && break
		kill -0 "$ppid_" 2>/dev/null || { cat "$work/uvicorn-$w.log" >&2; die "uvicorn exited"; }
		sleep 0.1
	done
	(($(wc -l <"$ready") >= w)) || die "uvicorn workers not ready after 300 s"
	wait_url "http://127.0.0.1:$port/healthz" 60 "$ppid_" "$work/uvicorn-$w.log"
	if [[ -z $parity ]]; then
		parity=$(fgrun $PY "$here/records.py" parity "$adult_test" "$gurl" "http://127.0.0.1:$port/v1/predict")
		log "parity: $parity"
		stop "$gpid" # the peers are measured alone
	fi
	for b in $BODIES; do
		log "wrk uvicorn-${w}w $b"
		measure "uvicorn-${w}w" "http://127.0.0.1:$port/v1/predict" "$b"
	done
	stop "$ppid_"
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# --- report -------------------------------------------------------------------
gver=$(bin/gauntlet version 2>/dev/null | head -1 || true)
pyver=$($PY -c 'import sys, fastapi, uvicorn, sklearn, pandas, numpy, pydantic
print(f"Python {sys.version.split()[0]}, FastAPI {fastapi.__version__}, uvicorn {uvicorn.__version__}, pydantic {pydantic.VERSION}, scikit-learn {sklearn.__version__}, pandas {pandas.__version__}, numpy {numpy.__version__}")')
cat <<EOF
# gauntlet serve vs FastAPI/uvicorn + scikit-learn, UCI Adult logistic regression

- date: $(date -u '+%Y-%m-%d %H:%M UTC')
- command: \`bench/serve/run.sh\` (DURATION=$DURATION THREADS=$THREADS CONNS=$CONNS WARMUP=$WARMUP WORKERS="$WORKERS" BODIES="$BODIES")
- machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), Linux $(uname -r); shared with other work; wrk runs on the same cores
- load average (1/5/15 min): $load_start at start, $load_end at end; go test running at start: $busy_start
- wrk: $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), \`wrk -t$THREADS -c$CONNS -d${DURATION}s --latency -s bench/serve/post.lua\` after ${WARMUP}s of warm-up, POST of 1 or 32 adult.test records (all 14 fields)
- gauntlet: ${gver:-bin/gauntlet} \`serve --model DIR\`, defaults (GOMAXPROCS $(nproc))
- peer: $pyver; \`uvicorn peer:app --workers N --no-access-log ${uv_opts[*]}\`; \`async def\` endpoint, pydantic request model, pandas DataFrame, Pipeline(ColumnTransformer(StandardScaler, OneHotEncoder), LogisticRegression(lbfgs)).predict_proba
- models: both trained on the same 80 % of adult.data (Gauntlet's split), features = 5 numeric standardised + one-hot of 6 categorical (fnlwgt dropped, sex/race kept out as sensitive); parity on $parity

| server | records/request | requests/s | records/s | p50 ms | p99 ms | errors | requests | load1 after | go test after |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---|
EOF
awk -F'\t' '{ n = ($2 == "batch32") ? 32 : 1
	printf "| %s | %d | %.0f | %.0f | %.2f | %.2f | %d | %d | %s | %s |\n", $1, n, $3, $3 * n, $4, $5, $6, $7, $8, $9 }' "$work/rows"
cat <<EOF

Ratios gauntlet / peer (throughput: higher is better for gauntlet; latency: lower is better for gauntlet):

| records/request | peer | throughput × | p50 × | p99 × |
|---:|---|---:|---:|---:|
EOF
awk -F'\t' '$1 == "gauntlet" { rps[$2] = $3; p50[$2] = $4; p99[$2] = $5; next }
	{ peers[++n] = $0 }
	END { for (i = 1; i <= n; i++) { split(peers[i], f, "\t"); b = f[2]
		if (!(b in rps) || f[3] == 0 || f[4] == 0 || f[5] == 0) continue
		printf "| %d | %s | %.1f | %.3f | %.3f |\n", (b == "batch32") ? 32 : 1, f[1], rps[b] / f[3], p50[b] / f[4], p99[b] / f[5] } }' "$work/rows"
if awk -F'\t' '$6 > 0 { bad = 1 } END { exit !bad }' "$work/rows"; then
	echo
	echo "**Some runs had errors (non-2xx responses or socket errors): their numbers are not comparable.**"
fi

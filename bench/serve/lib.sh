# Shared by bench/serve/run.sh and bench/serve/formats.sh (sourced, not run):
# CPU pinning, waiting for a quiet machine, starting servers in sessions of
# their own, one measured wrk run as a row of $work/rows, and the min /
# median / max summaries of those rows.
#
# The sourcing script sets, before calling these: here (bench/serve), work
# (its temporary directory), BODY (one or batch32), THREADS, CONNS, WARMUP,
# DURATION, and the associative array pid (side -> the server's session id).
# A row is tab-separated: pair, side, requests/s, p50 ms, p99 ms, errors,
# requests, server CPU µs/request, load1 after, go test running after.

log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

# On two cores or more the servers share SERVER_CPUS and wrk runs alone on
# WRK_CPUS; empty values turn pinning off.
if (($(nproc) >= 2)); then
	SERVER_CPUS=${SERVER_CPUS-0} WRK_CPUS=${WRK_CPUS-1}
else
	SERVER_CPUS=${SERVER_CPUS-} WRK_CPUS=${WRK_CPUS-}
fi
cpus() { # CPU list -> count; empty: all
	if [[ -z $1 ]]; then nproc; else taskset -c "$1" nproc; fi
}
pin() { if [[ -n $1 ]]; then echo taskset -c "$1"; fi; }

busy() { pgrep -f 'go test|\.test( |$)' >/dev/null; }
load1() { cut -d' ' -f1 /proc/loadavg; }
# wait_idle SECONDS: waits at most that long for load1 < 1.5 and no go test.
wait_idle() {
	local deadline=$((SECONDS + $1))
	(($1 > 0)) || return 0
	until awk -v l="$(load1)" 'BEGIN{exit !(l < 1.5)}' && ! busy; do
		((SECONDS >= deadline)) && { log "machine still busy after ${1}s (load $(load1)); running anyway"; return 0; }
		log "waiting for an idle machine: load $(load1)"
		sleep 20
	done
}

pids=() # each server leads its own session: one kill reaches all its processes
stop_servers() { # TERM to every session, KILL to what is left after 5 s
	local p i
	((${#pids[@]})) || return 0
	for p in "${pids[@]}"; do kill -TERM -- "-$p" 2>/dev/null || true; done
	for i in $(seq 50); do
		for p in "${pids[@]}"; do kill -0 -- "-$p" 2>/dev/null && break; done || return 0
		sleep 0.1
	done
	for p in "${pids[@]}"; do kill -KILL -- "-$p" 2>/dev/null || true; done
}
# start_server SIDE CMD...: runs CMD pinned to SERVER_CPUS in a new session,
# in $work, logging to $work/SIDE.log, and records it as pid[SIDE].
start_server() {
	local side=$1
	shift
	(cd "$work" && exec setsid $(pin "$SERVER_CPUS") "$@" >"$work/$side.log" 2>&1) &
	pid[$side]=$!
	pids+=("$!")
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
# wait_answer SIDE: waits up to 60 s for url SIDE to answer the body with 200.
wait_answer() {
	local side=$1 i
	for i in $(seq 600); do
		curl -sf -o /dev/null -H 'Content-Type: application/json' --data-binary "@$work/$BODY.json" "$(url "$side")" && return 0
		kill -0 "${pid[$side]}" 2>/dev/null || { cat "$work/$side.log" >&2; die "$side server exited"; }
		sleep 0.1
	done
	cat "$work/$side.log" >&2
	die "$side does not answer 200 to $BODY.json"
}

# session_ticks SID: CPU clock ticks (user + system) of a session's processes.
session_ticks() {
	ps -o sid=,pid= -e | awk -v s="$1" '$1 == s { print $2 }' |
		while read -r p; do awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || true; done |
		awk '{ t += $1 } END { print t + 0 }'
}

# measure PAIR SIDE URL: warm-up, then one measured wrk run; appends a row.
measure() {
	local pair=$1 side=$2 url=$3 raw="$work/wrk-$1-$2.txt" c0 c1
	WRK_BODY="$work/$BODY.json" $(pin "$WRK_CPUS") wrk -t"$THREADS" -c"$CONNS" -d"${WARMUP}s" -s "$here/post.lua" "$url" >/dev/null
	c0=$(session_ticks "${pid[$side]}")
	WRK_BODY="$work/$BODY.json" $(pin "$WRK_CPUS") wrk -t"$THREADS" -c"$CONNS" -d"${DURATION}s" --latency -s "$here/post.lua" "$url" >"$raw"
	c1=$(session_ticks "${pid[$side]}")
	sed "s/^/    [$pair $side] /" "$raw" >&2
	awk -v pair="$pair" -v side="$side" -v load="$(load1)" -v busy="$(busy && echo yes || echo no)" \
		-v ticks=$((c1 - c0)) -v tick="$(getconf CLK_TCK)" '
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

# alternate A B: PAIRS measured runs of each side, the side that goes first
# swapping every pair; url SIDE must print the side's URL.
alternate() {
	local pair side order
	: >"$work/rows"
	for pair in $(seq "$PAIRS"); do
		order="$1 $2"
		((pair % 2 == 0)) && order="$2 $1"
		for side in $order; do
			log "pair $pair/$PAIRS: $side"
			measure "$pair" "$side" "$(url "$side")"
		done
	done
}

# spread: "min / median / max" of the numbers on stdin.
spread() {
	sort -g | awk '{ v[NR] = $1 } END { m = (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2
		printf (v[NR] >= 100 ? "%.0f / %.0f / %.0f" : (v[NR] >= 1 ? "%.2f / %.2f / %.2f" : "%.3f / %.3f / %.3f")), v[1], m, v[NR] }'
}
median() { sort -g | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
field() { awk -F'\t' -v f="$1" -v s="$2" '$2 == s { print $f }' "$work/rows"; } # FIELD SIDE
ratio() { # FIELD A B: A / B pair by pair, one a line
	awk -F'\t' -v f="$1" -v a="$2" -v b="$3" '{ r[$1, $2] = $f } END { for (p = 1; (p, b) in r; p++) print r[p, a] / r[p, b] }' "$work/rows"
}
errors_note() {
	if awk -F'\t' '$6 > 0 { bad = 1 } END { exit !bad }' "$work/rows"; then
		echo
		echo "**Some runs had errors (non-2xx responses or socket errors): their numbers are not comparable.**"
	fi
}

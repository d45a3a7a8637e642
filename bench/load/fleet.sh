#!/usr/bin/env bash
# bench/load on the fleet topology (PostgreSQL-backed official Temporal
# server, the store on Versity's S3 gateway, two worker hosts: network and
# mount namespaces on this machine, bench/fleetload) against bench/load's
# embedded one-process stack (in-memory Temporal, file:// store, one
# worker): RUNS runs of PIPELINE started at once on each, PAIRS pairs, the
# sides alternating run by run and the first side swapping each pair. All
# hosts share this machine's cores, so this measures the fleet's overhead,
# not its scaling. Prints each run's output, then min/median/max per side of
# throughput and p99; writes everything to bench/load/results/DATE-REV-fleet.txt.
#
# Needs root (namespaces) and make tools (PostgreSQL, bin/temporal-server,
# bin/temporal-sql-tool, bin/versitygw). bench/load links the Temporal
# server: set GAUNTLET_BUILD_LOCK to a lock file to take turns building it.
set -euo pipefail
cd "$(dirname "$0")/../.."
PAIRS=${PAIRS:-7}
RUNS=${RUNS:-200}
PIPELINE=${PIPELINE:-smoke}
lock=()
if [ -n "${GAUNTLET_BUILD_LOCK:-}" ]; then lock=(flock "$GAUNTLET_BUILD_LOCK"); fi
"${lock[@]}" go build -o bin/bench-load ./bench/load
go build -o bin/worker ./worker
go test -c -tags bench -o bin/bench-fleetload.test ./bench/fleetload
root=$PWD
rev=$(git rev-parse --short HEAD)$(git diff --quiet || echo -dirty)
out=bench/load/results/$(date -u +%Y-%m-%d)-$rev-fleet.txt
mkdir -p "$(dirname "$out")"

side() {
  echo "== $1 (load before: $(cut -d' ' -f1-3 /proc/loadavg))"
  case $1 in
  fleet) (cd bench/fleetload && "$root/bin/bench-fleetload.test" -test.run TestFleetLoad -test.count=1 -test.timeout 40m \
    -runs "$RUNS" -pipeline "$PIPELINE" -worker "$root/bin/worker" | grep -v '^\(PASS\|ok \|=== \|--- \)') ;;
  embedded) bin/bench-load -runs "$RUNS" -pipeline "$PIPELINE" ;;
  esac
}

{
  echo "tree $rev, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo); $RUNS runs of $PIPELINE at once per side"
  for i in $(seq 1 "$PAIRS"); do
    if [ $((i % 2)) -eq 1 ]; then order="fleet embedded"; else order="embedded fleet"; fi
    for s in $order; do
      echo "== pair $i"
      side "$s"
    done
  done
} 2>&1 | tee "$out"
python3 bench/load/summarize.py "$out" | tee -a "$out"
echo "written to $out"

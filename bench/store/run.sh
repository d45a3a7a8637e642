#!/usr/bin/env bash
# The credit-risk gauntlet with the fleet's store on an S3 server (Versity's
# gateway, on loopback, behind a counting proxy) against a file:// store on
# the same disk: PAIRS pairs of runs, the sides alternating run by run and
# the first side swapping each pair, each run on a fresh worker and store
# after an untimed run that makes the champion its canary is judged
# against. Prints every run, min/median/max per side, the ratio of the
# medians and what each run moved to and from the store; writes the same to
# bench/store/results/DATE-REV.txt.
#
# Needs bin/temporal, bin/versitygw and bin/terraform (make tools) and builds
# bin/worker from this tree. Run from the repository root on an idle machine.
set -euo pipefail
cd "$(dirname "$0")/../.."
PAIRS=${PAIRS:-7}
for tool in bin/temporal bin/versitygw bin/terraform; do
  [ -x "$tool" ] || { echo "$tool is missing: run make tools" >&2; exit 1; }
done
go build -o bin/worker ./worker
go build -o bin/bench-store ./bench/store
rev=$(git rev-parse --short HEAD)$(git diff --quiet || echo -dirty)
out=bench/store/results/$(date -u +%Y-%m-%d)-$rev.txt
mkdir -p "$(dirname "$out")"
{
  echo "tree $rev, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) CPUs, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo)"
  echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
  bin/bench-store -pairs "$PAIRS" "$@"
} 2>&1 | tee "$out"
echo "written to $out"

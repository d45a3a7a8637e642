#!/bin/sh
# Creates the namespace and Gauntlet's search attributes (internal/searchattr)
# and says "ready" only when a workflow started now can upsert them; later
# runs find everything in place and change nothing. Exits non-zero, naming
# what is missing and the server's last error, when the server is not ready
# within READY_TIMEOUT seconds (default 120).
#
# Why it waits: a fresh server answers before it can serve, a namespace just
# created is invisible for a moment (the server caches namespaces, and
# caches "not found" too), and a workflow whose first task upserts an
# attribute the server does not know yet fails that task, which the server
# retries with a backoff that grows to 10 minutes: the run sits silently.
set -eu
ns=${DEFAULT_NAMESPACE:-default}
timeout=${READY_TIMEOUT:-120}
deadline=$(($(date +%s) + timeout))
err=$(mktemp)
trap 'rm -f "$err"' EXIT

# until_ok WHAT CMD...: runs CMD until it succeeds; past the deadline, fails
# naming WHAT with CMD's last error.
until_ok() {
  what=$1
  shift
  while ! "$@" >/dev/null 2>"$err"; do
    if [ "$(date +%s)" -ge "$deadline" ]; then
      echo "create-namespace: $what: not ready within ${timeout}s: $(tr '\n' ' ' <"$err")" >&2
      exit 1
    fi
    sleep 1
  done
}

namespace_visible() {
  temporal operator namespace describe --namespace "$ns" && return 0
  # Missing, or created a moment ago and not visible yet: (re)creating is
  # harmless, "already exists" is the expected answer to the latter.
  temporal operator namespace create --namespace "$ns" --retention "${NAMESPACE_RETENTION:-720h}" || true
  return 1
}

add_attribute() {
  list=$(temporal operator search-attribute list --namespace "$ns") || return 1
  printf '%s\n' "$list" | grep -qw -- "$1" ||
    temporal operator search-attribute create --namespace "$ns" --name "$1" --type Keyword
}

attributes_listed() {
  list=$(temporal operator search-attribute list --namespace "$ns") || return 1
  for a in "$@"; do
    printf '%s\n' "$list" | grep -qw -- "$a" || { echo "$a is not listed yet" >&2; return 1; }
  done
}

until_ok "Temporal server at ${TEMPORAL_ADDRESS:-localhost:7233}" temporal operator cluster health
until_ok "namespace $ns" namespace_visible
names=
for name in GauntletPipeline GauntletStatus GauntletModelVersion GauntletSpecHash GauntletApproval GauntletRetryOf; do
  until_ok "search attribute $name in namespace $ns" add_attribute "$name"
  names="$names $name"
done
# shellcheck disable=SC2086 # one argument per name
until_ok "search attributes in namespace $ns" attributes_listed $names
# The server's services each cache namespaces, search attributes included,
# and refresh every system.namespaceCacheRefreshInterval (2 s by default);
# the list above saw the frontend's cache, so give the history service,
# which checks a workflow's upserts, one refresh more. No client call can
# observe that cache.
sleep "${NAMESPACE_CACHE_REFRESH:-3}"
echo "namespace $ns is ready"

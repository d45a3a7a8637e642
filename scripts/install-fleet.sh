#!/usr/bin/env bash
# Installs what the multi-host tests (internal/fleettest, e2e/fleet) run:
#   - Debian's PostgreSQL and iproute2 (util-linux's nsenter and unshare are
#     essential packages);
#   - built into bin/: the official Temporal server (bin/temporal-server)
#     and its SQL schema tool (bin/temporal-sql-tool), the server module's
#     own main packages at the version go.mod pins for the embedded server
#     (go.mod lists them as tools); from the Go module proxy, the temporal CLI
#     (bin/temporal, which deploy/temporal/create-namespace.sh uses) and
#     Versity's S3 gateway (bin/versitygw, Apache-2.0: a real S3 server with
#     atomic conditional writes that builds in about a minute).
# Idempotent: a binary already built from its module at its version is kept.
# Builds run one at a time at the lowest priority; set GAUNTLET_BUILD_LOCK to
# a lock file to also wait for other builds that take the same lock.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cli_version=v1.5.1  # temporal CLI; newer releases need a newer Go
s3_version=v1.8.0   # versitygw

need=()
command -v ip >/dev/null 2>&1 || need+=(iproute2)
for cmd in nsenter unshare; do
  command -v "$cmd" >/dev/null 2>&1 || need+=(util-linux)
done
compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null || need+=(postgresql)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-fleet: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  # The tests start their own clusters; the package's default cluster
  # would only be a server nobody uses, listening on the host.
  mkdir -p /etc/postgresql-common/createcluster.d
  conf=/etc/postgresql-common/createcluster.d/gauntlet.conf
  [ -e "$conf" ] || echo "create_main_cluster = false" >"$conf"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}"
fi

server_version=$(cd "$root" && GOTOOLCHAIN=local go list -m -f '{{.Version}}' go.temporal.io/server)

# build NAME PACKAGE MODULE VERSION: go install PACKAGE@VERSION into
# bin/NAME unless bin/NAME was built from MODULE at VERSION.
build() {
  local name=$1 pkg=$2 mod=$3 version=$4 bin="$root/bin/$1"
  if [ -x "$bin" ] && go version -m "$bin" 2>/dev/null |
    awk -v m="$mod" -v v="$version" '$1 == "mod" && $2 == m && $3 == v { found = 1 } END { exit !found }'; then
    echo "install-fleet: $bin is already $mod $version"
    return
  fi
  echo "install-fleet: building $pkg@$version into $bin"
  local tmp start
  tmp=$(mktemp -d)
  start=$(date +%s)
  local cmd=(nice -n 19 env GOBIN="$tmp" GOTOOLCHAIN=local go install "$pkg@$version")
  if [ -n "${GAUNTLET_BUILD_LOCK:-}" ]; then
    cmd=(flock "$GAUNTLET_BUILD_LOCK" "${cmd[@]}")
  fi
  "${cmd[@]}"
  mkdir -p "$root/bin"
  mv "$tmp/$(basename "$pkg")" "$bin"
  rmdir "$tmp"
  echo "install-fleet: $name built in $(($(date +%s) - start))s"
}

# build_here NAME PACKAGE: the server's own main packages, which go.mod pins
# as tools at the embedded server's version, so they build from this
# module's dependency graph and build cache (about 30 s, not 5 minutes).
build_here() {
  local name=$1 pkg=$2 bin="$root/bin/$1"
  if [ -x "$bin" ] && go version -m "$bin" 2>/dev/null |
    awk -v v="$server_version" '$1 == "mod" && $2 == "go.temporal.io/server" && $3 == v { found = 1 } END { exit !found }'; then
    echo "install-fleet: $bin is already go.temporal.io/server $server_version"
    return
  fi
  echo "install-fleet: building $pkg ($server_version) into $bin"
  local start cmd
  start=$(date +%s)
  cmd=(nice -n 19 env GOTOOLCHAIN=local go build -o "$bin" "$pkg")
  if [ -n "${GAUNTLET_BUILD_LOCK:-}" ]; then
    cmd=(flock "$GAUNTLET_BUILD_LOCK" "${cmd[@]}")
  fi
  (cd "$root" && "${cmd[@]}")
  echo "install-fleet: $name built in $(($(date +%s) - start))s"
}

build versitygw github.com/versity/versitygw/cmd/versitygw github.com/versity/versitygw "$s3_version"
build_here temporal-sql-tool go.temporal.io/server/cmd/tools/sql
build_here temporal-server go.temporal.io/server/cmd/server
build temporal github.com/temporalio/cli/cmd/temporal github.com/temporalio/cli "$cli_version"

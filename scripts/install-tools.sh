#!/usr/bin/env bash
# Installs what the tests need that Go modules do not bring. Idempotent: a
# second run only checks.
set -euo pipefail
need=()
# command:Debian package. promtool comes with the prometheus package;
# docker-compose only validates the compose file here, no engine runs.
for pair in git:git make:make gcc:gcc promtool:prometheus docker-compose:docker-compose; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-tools: missing ${need[*]}; run as root or install them" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
go version

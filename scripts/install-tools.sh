#!/usr/bin/env bash
# Installs what the tests need that Go modules do not bring: Debian packages,
# the browser test's npm package, and Terraform 1.5.7 into bin/. Idempotent: a
# second run only checks.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
need=()
# command:Debian package. promtool comes with the prometheus package;
# docker-compose only validates the compose file here, no engine runs;
# chromium is the browser the Temporal UI test drives; python3 runs the
# example trainer of the run: step tests.
for pair in git:git make:make gcc:gcc promtool:prometheus docker-compose:docker-compose \
  chromium:chromium node:nodejs npm:npm python3:python3; do
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
# playwright-core drives the system Chromium; it downloads no browser.
if [ ! -d "$root/e2e/node_modules/playwright-core" ]; then
  (cd "$root/e2e" && npm ci --no-audit --no-fund)
fi
bash "$root/scripts/install-terraform.sh"
go version

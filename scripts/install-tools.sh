#!/usr/bin/env bash
# Installs what the tests need that Go modules do not bring: Debian packages,
# the browser test's npm package, and a Terraform as bin/terraform. `make
# test` runs it first, so a fresh machine runs every test: as root it
# installs what is missing; otherwise it stops at once, naming what is
# missing. Idempotent: a second run only checks.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
need=() missing=()
# command:Debian package. promtool and prometheus come with the prometheus
# package; docker-compose only validates the compose file here, no engine
# runs; chromium is the browser the Temporal UI test drives (at that path);
# /usr/bin/python3 runs the example trainer of the run: step tests; openssl
# and ssh-keygen cross-check the reviewer keys and fingerprints.
# Debian's python3-torch and python3-onnx run the PyTorch trainer example and
# check its ONNX export; libonnx-testdata holds the ONNX project's backend
# test cases the ONNX runtime tests replay.
for pair in git:git make:make gcc:gcc promtool:prometheus prometheus:prometheus \
  docker-compose:docker-compose /usr/bin/chromium:chromium node:nodejs npm:npm \
  /usr/bin/python3:python3 openssl:openssl ssh-keygen:openssh-client \
  /usr/lib/python3/dist-packages/torch:python3-torch /usr/lib/python3/dist-packages/onnx:python3-onnx \
  /usr/share/libonnx-testdata:libonnx-testdata; do
  if ! command -v "${pair%%:*}" >/dev/null 2>&1 && [ ! -d "${pair%%:*}" ]; then
    missing+=("${pair%%:*}")
    [[ " ${need[*]} " == *" ${pair#*:} "* ]] || need+=("${pair#*:}")
  fi
done
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "install-tools: the tests need ${missing[*]}, which are missing: install the Debian packages ${need[*]} (as root, \`make tools\` does)" >&2
    exit 1
  fi
  echo "install-tools: installing ${need[*]} for ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
# playwright-core drives the system Chromium; it downloads no browser.
if [ ! -d "$root/e2e/node_modules/playwright-core" ]; then
  (cd "$root/e2e" && npm ci --no-audit --no-fund)
fi
bash "$root/scripts/install-terraform.sh"
# ONNX Runtime's shared library into bin/onnxruntime.
bash "$root/scripts/install-onnxruntime.sh"
# The multi-host tests' servers: PostgreSQL, the official Temporal server and
# its SQL tool, the temporal CLI and an S3 server, into bin/.
bash "$root/scripts/install-fleet.sh"

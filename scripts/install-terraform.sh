#!/usr/bin/env bash
# Installs Terraform 1.5.7, the last MPL-licensed release, into bin/terraform
# by building it from the Go module proxy (no HashiCorp download site, no
# checksum of a foreign binary to trust). Idempotent: skips the build when
# bin/terraform already reports that version. The worker and the tests find
# it there (or wherever GAUNTLET_TERRAFORM points).
set -euo pipefail
version=1.5.7
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$root/bin/terraform"
if [ -x "$bin" ] && CHECKPOINT_DISABLE=1 "$bin" version 2>/dev/null | head -n 1 | grep -qx "Terraform v$version"; then
  echo "install-terraform: $bin is already v$version"
  exit 0
fi
echo "install-terraform: building Terraform v$version into $bin (a few minutes)"
mkdir -p "$root/bin"
start=$(date +%s)
GOBIN="$root/bin" GOTOOLCHAIN=local go install "github.com/hashicorp/terraform@v$version"
CHECKPOINT_DISABLE=1 "$bin" version | head -n 1
echo "install-terraform: done in $(($(date +%s) - start))s"

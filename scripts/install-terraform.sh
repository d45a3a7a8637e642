#!/usr/bin/env bash
# Makes bin/terraform a Terraform that the worker and the tests can drive.
# They run --terraform, $GAUNTLET_TERRAFORM or bin/terraform, never the first
# terraform on PATH, so the choice is made here, once, and said:
#   1. $GAUNTLET_TERRAFORM when it is set: checked, nothing else is done;
#   2. bin/terraform when it already is a usable one;
#   3. a Terraform >= 1.5 or an OpenTofu on PATH (terraform, then tofu),
#      linked as bin/terraform;
#   4. otherwise Terraform 1.5.7, the last MPL-licensed release, built from
#      the Go module proxy into bin/ (no HashiCorp download site, no foreign
#      binary to trust): about 2 minutes on 2 cores with a warm module cache.
# GAUNTLET_TERRAFORM_BUILD=1 skips step 3 and builds 1.5.7 (replacing a link).
# Idempotent: a second run only checks.
set -euo pipefail
version=1.5.7
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bin="$root/bin/terraform"

# describe BIN prints "Terraform v1.11.4" or "OpenTofu v1.8.0" and succeeds
# when BIN is a Terraform >= 1.5 or any OpenTofu (all of them are >= 1.6).
describe() {
  local out first
  out=$(CHECKPOINT_DISABLE=1 TF_CLI_CONFIG_FILE=/dev/null "$1" version 2>/dev/null) || return 1
  first=${out%%$'\n'*}
  [[ $first =~ ^(Terraform|OpenTofu)\ v([0-9]+)\.([0-9]+)\.[0-9]+ ]] || return 1
  if [ "${BASH_REMATCH[1]}" = Terraform ] && [ "${BASH_REMATCH[2]}" -eq 1 ] && [ "${BASH_REMATCH[3]}" -lt 5 ]; then
    echo "install-terraform: $1 is $first; Gauntlet needs Terraform >= 1.5 or OpenTofu" >&2
    return 1
  fi
  echo "$first"
}

where() {
  local target
  target=$(readlink -f "$1")
  if [ "$target" = "$1" ]; then echo "$1"; else echo "$1 -> $target"; fi
}

if [ -n "${GAUNTLET_TERRAFORM:-}" ]; then
  if what=$(describe "$GAUNTLET_TERRAFORM"); then
    echo "install-terraform: using $what from \$GAUNTLET_TERRAFORM ($(where "$GAUNTLET_TERRAFORM"))"
    exit 0
  fi
  echo "install-terraform: \$GAUNTLET_TERRAFORM=$GAUNTLET_TERRAFORM is not a Terraform >= 1.5 or OpenTofu; unset it to let \`make tools\` choose one" >&2
  exit 1
fi

build=${GAUNTLET_TERRAFORM_BUILD:-0}
if [ -x "$bin" ] && what=$(describe "$bin"); then
  if [ "$build" != 1 ] || { [ ! -L "$bin" ] && [ "$what" = "Terraform v$version" ]; }; then
    echo "install-terraform: using $what, $(where "$bin")"
    exit 0
  fi
fi

if [ "$build" != 1 ]; then
  for name in terraform tofu; do
    found=$(command -v "$name" 2>/dev/null) || continue
    [ "$(readlink -f "$found")" = "$(readlink -f "$bin" 2>/dev/null || true)" ] && continue
    if what=$(describe "$found"); then
      mkdir -p "$root/bin"
      ln -sfn "$found" "$bin"
      echo "install-terraform: using $what found on PATH, linked as $(where "$bin")"
      case $what in
      "Terraform v1.5."*) ;;
      Terraform*) echo "install-terraform: (Terraform after 1.5 is BUSL-licensed; GAUNTLET_TERRAFORM_BUILD=1 make terraform builds the MPL 1.5.7 instead)" ;;
      esac
      exit 0
    fi
  done
fi

echo "install-terraform: no Terraform >= 1.5 or OpenTofu on PATH; building Terraform v$version into $bin (about 2 minutes on 2 cores)"
mkdir -p "$root/bin"
rm -f "$bin"
start=$(date +%s)
GOBIN="$root/bin" GOTOOLCHAIN=local go install "github.com/hashicorp/terraform@v$version"
echo "install-terraform: using $(describe "$bin"), $bin (built in $(($(date +%s) - start))s)"

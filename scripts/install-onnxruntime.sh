#!/usr/bin/env bash
# Installs the ONNX Runtime shared library (CPU) into bin/onnxruntime/ for the
# tests and local runs. It takes libonnxruntime.so.1 out of the npm package
# onnxruntime-node, whose tarball carries the official linux builds:
# `npm pack` only downloads it (no install script runs), npm checks the
# registry's integrity hash, and this script checks the tarball against the
# sha256 pinned below. Idempotent: a second run only checks the library.
#
# Users outside the tests take the official release archive instead
# (onnxruntime-linux-x64-VERSION.tgz, or the -gpu one for CUDA) and point
# GAUNTLET_ONNXRUNTIME_LIB at its lib/libonnxruntime.so.VERSION.
set -euo pipefail
version=1.30.0
tarball_sha256=6e3390d6b783e7be946fad629292799da28d0b42f84856e50d2c1b0383291e75
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest="$root/bin/onnxruntime"
lib="$dest/libonnxruntime.so.1"
stamp="$dest/VERSION"

case "$(uname -m)" in
  x86_64) arch=x64 ;;
  aarch64 | arm64) arch=arm64 ;;
  *) echo "install-onnxruntime: no ONNX Runtime build for $(uname -m) in onnxruntime-node" >&2; exit 1 ;;
esac

if [ -f "$lib" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$version $arch $(sha256sum "$lib" | cut -d' ' -f1)" ]; then
  echo "install-onnxruntime: $lib is already $version"
  exit 0
fi
command -v npm >/dev/null 2>&1 || { echo "install-onnxruntime: npm is needed (Debian package npm)" >&2; exit 1; }

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "install-onnxruntime: fetching onnxruntime-node@$version (about 113 MB)"
(cd "$work" && npm pack --silent "onnxruntime-node@$version" >/dev/null)
tgz="$work/onnxruntime-node-$version.tgz"
got=$(sha256sum "$tgz" | cut -d' ' -f1)
if [ "$got" != "$tarball_sha256" ]; then
  echo "install-onnxruntime: $tgz has sha256 $got, want $tarball_sha256" >&2
  exit 1
fi
tar -xzf "$tgz" -C "$work" "package/bin/napi-v6/linux/$arch/libonnxruntime.so.1"
mkdir -p "$dest"
# Rename into place so that a reader never loads half a library.
cp "$work/package/bin/napi-v6/linux/$arch/libonnxruntime.so.1" "$lib.tmp"
mv -f "$lib.tmp" "$lib"
echo "$version $arch $(sha256sum "$lib" | cut -d' ' -f1)" >"$stamp"
echo "install-onnxruntime: installed $lib (ONNX Runtime $version, CPU); set GAUNTLET_ONNXRUNTIME_LIB=$lib"

#!/usr/bin/env bash
# Regenerates onnx.pb.go from onnx.proto with the protoc-gen-go of the
# google.golang.org/protobuf version go.mod pins. onnx.proto is ONNX 1.12's
# (IR version 8), copied unchanged from Debian's python3-onnx 1.12.0
# (/usr/lib/python3/dist-packages/onnx/onnx.proto); protoc comes from
# Debian's protobuf-compiler.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
GOBIN="$bin" go install google.golang.org/protobuf/cmd/protoc-gen-go
protoc --plugin=protoc-gen-go="$bin/protoc-gen-go" --go_out=. --go_opt=paths=source_relative \
  --go_opt=Monnx.proto=github.com/gauntlet-ml/gauntlet/internal/ml/onnx/onnxpb onnx.proto

# Gauntlet. `make demo` runs the whole gauntlet on embedded defaults;
# `make test` runs every test. Both work on a fresh clone.
SHELL := /bin/bash
GO ?= go
export GOTOOLCHAIN := local
# go-nvml's cgo preamble includes NVIDIA's nvml.h, whose deprecated
# declarations print 29 compiler warnings whenever that package compiles:
# third-party noise on the user's screen, not ours to fix.
export CGO_CFLAGS ?= -O2 -g -Wno-deprecated-declarations
export GAUNTLET_DATASETS ?= $(abspath ../shared/datasets)
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
MODULE := github.com/gauntlet-ml/gauntlet
LDFLAGS := -s -w -X $(MODULE)/internal/cli.Version=$(VERSION)

.PHONY: all build demo dev test tools terraform lint bench bench-interp clean

all: build

build: bin/gauntlet bin/worker

bin/gauntlet: FORCE
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/gauntlet ./starter

bin/worker: FORCE
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/worker ./worker

FORCE:

# The main job: the embedded stack, the whole gauntlet through it (nodes
# through Terraform, hence terraform), a summary, then stop.
demo: build terraform
	./bin/gauntlet demo

# bin/terraform: a Terraform >= 1.5 or OpenTofu from PATH, linked, or else
# Terraform 1.5.7 built from the Go module proxy (scripts/install-terraform.sh
# says which).
terraform:
	bash scripts/install-terraform.sh

# A long-running dev stack with the UI on http://127.0.0.1:8233.
dev: build
	./bin/gauntlet dev

# Everything: unit, workflow, replay, fuzz seeds, integration on a real
# in-process Temporal server. -p 1 because packages linking the server each
# take a minute to link and two at once thrash 2 cores. tools comes first:
# it installs what the tests need (as root) or stops at once naming it, so
# that no test skips for a missing tool. bin/testsummary prints what plain
# go test prints and ends with the skipped tests, why they skipped, and
# "tests: N passed, N failed, N skipped"; pipefail keeps go test's status.
test: tools lint build bin/testsummary
	set -o pipefail; $(GO) test -json -p 1 -count=1 -timeout 25m ./... | bin/testsummary -trim $(MODULE)/

bin/testsummary: FORCE
	$(GO) build -o bin/testsummary ./scripts/testsummary

tools:
	bash scripts/install-tools.sh

# gofmt, go vet, and Temporal's workflowcheck over the workflow code (the
# import allow-list of workflows/ is a test: workflows/imports_test.go).
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool workflowcheck -config workflows/workflowcheck.yaml ./workflows/...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/...

# Interpreter overhead against a hand-written workflow on one embedded server.
# Each benchmark in a process of its own: the throughput run measured after
# the overhead run's 600 pipelines in the same process was half as fast.
bench-interp:
	$(GO) test -tags bench -run '^$$' -bench Overhead -benchtime 150x ./bench/interp/
	$(GO) test -tags bench -run '^$$' -bench Throughput -benchtime 150x ./bench/interp/

clean:
	rm -rf bin .gauntlet

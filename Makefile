# The two commands a newcomer needs are `make demo` and `make test`; the rest are their parts.
SHELL := /bin/bash

.PHONY: demo test bench control-plane check-generated generate lint
SIZES ?= 1000,10000
STEADY ?= 330

## Run the whole thing locally: control plane, fake provider, operator, examples, live view.
demo:
	scripts/demo

## Build what is missing, check generated files and lints, run every test against a real control plane
## (test binaries two at a time, each with its own control plane: scripts/run-tests).
test:
	@# The Go tools and the Rust lint build side by side: on a fresh machine both take minutes.
	$(MAKE) --no-print-directory -j2 --output-sync=target control-plane lint
	$(MAKE) --no-print-directory check-generated
	cargo build --workspace --bins --locked
	scripts/run-tests

## Formatting (rustfmt.toml) and clippy with warnings as errors (Cargo.toml's [lints] deny
## unwrap/expect/panic outside tests).
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

## Build etcd, kube-apiserver, kube-controller-manager, helm, promtool and helm-docs into ~/.cache
## (once per version).
control-plane:
	scripts/control-plane build

## Regenerate the CRDs (crds/ and the chart's copy), the chart's README and the plain manifests in deploy/.
generate:
	scripts/generate

## Fail when a generated file differs from what its generator produces now.
check-generated:
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && scripts/generate $$tmp && \
	for f in crds charts/consent-token-operator/files charts/consent-token-operator/README.md deploy/consent-token-operator.yaml; do \
	  diff -ru $$f $$tmp/$$f || { echo "$$f is stale: run 'make generate' and commit it" >&2; exit 1; }; \
	done

## Benchmark N ConsentTokens on one replica against the API server's floor (a benchmark, not a
## test: it reports and never fails on targets). Results: docs/performance/.
bench: control-plane
	cargo build --release --locked --workspace --bins
	target/release/consent-bench --sizes $(SIZES) --steady-seconds $(STEADY) --out docs/performance

# The two commands a newcomer needs are `make demo` and `make test`; the rest are their parts.
SHELL := /bin/bash
CRD := crds/consenttokens.consent.dev.yaml

.PHONY: test control-plane check-generated crds lint

## Build what is missing, check generated files and lints, run every test against a real control plane.
test: control-plane check-generated lint
	cargo test --workspace --locked

## Clippy with warnings as errors (the library also denies unwrap/expect/panic outside tests).
lint:
	cargo clippy --workspace --all-targets --locked -- -D warnings

## Build etcd, kube-apiserver, kube-controller-manager and helm into ~/.cache (once per version).
control-plane:
	scripts/control-plane build

## Regenerate the CRD from the Rust types.
crds:
	cargo run --quiet --locked --bin crdgen > $(CRD)

## Fail when a generated file differs from what its generator produces now.
check-generated:
	@cargo run --quiet --locked --bin crdgen | diff -u $(CRD) - \
	  || { echo "$(CRD) is stale: run 'make crds' and commit it" >&2; exit 1; }

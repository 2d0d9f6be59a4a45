# The two commands a newcomer needs are `make demo` and `make test`; the rest are their parts.
SHELL := /bin/bash
CRD := crds/consenttokens.consent.dev.yaml

.PHONY: test control-plane check-generated crds

## Build what is missing, check generated files, run every test against a real control plane.
test: control-plane check-generated
	cargo test --workspace --locked

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

# The two commands a newcomer needs are `make demo` and `make test`; the rest are their parts.
SHELL := /bin/bash

.PHONY: demo test e2e bench bench-hostile control-plane check-generated generate lint image \
	release-tools release-build release-plugin release-publish check-release
SIZES ?= 1000,10000
STEADY ?= 330
HOSTILE_N ?= 3000

## Run the whole thing locally: control plane, fake provider, operator, examples, live view.
demo:
	scripts/demo

## Build what is missing, check generated files and lints, run every test against a real control plane
## (test binaries two at a time, each with its own control plane: scripts/run-tests), among them
## the chart on a real node (tests/node.rs: scripts/node, the image of `make image`).
test:
	@# The Go tools, the Rust lint and the image build side by side: on a fresh machine each takes minutes.
	$(MAKE) --no-print-directory -j2 --output-sync=target control-plane lint image
	$(MAKE) --no-print-directory check-generated check-release
	cargo build --workspace --bins --locked
	@# The release's artifacts for linux/amd64 and linux/arm64 (dev builds): tests/node.rs publishes
	@# them to a registry on loopback and installs the chart from there.
	$(MAKE) --no-print-directory release-build OUT=target/release-test PLATFORMS="amd64 arm64" RELEASE_PROFILE=dev
	scripts/run-tests

## Only the real-node test (tests/node.rs), with its figures: the chart from `make image` on a
## node of scripts/node, handover, helm upgrade, and workload pods reading the mounted token.
e2e: control-plane image
	cargo test --locked --test node -- --nocapture

## Formatting (rustfmt.toml) and clippy with warnings as errors (Cargo.toml's [lints] deny
## unwrap/expect/panic outside tests).
lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

## Build etcd, kube-apiserver, kube-controller-manager, helm, promtool, helm-docs and the test
## node (kubelet, kube-scheduler, containerd, its images) into ~/.cache (once per version).
control-plane:
	scripts/control-plane build

## The operator's image without Docker or a registry: a static build in an OCI archive
## (scripts/image), which tests/node.rs runs on the test node.
image:
	scripts/image operator target/image/consent-token-operator.tar

## A release (scripts/release; docs/operations/release.md). release-build: the image index over
## $(PLATFORMS), its SBOM, the plugin's linux archives and the krew manifest into $(OUT);
## release-plugin: one more plugin archive for $(RUST_TARGET); release-publish: push, sign and
## attest the image, and push the chart pinned to its digest, to $(REGISTRY).
OUT ?= dist
PLATFORMS ?= amd64 arm64
release-tools:
	scripts/control-plane build release
release-build: release-tools
	PLATFORMS="$(PLATFORMS)" scripts/release build $(OUT)
release-plugin:
	scripts/release plugin $(OUT) $(RUST_TARGET)
	scripts/release krew $(OUT)
release-publish: release-tools
	scripts/release publish $(OUT) $(REGISTRY)

## The versions agree (Cargo.toml, the chart's appVersion, the CHANGELOG), the chart's version
## moved with every chart change, and .github/workflows pass actionlint.
check-release: release-tools
	scripts/release check

## Regenerate the CRDs (crds/ and the chart's copy), the chart's README, the plain manifests in deploy/
## and the generated reference pages (docs/reference/crds.md, flags.md, plugin.md).
generate:
	scripts/generate

## Fail when a generated file differs from what its generator produces now.
check-generated:
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && scripts/generate $$tmp && \
	for f in crds charts/consent-token-operator/files charts/consent-token-operator/README.md deploy/consent-token-operator.yaml \
	  docs/reference/crds.md docs/reference/flags.md docs/reference/plugin.md deploy/argocd/argocd-cm.yaml; do \
	  diff -ru $$f $$tmp/$$f || { echo "$$f is stale: run 'make generate' and commit it" >&2; exit 1; }; \
	done

## Benchmark N ConsentTokens on one replica against the API server's floor (a benchmark, not a
## test: it reports and never fails on targets). Results: docs/performance/.
bench: control-plane
	cargo build --release --locked --workspace --bins
	target/release/consent-bench --sizes $(SIZES) --steady-seconds $(STEADY) --out docs/performance

## A victim namespace's renewal lateness with and without a hostile namespace beside it, on the
## chart's defaults (a benchmark: it reports). Results: docs/performance/hostile.md.
bench-hostile: control-plane
	cargo build --release --locked --workspace --bins
	target/release/consent-bench --hostile $(HOSTILE_N) --out docs/performance

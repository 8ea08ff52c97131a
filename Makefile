# One entry point for people and CI. `make demo` and `make test` work on a fresh machine:
# scripts/setup.sh installs what is missing (rustup targets, Debian tools, ...); the CLI installs
# the pinned Envoy into the per-user cache on first use (`sticky-canary install-envoy`).
.PHONY: setup demo test lint unit system cluster-all wasm-tests wasm fuzz bench bench-apps bench-smoke soak

setup:
	scripts/setup.sh

## The local demo (README's first command).
demo:
	scripts/setup.sh --minimal
	cargo run --release --quiet -- demo

## Every test, as CI runs it (README's second command). `system` runs the fast tier's tests too
## (one build with the system-tests feature instead of two).
test: setup lint system wasm-tests fuzz bench-smoke

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --features sticky-canary/system-tests -- -D warnings
	# Licenses and banned crates (deny.toml), from the lock file; no advisory database is fetched.
	cargo deny --all-features check licenses bans
	cargo clippy -p sticky-canary-filter --target wasm32-wasip1 --target-dir target/clippy-wasm -- -D warnings
	# The ablation builds bench/gateway.py makes (not shipped; bench-smoke skips them to stay short).
	cargo clippy -p sticky-canary-filter --target wasm32-wasip1 --target-dir target/clippy-wasm --all-features -- -D warnings
	cd tools/istio-xds && test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: run gofmt -w tools/istio-xds"; exit 1; }
	cd tools/istio-xds && go vet ./... && go vet -modfile=go.asm-1-30.mod ./...
	cd tools/progressive && test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: run gofmt -w tools/progressive"; exit 1; }
	cd tools/progressive && go vet ./...
	cd tools/cluster && test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: run gofmt -w tools/cluster"; exit 1; }
	cd tools/cluster && go vet ./...
	cd tools/kwok && test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt: run gofmt -w tools/kwok"; exit 1; }
	cd tools/kwok && go vet ./...

## The fast tier: unit, property, CLI and render tests; needs only Rust (`cargo test`).
unit:
	cargo test

## The system tier: a real Envoy, Istio's own code for every tested AKS revision (src/revisions.rs;
## STICKY_CANARY_REVISIONS=asm-1-31 limits the chain to some) and the upgrade drill, npm's schemas, Chromium, a local
## OCI registry, `cargo install`, a fresh build of the embedded module; the Go tools' own tests;
## and build.rs rerunning when a module input changes.
system:
	cd tools/istio-xds && envoy="$$(cd ../.. && cargo run --quiet --locked -- install-envoy)" && ENVOY="$$envoy" go test ./... && ENVOY="$$envoy" go test -modfile=go.asm-1-30.mod ./...
	cd tools/progressive && go test ./...
	cargo test --workspace --features sticky-canary/system-tests
	scripts/check-rebuild.sh

## The cluster suite for every tested revision, not only the newest (`make test`): each older
## revision's control plane is a Kubernetes build of its own (tools/cluster/go.asm-1-NN.mod); with
## asm-1-30's in it, a cold CI run took 93 minutes (docs/testing.md, "Where CI's time goes").
cluster-all: setup
	cd tools/cluster && go vet -modfile=go.asm-1-30.mod ./...
	cargo test --features sticky-canary/system-tests --test cluster -- --include-ignored

wasm-tests:
	scripts/wasm-tests.sh

## policy-core under cargo-fuzz, 25 s per target (installs nightly and cargo-fuzz when missing).
## Longer: `scripts/fuzz.sh 3600`.
fuzz:
	scripts/fuzz.sh 25

## The gateway filter as a file, with its SHA-256.
wasm:
	cargo run --release --quiet -- wasm --out sticky-canary.wasm

## Gateway overhead side by side (no filter, random split, no-op wasm, sticky-canary, Lua, and the
## ablation builds of sticky-canary) on one pinned Envoy, plus the policy-core criterion bench and
## the memory table (bench/memory.py: RSS per variant, worker count and route count);
## rewrites the generated parts of docs/benchmarks.md. About 13 minutes; run it on a quiet
## machine. Raw results: bench-results/.
## `make bench BASELINE=REV` also runs the filter as it was at REV beside this tree's (d), in the same
## rounds, and rewrites the side-by-side block.
bench: setup
	.venv/bin/python3 -m pip install --quiet -r bench/requirements.txt
	BENCH_COMMAND="make bench$(if $(BASELINE), BASELINE=$(BASELINE))" .venv/bin/python3 bench/gateway.py --publish \
	  $(if $(BASELINE),--baseline $(BASELINE))
	BENCH_COMMAND="make bench" .venv/bin/python3 bench/memory.py --publish

## Many apps on one gateway: one shared plugin against one plugin per app, with 1, 10 and 50
## apps, side by side in one run; rewrites the generated `apps` block of docs/benchmarks.md.
bench-apps: setup
	BENCH_COMMAND="make bench-apps" .venv/bin/python3 bench/gateway.py --apps --publish

## The soak (tests/soak.rs) for 10 minutes per filter instead of CI's 60 s, then its figures into
## docs/benchmarks.md (`soak` block). About 21 minutes.
soak: setup
	rm -rf target/soak
	STICKY_CANARY_SOAK_SECONDS=600 cargo test --features sticky-canary/system-tests --test soak -- --nocapture
	python3 bench/publish_soak.py

## CI: the same benchmarks for a second per cell; checks only that every configuration served
## every request without an error (no performance assertion).
bench-smoke:
	.venv/bin/python3 bench/gateway.py --smoke
	.venv/bin/python3 bench/gateway.py --smoke --apps
	.venv/bin/python3 bench/memory.py --smoke
	mkdir -p target/wasm-micro
	cargo run --quiet -- wasm --out target/wasm-micro/sticky-canary.wasm
	node bench/wasm-micro.mjs --rounds 1 --requests 5000 target/filter-wasm/wasm32-wasip1/wasm/bench_noop_filter.wasm target/wasm-micro/sticky-canary.wasm
	node bench/wasm-micro.mjs --new-clients --rounds 1 --requests 5000 target/filter-wasm/wasm32-wasip1/wasm/bench_noop_filter.wasm target/wasm-micro/sticky-canary.wasm

# One entry point for people and CI. `make demo` and `make test` work on a fresh machine:
# scripts/setup.sh installs what is missing (rustup targets, Debian tools, Envoy in .venv, ...).
.PHONY: setup demo test lint unit wasm-tests wasm fuzz bench bench-smoke

setup:
	scripts/setup.sh

## The local demo (README's first command).
demo:
	scripts/setup.sh --minimal
	cargo run --release --quiet -- demo

## Every test, as CI runs it (README's second command).
test: setup lint unit wasm-tests fuzz bench-smoke

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p sticky-canary-filter --target wasm32-wasip1 --target-dir target/clippy-wasm -- -D warnings
	# The ablation builds bench/gateway.py makes (not shipped; bench-smoke skips them to stay short).
	cargo clippy -p sticky-canary-filter --target wasm32-wasip1 --target-dir target/clippy-wasm --all-features -- -D warnings

unit:
	cargo test --workspace

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
## ablation builds of sticky-canary) on one pinned Envoy, plus the policy-core criterion bench;
## rewrites the generated parts of docs/benchmarks.md. About 13 minutes; run it on a quiet
## machine. Raw results: bench-results/.
bench: setup
	.venv/bin/python3 -m pip install --quiet -r bench/requirements.txt
	BENCH_COMMAND="make bench" .venv/bin/python3 bench/gateway.py --publish

## CI: the same benchmark for a second per cell; checks only that every configuration served
## every request without an error (no performance assertion).
bench-smoke:
	.venv/bin/python3 bench/gateway.py --smoke

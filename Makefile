# One entry point for people and CI. `make demo` and `make test` work on a fresh machine:
# scripts/setup.sh installs what is missing (rustup targets, Debian tools, Envoy in .venv, ...).
.PHONY: setup demo test lint unit wasm-tests wasm

setup:
	scripts/setup.sh

## The local demo (README's first command).
demo:
	scripts/setup.sh --minimal
	cargo run --release --quiet -- demo

## Every test, as CI runs it (README's second command).
test: setup lint unit wasm-tests

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo clippy -p sticky-canary-filter --target wasm32-wasip1 --target-dir target/clippy-wasm -- -D warnings

unit:
	cargo test --workspace

wasm-tests:
	scripts/wasm-tests.sh

## The gateway filter as a file, with its SHA-256.
wasm:
	cargo run --release --quiet -- wasm --out sticky-canary.wasm

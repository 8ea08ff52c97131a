#!/usr/bin/env bash
# Shows that editing a module input reruns build.rs (which rebuilds the embedded filter):
# builds, checks a second build is fresh, touches each input below, and requires cargo to name
# it as the reason the sticky-canary package is dirty. Sequential, in the normal target dir
# (a nested cargo in a test would wait on the lock `cargo test` holds).
set -euo pipefail
cd "$(dirname "$0")/.."
inputs=("$@")
[ ${#inputs[@]} -gt 0 ] || inputs=(policy-core/sha256/src/lib.rs Cargo.toml filter/Cargo.toml)
log=$(mktemp); trap 'rm -f "$log"' EXIT
cargo build --locked -q
for input in "${inputs[@]}"; do
  [ -e "$input" ] || { echo "check-rebuild: $input does not exist" >&2; exit 1; }
  cargo build --locked -v >"$log" 2>&1
  if grep -q "Running .*build/sticky-canary-[0-9a-f]*/build-script-build" "$log"; then
    echo "check-rebuild: build.rs ran on a build with nothing changed" >&2; cat "$log" >&2; exit 1
  fi
  touch "$input"
  cargo build --locked -v >"$log" 2>&1
  if ! grep -q "Running .*build/sticky-canary-[0-9a-f]*/build-script-build" "$log"; then
    echo "check-rebuild: touching $input did not rerun build.rs (the embedded filter would be stale)" >&2
    cat "$log" >&2; exit 1
  fi
  echo "check-rebuild: $input -> build.rs reran"
done

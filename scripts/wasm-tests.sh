#!/usr/bin/env bash
# Runs policy-core's rule, vector and cookie tests compiled to wasm32-unknown-unknown (wasm-bindgen-test,
# node runner) and fails unless the wasm run executed exactly as many tests as the native run.
# (On a target without wasm-bindgen-test-runner, or on wasm32-wasip1, wasm-bindgen-test silently runs 0.)
set -euo pipefail
cd "$(dirname "$0")/.."
count() { grep -Eo 'test result: ok\. [0-9]+ passed' "$1" | awk '{s += $4} END {print s + 0}'; }
# Output goes to a temp file and is then printed: `tee /dev/stderr` would reopen (and truncate)
# a log file that stderr points to.
log=$(mktemp); trap 'rm -f "$log"' EXIT

cargo test -q -p policy-core --test rules --test vectors --test cookies >"$log" 2>&1 || { cat "$log"; exit 1; }
cat "$log"
native=$(count "$log")
CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER=wasm-bindgen-test-runner \
  cargo test -p policy-core --target wasm32-unknown-unknown --test rules --test vectors --test cookies >"$log" 2>&1 \
  || { cat "$log"; exit 1; }
cat "$log"
wasm=$(count "$log")
echo "policy-core tests: native $native, compiled to wasm $wasm"
if [ "$wasm" -eq 0 ] || [ "$wasm" -ne "$native" ]; then
  echo "FAIL: the wasm run executed $wasm tests, the native run $native" >&2
  exit 1
fi

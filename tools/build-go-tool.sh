#!/usr/bin/env bash
# Builds the Go tool tools/NAME (istio-xds, progressive) and prints its path as the last
# stdout line.
#
#   tools/build-go-tool.sh NAME [OUT] [MODFILE] [PACKAGE]
#
# OUT defaults to <repo>/target/NAME/NAME. MODFILE is a file name inside tools/NAME (e.g.
# go.asm-1-30.mod, with its go.asm-1-30.sum beside it): the build then uses
# `go build -modfile=MODFILE` instead of go.mod, and OUT defaults to
# <repo>/target/NAME/<MODFILE without .mod>/NAME (target/istio-xds/go.asm-1-30/istio-xds).
# MODFILE go.mod is the default build (no -modfile, OUT target/NAME/NAME), so a caller can
# always name the module file. Pass OUT as "" to keep its default while giving a MODFILE.
# PACKAGE (default `.`) is a main package in the module's build list instead of the module's
# own, e.g. a controller's release built as its project builds it
# (`tools/build-go-tool.sh flagger "" go.mod github.com/fluxcd/flagger/cmd/flagger`); OUT then
# defaults to <repo>/target/NAME/<last element of PACKAGE>.
#
# Go's build cache makes a re-run with nothing changed take seconds; the first build on a
# fresh machine downloads the tool's module graph and compiles it (minutes: Istio's for
# istio-xds, Flagger's and Argo Rollouts' for progressive).
set -euo pipefail
usage="usage: tools/build-go-tool.sh NAME [OUT] [MODFILE] [PACKAGE]"
name="${1:?$usage}"
if [ $# -gt 4 ]; then
    echo "tools/build-go-tool.sh: too many arguments ($#); $usage" >&2
    exit 2
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
src="$here/$name"
if [ ! -f "$src/go.mod" ]; then
    echo "tools/build-go-tool.sh: tools/$name is not a Go module (no tools/$name/go.mod)" >&2
    exit 2
fi
modfile="${3:-}"
if [ "$modfile" = go.mod ]; then
    modfile=""
fi
package="${4:-.}"
modflags=()
binary="$name"
[ "$package" = . ] || binary="$(basename "$package")"
default_out="$here/../target/$name/$binary"
if [ -n "$modfile" ]; then
    case "$modfile" in
        */*) echo "tools/build-go-tool.sh: MODFILE $modfile must be a file name inside tools/$name, not a path" >&2; exit 2 ;;
        *.mod) ;;
        *) echo "tools/build-go-tool.sh: MODFILE $modfile must end in .mod" >&2; exit 2 ;;
    esac
    if [ ! -f "$src/$modfile" ]; then
        echo "tools/build-go-tool.sh: tools/$name/$modfile does not exist" >&2
        exit 2
    fi
    sum="${modfile%.mod}.sum"
    if [ ! -f "$src/$sum" ]; then
        echo "tools/build-go-tool.sh: tools/$name/$sum does not exist (go build -modfile=$modfile reads it)" >&2
        exit 2
    fi
    modflags=(-modfile="$modfile")
    default_out="$here/../target/$name/${modfile%.mod}/$binary"
fi
out="${2:-$default_out}"
mkdir -p "$(dirname "$out")"
out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
cd "$src"
# -mod=readonly: go.mod/go.sum (or MODFILE and its .sum) are committed and must not change
# during a build.
# -s -w: no symbol table/DWARF (the binaries are test tools; halves their size).
# No -trimpath: it is part of every package's compile key, so with it `go vet` and `go test`
# (make lint, make system) compile all of Istio a second time. Without it, on an empty Go
# cache, the 1.31 build took 308 s and then vet 59 s and the test build 63 s on 2 cores; with
# it, the test build alone recompiled for about 6 minutes.
ldflags="-s -w"
# A Kubernetes built from its module reports v0.0.0-master as its version (the release build
# stamps it with -X), which clients that check the server version refuse (Flagger: "Invalid
# Semantic Version"). A tool that requires k8s.io/kubernetes itself (cluster: the API server
# and its controllers) gets the version its build list has, as the release build does.
modfile_path="${modfile:-go.mod}"
if grep -Eq '^[[:space:]]*k8s\.io/kubernetes v[^ ]+$' "$modfile_path" \
    && kubernetes="$(GOFLAGS=-mod=readonly go list "${modflags[@]}" -m -f '{{.Version}}' k8s.io/kubernetes)" \
    && [[ "$kubernetes" =~ ^v([0-9]+)\.([0-9]+)\.[0-9]+$ ]]; then
    stamp=k8s.io/component-base/version
    ldflags="$ldflags -X $stamp.gitVersion=$kubernetes -X $stamp.gitMajor=${BASH_REMATCH[1]} -X $stamp.gitMinor=${BASH_REMATCH[2]} -X $stamp.gitTreeState=clean"
fi
GOFLAGS="${GOFLAGS:-} -mod=readonly -buildvcs=false" go build "${modflags[@]}" -ldflags="$ldflags" -o "$out" "$package"
echo "$out"

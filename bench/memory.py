#!/usr/bin/env python3
"""Gateway memory, side by side: Envoy's RSS and its own heap stats after a warm-up, per filter
variant, worker count and route count, each cell in its own Envoy process.

Variants: (a) no filter, (c) the no-op Wasm filter, (e) the sticky logic in Lua, (g) Envoy's own
sticky split (weighted clusters picked by the route's cookie hash policy: `use_hash_policy`, no
filter at all), (d) sticky-canary. Every cell has the same two upstream clusters (v1, v2: a
second listener of the same Envoy answering directly), so (g) is not charged for having them.

    bench/memory.py [--publish] [--smoke]

`make bench` runs it with --publish (the `memory` block of docs/benchmarks.md); `--smoke` (CI)
runs one route count and two worker counts and checks only that every cell served its warm-up.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import gateway  # noqa: E402
from gateway import (  # noqa: E402
    REPO, ROUTER, BenchError, Envoy, Scenario, build_module, find_envoy, free_port, http_filters, listener, log,
    replace_block, upstream_clusters, upstream_listener_hosts, virtual_hosts, wrk,
)

VARIANTS = [
    ("none", "(a) no filter"),
    ("noop", "(c) no-op wasm filter"),
    ("lua", "(e) sticky logic in Lua"),
    ("native", "(g) Envoy's hash-based weighted clusters"),
    ("sticky", "(d) sticky-canary"),
]
CONCURRENCY = [1, 2, 8]
ROUTES = [1, 100, 1000]


def bootstrap(filters: gateway.Filters, variant: str, routes: int, backend_port: int) -> dict:
    # (a) and (g) have no filter: http_filters gives them the router alone.
    hosts, chain = virtual_hosts(variant, routes), http_filters(variant, routes, filters)
    return {
        "admin": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": 0}}},
        "static_resources": {
            "listeners": [listener("gateway", 0, hosts, chain),
                          listener("backend", backend_port, upstream_listener_hosts(), [ROUTER])],
            "clusters": upstream_clusters(backend_port),
        },
    }


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise BenchError(f"no VmRSS for Envoy (pid {pid})")


def stat(envoy: Envoy, name: str) -> int:
    for line in envoy.admin_get(f"/stats?filter=^{name}$").splitlines():
        key, _, value = line.partition(": ")
        if key == name:
            return int(value)
    return 0


def cell(binary: Path, filters: gateway.Filters, variant: str, routes: int, concurrency: int, warmup: float,
         work: Path) -> dict:
    here = work / f"{variant}-{routes}-{concurrency}"
    here.mkdir()
    backend_port = free_port()
    envoy = Envoy(binary, bootstrap(filters, variant, routes, backend_port), here, None, concurrency)
    try:
        # Two connections per worker, so every worker serves (and instantiates its VM or Lua state).
        scenario = Scenario("memory", "memory", routes, "returning")
        result = wrk(envoy, envoy.ports["gateway"], scenario, warmup, 2 * concurrency, None, 1000)
        time.sleep(1)
        envoy.check_alive()
        return {
            "variant": variant, "routes": routes, "concurrency": concurrency,
            "requests": result["requests"], "errors": sum(result["errors"].values()),
            "rss_kb": rss_kb(envoy.process.pid),
            "allocated": stat(envoy, "server.memory_allocated"),
            "heap": stat(envoy, "server.memory_heap_size"),
        }
    finally:
        envoy.stop()


def markdown(data: dict) -> str:
    cells = {(c["variant"], c["routes"], c["concurrency"]): c for c in data["cells"]}
    concurrency = sorted({c["concurrency"] for c in data["cells"]})
    routes = sorted({c["routes"] for c in data["cells"]})
    info = data["machine"]
    lines = [
        f"Measured {data['date']} with `{data['command']}`: Envoy {info['envoy']}, {info['nproc']} CPUs, "
        f"{data['warmup']:g} s of returning clients (2 connections per worker) before reading. "
        "*over (a)*: RSS minus the no-filter cell's with the same workers and routes. "
        f"*per worker*: the growth of *over (a)* from {concurrency[0]} to {concurrency[-1]} workers, "
        f"per added worker. (a)'s own RSS is in the first rows.",
        "",
        "| routes | variant | " + " | ".join(f"RSS, {c} worker{'s' if c > 1 else ''}" for c in concurrency)
        + " | " + " | ".join(f"over (a), {c}" for c in concurrency) + " | per worker |",
        "|---:|---|" + "---:|" * (2 * len(concurrency) + 1),
    ]
    for r in routes:
        for variant, label in VARIANTS:
            row = [cells.get((variant, r, c)) for c in concurrency]
            base = [cells.get(("none", r, c)) for c in concurrency]
            if any(x is None for x in row + base):
                continue
            rss = [x["rss_kb"] / 1024 for x in row]
            over = [x["rss_kb"] / 1024 - b["rss_kb"] / 1024 for x, b in zip(row, base)]
            slope = (over[-1] - over[0]) / max(1, concurrency[-1] - concurrency[0])
            lines.append(
                f"| {r} | {label} | " + " | ".join(f"{m:.1f} MB" for m in rss) + " | "
                + " | ".join("—" if variant == "none" else f"{m:+.1f} MB" for m in over)
                + f" | {'—' if variant == 'none' else f'{slope:+.2f} MB'} |"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="CI: 1 route, 1 and 2 workers, 1 s warm-up")
    parser.add_argument("--publish", action="store_true", help="rewrite the `memory` block of docs/benchmarks.md")
    parser.add_argument("--warmup", type=float, default=3)
    parser.add_argument("--out", type=Path, default=REPO / "bench-results")
    parser.add_argument("--command-line", default=os.environ.get("BENCH_COMMAND", "bench/memory.py"))
    args = parser.parse_args()
    if not shutil.which("wrk"):
        raise BenchError("wrk not found: `make setup` installs it")
    concurrency, routes, warmup = (([1, 2], [1], 1.0) if args.smoke else (CONCURRENCY, ROUTES, args.warmup))
    work = Path(tempfile.mkdtemp(prefix="sticky-canary-memory."))
    try:
        log("building sticky-canary and the no-op filter as build.rs does")
        sticky, noop = work / "sticky-canary.wasm", work / "noop.wasm"
        build_module("sticky-canary-filter", "sticky_canary_filter.wasm", sticky)
        build_module("bench-noop-filter", "bench_noop_filter.wasm", noop)
        filters = gateway.Filters(sticky=sticky, noop=noop)
        binary = find_envoy()
        data = {
            "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": args.command_line,
            "machine": {"envoy": gateway.envoy_version(binary), "nproc": os.cpu_count()},
            "warmup": warmup,
            "cells": [],
        }
        for r in routes:
            for c in concurrency:
                for variant, _ in VARIANTS:
                    result = cell(binary, filters, variant, r, c, warmup, work)
                    log(f"{variant:7} routes {r:5} workers {c}: {result['rss_kb'] / 1024:.1f} MB RSS, "
                        f"{result['requests']} requests, {result['errors']} errors")
                    data["cells"].append(result)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    failed = [c for c in data["cells"] if c["errors"] or not c["requests"]]
    for c in failed:
        log(f"FAILED {c['variant']} routes {c['routes']} workers {c['concurrency']}: "
            f"{c['requests']} requests, {c['errors']} errors")
    table = markdown(data)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "memory.json").write_text(json.dumps(data, indent=1))
    (args.out / "memory.md").write_text(table + "\n")
    print(table)
    if args.publish and not args.smoke:
        doc = REPO / "docs" / "benchmarks.md"
        doc.write_text(replace_block(doc.read_text(), "memory", table))
        log("docs/benchmarks.md: memory block rewritten")
    return 1 if failed else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"bench/memory.py: {e}", file=sys.stderr)
        sys.exit(1)

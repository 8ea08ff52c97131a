#!/usr/bin/env python3
"""Puts the soak's figures (target/soak/soak.md, written by tests/soak.rs; or DIR/soak.md) into the
`soak` block of docs/benchmarks.md, with when and how they were measured. `make soak` runs it.

    bench/publish_soak.py [DIR]
"""
from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from gateway import replace_block  # noqa: E402

REPO = Path(__file__).resolve().parent.parent


def main() -> int:
    soak = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "target" / "soak"
    table = (soak / "soak.md").read_text()
    runs = [json.loads(p.read_text()) for p in sorted(soak.glob("*.json"))]
    if not runs:
        print("bench/publish_soak.py: no target/soak/*.json: run the soak first", file=sys.stderr)
        return 1
    seconds = {r["seconds"] for r in runs}
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    header = (
        f"Published {stamp} from tests/soak.rs ({', '.join(f'{s} s' for s in sorted(seconds))} per filter): "
        "Envoy `--concurrency 2`, the pinned Envoy, 4 keep-alive "
        "connections sending as fast as it serves. Growth per push is after the churn's first 100 pushes, "
        "less what the same traffic grows without pushes."
    )
    doc = REPO / "docs" / "benchmarks.md"
    doc.write_text(replace_block(doc.read_text(), "soak", header + "\n\n" + table))
    print(f"docs/benchmarks.md: soak block updated ({stamp})")
    return 0


if __name__ == "__main__":
    sys.exit(main())

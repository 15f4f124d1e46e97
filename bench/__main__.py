"""Run every benchmark (`make bench`) or some of them (`python -m bench convert select`).

Each `bench/bench_<name>.py` has `main(argv: list[str] | None = None) -> dict` that measures side
by side, prints a table with the ratio against its target, and returns the figures. The JSON of
all runs is written to bench/results.json.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
from pathlib import Path

import bench


def _names() -> list[str]:
    return sorted(m.name[len("bench_") :] for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    wanted = argv or _names()
    unknown = sorted(set(wanted) - set(_names()))
    if unknown:
        print(f"error: unknown benchmark(s) {unknown}; available: {_names()}", file=sys.stderr)
        return 2
    results = {}
    for name in wanted:
        print(f"\n=== bench {name} ===", flush=True)
        results[name] = importlib.import_module(f"bench.bench_{name}").main([])
    out = Path(__file__).with_name("results.json")
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"\nwrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

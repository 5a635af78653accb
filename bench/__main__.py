"""`make bench`: every figure next to a baseline measured in the same run, on the same
broker and database. Prints a table and writes bench-results/bench.json.

Each module ``bench/<name>.py`` exposes ``async def run(urls, scale=1.0) -> list[dict]``
with rows ``{name, value, unit, baseline, ratio, note}``. ``BENCH_SCALE`` scales sizes;
``BENCH_ONLY=core,intake`` runs a subset.
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import pkgutil
import platform
import sys
import time
import traceback
from pathlib import Path

from mediation_core import stack

ORDER = ["core", "intake", "routing", "cases", "alerts", "reporting", "system"]


def _modules() -> list[str]:
    here = Path(__file__).parent
    found = {m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_")}
    only = [x for x in os.environ.get("BENCH_ONLY", "").split(",") if x]
    names = [n for n in ORDER if n in found] + sorted(found - set(ORDER))
    return [n for n in names if not only or n in only]


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 10 else f"{v:,.0f}"
    return str(v)


async def main() -> int:
    scale = float(os.environ.get("BENCH_SCALE", "1.0"))
    urls = stack.up()
    rows: list[dict] = []
    failures = []
    for name in _modules():
        mod = importlib.import_module(f"bench.{name}")
        if not hasattr(mod, "run"):
            continue
        t0 = time.perf_counter()
        print(f"== {name} ...", file=sys.stderr, flush=True)
        try:
            for r in await mod.run(urls, scale=scale):
                rows.append({"module": name, **r})
        except Exception:
            traceback.print_exc()
            failures.append(name)
        print(f"   {name} took {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
    head = f"{'module':<10} {'figure':<64} {'value':>14} {'unit':<12} {'baseline':>14} {'ratio':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['module']:<10} {r['name'][:64]:<64} {_fmt(r['value']):>14} {r['unit'][:12]:<12} "
              f"{_fmt(r.get('baseline')):>14} {_fmt(r.get('ratio')):>7}")
        if r.get("note"):
            print(f"{'':<10}   {r['note']}")
    out = Path("bench-results")
    out.mkdir(exist_ok=True)
    (out / "bench.json").write_text(json.dumps({
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "scale": scale, "rows": rows, "failed_modules": failures}, indent=2))
    print(f"\nwritten: {out / 'bench.json'}" + (f"; failed: {failures}" if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

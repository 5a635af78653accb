"""``mediation route "TEXT" [--postcode NNNNN] [--date YYYY-MM-DD] [--structure S] --json``

Same code path as the service (:func:`mediation_routing.decide.decide`). The territory
and the mediators' loads are read from the routing schema when the database answers;
otherwise from the packaged data (version 1 of each structure, loads unknown = 0). The
output says which (``territory_source``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from datetime import date

from . import territory as terr
from .decide import cli_view, decide


async def _from_db(wait_s: float = 3.0) -> tuple[terr.TerritoryHistory, dict[str, int]] | None:
    """The service's own store read on the routing schema; None if there is nothing to read."""
    try:
        import asyncpg

        from mediation_core import db
        from mediation_core.settings import from_env

        from .store import RoutingStore

        s = from_env("routing")
        conn = await asyncio.wait_for(asyncpg.connect(
            s.database_url, timeout=wait_s,
            server_settings={"search_path": db.check_ident(s.schema)}), wait_s)
    except Exception:
        return None
    try:
        if not await conn.fetchval("SELECT to_regclass('territory_versions')"):
            return None
        store = RoutingStore()
        await store.refresh(conn)
        if not store.history.structures():
            return None
        return store.history, await store.loads(conn)
    except Exception:
        return None
    finally:
        await conn.close()


def run_route(text: str, postcode: str | None, on: date, structure: str | None,
              packaged_only: bool = False) -> dict:
    found = None if packaged_only else asyncio.run(_from_db())
    loads: dict[str, int]
    if found is None:
        hist, loads, source = terr.TerritoryHistory(terr.packaged_versions()), {}, "packaged"
    else:
        hist, loads = found
        source = "database"
    d = decide(text, postcode, on, hist, loads, context_structure=structure)
    out = cli_view(d)
    out["date"] = on.isoformat()
    out["territory_source"] = source
    return out


def _cmd_route(args: argparse.Namespace) -> int:
    try:
        on = date.fromisoformat(args.date) if args.date else date.today()
    except ValueError:
        print("mediation route: --date: expected YYYY-MM-DD", file=sys.stderr)
        return 2
    out = run_route(args.text, args.postcode, on, args.structure, args.packaged)
    if args.json:
        print(json.dumps(out, ensure_ascii=False))
    else:
        print(f"{out['status']}: {out['place'] or '-'} -> {out['structure'] or '-'} / "
              f"{out['area'] or '-'} / {out['mediator'] or '-'}  ({out['reason']})")
        for c in out["candidates"]:
            print(f"  candidate: {c['name']} ({c['department']}) {c['structure'] or 'hors territoire'}"
                  f" {c['area'] or ''}")
        print(f"  territory: {out['territory_source']}, version {out['territory_version']}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("route", help="route a written place like the routing service does")
    p.add_argument("text", help="the place as written on the referral form")
    p.add_argument("--postcode", help="postcode field of the form, if separate")
    p.add_argument("--date", help="referral date (territory in force then); default today")
    p.add_argument("--structure", help="the referral's structure, when known")
    p.add_argument("--packaged", action="store_true",
                   help="use the packaged territory even if the database answers")
    p.add_argument("--json", action="store_true", help="one JSON object on stdout")
    p.set_defaults(func=_cmd_route)

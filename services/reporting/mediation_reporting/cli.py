"""`mediation` subcommands of the reporting service.

- ``mediation replay reporting [--keep-old] [--force]``: rebuild the read models from the
  topics (see replay.py);
- ``mediation reports publish``: recompute the published (masked) views now;
- ``mediation reports export VIEW --format csv|xlsx [--out FILE] [--structure S] [--role R]``;
- ``mediation reports yearly --year YYYY --structure S --out DIR``: HTML + PDF report;
- ``mediation reports doc [--out services/reporting/VIEWS.md]``: the views' documentation.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path


def _settings():
    from mediation_core.settings import from_env

    return from_env("reporting")


async def _pool(settings):
    from mediation_core import db

    from . import setup

    pool = await db.create_pool(settings.database_url, settings.schema, application="reporting-cli")
    await db.migrate(pool, settings.schema, setup.MIGRATIONS)
    return pool


def _replay(args: argparse.Namespace) -> int:
    from .replay import ReplayRefused, replay

    try:
        res = asyncio.run(replay(_settings(), keep_old=args.keep_old, force=args.force))
    except ReplayRefused as err:
        print(f"mediation replay reporting: {err}", file=sys.stderr)
        return 2
    print(f"schema {res.schema} rebuilt from {res.records} records "
          f"({res.processed} applied, {res.duplicates} duplicates) in {res.seconds:.1f} s"
          + (f"; previous tables kept in {res.old_schema_kept}" if res.old_schema_kept else ""))
    return 0


def _publish(args: argparse.Namespace) -> int:
    from . import publish
    from .service import threshold_from_env

    async def go():
        pool = await _pool(_settings())
        try:
            return await publish.publish(pool, args.threshold or threshold_from_env())
        finally:
            await pool.close()

    res = asyncio.run(go())
    print(f"{len(res)} published views, {sum(res.values())} masked cells")
    return 0


def _export(args: argparse.Namespace) -> int:
    from . import exports, publish
    from .service import threshold_from_env

    try:
        exports.check_view(args.view)
    except ValueError as err:
        print(f"mediation reports export: {err}", file=sys.stderr)
        return 2
    out = Path(args.out or f"{args.view}.{args.format}")

    async def go():
        pool = await _pool(_settings())
        try:
            if args.view.startswith("pub_"):
                await publish.publish_if_stale(pool, threshold_from_env())
            async with pool.acquire() as conn:
                return await exports.export(conn, args.view, args.format, out,
                                            structure=args.structure, role=args.role)
        finally:
            await pool.close()

    print(asyncio.run(go()))
    return 0


def _yearly(args: argparse.Namespace) -> int:
    from . import publish, report
    from .service import threshold_from_env

    async def go():
        pool = await _pool(_settings())
        try:
            await publish.publish_if_stale(pool, threshold_from_env())
            async with pool.acquire() as conn:
                return await report.yearly(conn, args.structure, args.year, Path(args.out),
                                           threshold_from_env())
        finally:
            await pool.close()

    for p in asyncio.run(go()):
        print(p)
    return 0


def _doc(args: argparse.Namespace) -> int:
    from . import catalog
    from .setup import view_columns_from_scratch

    text = catalog.markdown(asyncio.run(view_columns_from_scratch(_settings().database_url)))
    Path(args.out).write_text(text, encoding="utf-8")
    print(args.out)
    return 0


def register(subparsers) -> None:
    # `replay` may be shared with other services: one parser, one sub-command per service
    replay = subparsers.choices.get("replay")
    if replay is None:
        replay = subparsers.add_parser("replay", help="rebuild a service's state from the topics")
        replay._mediation_sub = replay.add_subparsers(dest="replay_service", required=True)  # type: ignore[attr-defined]
    sub = getattr(replay, "_mediation_sub", None)
    if sub is not None:
        rp = sub.add_parser("reporting", help="rebuild the reporting read models into fresh "
                                              "tables, then swap them in")
        rp.add_argument("--keep-old", action="store_true", help="keep the previous schema")
        rp.add_argument("--force", action="store_true",
                        help="replay even if the live consumer group has members")
        rp.set_defaults(func=_replay)

    reports = subparsers.add_parser("reports", help="indicator views: publish, export, yearly report")
    rs = reports.add_subparsers(dest="reports_command", required=True)
    p = rs.add_parser("publish", help="recompute the published (masked) views now")
    p.add_argument("--threshold", type=int, default=None,
                   help="mask counts below this (default 11 or MEDIATION_REPORTING_SECRECY_THRESHOLD)")
    p.set_defaults(func=_publish)
    e = rs.add_parser("export", help="export one view as CSV or XLSX")
    e.add_argument("view", help="a v_* (coordinators) or pub_* (published) view")
    e.add_argument("--format", choices=["csv", "xlsx"], default="csv")
    e.add_argument("--out", default=None)
    e.add_argument("--structure", default=None, help="only this structure's rows")
    e.add_argument("--role", default=None, help="read as this database role (SET ROLE)")
    e.set_defaults(func=_export)
    y = rs.add_parser("yearly", help="the yearly activity report (HTML and PDF, in French)")
    y.add_argument("--year", type=int, required=True)
    y.add_argument("--structure", required=True)
    y.add_argument("--out", default="reports")
    y.set_defaults(func=_yearly)
    d = rs.add_parser("doc", help="write the views' documentation (VIEWS.md)")
    d.add_argument("--out", default="services/reporting/VIEWS.md")
    d.set_defaults(func=_doc)

"""``mediation cases-deadline`` (working-day deadlines) and ``mediation cases-scan``."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime

from mediation_core.settings import Settings

from .config import CasesConfig, Clock, system_clock


def _deadline(args: argparse.Namespace) -> int:
    from .calendar import PARIS, deadline

    start = datetime.fromisoformat(args.start)
    if start.tzinfo is None:
        start = start.replace(tzinfo=PARIS)
    due = deadline(start, args.days)
    print(json.dumps({"start": start.isoformat(), "working_days": args.days,
                      "due_utc": due.isoformat(), "due_paris": due.astimezone(PARIS).isoformat()}))
    return 0


async def scan(settings: Settings, config: CasesConfig,
               clock: Clock = system_clock) -> dict[str, int]:
    """One deadline scan with nothing but a database pool: the notices and their events are
    written to the outbox, which the running service's relay publishes. Starting the whole
    service for it would join its consumer group (a rebalance) and run a second watcher."""
    from mediation_core import db
    from mediation_core.outbox import Outbox

    from .context import Deps
    from .deadlines import scan_once

    pool = await db.create_pool(settings.database_url, settings.schema,
                                application=f"{settings.service}-scan", max_size=2)
    try:
        return await scan_once(Deps(settings=settings, config=config, clock=clock,
                                    outbox=Outbox(producer_name=settings.service), pool=pool))
    finally:
        await pool.close()


def _scan(args: argparse.Namespace) -> int:
    from mediation_core.settings import from_env

    print(json.dumps(asyncio.run(scan(from_env("cases"), CasesConfig.from_env()))))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("cases-deadline", help="first-contact deadline: N working days "
                              "after a start (Europe/Paris, French public holidays)")
    p.add_argument("start", help="ISO date-time; Paris time if no offset")
    p.add_argument("days", type=int)
    p.set_defaults(func=_deadline)
    s = subparsers.add_parser("cases-scan", help="run one deadline scan of the cases service "
                              "(its events are published by the running service)")
    s.set_defaults(func=_scan)

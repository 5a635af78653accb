"""``mediation cases-deadline`` (working-day deadlines) and ``mediation cases-scan``."""

from __future__ import annotations

import argparse
import asyncio
import json
from datetime import datetime


def _deadline(args: argparse.Namespace) -> int:
    from .calendar import PARIS, deadline

    start = datetime.fromisoformat(args.start)
    if start.tzinfo is None:
        start = start.replace(tzinfo=PARIS)
    due = deadline(start, args.days)
    print(json.dumps({"start": start.isoformat(), "working_days": args.days,
                      "due_utc": due.isoformat(), "due_paris": due.astimezone(PARIS).isoformat()}))
    return 0


def _scan(args: argparse.Namespace) -> int:
    from mediation_core.settings import from_env

    from .deadlines import scan_once
    from .service import build

    async def run() -> dict:
        svc = build(from_env("cases"))
        await svc.start(http=False)
        try:
            return await scan_once(svc.deps)  # type: ignore[attr-defined]
        finally:
            await svc.stop()

    print(json.dumps(asyncio.run(run())))
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("cases-deadline", help="first-contact deadline: N working days "
                              "after a start (Europe/Paris, French public holidays)")
    p.add_argument("start", help="ISO date-time; Paris time if no offset")
    p.add_argument("days", type=int)
    p.set_defaults(func=_deadline)
    s = subparsers.add_parser("cases-scan", help="run one deadline scan of the cases service")
    s.set_defaults(func=_scan)

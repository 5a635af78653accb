"""Deadline watch: first contact overdue (reminder, then escalation) and inactive cases.

Deadlines are computed at opening (working days, Europe/Paris, French public holidays, see
:mod:`calendar`) and stored in UTC; the scan compares them with the injectable clock. Each
notice is sent once per case (the row keeps when it was sent) and written with its event in
one transaction; rows are claimed with SKIP LOCKED so several instances may scan.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from mediation_schemas.cases import CaseInactivityFlagged, FirstContactOverdue

from . import observe, store
from .context import Deps

log = logging.getLogger(__name__)


async def scan_once(deps: Deps, *, limit: int = 500) -> dict[str, int]:
    now = deps.clock()
    counts = {"reminders": 0, "escalations": 0, "inactive": 0}
    async with deps.db().acquire() as conn, conn.transaction():
        emit = deps.outbox_emit(conn)
        reminders = await conn.fetch(
            "SELECT * FROM cases WHERE status = 'open' AND first_contact_at IS NULL "
            "AND reminder_sent_at IS NULL AND first_contact_due <= $1 "
            "ORDER BY first_contact_due LIMIT $2 FOR UPDATE SKIP LOCKED", now, limit)
        for r in reminders:
            await conn.execute("UPDATE cases SET reminder_sent_at = $2 WHERE case_id = $1",
                               r["case_id"], now)
            await _overdue(deps, conn, emit, r, level="reminder", due=r["first_contact_due"],
                           now=now)
            counts["reminders"] += 1
        escalations = await conn.fetch(
            "SELECT * FROM cases WHERE status = 'open' AND first_contact_at IS NULL "
            "AND reminder_sent_at IS NOT NULL AND escalated_at IS NULL AND escalation_due <= $1 "
            "ORDER BY escalation_due LIMIT $2 FOR UPDATE SKIP LOCKED", now, limit)
        for r in escalations:
            await conn.execute("UPDATE cases SET escalated_at = $2 WHERE case_id = $1",
                               r["case_id"], now)
            await _overdue(deps, conn, emit, r, level="escalation", due=r["first_contact_due"],
                           now=now)
            counts["escalations"] += 1
        cutoff = now - timedelta(days=deps.config.inactivity_days)
        inactive = await conn.fetch(
            "SELECT * FROM cases WHERE status = 'open' AND inactive_flagged_at IS NULL "
            "AND last_activity_at <= $1 ORDER BY last_activity_at LIMIT $2 "
            "FOR UPDATE SKIP LOCKED", cutoff, limit)
        for r in inactive:
            await conn.execute("UPDATE cases SET inactive_flagged_at = $2 WHERE case_id = $1",
                               r["case_id"], now)
            days = (now - r["last_activity_at"]).days
            await store.add_timeline(conn, case_id=r["case_id"], at=now, recorded_at=now,
                                     kind="inactivity_flagged", actor="system",
                                     details={"inactive_days": days})
            await store.add_notice(conn, r, kind="inactivity", notify_role="mediator",
                                   notify_id=r["mediator_id"], due_at=None, now=now)
            await emit(CaseInactivityFlagged(case=store.case_ref(r),
                                             last_activity_at=r["last_activity_at"],
                                             inactive_days=days, flagged_at=now),
                       topic=deps.topics.cases, key=str(r["case_id"]), structure=r["structure"],
                       correlation_id=r["correlation_id"])
            counts["inactive"] += 1
    for kind, n in counts.items():
        if n:
            observe.DEADLINE_NOTICES.labels(kind).inc(n)
    if any(counts.values()):
        log.info("deadline scan", extra={"fields": counts})
    return counts


async def _overdue(deps: Deps, conn, emit, r, *, level: str, due, now) -> None:
    to_coordinator = level == "escalation"
    days = deps.config.first_contact_days(r["urgency"])
    await store.add_timeline(conn, case_id=r["case_id"], at=now, recorded_at=now,
                             kind=f"first_contact_overdue_{level}", actor="system",
                             details={"due_at": due.isoformat(), "working_days": days,
                                      "notify_role": "coordinator" if to_coordinator
                                      else "mediator"})
    await store.add_notice(conn, r, kind=f"first_contact_{level}",
                           notify_role="coordinator" if to_coordinator else "mediator",
                           notify_id=None if to_coordinator else r["mediator_id"], due_at=due,
                           now=now)
    await emit(FirstContactOverdue(
        case=store.case_ref(r), level=level,
        notify_role="coordinator" if to_coordinator else "mediator",
        notify_id=None if to_coordinator else r["mediator_id"], opened_at=r["opened_at"],
        due_at=due, working_days=days, detected_at=now),
        topic=deps.topics.cases, key=str(r["case_id"]), structure=r["structure"],
        correlation_id=r["correlation_id"])


def watcher(deps: Deps):
    """The background task for ``Service.background``: scan, sleep, until the service stops."""

    async def run(svc) -> None:
        while True:
            try:
                await scan_once(deps)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # transient (database restart...): next round
                log.warning("deadline scan failed", extra={"fields": {
                    "exc_type": type(exc).__name__}})
            waited = 0.0
            while waited < deps.config.scan_interval:
                step = min(0.2, deps.config.scan_interval - waited)
                await asyncio.sleep(step)
                waited += step
                if not getattr(svc, "_ready", True):
                    return
    return run

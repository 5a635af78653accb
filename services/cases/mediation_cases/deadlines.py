"""Deadline watch: first contact overdue (reminder, then escalation) and inactive cases.

Deadlines are computed at opening (working days, Europe/Paris, French public holidays, see
:mod:`calendar`) and stored in UTC; the scan compares them with the injectable clock. Each
notice is sent once per case (the row keeps when it was sent) and written with its event in
one transaction; rows are claimed with SKIP LOCKED so several instances may scan.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from mediation_schemas.cases import CaseInactivityFlagged, FirstContactOverdue

from . import observe, rules, store
from .context import Deps

log = logging.getLogger(__name__)


async def _claim(conn, *, mark: str, when: str, order: str, now, threshold,
                 limit: int) -> list:
    """Set ``mark`` to now on the open cases, not marked yet, that match ``when`` ($2 is
    ``threshold``), at most ``limit`` of them, and return them in ``order``. One statement:
    claim and mark together; rows another instance holds are skipped."""
    rows = await conn.fetch(
        f"UPDATE cases SET {mark} = $1 WHERE case_id IN (SELECT case_id FROM cases "
        f"WHERE status = 'open' AND {mark} IS NULL AND {when} ORDER BY {order} LIMIT $3 "
        "FOR UPDATE SKIP LOCKED) RETURNING *", now, threshold, limit)
    return sorted(rows, key=lambda r: r[order])


async def scan_once(deps: Deps, *, limit: int = 500) -> dict[str, int]:
    now = deps.clock()
    counts = {"reminders": 0, "escalations": 0, "inactive": 0}
    async with deps.db().acquire() as conn, conn.transaction():
        emit = deps.outbox_emit(conn)
        for r in await _claim(conn, mark="reminder_sent_at",
                              when="first_contact_at IS NULL AND first_contact_due <= $2",
                              order="first_contact_due", now=now, threshold=now, limit=limit):
            await _overdue(deps, conn, emit, r, level="reminder", now=now)
            counts["reminders"] += 1
        for r in await _claim(conn, mark="escalated_at",
                              when="first_contact_at IS NULL AND reminder_sent_at IS NOT NULL "
                                   "AND escalation_due <= $2",
                              order="escalation_due", now=now, threshold=now, limit=limit):
            await _overdue(deps, conn, emit, r, level="escalation", now=now)
            counts["escalations"] += 1
        cutoff = rules.inactivity_cutoff(now, deps.config.inactivity_days)
        for r in await _claim(conn, mark="inactive_flagged_at", when="last_activity_at <= $2",
                              order="last_activity_at", now=now, threshold=cutoff,
                              limit=limit):
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


async def _overdue(deps: Deps, conn, emit, r, *, level: str, now) -> None:
    """The first contact is overdue: a reminder to the case's mediator, or an escalation to
    the structure's coordinators."""
    due = r["first_contact_due"]
    days = deps.config.first_contact_days(r["urgency"])
    notify_role, notify_id = (("coordinator", None) if level == "escalation"
                              else ("mediator", r["mediator_id"]))
    await store.add_timeline(conn, case_id=r["case_id"], at=now, recorded_at=now,
                             kind=f"first_contact_overdue_{level}", actor="system",
                             details={"due_at": due.isoformat(), "working_days": days,
                                      "notify_role": notify_role})
    await store.add_notice(conn, r, kind=f"first_contact_{level}", notify_role=notify_role,
                           notify_id=notify_id, due_at=due, now=now)
    await emit(FirstContactOverdue(
        case=store.case_ref(r), level=level, notify_role=notify_role, notify_id=notify_id,
        opened_at=r["opened_at"], due_at=due, working_days=days, detected_at=now),
        topic=deps.topics.cases, key=str(r["case_id"]), structure=r["structure"],
        correlation_id=r["correlation_id"])


def watcher(deps: Deps):
    """The background task for ``Service.background``: scan, wait, until the service stops."""

    async def run(svc) -> None:
        while not svc.stopping.is_set():
            try:
                await scan_once(deps)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # transient (database restart...): next round
                log.warning("deadline scan failed", extra={"fields": {
                    "exc_type": type(exc).__name__}})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(svc.stopping.wait(), deps.config.scan_interval)
    return run

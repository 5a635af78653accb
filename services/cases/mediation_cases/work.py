"""The mediator's use cases (HTTP): one transaction each, state change and events together.

Scope: a mediator sees the cases of their own area, a coordinator their structure's (the
shared ``Caller.can_see``); a case out of scope is answered as if it did not exist (404).
Every mutation carries the version the caller read; a stale one is refused (409).
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any

import asyncpg

from mediation_core.auth import Caller
from mediation_core.sealing import KeyDestroyed, blind_index, seal
from mediation_schemas.cases import (
    ActionRecorded,
    CaseClosed,
    CaseOpened,
    CaseReassigned,
    CaseReopened,
    CollectiveActionRecorded,
    DysfunctionReported,
    FirstContactMade,
)
from mediation_schemas.vocab import CaseOrigin

from . import apimodels as m
from . import feedback, observe, opening, rules, store
from .context import Deps, Emit

Violation = rules.RuleViolation


def not_found(what: str = "case") -> Violation:
    return Violation("not_found", f"no {what} with this id in your scope", None, status=404)


def _not_future(at: datetime | None, now: datetime, field: str) -> datetime:
    """A recorded fact cannot be dated in the future (a few minutes of clock skew allowed)."""
    if at is None:
        return now
    if at > now + timedelta(minutes=10):
        raise Violation("in_the_future", f"{field} is later than now; record what happened, "
                        "with the date it happened", field, status=422)
    return at


# ----------------------------------------------------------------------------- reading

def summary(row: asyncpg.Record, referral_count: int, now: datetime, config) -> m.CaseSummary:
    waiting = row["status"] == "open" and row["first_contact_at"] is None
    return m.CaseSummary(
        case_id=row["case_id"], version=row["version"], status=row["status"],
        structure=row["structure"], area=row["area"], mediator_id=row["mediator_id"],
        origin=row["origin"], motives=store.jload(row["motives"]) or [],
        urgency=row["urgency"], commune=row["commune"],
        interpreter_needed=row["interpreter_needed"], language=row["language"],
        opened_at=row["opened_at"], first_contact_due=row["first_contact_due"],
        first_contact_at=row["first_contact_at"], contact_attempts=row["contact_attempts"],
        waiting_first_contact=waiting,
        overdue=waiting and row["first_contact_due"] is not None
        and row["first_contact_due"] <= now,
        last_activity_at=row["last_activity_at"],
        inactive=row["status"] == "open"
        and rules.is_inactive(row["last_activity_at"], now, config.inactivity_days),
        closed_at=row["closed_at"], closure_reason=row["closure_reason"],
        autonomy_t0=row["autonomy_t0"], autonomy_t1=row["autonomy_t1"],
        referral_count=referral_count)


async def _visible(conn: asyncpg.Connection | asyncpg.Pool, caller: Caller, case_id: uuid.UUID,
                   *, for_update: bool = False) -> asyncpg.Record:
    row = await store.get_case(conn, case_id, for_update=for_update)
    if row is None or not caller.can_see(structure=row["structure"], area=row["area"]):
        raise not_found()
    return row


async def _referral_count(conn, case_id: uuid.UUID) -> int:
    return await conn.fetchval("SELECT count(*) FROM case_referrals WHERE case_id = $1", case_id)


def _scope_sql(caller: Caller, args: list[Any]) -> str:
    if caller.role == "admin":
        return "TRUE"
    if caller.role == "coordinator":
        args.append(caller.structure)
        return f"structure = ${len(args)}"
    args.extend([caller.structure, caller.area])
    return f"structure = ${len(args) - 1} AND area = ${len(args)}"


async def caseload(deps: Deps, caller: Caller, *, status: str, waiting_first_contact: bool | None,
                   overdue: bool | None, inactive: bool | None, motive: str | None,
                   area: str | None, mediator_id: str | None, limit: int,
                   offset: int) -> list[m.CaseSummary]:
    now = deps.clock()
    args: list[Any] = []
    where = [_scope_sql(caller, args)]
    if status != "all":
        args.append(status)
        where.append(f"status = ${len(args)}")
    if waiting_first_contact is not None:
        where.append("status = 'open' AND first_contact_at IS NULL" if waiting_first_contact
                     else "first_contact_at IS NOT NULL")
    if overdue is not None:
        args.append(now)
        cond = (f"status = 'open' AND first_contact_at IS NULL AND first_contact_due <= "
                f"${len(args)}")
        where.append(cond if overdue else f"NOT ({cond})")
    if inactive is not None:
        args.append(rules.inactivity_cutoff(now, deps.config.inactivity_days))
        cond = f"status = 'open' AND last_activity_at <= ${len(args)}"
        where.append(cond if inactive else f"NOT ({cond})")
    if motive:
        args.append(store.jdump([{"code": motive}]))
        where.append(f"motives @> ${len(args)}::jsonb")
    if area:
        args.append(area)
        where.append(f"area = ${len(args)}")
    if mediator_id:
        args.append(mediator_id)
        where.append(f"mediator_id = ${len(args)}")
    args.extend([limit, offset])
    rows = await deps.db().fetch(
        "SELECT c.*, (SELECT count(*) FROM case_referrals r WHERE r.case_id = c.case_id) AS n "
        f"FROM cases c WHERE {' AND '.join(where)} "
        f"ORDER BY (first_contact_due IS NULL), first_contact_due, opened_at "
        f"LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
    return [summary(r, r["n"], now, deps.config) for r in rows]


async def caseload_summary(deps: Deps, caller: Caller) -> list[m.CaseloadLine]:
    now = deps.clock()
    args: list[Any] = [now, rules.inactivity_cutoff(now, deps.config.inactivity_days)]
    scope = _scope_sql(caller, args)
    rows = await deps.db().fetch(
        "SELECT area, mediator_id, count(*) AS open, "
        "count(*) FILTER (WHERE first_contact_at IS NULL) AS waiting, "
        "count(*) FILTER (WHERE first_contact_at IS NULL AND first_contact_due <= $1) "
        "  AS overdue, "
        "count(*) FILTER (WHERE last_activity_at <= $2) AS inactive "
        f"FROM cases WHERE status = 'open' AND {scope} "
        "GROUP BY area, mediator_id ORDER BY area, mediator_id", *args)
    return [m.CaseloadLine(area=r["area"], mediator_id=r["mediator_id"], open=r["open"],
                           waiting_first_contact=r["waiting"], overdue=r["overdue"],
                           inactive=r["inactive"]) for r in rows]


def _notice_out(r: asyncpg.Record) -> m.NoticeOut:
    return m.NoticeOut(notice_id=r["notice_id"], case_id=r["case_id"], kind=r["kind"],
                       notify_role=r["notify_role"], notify_id=r["notify_id"],
                       area=r["area"], due_at=r["due_at"], created_at=r["created_at"],
                       resolved_at=r["resolved_at"], resolved_by=r["resolved_by"])


def _notice_scope(caller: Caller, args: list[Any]) -> str:
    """A mediator gets the mediator notices of their area; a coordinator the coordinator
    notices of their structure (admin: all)."""
    if caller.role == "admin":
        return "TRUE"
    if caller.role == "coordinator":
        args.append(caller.structure)
        return f"notify_role = 'coordinator' AND structure = ${len(args)}"
    args.extend([caller.structure, caller.area])
    return (f"notify_role = 'mediator' AND structure = ${len(args) - 1} "
            f"AND area = ${len(args)}")


async def list_notices(deps: Deps, caller: Caller, *, include_resolved: bool,
                       limit: int) -> list[m.NoticeOut]:
    args: list[Any] = []
    where = _notice_scope(caller, args)
    if not include_resolved:
        where += " AND resolved_at IS NULL"
    args.append(limit)
    rows = await deps.db().fetch(f"SELECT * FROM notices WHERE {where} "
                                 f"ORDER BY created_at DESC LIMIT ${len(args)}", *args)
    return [_notice_out(r) for r in rows]


async def acknowledge_notice(deps: Deps, caller: Caller, notice_id: uuid.UUID) -> m.NoticeOut:
    args: list[Any] = [notice_id]
    where = _notice_scope(caller, args)
    args.extend([deps.clock(), caller.sub])
    row = await deps.db().fetchrow(
        f"UPDATE notices SET resolved_at = COALESCE(resolved_at, ${len(args) - 1}), "
        f"resolved_by = COALESCE(resolved_by, ${len(args)}) "
        f"WHERE notice_id = $1 AND {where} RETURNING *", *args)
    if row is None:
        raise not_found("notice")
    return _notice_out(row)


async def case_detail(deps: Deps, caller: Caller, case_id: uuid.UUID) -> m.CaseDetail:
    now = deps.clock()
    async with deps.db().acquire() as conn:
        row = await _visible(conn, caller, case_id)
        refs = await store.referrals_of(conn, case_id)
        timeline = await conn.fetch("SELECT * FROM case_timeline WHERE case_id = $1 "
                                    "ORDER BY at, seq", case_id)
        access = await conn.fetch("SELECT * FROM personal_data_access WHERE case_id = $1 "
                                  "ORDER BY at, id", case_id)
    base = summary(row, len(refs), now, deps.config)
    return m.CaseDetail(
        **base.model_dump(),
        referrals=[m.ReferralLink(
            referral_id=r["referral_id"], revision=r["revision"], is_primary=r["is_primary"],
            source_system=r["source_system"], received_at=r["received_at"],
            consent_share_with_referrer=r["consent_share"], last_feedback=r["last_feedback"])
            for r in refs],
        timeline=[m.TimelineEntry(
            entry_id=t["entry_id"], at=t["at"], recorded_at=t["recorded_at"], kind=t["kind"],
            axis=t["axis"], actor=t["actor"], details=store.jload(t["details"]) or {},
            has_note=t["sealed_note"] is not None) for t in timeline],
        personal_data_access=[m.AccessEntry(actor=a["actor"], role=a["role"],
                                            purpose=a["purpose"], fields=list(a["fields"]),
                                            at=a["at"]) for a in access])


async def _open_sealed(deps: Deps, caller: Caller, case_id: uuid.UUID, block: dict, *,
                       purpose: str, fields: list[str]) -> dict:
    """Every opening is written to the case's audit trail first, then to the key vault's."""
    await store.record_access(deps.db(), case_id=case_id, actor=caller.sub, role=caller.role,
                              purpose=purpose, fields=fields, at=deps.clock())
    observe.PERSONAL_DATA_READS.labels(purpose).inc()
    try:
        return await deps.vault().open(block, actor=f"cases:{caller.sub}", purpose=purpose)
    except KeyDestroyed:
        raise Violation("personal_data_erased", "the person's data was erased (their key was "
                        "destroyed); it can no longer be read", None, status=410) from None


async def read_identity(deps: Deps, caller: Caller, case_id: uuid.UUID) -> m.IdentityOut:
    row = await _visible(deps.db(), caller, case_id)
    if row["sealed"] is None:
        raise not_found("identity")
    data = await _open_sealed(deps, caller, case_id, store.jload(row["sealed"]),
                              purpose="case_identity_read",
                              fields=["person", "referrer", "free_texts"])
    return m.IdentityOut(case_id=case_id, identity=data)


async def read_note(deps: Deps, caller: Caller, case_id: uuid.UUID,
                    entry_id: uuid.UUID) -> m.NoteOut:
    await _visible(deps.db(), caller, case_id)
    sealed = await deps.db().fetchval(
        "SELECT sealed_note FROM case_timeline WHERE case_id = $1 AND entry_id = $2",
        case_id, entry_id)
    if sealed is None:
        raise not_found("note")
    data = await _open_sealed(deps, caller, case_id, store.jload(sealed),
                              purpose="case_note_read", fields=["note"])
    return m.NoteOut(case_id=case_id, entry_id=entry_id, note=data["note"])


# ----------------------------------------------------------------------------- mutating

Change = Callable[[asyncpg.Connection, asyncpg.Record, Emit, datetime], Awaitable[Any]]


async def _mutate(deps: Deps, caller: Caller, case_id: uuid.UUID, version: int | None,
                  change: Change, *, command: str,
                  activity: bool = True) -> tuple[m.CaseSummary, Any]:
    """One use case, one transaction: lock the case, check scope and version, change, bump.
    The span is current while events are written, so they carry its trace context."""
    now = deps.clock()
    with observe.tracer().start_as_current_span(
            f"cases {command}", attributes={"mediation.case_id": str(case_id),
                                            "mediation.command": command,
                                            "mediation.actor_role": caller.role}):
        try:
            async with deps.db().acquire() as conn, conn.transaction():
                row = await _visible(conn, caller, case_id, for_update=True)
                rules.check_version(expected=version, current=row["version"])
                extra = await change(conn, row, deps.outbox_emit(conn), now)
                new = await store.bump(conn, case_id, now=now, activity=activity)
                if activity:
                    await store.resolve_notices(conn, case_id, ["inactivity"],
                                                by="system:activity", now=now)
                n = await _referral_count(conn, case_id)
        except Violation as v:
            observe.COMMANDS.labels(command, v.code).inc()
            raise
    observe.COMMANDS.labels(command, "ok").inc()
    return summary(new, n, now, deps.config), extra


async def _seal_note(deps: Deps, row: asyncpg.Record, note: str | None) -> dict | None:
    if not note:
        return None
    sealed = store.jload(row["sealed"])
    if sealed is None:
        raise Violation("note_not_sealable", "this case has no person key to seal a note with",
                        "note", status=422)
    try:
        dek = await deps.vault().get(sealed["key_id"])
    except KeyDestroyed:
        raise Violation("personal_data_erased", "the person's data was erased; notes can no "
                        "longer be added", "note", status=410) from None
    return seal(dek, sealed["key_id"], {"note": note}).model_dump(mode="json")


def _emit_case(deps: Deps, emit: Emit, row: asyncpg.Record, payload) -> Awaitable[Any]:
    return emit(payload, topic=deps.topics.cases, key=str(row["case_id"]),
                structure=row["structure"], correlation_id=row["correlation_id"])


async def _first_contact(deps: Deps, conn, row, emit: Emit, *, at: datetime, channel: str,
                         attempts: int, now: datetime, actor: str) -> None:
    await conn.execute("UPDATE cases SET first_contact_at = $2, first_contact_channel = $3 "
                       "WHERE case_id = $1", row["case_id"], at, channel)
    await store.resolve_notices(conn, row["case_id"],
                                ["first_contact_reminder", "first_contact_escalation"],
                                by="system:first_contact", now=now)
    await store.add_timeline(conn, case_id=row["case_id"], at=at, recorded_at=now,
                             kind="first_contact", axis=1, actor=actor,
                             details={"channel": channel, "attempts": attempts})
    await _emit_case(deps, emit, row, FirstContactMade(
        case=store.case_ref(row), channel=channel, contacted_at=at, attempts=attempts))
    await feedback.send_all(deps, conn, emit, row["case_id"], status="in_progress", now=now,
                            structure=row["structure"])


async def record_contact(deps: Deps, caller: Caller, case_id: uuid.UUID, version: int | None,
                         req: m.ContactRequest) -> tuple[m.CaseSummary, uuid.UUID]:
    async def change(conn, row, emit, now):
        rules.check_open(row["status"])
        at = _not_future(req.at, now, "at")
        attempts = row["contact_attempts"] + 1
        await conn.execute("UPDATE cases SET contact_attempts = $2 WHERE case_id = $1",
                           case_id, attempts)
        entry = await store.add_timeline(conn, case_id=case_id, at=at, recorded_at=now,
                                         kind="contact_attempt", axis=1, actor=caller.sub,
                                         details={"channel": req.channel, "outcome": req.outcome,
                                                  "attempt": attempts})
        await _emit_case(deps, emit, row, ActionRecorded(
            case=store.case_ref(row), action_id=entry, axis=1, kind="contact_attempt",
            occurred_at=at, outcome=req.outcome, channel=req.channel))
        if req.outcome in ("reached", "declined") and row["first_contact_at"] is None:
            await _first_contact(deps, conn, row, emit, at=at, channel=req.channel,
                                 attempts=attempts, now=now, actor=caller.sub)
        return entry
    return await _mutate(deps, caller, case_id, version, change, command="contact")


async def record_interview(deps: Deps, caller: Caller, case_id: uuid.UUID, version: int | None,
                           req: m.InterviewRequest) -> tuple[m.CaseSummary, uuid.UUID]:
    row0 = await _visible(deps.db(), caller, case_id)
    sealed_note = await _seal_note(deps, row0, req.note)

    async def change(conn, row, emit, now):
        rules.check_open(row["status"])
        at = _not_future(req.at, now, "at")
        entry = await store.add_timeline(
            conn, case_id=case_id, at=at, recorded_at=now, kind="interview", axis=2,
            actor=caller.sub, sealed_note=sealed_note,
            details={"channel": req.channel, "duration_minutes": req.duration_minutes,
                     "interpreter_used": req.interpreter_used})
        await _emit_case(deps, emit, row, ActionRecorded(
            case=store.case_ref(row), action_id=entry, axis=2, kind="interview",
            occurred_at=at, channel=req.channel))
        if row["first_contact_at"] is None:  # meeting the person is the first contact
            await _first_contact(deps, conn, row, emit, at=at, channel=req.channel,
                                 attempts=row["contact_attempts"] + 1, now=now,
                                 actor=caller.sub)
        return entry
    return await _mutate(deps, caller, case_id, version, change, command="interview")


async def record_action(deps: Deps, caller: Caller, case_id: uuid.UUID, version: int | None,
                        req: Any) -> tuple[m.CaseSummary, uuid.UUID]:
    row0 = await _visible(deps.db(), caller, case_id)
    sealed_note = await _seal_note(deps, row0, req.note)
    details = req.model_dump(mode="json", exclude={"version", "note", "at", "kind"},
                             exclude_none=True)
    axis = rules.axis_for(req.kind, getattr(req, "axis", None))

    async def change(conn, row, emit, now):
        rules.check_open(row["status"])
        at = _not_future(req.at, now, "at")
        entry = await store.add_timeline(conn, case_id=case_id, at=at, recorded_at=now,
                                         kind=req.kind, axis=axis, actor=caller.sub,
                                         details=details, sealed_note=sealed_note)
        await _emit_case(deps, emit, row, ActionRecorded(
            case=store.case_ref(row), action_id=entry, axis=axis, kind=req.kind,
            occurred_at=at, outcome=getattr(req, "outcome", None),
            right=getattr(req, "right", None), body=getattr(req, "body", None),
            status=getattr(req, "status", None), lasting_care=getattr(req, "lasting_care", None),
            target=getattr(req, "target", None) or getattr(req, "label", None),
            language=getattr(req, "language", None)))
        return entry
    return await _mutate(deps, caller, case_id, version, change, command="action")


async def record_autonomy(deps: Deps, caller: Caller, case_id: uuid.UUID, version: int | None,
                          req: m.AutonomyRequest) -> tuple[m.CaseSummary, uuid.UUID]:
    async def change(conn, row, emit, now):
        rules.check_open(row["status"])
        at = _not_future(req.at, now, "at")
        col = "autonomy_t0" if req.phase == "T0" else "autonomy_t1"
        await conn.execute(f"UPDATE cases SET {col} = $2 WHERE case_id = $1", case_id, req.score)
        details: dict[str, Any] = {"phase": req.phase, "score": req.score}
        if req.dimensions:
            details["dimensions"] = req.dimensions.model_dump(exclude_none=True)
        entry = await store.add_timeline(conn, case_id=case_id, at=at, recorded_at=now,
                                         kind="autonomy_assessment", axis=2, actor=caller.sub,
                                         details=details)
        await _emit_case(deps, emit, row, ActionRecorded(
            case=store.case_ref(row), action_id=entry, axis=2, kind="autonomy_assessment",
            occurred_at=at, autonomy_phase=req.phase, autonomy_score=req.score))
        return entry
    return await _mutate(deps, caller, case_id, version, change, command="autonomy")


async def report_dysfunction(deps: Deps, caller: Caller, case_id: uuid.UUID,
                             version: int | None, req: m.DysfunctionRequest
                             ) -> tuple[m.CaseSummary, uuid.UUID]:
    row0 = await _visible(deps.db(), caller, case_id)
    # a stale request is refused before any personal data is opened (checked again under lock)
    rules.check_version(expected=version, current=row0["version"])
    sealed = store.jload(row0["sealed"])
    if sealed is not None:
        # the description goes to authorities: it must not identify the person
        try:
            identity = await _open_sealed(deps, caller, case_id, sealed,
                                          purpose="dysfunction_identity_check",
                                          fields=["person"])
        except Violation:
            identity = {}
        for field_name, text in (("description", req.description), ("concerned", req.concerned)):
            found = rules.identity_fields_in(text, identity)
            if found:
                raise Violation(
                    "identity_in_text",
                    f"the {field_name} contains the person's {', '.join(found)}; describe the "
                    "facts without identifying the person (naming them is done with "
                    "person_consents_to_be_named)", field_name, status=422)
    dysfunction_id = uuid.uuid4()

    async def change(conn, row, emit, now):
        named = req.person_consents_to_be_named and row["sealed"] is not None
        await conn.execute(
            "INSERT INTO dysfunctions(dysfunction_id, case_id, structure, area, category, "
            "urgency, concerned, observed_on, reported_at, reported_by, consent_named) "
            "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
            dysfunction_id, case_id, row["structure"], row["area"], req.category.value,
            req.urgency.value, req.concerned, req.observed_on, now, caller.sub, named)
        await store.add_timeline(conn, case_id=case_id, at=now, recorded_at=now,
                                 kind="dysfunction_reported", axis=4, actor=caller.sub,
                                 details={"dysfunction_id": str(dysfunction_id),
                                          "category": req.category.value,
                                          "urgency": req.urgency.value, "named": named})
        if named:
            await store.record_access(conn, case_id=case_id, actor=caller.sub, role=caller.role,
                                      purpose="dysfunction_named_disclosure",
                                      fields=["sealed_identity"], at=now)
        await emit(DysfunctionReported(
            dysfunction_id=dysfunction_id, case_id=case_id, structure=row["structure"],
            area=row["area"], category=req.category, urgency=req.urgency,
            concerned=req.concerned, commune=req.commune or row["commune"],
            description=req.description, observed_on=req.observed_on, reported_at=now,
            person_consents_to_be_named=named,
            sealed_identity=store.jload(row["sealed"]) if named else None),
            topic=deps.topics.dysfunctions, key=str(dysfunction_id),
            structure=row["structure"], correlation_id=row["correlation_id"])
        return dysfunction_id
    return await _mutate(deps, caller, case_id, version, change, command="dysfunction")


def _filed_under(caller: Caller, area: str | None) -> tuple[str, str | None]:
    """Structure and area of a record that is not about one case (an observed dysfunction, a
    collective action): a mediator's own area, from the token; a coordinator's choice."""
    if caller.role == "mediator":
        if area not in (None, caller.area):
            raise Violation("out_of_scope", "a mediator records for their own area; leave area "
                            "empty", "area", status=403)
        area = caller.area
    if not caller.structure:
        raise Violation("out_of_scope", "your token carries no structure", None, status=403)
    return caller.structure, area


async def report_observed_dysfunction(deps: Deps, caller: Caller,
                                      req: m.ObservedDysfunctionRequest) -> m.DysfunctionOut:
    structure, area = _filed_under(caller, req.area)
    now = deps.clock()
    did = uuid.uuid4()
    with observe.tracer().start_as_current_span(
            "cases observed_dysfunction", attributes={"mediation.dysfunction_id": str(did)}):
        async with deps.db().acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO dysfunctions(dysfunction_id, case_id, structure, area, category, "
                "urgency, concerned, observed_on, reported_at, reported_by, consent_named) "
                "VALUES ($1,NULL,$2,$3,$4,$5,$6,$7,$8,$9,false)",
                did, structure, area, req.category.value, req.urgency.value,
                req.concerned, req.observed_on, now, caller.sub)
            await deps.outbox.add(conn, DysfunctionReported(
                dysfunction_id=did, case_id=None, structure=structure, area=area,
                category=req.category, urgency=req.urgency, concerned=req.concerned,
                commune=req.commune, description=req.description, observed_on=req.observed_on,
                reported_at=now), topic=deps.topics.dysfunctions, key=str(did),
                correlation_id=f"dysfunction:{did}", structure=structure)
    observe.COMMANDS.labels("observed_dysfunction", "ok").inc()
    return m.DysfunctionOut(dysfunction_id=did, structure=structure, area=area,
                            category=req.category.value, urgency=req.urgency.value,
                            reported_at=now)


async def close_case(deps: Deps, caller: Caller, case_id: uuid.UUID, version: int | None,
                     req: m.CloseRequest) -> tuple[m.CaseSummary, uuid.UUID]:
    async def change(conn, row, emit, now):
        rules.check_closure(status=row["status"], reason=req.reason,
                            contact_attempts=row["contact_attempts"],
                            first_contact=row["first_contact_at"] is not None,
                            min_attempts=deps.config.unreachable_min_attempts)
        at = _not_future(req.closed_at, now, "closed_at")
        await conn.execute(
            "UPDATE cases SET status = 'closed', closed_at = $2, closure_reason = $3, "
            "autonomy_t1 = COALESCE($4, autonomy_t1) WHERE case_id = $1",
            case_id, at, req.reason.value, req.autonomy_t1)
        kind = rules.reason_kind(req.reason)
        entry = await store.add_timeline(conn, case_id=case_id, at=at, recorded_at=now,
                                         kind="closed", actor=caller.sub, details={
                                             "reason": req.reason.value, "reason_kind": kind,
                                             "autonomy_t1": req.autonomy_t1})
        await _emit_case(deps, emit, row, CaseClosed(case=store.case_ref(row), reason=req.reason,
                                                     closed_at=at, reason_kind=kind))
        await feedback.send_all(deps, conn, emit, case_id, status="closed", now=now,
                                structure=row["structure"], reason=req.reason)
        return entry
    return await _mutate(deps, caller, case_id, version, change, command="close")


async def reopen_case(deps: Deps, caller: Caller, case_id: uuid.UUID, version: int | None,
                      req: m.ReopenRequest) -> tuple[m.CaseSummary, uuid.UUID]:
    async def change(conn, row, emit, now):
        if row["status"] != "closed":
            raise Violation("case_not_closed", "only a closed case can be reopened", "status")
        await opening.lock_person(conn, row["structure"], row["person_ref"])
        other = await store.find_open_case(conn, row["structure"], row["person_ref"])
        if other is not None:
            visible = caller.can_see(structure=other["structure"], area=other["area"])
            raise Violation("person_has_open_case", "this person already has an open case in "
                            "the structure; continue that one", None,
                            case_id=other["case_id"] if visible else None)
        await conn.execute("UPDATE cases SET status = 'open', closed_at = NULL, "
                           "closure_reason = NULL WHERE case_id = $1", case_id)
        entry = await store.add_timeline(conn, case_id=case_id, at=now, recorded_at=now,
                                         kind="reopened", actor=caller.sub,
                                         details={"reason": req.reason})
        await _emit_case(deps, emit, row, CaseReopened(case=store.case_ref(row),
                                                       reopened_at=now))
        await feedback.send_all(deps, conn, emit, case_id, status="in_progress", now=now,
                                structure=row["structure"])
        return entry
    return await _mutate(deps, caller, case_id, version, change, command="reopen")


async def reassign_case(deps: Deps, caller: Caller, case_id: uuid.UUID, version: int | None,
                        req: m.ReassignRequest) -> tuple[m.CaseSummary, uuid.UUID]:
    async def change(conn, row, emit, now):
        rules.check_open(row["status"])
        area = req.area or row["area"]
        if req.mediator_id == row["mediator_id"] and area == row["area"]:
            raise Violation("same_assignment", "the case is already assigned to this mediator "
                            "in this area", "mediator_id", status=422)
        await conn.execute("UPDATE cases SET mediator_id = $2, area = $3 WHERE case_id = $1",
                           case_id, req.mediator_id, area)
        entry = await store.add_timeline(conn, case_id=case_id, at=now, recorded_at=now,
                                         kind="reassigned", actor=caller.sub, details={
                                             "from_mediator_id": row["mediator_id"],
                                             "to_mediator_id": req.mediator_id,
                                             "from_area": row["area"], "to_area": area,
                                             "reason": req.reason})
        new = dict(row)
        new.update(mediator_id=req.mediator_id, area=area)
        await _emit_case(deps, emit, row, CaseReassigned(
            case=store.case_ref(new), from_mediator_id=row["mediator_id"], reason=req.reason,
            reassigned_at=now))
        return entry
    return await _mutate(deps, caller, case_id, version, change, command="reassign", activity=False)


# ----------------------------------------------------------------------------- opening

async def open_case(deps: Deps, caller: Caller, req: m.OpenCaseRequest) -> m.CaseSummary:
    if caller.role == "mediator":
        for field_name, mine in (("area", caller.area), ("mediator_id", caller.sub)):
            if getattr(req, field_name) not in (None, mine):
                raise Violation("out_of_scope", f"a mediator opens cases in their own name and "
                                f"area; leave {field_name} empty", field_name, status=403)
        structure, area, mediator_id = caller.structure, caller.area, caller.sub
    else:
        for field_name in ("area", "mediator_id"):
            if not getattr(req, field_name):
                raise Violation("missing", f"{field_name} is required when a coordinator opens "
                                "a case", field_name, status=422)
        structure, area, mediator_id = caller.structure, req.area, req.mediator_id
    if not structure or not area or not mediator_id:
        raise Violation("out_of_scope", "your token carries no structure or area", None,
                        status=403)
    ident = req.identity
    person_ref = blind_index(deps.settings.blind_index_key, ident.family_name, ident.given_name,
                             ident.birth_date)
    now = deps.clock()
    met_at = _not_future(req.met_at, now, "met_at")
    case_id = uuid.uuid4()
    motives = [mo.model_dump(mode="json", exclude_none=True) for mo in req.motives]
    async with deps.db().acquire() as conn, conn.transaction():
        await opening.lock_person(conn, structure, person_ref)
        other = await store.find_open_case(conn, structure, person_ref)
        if other is not None:
            visible = caller.can_see(structure=other["structure"], area=other["area"])
            raise Violation("person_has_open_case", "this person already has an open case in "
                            "the structure; record your work there", "identity",
                            case_id=other["case_id"] if visible else None)
        key_id, dek = await deps.vault().key_for_person(conn, person_ref)
        # same shape as intake's sealed block, so that both open the same way
        sealed = seal(dek, key_id, {"person": {**ident.model_dump(mode="json", exclude_none=True),
                                               "commune": req.commune}})
        correlation_id = f"case:{case_id}"
        await opening.insert_case(
            deps, conn, case_id=case_id, structure=structure, area=area,
            mediator_id=mediator_id, origin=CaseOrigin(req.origin), person_ref=person_ref,
            sealed=sealed.model_dump(mode="json"), motives=motives, urgency=req.urgency.value,
            interpreter_needed=req.interpreter_needed, language=req.language,
            commune=req.commune, correlation_id=correlation_id, now=now, contact_attempts=1)
        row = await store.get_case(conn, case_id)
        emit = deps.outbox_emit(conn)
        await store.add_timeline(conn, case_id=case_id, at=now, recorded_at=now,
                                 kind="case_opened", actor=caller.sub,
                                 details={"origin": req.origin})
        await _emit_case(deps, emit, row, CaseOpened(
            case=store.case_ref(row), origin=CaseOrigin(req.origin), person_ref=person_ref,
            motives=req.motives, urgency=req.urgency, opened_at=now))
        await _first_contact(deps, conn, row, emit, at=met_at, channel=req.channel, attempts=1,
                             now=now, actor=caller.sub)
        row = await store.get_case(conn, case_id)
    observe.OPENINGS.labels(f"api_{req.origin}").inc()
    return summary(row, 0, now, deps.config)


# ----------------------------------------------------------------------------- collective

async def record_collective(deps: Deps, caller: Caller,
                            req: m.CollectiveActionRequest) -> m.CollectiveActionOut:
    structure, area = _filed_under(caller, req.area)
    now = deps.clock()
    cid = uuid.uuid4()
    out = m.CollectiveActionOut(
        collective_action_id=cid, structure=structure, area=area, kind=req.kind,
        axis=rules.COLLECTIVE_AXIS[req.kind], theme=req.theme, held_on=req.held_on,
        place=req.place, partners=req.partners, attendance=req.attendance,
        recorded_by=caller.sub, recorded_at=now)
    async with deps.db().acquire() as conn, conn.transaction():
        await conn.execute(
            "INSERT INTO collective_actions(collective_action_id, structure, area, kind, theme, "
            "held_on, place, partners, attendance, recorded_by, recorded_at) VALUES "
            "($1,$2,$3,$4,$5,$6,$7,$8::jsonb,$9::jsonb,$10,$11)",
            cid, structure, area, req.kind, req.theme, req.held_on, req.place,
            store.jdump(req.partners), store.jdump(req.attendance.model_dump()), caller.sub, now)
        # the event is the record as answered (same fields)
        await deps.outbox.add(conn, CollectiveActionRecorded(**dict(out)),
                              topic=deps.topics.cases, key=str(cid),
                              correlation_id=f"collective:{cid}", structure=structure)
    return out


async def list_collective(deps: Deps, caller: Caller, *, limit: int,
                          offset: int) -> list[m.CollectiveActionOut]:
    args: list[Any] = []
    if caller.role == "admin":
        where = "TRUE"
    elif caller.role == "coordinator":
        args.append(caller.structure)
        where = "structure = $1"
    else:
        args.extend([caller.structure, caller.area])
        where = "structure = $1 AND (area = $2 OR area IS NULL)"
    args.extend([limit, offset])
    rows = await deps.db().fetch(
        f"SELECT * FROM collective_actions WHERE {where} ORDER BY held_on DESC "
        f"LIMIT ${len(args) - 1} OFFSET ${len(args)}", *args)
    return [m.CollectiveActionOut(
        collective_action_id=r["collective_action_id"], structure=r["structure"], area=r["area"],
        kind=r["kind"], axis=rules.COLLECTIVE_AXIS[r["kind"]], theme=r["theme"],
        held_on=r["held_on"], place=r["place"], partners=store.jload(r["partners"]),
        attendance=store.jload(r["attendance"]), recorded_by=r["recorded_by"],
        recorded_at=r["recorded_at"]) for r in rows]

"""Opening cases: from a routed referral (consumer) or without one (API)."""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from mediation_core.consumer import Batch
from mediation_schemas.cases import (
    CaseOpened,
    CaseReassigned,
    CaseReferralUpdated,
)
from mediation_schemas.referrals import ReferralRouted
from mediation_schemas.vocab import CaseOrigin

from . import calendar, feedback, rules, store
from .context import Deps, Emit

CASE_NS = uuid.UUID("6f0c3c52-31a4-4c8e-9d0e-6a53c0a5e001")


def case_id_for_referral(referral_id: uuid.UUID) -> uuid.UUID:
    """Deterministic: the same referral can only ever open the same case."""
    return uuid.uuid5(CASE_NS, f"referral:{referral_id}")


def _person_key(structure: str, person_ref: str | None) -> str | None:
    return f"{structure}|{person_ref}" if person_ref else None


async def lock_person(conn: asyncpg.Connection, structure: str, person_ref: str | None) -> None:
    """Serialise decisions about one person in one structure (several instances may race)."""
    key = _person_key(structure, person_ref)
    if key:
        await conn.execute("SELECT pg_advisory_xact_lock(hashtextextended($1, 7))", key)


@dataclass
class Prepared:
    """What a batch of routed referrals needs, read once for all of them under the
    persons' locks: the cases the referrals are already in, the persons' open cases, and
    which referrals share a referral id or a person with another one of the batch (those
    go the one-by-one way, after the batch's earlier writes are flushed)."""

    known: dict[uuid.UUID, rules.KnownReferral]
    open_cases: dict[tuple[str, str], str]
    contended: set[uuid.UUID]
    # an update may move a case to another structure or person: what was read about open
    # cases no longer holds, and the rest of the batch goes one by one
    stale: bool = False


PREPARED = "cases.opening"


async def prepare_routed(batch: Batch, routed: list[ReferralRouted]) -> None:
    """The batch's persons locked (in one order, so that two instances' batches cannot
    deadlock) and looked up in three round trips instead of two per referral."""
    keys = [_person_key(p.structure, p.referral.person_ref) for p in routed]
    rids = [p.referral.referral_id for p in routed]
    locks = sorted({k for k in keys if k})
    if locks:
        await batch.conn.execute(
            "SELECT count(pg_advisory_xact_lock(hashtextextended(k, 7))) "
            "FROM unnest($1::text[]) AS k", locks)
    known = await store.known_referrals(batch.conn, rids)
    open_cases = await store.open_cases_of(batch.conn, sorted(
        {(p.structure, p.referral.person_ref) for p in routed if p.referral.person_ref}))
    per_key = Counter(k for k in keys if k)
    per_rid = Counter(rids)
    contended = {p.referral.referral_id for p, k in zip(routed, keys, strict=True)
                 if per_rid[p.referral.referral_id] > 1 or (k and per_key[k] > 1)}
    batch.data[PREPARED] = Prepared(known=known, open_cases=open_cases, contended=contended)


def first_contact_deadlines(deps: Deps, start: datetime, urgency: str
                            ) -> tuple[datetime, datetime]:
    """When the first contact is due, and when its absence goes to the coordinator."""
    days = deps.config.first_contact_days(urgency)
    return (calendar.deadline(start, days),
            calendar.deadline(start, days + deps.config.escalation_working_days))


async def insert_case(deps: Deps, conn: asyncpg.Connection, *, case_id: uuid.UUID,
                      structure: str, area: str, mediator_id: str, origin: CaseOrigin,
                      person_ref: str | None, sealed: dict | None, motives: list[dict],
                      urgency: str, interpreter_needed: bool, language: str | None,
                      commune: str | None, correlation_id: str, now: datetime,
                      contact_attempts: int = 0) -> None:
    due, esc = first_contact_deadlines(deps, now, urgency)
    await conn.execute(
        "INSERT INTO cases(case_id, structure, area, mediator_id, origin, person_ref, sealed, "
        "motives, urgency, interpreter_needed, language, commune, correlation_id, opened_at, "
        "first_contact_due, escalation_due, last_activity_at, contact_attempts) VALUES ($1,$2,"
        "$3,$4,$5,$6,$7::jsonb,$8::jsonb,$9,$10,$11,$12,$13,$14,$15,$16,$14,$17)",
        case_id, structure, area, mediator_id, origin.value, person_ref,
        store.jdump(sealed) if sealed is not None else None, store.jdump(motives), urgency,
        interpreter_needed, language, commune, correlation_id, now, due, esc, contact_attempts)


async def on_referral_routed(deps: Deps, conn: asyncpg.Connection, emit: Emit,
                             p: ReferralRouted, *, correlation_id: str,
                             batch: Batch | None = None) -> str:
    """Open, attach, update or ignore. Returns the decision taken.

    In a prepared batch (see :func:`prepare_routed`) the person is locked and looked up
    already, and an opening is a deferred write; otherwise, one by one."""
    r = p.referral
    now = deps.clock()
    prepared = batch.data.get(PREPARED) if batch is not None else None
    if not isinstance(prepared, Prepared):
        prepared = None
    if prepared is not None and not prepared.stale and r.referral_id not in prepared.contended:
        known = prepared.known.get(r.referral_id)
        open_case_id = prepared.open_cases.get((p.structure, r.person_ref or ""))
    else:
        if batch is not None:
            await batch.flush()  # what the batch wrote before must be seen
        batch = None
        await lock_person(conn, p.structure, r.person_ref)
        known, open_case_id = await store.lookup_for_opening(conn, r.referral_id, p.structure,
                                                             r.person_ref)
    d = rules.decide_opening(
        known=known, open_case_for_person=open_case_id,
        revision=r.revision, structure=p.structure, area=p.area, mediator_id=p.mediator_id)
    motives = [m.model_dump(mode="json", exclude_none=True) for m in r.motives]

    if d.action == "ignore":
        return d.action
    if batch is not None and d.action != "open":
        # attach and update read and write other rows one by one: the openings deferred
        # so far go first, so that every read sees them
        await batch.flush()

    if d.action == "open":
        case_id = case_id_for_referral(r.referral_id)
        await _open_from_referral(deps, conn, p, case_id, motives=motives,
                                  correlation_id=correlation_id, now=now, batch=batch)
        ref_row = {"case_id": case_id, "structure": p.structure, "area": p.area,
                   "mediator_id": p.mediator_id}
        await emit(CaseOpened(
            case=store.case_ref(ref_row), origin=CaseOrigin.referral, referral_id=r.referral_id,
            referral_received_at=r.received_at, source_system=r.source_system,
            person_ref=r.person_ref, motives=r.motives, urgency=r.urgency, opened_at=now),
            topic=deps.topics.cases, key=str(case_id), structure=p.structure,
            correlation_id=correlation_id)
        # the referral row was written with last_feedback = 'received' already
        await feedback.send(deps, conn, emit, _referral_view(p, correlation_id),
                            status="received", now=now, structure=p.structure, record=False)
        return d.action

    assert d.case_id is not None
    case_id = uuid.UUID(d.case_id)
    row = await store.get_case(conn, case_id, for_update=True)
    assert row is not None
    if d.action == "attach" and row["status"] != "open":
        # closed since it was read (closing over HTTP locks the case, not the person):
        # decide again on what is there now
        return await on_referral_routed(deps, conn, emit, p, correlation_id=correlation_id)

    if d.action == "attach":
        await _insert_referral(conn, p, case_id, is_primary=False,
                               correlation_id=correlation_id, now=now)
        await _refresh_from_referrals(deps, conn, row, now=now)
        await store.bump(conn, case_id, now=now, activity=False)
        await store.add_timeline(conn, case_id=case_id, at=now, recorded_at=now,
                                 kind="referral_attached", actor="system", details={
                                     "referral_id": str(r.referral_id),
                                     "source_system": r.source_system})
        await emit(CaseOpened(
            case=store.case_ref(row), origin=CaseOrigin.referral, referral_id=r.referral_id,
            referral_received_at=r.received_at, source_system=r.source_system,
            person_ref=r.person_ref, motives=r.motives, urgency=r.urgency,
            opened_at=row["opened_at"], attached_to_existing=True),
            topic=deps.topics.cases, key=str(case_id), structure=row["structure"],
            correlation_id=correlation_id)
        ref = _referral_view(p, correlation_id)
        await feedback.send(deps, conn, emit, ref, status="received", now=now,
                            structure=row["structure"])
        if row["first_contact_at"] is not None:  # the person is already followed
            await feedback.send(deps, conn, emit, ref, status="in_progress", now=now,
                                structure=row["structure"])
        return d.action

    # update: a correction or a new routing of a referral already in a case
    if prepared is not None:
        prepared.stale = True
    await conn.execute(
        "UPDATE case_referrals SET revision = $2, structure = $3, area = $4, mediator_id = $5, "
        "consent_share = $6, motives = $7::jsonb, urgency = $8 WHERE referral_id = $1",
        r.referral_id, r.revision, p.structure, p.area, p.mediator_id,
        r.consent_share_with_referrer, store.jdump(motives), r.urgency.value)
    rerouted = False
    if d.reroute and row["status"] == "open":
        conflict = None
        if p.structure != row["structure"]:
            conflict = await store.find_open_case(conn, p.structure, row["person_ref"])
        if conflict is None:
            await conn.execute("UPDATE cases SET structure = $2, area = $3, mediator_id = $4 "
                               "WHERE case_id = $1", case_id, p.structure, p.area,
                               p.mediator_id)
            rerouted = True
    identity = "unchanged"
    if known is not None and known.is_primary and row["status"] == "open":
        # the referral that opened the case carries the person's data: a correction (a
        # phone number, a misspelt name) must reach the mediator
        structure = p.structure if rerouted else row["structure"]
        other = None
        if r.person_ref != row["person_ref"]:
            other = await store.find_open_case(conn, structure, r.person_ref)
        if other is None:
            await conn.execute(
                "UPDATE cases SET sealed = $2::jsonb, person_ref = $3, commune = $4 "
                "WHERE case_id = $1", case_id, store.jdump(r.sealed.model_dump(mode="json")),
                r.person_ref, p.place.name)
            identity = "updated"
        else:  # the corrected identity is someone with an open case: a person decides
            identity = "conflict_with_open_case"
    if row["status"] == "open":
        await _refresh_from_referrals(deps, conn, row, now=now)
    new_row = await store.bump(conn, case_id, now=now, activity=False)
    await store.add_timeline(conn, case_id=case_id, at=now, recorded_at=now,
                             kind="referral_updated", actor="system", details={
                                 "referral_id": str(r.referral_id), "revision": r.revision,
                                 "rerouted": rerouted, "identity": identity})
    if rerouted:
        await store.add_timeline(conn, case_id=case_id, at=now, recorded_at=now,
                                 kind="reassigned", actor="system", details={
                                     "from_mediator_id": row["mediator_id"],
                                     "to_mediator_id": p.mediator_id, "reason": "rerouted"})
        await emit(CaseReassigned(case=store.case_ref(new_row),
                                  from_mediator_id=row["mediator_id"], reason="rerouted",
                                  reassigned_at=now),
                   topic=deps.topics.cases, key=str(case_id), structure=new_row["structure"],
                   correlation_id=row["correlation_id"])
    await emit(CaseReferralUpdated(
        case=store.case_ref(new_row), referral_id=r.referral_id, revision=r.revision,
        motives=r.motives, urgency=r.urgency, rerouted=rerouted, updated_at=now),
        topic=deps.topics.cases, key=str(case_id), structure=new_row["structure"],
        correlation_id=correlation_id)
    return d.action


async def _open_from_referral(deps: Deps, conn: asyncpg.Connection, p: ReferralRouted,
                              case_id: uuid.UUID, *, motives: list[dict], correlation_id: str,
                              now: datetime, batch: Batch | None = None) -> None:
    """The case, its referral and the first timeline entry in one statement (the hot path:
    one round trip instead of three; none in a prepared batch, where it is deferred)."""
    r = p.referral
    due, esc = first_contact_deadlines(deps, now, r.urgency.value)
    motives_json = store.jdump(motives)
    await (batch.defer if batch is not None else conn.execute)(
        "WITH c AS (INSERT INTO cases(case_id, structure, area, mediator_id, origin, person_ref, "
        "  sealed, motives, urgency, interpreter_needed, language, commune, correlation_id, "
        "  opened_at, first_contact_due, escalation_due, last_activity_at) VALUES ($1,$2,$3,$4,"
        "  'referral',$5,$6::jsonb,$7::jsonb,$8,$9,$10,$11,$12,$13,$14,$15,$13) "
        "  RETURNING case_id), "
        "rf AS (INSERT INTO case_referrals(referral_id, case_id, revision, is_primary, "
        "  source_system, source_reference, received_at, structure, area, mediator_id, "
        "  consent_share, motives, urgency, correlation_id, attached_at, last_feedback) "
        "  SELECT $16, c.case_id, $17, true, $18, $19, $20, $2, $3, $4, $21, $7::jsonb, $8, $12, "
        "  $13, 'received' FROM c) "
        "INSERT INTO case_timeline(entry_id, case_id, at, recorded_at, kind, axis, actor, details) "
        "SELECT $22, c.case_id, $13, $13, 'case_opened', NULL, 'system', $23::jsonb FROM c",
        case_id, p.structure, p.area, p.mediator_id, r.person_ref,
        store.jdump(r.sealed.model_dump(mode="json")), motives_json, r.urgency.value,
        r.interpreter_needed, r.language, p.place.name, correlation_id, now, due, esc,
        r.referral_id, r.revision, r.source_system, r.source_reference, r.received_at,
        r.consent_share_with_referrer, uuid.uuid4(),
        store.jdump({"origin": "referral", "referral_id": str(r.referral_id),
                     "source_system": r.source_system,
                     "assignment_reason": p.decision.assignment_reason}))


def _referral_view(p: ReferralRouted, correlation_id: str) -> dict:
    """The referral row as just inserted (saves a read on the hot path)."""
    r = p.referral
    return {"referral_id": r.referral_id, "consent_share": r.consent_share_with_referrer,
            "last_feedback": None, "source_system": r.source_system,
            "source_reference": r.source_reference, "correlation_id": correlation_id}


async def _insert_referral(conn: asyncpg.Connection, p: ReferralRouted, case_id: uuid.UUID, *,
                           is_primary: bool, correlation_id: str, now: datetime) -> None:
    r = p.referral
    await conn.execute(
        "INSERT INTO case_referrals(referral_id, case_id, revision, is_primary, source_system, "
        "source_reference, received_at, structure, area, mediator_id, consent_share, motives, "
        "urgency, correlation_id, attached_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,"
        "$12::jsonb,$13,$14,$15)",
        r.referral_id, case_id, r.revision, is_primary, r.source_system, r.source_reference,
        r.received_at, p.structure, p.area, p.mediator_id, r.consent_share_with_referrer,
        store.jdump([m.model_dump(mode="json", exclude_none=True) for m in r.motives]),
        r.urgency.value, correlation_id, now)


async def _refresh_from_referrals(deps: Deps, conn: asyncpg.Connection, row: asyncpg.Record, *,
                                  now: datetime) -> None:
    """Motives: union over the case's referrals (and what was there); urgency: the highest.
    A case that became urgent before its first contact gets the shorter deadline."""
    motives = store.jload(row["motives"]) or []
    urgency = "normal"
    for ref in await store.referrals_of(conn, row["case_id"]):
        motives = rules.merge_motives(motives, store.jload(ref["motives"]))
        urgency = rules.merge_urgency(urgency, ref["urgency"])
    urgency = rules.merge_urgency(urgency, row["urgency"])
    due, esc = row["first_contact_due"], row["escalation_due"]
    if urgency != row["urgency"] and row["first_contact_at"] is None:
        new_due, new_esc = first_contact_deadlines(deps, now, urgency)
        due, esc = min(due, new_due), min(esc, new_esc)
    await conn.execute(
        "UPDATE cases SET motives = $2::jsonb, urgency = $3, first_contact_due = $4, "
        "escalation_due = $5 WHERE case_id = $1",
        row["case_id"], store.jdump(motives), urgency, due, esc)

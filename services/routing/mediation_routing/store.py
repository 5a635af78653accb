"""Routing state in Postgres and the use cases that change it.

Every use case runs on the connection of the caller's transaction (a consumer batch or
an HTTP request) and writes its events through ``emit`` into the outbox of that same
transaction: the state change and its events commit together.

Choices (see README):
- Corrections: a later revision of a referral is re-evaluated only if what routing reads
  changed (commune, postcode, referral date); a new event is emitted only if the decision
  changed (structure, area, mediator, place, or the unroutable reason). Older or equal
  revisions are ignored. A referral routed by hand keeps its manual decision unless the
  correction changes the place fields.
- Territory changes: open referrals -- unroutable and still in triage, or routed and not
  yet taken (no first contact, no reassignment, not closed, not routed by hand) -- dated
  on or after the new version's effective date are re-evaluated against it; an event is
  emitted only for those whose decision changes.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

import asyncpg
import orjson

from mediation_core.consumer import Batch, Write
from mediation_core.errors import DomainRejection
from mediation_schemas.envelope import Payload
from mediation_schemas.referrals import (
    PlaceRef,
    ReferralCore,
    ReferralRouted,
    RoutingDecision,
)

from . import territory as terr
from .assign import assign, check_manual
from .decide import (
    Decision,
    candidates_payload,
    finish,
    place_ref,
    plan,
    routed_payload,
    routed_signature,
    unroutable_payload,
)
from .territory import StructureVersion, TerritoryError, TerritoryHistory

Emit = Callable[[Payload, str, str | None, str], Awaitable[Any]]
"""emit(payload, key, structure, correlation_id)"""


def _json(v: Any) -> str:
    return orjson.dumps(v).decode()


@dataclass
class Prepared:
    """What a batch of accepted referrals needs, read once: which of them are known
    already (their rows locked), the mediators' loads (kept up to date as the batch
    routes), and which referral ids appear more than once in the batch."""

    known: set[uuid.UUID]
    loads: Counter
    contended: set[uuid.UUID]


PREPARED = "routing.accepted"


REFRESH_EVERY = 1.0  # seconds: versions stored by another instance are seen within this


class RoutingStore:
    def __init__(self) -> None:
        self.history = TerritoryHistory()
        self._refreshed_at = float("-inf")

    # ------------------------------------------------------------------ territory
    async def seed_packaged(self, conn: asyncpg.Connection) -> None:
        for sv in terr.packaged_versions():
            await conn.execute(
                "INSERT INTO territory_versions(structure, version, effective_from, document, source)"
                " VALUES ($1, $2, $3, $4::jsonb, 'packaged') ON CONFLICT DO NOTHING",
                sv.structure, sv.version, sv.effective_from, _json(terr.to_document(sv)))

    async def maybe_refresh(self, conn: asyncpg.Connection) -> None:
        """Per event: reload at most every REFRESH_EVERY s (a version consumed by this
        instance is in memory at once; one consumed by another shows within that delay)."""
        now = time.monotonic()
        if now - self._refreshed_at >= REFRESH_EVERY:
            await self.refresh(conn)

    async def refresh(self, conn: asyncpg.Connection) -> None:
        """Make the in-memory history what the database holds, as this transaction sees it:
        versions stored by another instance are loaded; a version added in a transaction
        that was rolled back is dropped."""
        known = self.history.known()
        rows = await conn.fetch("SELECT structure, version FROM territory_versions")
        stored = {(r["structure"], r["version"]) for r in rows}
        self._refreshed_at = time.monotonic()
        for s, v in known - stored:
            self.history.discard(s, v)
        missing = sorted(stored - known)
        for s, v in missing:
            r = await conn.fetchrow("SELECT effective_from, document FROM territory_versions "
                                    "WHERE structure = $1 AND version = $2", s, v)
            self.history.add(terr.from_document(orjson.loads(r["document"]), version=v,
                                                effective_from=r["effective_from"]))

    async def add_version(self, conn: asyncpg.Connection, *, structure: str, version: int,
                          effective_from: date, document: dict, reason: str | None) -> bool:
        """Store a new version. False if this exact version is already known."""
        try:
            sv = terr.from_document(document, version=version, effective_from=effective_from)
        except TerritoryError as err:
            raise DomainRejection("invalid_territory", str(err)) from None
        if sv.structure != structure:
            raise DomainRejection("invalid_territory", "territory.structure: differs from the "
                                  "event's structure")
        doc = terr.to_document(sv)
        row = await conn.fetchrow("SELECT effective_from, document FROM territory_versions "
                                  "WHERE structure = $1 AND version = $2", structure, version)
        if row is not None:
            if orjson.loads(row["document"]) == doc and row["effective_from"] == effective_from:
                return False
            raise DomainRejection("version_conflict", "territory_version: this version number "
                                  "already exists with other content; publish a new version")
        await conn.execute(
            "INSERT INTO territory_versions(structure, version, effective_from, document, source,"
            " reason) VALUES ($1, $2, $3, $4::jsonb, 'event', $5)",
            structure, version, effective_from, _json(doc), reason)
        self.history.add(sv)
        # the next event re-reads the table: if this transaction is rolled back, the
        # version leaves the memory too
        self._refreshed_at = float("-inf")
        return True

    @staticmethod
    async def allocate_version(conn: asyncpg.Connection, structure: str) -> int:
        """The number of a version about to be published: above every stored version and
        every number already handed out (two publications never share one)."""
        return int(await conn.fetchval(
            "INSERT INTO territory_counters(structure, last_version) "
            "SELECT $1, coalesce(max(version), 0) + 1 FROM territory_versions WHERE structure = $1 "
            "ON CONFLICT (structure) DO UPDATE SET last_version = "
            "greatest(territory_counters.last_version + 1, EXCLUDED.last_version) "
            "RETURNING last_version", structure))

    # ------------------------------------------------------------------ loads
    @staticmethod
    async def loads(conn: asyncpg.Connection, exclude: uuid.UUID | None = None,
                    mediators: list[str] | None = None) -> dict[str, int]:
        """Open routed referrals per mediator (all, or those named), ``exclude`` left out."""
        rows = await conn.fetch(
            "SELECT mediator_id, count(*) AS n FROM referrals WHERE status = 'routed' "
            "AND NOT closed AND mediator_id IS NOT NULL AND referral_id <> $1 "
            "AND ($2::text[] IS NULL OR mediator_id = ANY($2::text[])) GROUP BY 1",
            exclude or uuid.UUID(int=0), mediators)
        return {r["mediator_id"]: r["n"] for r in rows}

    async def _decide(self, conn: asyncpg.Connection, referral: ReferralCore,
                      context_structure: str | None,
                      loads: Mapping[str, int] | None = None) -> Decision:
        """Resolve first; read the loads of the structure's mediators only if it routed
        (unless given: a prepared batch's)."""
        p = plan(referral.commune, referral.postcode, referral.referral_date, self.history,
                 context_structure=context_structure)
        sv = p.structure_version
        if loads is None:
            loads = {} if sv is None else await self.loads(
                conn, exclude=referral.referral_id, mediators=[m.id for m in sv.mediators])
        return finish(p, loads)

    # ------------------------------------------------------------------ routing
    async def prepare_accepted(self, batch: Batch, referrals: list[ReferralCore]) -> None:
        """A batch's referrals in three round trips (territory refresh when due, their rows
        locked in id order, every mediator's load) instead of three or four each."""
        conn = batch.conn
        await self.maybe_refresh(conn)
        ids = sorted({r.referral_id for r in referrals})
        known = await conn.fetch("SELECT referral_id FROM referrals WHERE referral_id = "
                                 "ANY($1::uuid[]) ORDER BY referral_id FOR UPDATE", ids)
        per_id = Counter(r.referral_id for r in referrals)
        batch.data[PREPARED] = Prepared(
            known={r["referral_id"] for r in known}, loads=Counter(await self.loads(conn)),
            contended={i for i, n in per_id.items() if n > 1})

    async def on_accepted(self, conn: asyncpg.Connection, emit: Emit, referral: ReferralCore, *,
                          correlation_id: str, context_structure: str | None,
                          batch: Batch | None = None) -> str:
        """Route an accepted referral or a correction. Returns what happened (for tests/logs).

        In a prepared batch a referral seen for the first time is decided on the batch's
        loads and its rows are deferred writes; anything else goes one by one."""
        prepared = batch.data.get(PREPARED) if batch is not None else None
        if batch is not None and isinstance(prepared, Prepared):
            rid = referral.referral_id
            if rid not in prepared.contended and rid not in prepared.known:
                d = await self._decide(conn, referral, context_structure, prepared.loads)
                await self.apply(conn, emit, referral, d, correlation_id=correlation_id,
                                 context_structure=context_structure, trigger="accepted",
                                 previous=None, write=batch.defer)
                if d.routed and d.mediator_id:
                    prepared.loads[d.mediator_id] += 1
                return "accepted:emitted"
            await batch.flush()  # the batch's earlier writes are seen by what follows
            outcome = await self.on_accepted(conn, emit, referral, correlation_id=correlation_id,
                                             context_structure=context_structure)
            prepared.loads = Counter(await self.loads(conn))
            return outcome
        await self.maybe_refresh(conn)
        row = await conn.fetchrow("SELECT * FROM referrals WHERE referral_id = $1 FOR UPDATE",
                                  referral.referral_id)
        if row is not None and row["revision"] >= referral.revision:
            return "stale_revision"
        if row is not None:
            old = ReferralCore.model_validate(orjson.loads(row["referral"]))
            same_inputs = (old.commune, old.postcode, old.referral_date) == (
                referral.commune, referral.postcode, referral.referral_date)
            if same_inputs:
                await self._store_referral_only(conn, referral)
                return "correction_unchanged"
        d = await self._decide(conn, referral, context_structure)
        trigger = "accepted" if row is None else "correction"
        emitted = await self.apply(conn, emit, referral, d, correlation_id=correlation_id,
                                   context_structure=context_structure, trigger=trigger,
                                   previous=row)
        return f"{trigger}:{'emitted' if emitted else 'unchanged'}"

    async def _store_referral_only(self, conn: asyncpg.Connection, referral: ReferralCore) -> None:
        await conn.execute(
            "UPDATE referrals SET revision = $2, referral = $3::jsonb, updated_at = now() "
            "WHERE referral_id = $1", referral.referral_id, referral.revision,
            referral.model_dump_json())

    async def apply(self, conn: asyncpg.Connection, emit: Emit, referral: ReferralCore,
                    d: Decision, *, correlation_id: str, context_structure: str | None,
                    trigger: str, previous: asyncpg.Record | None,
                    write: Write | None = None) -> bool:
        """Store a decision and emit it if it changed. ``write`` runs the statements that
        return nothing (a batch's deferred writes, or at once by default)."""
        write = write or conn.execute
        sig = list(d.signature())
        if previous is not None and orjson.loads(previous["signature"]) == sig:
            # same decision: nothing to emit; the triage entry shows the latest candidates
            await self._store_referral_only(conn, referral)
            if not d.routed:
                await conn.execute(
                    "UPDATE triage SET reason = $2, reason_detail = $3, candidates = $4::jsonb, "
                    "territory_version = $5, updated_at = now() WHERE referral_id = $1",
                    referral.referral_id, d.reason, d.reason_detail or None,
                    _json([c.model_dump(mode="json") for c in candidates_payload(d)]),
                    d.territory_version)
            return False
        if d.routed:
            payload: Payload = routed_payload(d, referral, trigger=trigger)
            decision = payload.decision.model_dump(mode="json")  # type: ignore[attr-defined]
            place_code = payload.place.code  # type: ignore[attr-defined]
        else:
            payload = unroutable_payload(d, referral, trigger=trigger)
            decision = {"reason_code": d.reason_code, "reason_detail": d.reason_detail,
                        "territory_version": d.territory_version, "trigger": trigger}
            place_code = None
        await write(
            """INSERT INTO referrals(referral_id, revision, referral, referral_date, correlation_id,
                   context_structure, status, structure, area, mediator_id, place_code, signature,
                   decision, manual)
               VALUES ($1,$2,$3::jsonb,$4,$5,$6,$7,$8,$9,$10,$11,$12::jsonb,$13::jsonb,false)
               ON CONFLICT (referral_id) DO UPDATE SET revision = EXCLUDED.revision,
                   referral = EXCLUDED.referral, referral_date = EXCLUDED.referral_date,
                   status = EXCLUDED.status, structure = EXCLUDED.structure, area = EXCLUDED.area,
                   mediator_id = EXCLUDED.mediator_id, place_code = EXCLUDED.place_code,
                   signature = EXCLUDED.signature, decision = EXCLUDED.decision, manual = false,
                   updated_at = now()""",
            referral.referral_id, referral.revision, referral.model_dump_json(),
            referral.referral_date, correlation_id, context_structure,
            "routed" if d.routed else "unroutable", d.structure, d.area, d.mediator_id, place_code,
            _json(sig), _json(decision))
        if d.routed:
            if previous is not None and previous["status"] == "unroutable":
                await conn.execute("UPDATE triage SET status = 'rerouted', updated_at = now() "
                                   "WHERE referral_id = $1 AND status = 'open'",
                                   referral.referral_id)
        else:
            cands = [c.model_dump(mode="json") for c in payload.candidates]  # type: ignore[attr-defined]
            await write(
                """INSERT INTO triage(referral_id, structure, area, reason_code, reason_detail,
                       reason, candidates, territory_version, status)
                   VALUES ($1,$2,$3,$4,$5,$6,$7::jsonb,$8,'open')
                   ON CONFLICT (referral_id) DO UPDATE SET structure = EXCLUDED.structure,
                       area = EXCLUDED.area, reason_code = EXCLUDED.reason_code,
                       reason_detail = EXCLUDED.reason_detail, reason = EXCLUDED.reason,
                       candidates = EXCLUDED.candidates,
                       territory_version = EXCLUDED.territory_version, status = 'open',
                       resolved_at = NULL, resolved_by = NULL, updated_at = now()""",
                referral.referral_id, d.structure, d.area, d.reason_code, d.reason_detail or None,
                d.reason, _json(cands), d.territory_version)
        await emit(payload, str(referral.referral_id), d.structure, correlation_id)
        return True

    async def reroute_open(self, conn: asyncpg.Connection, emit: Emit, *, since: date) -> int:
        """Re-evaluate open referrals dated on/after ``since``; returns how many changed."""
        rows = await conn.fetch(
            "SELECT r.* FROM referrals r LEFT JOIN triage t USING (referral_id) "
            "WHERE r.referral_date >= $1 AND NOT r.taken AND NOT r.closed AND NOT r.manual "
            "AND (r.status = 'routed' OR t.status = 'open') ORDER BY r.referral_id FOR UPDATE OF r",
            since)
        changed = 0
        for row in rows:
            referral = ReferralCore.model_validate(orjson.loads(row["referral"]))
            d = await self._decide(conn, referral, row["context_structure"])
            if await self.apply(conn, emit, referral, d, correlation_id=row["correlation_id"],
                                context_structure=row["context_structure"],
                                trigger="territory_change", previous=row):
                changed += 1
        return changed

    # ------------------------------------------------------------------ case feedback
    @staticmethod
    async def case_opened(conn: asyncpg.Connection, referral_id: uuid.UUID, case_id: uuid.UUID,
                          *, write: Write | None = None) -> None:
        """``write``: a batch's deferred write (openings of distinct referrals commute)."""
        await (write or conn.execute)("UPDATE referrals SET case_id = $2, updated_at = now() "
                                      "WHERE referral_id = $1", referral_id, case_id)

    @staticmethod
    async def case_taken(conn: asyncpg.Connection, case_id: uuid.UUID,
                         mediator_id: str | None = None) -> None:
        await conn.execute("UPDATE referrals SET taken = true, mediator_id = coalesce($2, mediator_id),"
                           " updated_at = now() WHERE case_id = $1", case_id, mediator_id)

    @staticmethod
    async def case_closed(conn: asyncpg.Connection, case_id: uuid.UUID, closed: bool) -> None:
        await conn.execute("UPDATE referrals SET closed = $2, updated_at = now() "
                           "WHERE case_id = $1", case_id, closed)

    # ------------------------------------------------------------------ triage
    @staticmethod
    async def triage_list(conn: asyncpg.Connection, *, structure: str | None, all_: bool,
                          status: str) -> list[dict]:
        rows = await conn.fetch(
            "SELECT t.*, r.referral, r.referral_date FROM triage t JOIN referrals r "
            "USING (referral_id) WHERE t.status = $1 AND ($2 OR t.structure = $3 OR t.structure IS NULL)"
            " ORDER BY t.created_at, t.referral_id LIMIT 500", status, all_, structure)
        return [_triage_view(r) for r in rows]

    async def resolve_by_hand(self, conn: asyncpg.Connection, emit: Emit, *,
                              referral_id: uuid.UUID, caller_structure: str | None, is_admin: bool,
                              caller: str, structure: str | None, area: str,
                              mediator_id: str | None, place_code: str | None) -> ReferralRouted:
        await self.refresh(conn)
        t = await conn.fetchrow("SELECT * FROM triage WHERE referral_id = $1 FOR UPDATE", referral_id)
        if t is None or not (is_admin or t["structure"] in (None, caller_structure)):
            raise LookupError("referral_id")
        if t["status"] != "open":
            raise ValueError("status: this triage entry is no longer open")
        target = structure or t["structure"] or caller_structure
        if target is None:
            raise ValueError("structure: required (the entry has no structure)")
        if not is_admin and target != caller_structure:
            raise PermissionError("structure: a coordinator routes into their own structure only")
        row = await conn.fetchrow("SELECT * FROM referrals WHERE referral_id = $1 FOR UPDATE",
                                  referral_id)
        referral = ReferralCore.model_validate(orjson.loads(row["referral"]))
        sv = self.history.structure_in_force(target, referral.referral_date)
        if sv is None:
            raise ValueError("structure: unknown, or not in force at the referral date")
        if area not in sv.area_ids:
            raise ValueError("area: not an area of the structure at the referral date")
        if mediator_id is not None:
            if not check_manual(sv, mediator_id):
                raise ValueError("mediator_id: not a mediator of the structure")
            assigned_by, reason = "manual", "manual"
        else:
            a = assign(sv, area, referral.referral_date,
                       await self.loads(conn, exclude=referral_id))
            if a.mediator_id is None:
                raise ValueError("mediator_id: no mediator is available; choose one")
            mediator_id, assigned_by, reason = a.mediator_id, a.assigned_by, a.reason
        place = _manual_place(sv, area, place_code, t["candidates"])
        payload = ReferralRouted(
            referral=referral, structure=sv.structure, area=area, mediator_id=mediator_id,
            place=place, decision=RoutingDecision(
                rule="manual", territory_version=sv.version, score=None, manual=True,
                assignment_reason=reason, assigned_by=assigned_by, trigger="manual"))
        sig = list(routed_signature(sv.structure, area, mediator_id, place.code))
        await conn.execute(
            "UPDATE referrals SET status = 'routed', structure = $2, area = $3, mediator_id = $4, "
            "place_code = $5, signature = $6::jsonb, decision = $7::jsonb, manual = true, "
            "updated_at = now() WHERE referral_id = $1",
            referral_id, sv.structure, area, mediator_id, place.code, _json(sig),
            payload.decision.model_dump_json())
        await conn.execute(
            "UPDATE triage SET status = 'resolved', resolved_at = now(), resolved_by = $2, "
            "updated_at = now() WHERE referral_id = $1", referral_id, caller)
        await emit(payload, str(referral_id), sv.structure, row["correlation_id"])
        return payload


def _manual_place(sv: StructureVersion, area: str, place_code: str | None,
                  candidates_json: Any) -> PlaceRef:
    if place_code:
        p = sv.place(place_code)
        if p is None or p.area != area:
            raise ValueError("place_code: not a place of that area")
        return place_ref(p)
    cands = orjson.loads(candidates_json) if isinstance(candidates_json, str) else candidates_json
    in_area = [c for c in cands or [] if c.get("structure") == sv.structure and c.get("area") == area]
    if len(in_area) == 1:
        return PlaceRef(**in_area[0]["place"])
    a = sv.area(area)
    return PlaceRef(kind="area", code=area, name=a.name if a else area)


def _triage_view(r: asyncpg.Record) -> dict:
    ref = orjson.loads(r["referral"])
    return {
        "referral_id": str(r["referral_id"]),
        "structure": r["structure"], "area": r["area"],
        "reason_code": r["reason_code"], "reason_detail": r["reason_detail"],
        "reason": r["reason"],
        "candidates": orjson.loads(r["candidates"]) if isinstance(r["candidates"], str)
        else r["candidates"],
        "territory_version": r["territory_version"], "status": r["status"],
        "created_at": r["created_at"].isoformat(),
        "referral": {
            "source_system": ref.get("source_system"), "source_reference": ref.get("source_reference"),
            "referral_date": ref.get("referral_date"), "commune": ref.get("commune"),
            "postcode": ref.get("postcode"), "urgency": ref.get("urgency"),
            "revision": ref.get("revision"),
        },
    }

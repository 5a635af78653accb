"""SQL of the cases schema (the pool's search_path is the service schema)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from mediation_schemas.cases import CaseRef

from . import rules


def jdump(v: Any) -> str:
    return orjson.dumps(v).decode()


def jload(v: Any) -> Any:
    if v is None or not isinstance(v, str | bytes):
        return v
    return orjson.loads(v)


def case_ref(row: asyncpg.Record | dict) -> CaseRef:
    return CaseRef(case_id=row["case_id"], structure=row["structure"], area=row["area"],
                   mediator_id=row["mediator_id"])


async def get_case(conn: asyncpg.Connection | asyncpg.Pool, case_id: uuid.UUID, *,
                   for_update: bool = False) -> asyncpg.Record | None:
    sql = "SELECT * FROM cases WHERE case_id = $1" + (" FOR UPDATE" if for_update else "")
    return await conn.fetchrow(sql, case_id)


async def find_open_case(conn: asyncpg.Connection, structure: str,
                         person_ref: str | None) -> asyncpg.Record | None:
    if not person_ref:
        return None
    return await conn.fetchrow(
        "SELECT * FROM cases WHERE structure = $1 AND person_ref = $2 AND status = 'open'",
        structure, person_ref)


_KNOWN = ("json_build_object('case_id', r.case_id, 'revision', r.revision, "
          "'structure', r.structure, 'area', r.area, 'mediator_id', r.mediator_id, "
          "'is_primary', r.is_primary, 'status', c.status)")


def _known(raw: str) -> rules.KnownReferral:
    k = orjson.loads(raw)
    return rules.KnownReferral(case_id=str(k["case_id"]), revision=k["revision"],
                               structure=k["structure"], area=k["area"],
                               mediator_id=k["mediator_id"], is_primary=k["is_primary"],
                               case_open=k["status"] == "open")


async def lookup_for_opening(conn: asyncpg.Connection, referral_id: uuid.UUID, structure: str,
                             person_ref: str | None
                             ) -> tuple[rules.KnownReferral | None, str | None]:
    """In one round trip: the case this referral is already in (if any), and the person's
    open case in the structure."""
    row = await conn.fetchrow(
        f"SELECT (SELECT {_KNOWN} "
        "  FROM case_referrals r JOIN cases c USING (case_id) WHERE r.referral_id = $1) AS known, "
        "(SELECT case_id FROM cases WHERE structure = $2 AND person_ref = $3 "
        "  AND status = 'open') AS open_case", referral_id, structure, person_ref)
    known = _known(row["known"]) if row["known"] is not None else None
    return known, str(row["open_case"]) if row["open_case"] is not None else None


async def known_referrals(conn: asyncpg.Connection, referral_ids: list[uuid.UUID]
                          ) -> dict[uuid.UUID, rules.KnownReferral]:
    """The case each of these referrals is already in, for those that are in one."""
    rows = await conn.fetch(
        f"SELECT r.referral_id, {_KNOWN} AS known FROM case_referrals r JOIN cases c "
        "USING (case_id) WHERE r.referral_id = ANY($1::uuid[])", referral_ids)
    return {r["referral_id"]: _known(r["known"]) for r in rows}


async def open_cases_of(conn: asyncpg.Connection, people: list[tuple[str, str]]
                        ) -> dict[tuple[str, str], str]:
    """The open case of each (structure, person_ref) that has one."""
    if not people:
        return {}
    rows = await conn.fetch(
        "SELECT c.structure, c.person_ref, c.case_id FROM cases c "
        "JOIN unnest($1::text[], $2::text[]) AS k(structure, person_ref) "
        "  ON c.structure = k.structure AND c.person_ref = k.person_ref "
        "WHERE c.status = 'open'", [s for s, _ in people], [r for _, r in people])
    return {(r["structure"], r["person_ref"]): str(r["case_id"]) for r in rows}


async def referrals_of(conn: asyncpg.Connection, case_id: uuid.UUID) -> list[asyncpg.Record]:
    return await conn.fetch(
        "SELECT * FROM case_referrals WHERE case_id = $1 ORDER BY attached_at, referral_id",
        case_id)


async def add_timeline(conn: asyncpg.Connection, *, case_id: uuid.UUID, at: datetime,
                       recorded_at: datetime, kind: str, actor: str, axis: int | None = None,
                       details: dict | None = None, sealed_note: dict | None = None,
                       entry_id: uuid.UUID | None = None) -> uuid.UUID:
    entry_id = entry_id or uuid.uuid4()
    await conn.execute(
        "INSERT INTO case_timeline(entry_id, case_id, at, recorded_at, kind, axis, actor, "
        "details, sealed_note) VALUES ($1,$2,$3,$4,$5,$6,$7,$8::jsonb,$9::jsonb)",
        entry_id, case_id, at, recorded_at, kind, axis, actor,
        jdump({k: v for k, v in (details or {}).items() if v is not None}),
        jdump(sealed_note) if sealed_note is not None else None)
    return entry_id


async def bump(conn: asyncpg.Connection, case_id: uuid.UUID, *, now: datetime,
               activity: bool) -> asyncpg.Record:
    """New version of the case, returned as it now is; ``activity`` marks mediator work
    (clears the inactivity flag)."""
    if activity:
        return await conn.fetchrow(
            "UPDATE cases SET version = version + 1, last_activity_at = GREATEST("
            "last_activity_at, $2), inactive_flagged_at = NULL WHERE case_id = $1 "
            "RETURNING *", case_id, now)
    return await conn.fetchrow(
        "UPDATE cases SET version = version + 1 WHERE case_id = $1 RETURNING *", case_id)


async def record_access(conn: asyncpg.Connection | asyncpg.Pool, *, case_id: uuid.UUID,
                        actor: str, role: str, purpose: str, fields: list[str],
                        at: datetime) -> None:
    await conn.execute(
        "INSERT INTO personal_data_access(case_id, actor, role, purpose, fields, at) "
        "VALUES ($1,$2,$3,$4,$5,$6)", case_id, actor, role, purpose, fields, at)


async def add_notice(conn: asyncpg.Connection, case: asyncpg.Record, *, kind: str,
                     notify_role: str, notify_id: str | None, due_at: datetime | None,
                     now: datetime) -> uuid.UUID:
    notice_id = uuid.uuid4()
    await conn.execute(
        "INSERT INTO notices(notice_id, case_id, kind, notify_role, notify_id, structure, area, "
        "due_at, created_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        notice_id, case["case_id"], kind, notify_role, notify_id, case["structure"],
        case["area"], due_at, now)
    return notice_id


async def resolve_notices(conn: asyncpg.Connection, case_id: uuid.UUID, kinds: list[str], *,
                          by: str, now: datetime) -> None:
    await conn.execute(
        "UPDATE notices SET resolved_at = $3, resolved_by = $4 WHERE case_id = $1 "
        "AND kind = ANY($2::text[]) AND resolved_at IS NULL", case_id, kinds, now, by)

"""Erasure (right to erasure, retention limits) by crypto-shredding.

The person's data keys are destroyed in the key vault: every sealed copy of their data, in
Kafka's log, in intake's table or in any other service, becomes unreadable. Intake drops
its own sealed copies too, and records the erasure (who, why, which keys; never the data).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from mediation_core import sealing

REASONS = ("right_to_erasure", "retention_expired", "consent_withdrawn")


class NotFound(LookupError):
    pass


@dataclass(frozen=True)
class Erasure:
    person_ref: str
    key_ids: list[str]
    destroyed: int


async def erase(pool: asyncpg.Pool, vault: sealing.KeyVault, *, now: datetime, actor: str,
                reason: str, referral_id: uuid.UUID | None = None,
                person_ref: str | None = None) -> Erasure:
    """Destroy every data key of the person named by a referral id or a person_ref."""
    if reason not in REASONS:
        raise ValueError(f"reason must be one of {', '.join(REASONS)}")
    if (referral_id is None) == (person_ref is None):
        raise ValueError("give exactly one of referral_id or person_ref")
    if referral_id is not None:
        person_ref = await pool.fetchval(
            "SELECT person_ref FROM referrals WHERE referral_id = $1", referral_id)
        if person_ref is None:
            raise NotFound("no accepted referral with this id")
    assert person_ref is not None
    key_ids = {r["key_id"] for r in await pool.fetch(
        "SELECT DISTINCT key_id FROM referrals WHERE person_ref = $1 AND key_id IS NOT NULL",
        person_ref)}
    key_ids |= {r["key_id"] for r in await pool.fetch(
        f"SELECT key_id FROM {vault.schema}.person_keys WHERE person_ref = $1 "
        "AND wrapped_key IS NOT NULL", person_ref)}
    if not key_ids:
        raise NotFound("no data key for this person")
    destroyed = 0
    for k in sorted(key_ids):
        destroyed += await vault.destroy(k, actor=actor, reason=reason)
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE referrals SET sealed = NULL, content_hash = NULL, erased_at = $2 "
            "WHERE person_ref = $1", person_ref, now)
        await conn.execute(
            "INSERT INTO erasures(person_ref, referral_id, key_ids, actor, reason, erased_at) "
            "VALUES ($1,$2,$3,$4,$5,$6)", person_ref, referral_id, sorted(key_ids), actor,
            reason, now)
    return Erasure(person_ref, sorted(key_ids), destroyed)

"""Closed-loop feedback to referrers (ReferralStatusChanged), per the person's consent.

The rule is in :mod:`rules` (``feedback_allowed``): 'received' always; 'in_progress' and
'closed' (with a coarse outcome) only when the referral's latest revision says the person
agrees to share with the referrer. Key: the source system.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import asyncpg

from mediation_schemas.cases import ReferralStatusChanged
from mediation_schemas.vocab import ClosureReason

from . import rules, store
from .context import Deps, Emit


async def send(deps: Deps, conn: asyncpg.Connection, emit: Emit, ref: asyncpg.Record | dict, *,
               status: str, now: datetime, structure: str,
               reason: ClosureReason | None = None, record: bool = True) -> bool:
    if not rules.feedback_allowed(status, ref["consent_share"]):
        return False
    if ref["last_feedback"] == status:  # the referrer knows already
        return False
    outcome = rules.coarse_outcome(reason) if (status == "closed" and reason) else None
    await emit(ReferralStatusChanged(
        referral_id=ref["referral_id"], source_system=ref["source_system"],
        source_reference=ref["source_reference"], status=status, outcome=outcome,
        changed_at=now),
        topic=deps.topics.referrals_answers, key=ref["source_system"], structure=structure,
        correlation_id=ref["correlation_id"])
    if record:
        await conn.execute("UPDATE case_referrals SET last_feedback = $2 "
                           "WHERE referral_id = $1", ref["referral_id"], status)
    return True


async def send_all(deps: Deps, conn: asyncpg.Connection, emit: Emit, case_id: uuid.UUID, *,
                   status: str, now: datetime, structure: str,
                   reason: ClosureReason | None = None) -> int:
    n = 0
    for ref in await store.referrals_of(conn, case_id):
        n += await send(deps, conn, emit, ref, status=status, now=now, structure=structure,
                        reason=reason)
    return n

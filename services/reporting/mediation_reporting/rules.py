"""Plain rules of the reporting read models (no broker, no database)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

# progress of a rights procedure: a later state wins over an earlier one at equal time
_STATUS_RANK = {"started": 1, "filed": 2, "opened": 3, "refused": 3}


def status_rank(status: str | None) -> int:
    return _STATUS_RANK.get(status or "", 0)


def referral_key(referral_id: uuid.UUID | None, source_system: str | None,
                 source_reference: str | None, correlation_id: str | None,
                 event_id: uuid.UUID) -> str:
    """The row a referral is counted under: its id; else the sender's own reference; else
    the correlation id (intake sends one rejection to two topics as two events of one
    correlation); else the event itself. So one form is one referral however often seen."""
    if referral_id is not None:
        return str(referral_id)
    if source_system and source_reference:
        return f"src:{source_system}:{source_reference}"
    if correlation_id:
        return f"corr:{correlation_id}"
    return f"evt:{event_id}"


def motive_codes(items: Iterable) -> list[str]:
    """Motive codes of a referral or case, once each, in the sender's order."""
    out: list[str] = []
    for m in items or []:
        code = getattr(m, "code", m)
        code = getattr(code, "value", code)
        if code not in out:
            out.append(str(code))
    return out

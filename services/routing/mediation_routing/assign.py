"""Which mediator takes a referral of an area (pure).

Rule, in order:

1. a mediator of the area who is present on the referral date (no leave window covers
   it) and under capacity (open referrals < capacity; no capacity = unlimited). Several:
   the least loaded, then the smallest id (deterministic). -> ``area_mediator``.
2. otherwise another mediator of the same structure, present and under capacity, least
   loaded first -> reason ``mediator_absent`` (every mediator of the area is on leave, or
   the area has none) or ``over_capacity`` (someone is present but full), with
   ``assigned_by = structure_fallback``.
3. otherwise nobody: the referral goes to the coordinator's triage queue
   (``ReferralUnroutable`` with reason code ``no_mediator``) with the same reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date

from .territory import Mediator, StructureVersion


@dataclass(frozen=True)
class Assignment:
    mediator_id: str | None
    reason: str              # area_mediator | mediator_absent | over_capacity
    assigned_by: str         # area | structure_fallback | none


def _available(m: Mediator, on: date, loads: Mapping[str, int]) -> bool:
    if m.absent_on(on):
        return False
    return m.capacity is None or loads.get(m.id, 0) < m.capacity


def _pick(ms: list[Mediator], loads: Mapping[str, int]) -> Mediator:
    return min(ms, key=lambda m: (loads.get(m.id, 0), m.id))


def assign(sv: StructureVersion, area: str, on: date, loads: Mapping[str, int]) -> Assignment:
    own = sv.mediators_of(area)
    ok = [m for m in own if _available(m, on, loads)]
    if ok:
        return Assignment(_pick(ok, loads).id, "area_mediator", "area")
    present = [m for m in own if not m.absent_on(on)]
    reason = "over_capacity" if present else "mediator_absent"
    others = [m for m in sv.mediators if m.area != area and _available(m, on, loads)]
    if others:
        return Assignment(_pick(others, loads).id, reason, "structure_fallback")
    return Assignment(None, reason, "none")


def check_manual(sv: StructureVersion, mediator_id: str) -> bool:
    """A coordinator may pick any mediator of the structure by hand."""
    return any(m.id == mediator_id for m in sv.mediators)

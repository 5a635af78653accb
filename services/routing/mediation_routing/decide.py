"""One routing decision: resolve the place, then assign a mediator (pure).

The service's handlers, the triage re-evaluation, the territory-change re-routing and the
``mediation route`` command all call :func:`decide`: one code path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from mediation_schemas.referrals import (
    Candidate,
    PlaceRef,
    ReferralCore,
    ReferralRouted,
    ReferralUnroutable,
    RoutingDecision,
)

from .assign import Assignment, assign
from .resolve import ROUTED, Resolution, describe, gazetteer_for, resolve
from .territory import Place, StructureVersion, TerritoryHistory

ASSIGN_REASON_FR = {
    "mediator_absent": "la médiatrice ou le médiateur du secteur est absent(e) à la date de la fiche",
    "over_capacity": "la médiatrice ou le médiateur du secteur a atteint sa capacité",
}


@dataclass
class Decision:
    routed: bool
    resolution: Resolution
    structure: str | None = None
    area: str | None = None
    mediator_id: str | None = None
    assignment: Assignment | None = None
    territory_version: int | None = None
    reason_code: str = ""
    reason_detail: str = ""
    reason: str = ""
    candidates: list[tuple[Place, float]] = field(default_factory=list)

    def signature(self) -> tuple:
        """What must change for a decision to be re-emitted (corrections, territory changes)."""
        if self.routed:
            ref = self.resolution.place_ref() or {}
            return routed_signature(self.structure, self.area, self.mediator_id, ref.get("code"))
        return ("unroutable", self.reason_code, self.structure, self.area)


def routed_signature(structure: str | None, area: str | None, mediator_id: str | None,
                     place_code: str | None) -> tuple:
    """The signature of a routed decision, automatic or by hand (compared across both)."""
    return ("routed", structure, area, mediator_id, place_code)


def place_ref(p: Place | dict[str, str]) -> PlaceRef:
    if isinstance(p, dict):
        return PlaceRef(**p)
    return PlaceRef(kind=p.kind, code=p.code, name=p.name, department=p.department)


@dataclass
class Plan:
    """The place resolved against the versions in force; what assignment needs next."""

    resolution: Resolution
    versions: tuple[StructureVersion, ...]
    on: date
    context_structure: str | None
    structures: list[str]

    @property
    def structure_version(self) -> StructureVersion | None:
        if self.resolution.status != ROUTED:
            return None
        return next(v for v in self.versions if v.structure == self.resolution.structure)


def plan(text: str | None, postcode: str | None, on: date, history: TerritoryHistory, *,
         context_structure: str | None = None) -> Plan:
    versions = history.in_force(on)
    res = resolve(text, postcode, gazetteer_for(versions), context_structure=context_structure)
    return Plan(res, versions, on, context_structure, history.structures())


def finish(p: Plan, loads: Mapping[str, int]) -> Decision:
    res = p.resolution
    sv = p.structure_version
    if sv is not None:
        assert res.area is not None
        a = assign(sv, res.area, p.on, loads)
        if a.mediator_id is None:
            return Decision(
                False, res, structure=sv.structure, area=res.area, assignment=a,
                territory_version=sv.version, reason_code="no_mediator", reason_detail=a.reason,
                reason=f"Lieu reconnu mais aucun médiateur disponible : {ASSIGN_REASON_FR[a.reason]} "
                       "et personne d'autre dans la structure.",
                candidates=[(pl, 100.0) for pl in res.places])
        return Decision(True, res, structure=sv.structure, area=res.area,
                        mediator_id=a.mediator_id, assignment=a, territory_version=sv.version)
    inside = {pl.structure for pl, _ in res.candidates if pl.structure}
    ctx = p.context_structure
    structure = ctx if ctx in p.structures else (next(iter(inside)) if len(inside) == 1 else None)
    version = next((v.version for v in p.versions if v.structure == structure), None)
    return Decision(False, res, structure=structure, territory_version=version,
                    reason_code=res.reason_code, reason_detail=res.detail,
                    reason=describe(res), candidates=res.candidates)


def decide(text: str | None, postcode: str | None, on: date, history: TerritoryHistory,
           loads: Mapping[str, int], *, context_structure: str | None = None) -> Decision:
    """Resolve the place, then assign a mediator: the one code path of every caller."""
    return finish(plan(text, postcode, on, history, context_structure=context_structure), loads)


def routed_payload(d: Decision, referral: ReferralCore, *, trigger: str) -> ReferralRouted:
    assert d.routed and d.assignment and d.structure and d.area and d.mediator_id
    res = d.resolution
    ref = res.place_ref()
    assert ref is not None
    if len(res.places) == 1:
        place = place_ref(res.places[0])
    else:
        place = PlaceRef(**ref, department=res.places[0].department)
    return ReferralRouted(
        referral=referral, structure=d.structure, area=d.area, mediator_id=d.mediator_id,
        place=place,
        decision=RoutingDecision(
            rule=res.rule, territory_version=d.territory_version or 0, score=res.score,
            manual=False, assignment_reason=d.assignment.reason,
            assigned_by=d.assignment.assigned_by, trigger=trigger,
            homonyms_elsewhere=[p.code for p in res.homonyms]))


def candidates_payload(d: Decision) -> list[Candidate]:
    return [Candidate(structure=p.structure, area=p.area, place=place_ref(p),
                      score=round(s, 1) if s else None) for p, s in d.candidates]


def unroutable_payload(d: Decision, referral: ReferralCore, *, trigger: str) -> ReferralUnroutable:
    assert not d.routed
    return ReferralUnroutable(
        referral=referral, reason_code=d.reason_code, reason=d.reason,
        candidates=candidates_payload(d), territory_version=d.territory_version,
        structure=d.structure, area=d.area, reason_detail=d.reason_detail or None,
        trigger=trigger)


def cli_view(d: Decision) -> dict[str, Any]:
    """The ``mediation route --json`` object."""
    res = d.resolution
    status = "routed" if res.status == ROUTED else res.status
    reason = d.reason if not d.routed else (
        "Lieu reconnu" + (f" ({res.rule})" if res.rule else "") +
        ("" if d.assignment is None or d.assignment.reason == "area_mediator" else
         f" ; repli sur un autre médiateur de la structure : {ASSIGN_REASON_FR[d.assignment.reason]}") + ".")
    ref = res.place_ref()
    return {
        "status": status,
        "structure": d.structure,
        "area": d.area,
        "mediator": d.mediator_id,
        "place": ref["name"] if ref else None,
        "place_code": ref["code"] if ref else None,
        "candidates": [{"name": p.name, "code": p.code, "department": p.department,
                        "structure": p.structure, "area": p.area,
                        "score": round(s, 1) if s else None} for p, s in d.candidates],
        "reason": reason,
        "reason_code": d.reason_code or None,
        "reason_detail": d.reason_detail or (res.detail or None),
        "rule": res.rule,
        "score": res.score,
        "territory_version": d.territory_version,
        "assignment_reason": d.assignment.reason if d.assignment else None,
        "homonyms_elsewhere": [p.code for p in res.homonyms],
    }

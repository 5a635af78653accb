"""Events of the referral's journey after intake: accepted, rejected, routed, unroutable."""

from __future__ import annotations

import uuid
from datetime import date, datetime

from pydantic import Field

from .common import MotiveItem, Problem, SealedBlock, Strict
from .envelope import Payload, register
from .vocab import MeetingMode, Urgency


class ReferralCore(Strict):
    """What every service after intake may know about a referral: no identity in clear."""

    referral_id: uuid.UUID
    revision: int = Field(ge=1, description="1 for the first version, +1 per correction.")
    source_system: str = Field(description="Id of the system that sent the form.")
    source_reference: str = Field(description="The sender's own reference for the form.")
    received_at: datetime
    referral_date: date = Field(description="Date of the form (routes by territory at that date).")
    person_ref: str = Field(
        description="Blind index of the person's normalised identity (keyed HMAC): the same "
        "person referred twice has the same value; it reveals nothing by itself."
    )
    sealed: SealedBlock = Field(description="Identity, contact, address and free texts, sealed.")
    commune: str | None = Field(default=None, description="Commune as written by the sender.")
    postcode: str | None = Field(default=None, description="Postcode as written, normalised digits.")
    motives: list[MotiveItem] = Field(min_length=1)
    urgency: Urgency = Urgency.normal
    meeting_modes: list[MeetingMode] = Field(default_factory=list)
    interpreter_needed: bool = False
    language: str | None = Field(default=None, description="ISO 639 code of the language spoken.")
    consent_share_with_referrer: bool = Field(
        description="The person agrees that the referrer is told what became of the referral."
    )
    referrer_profession: str | None = Field(default=None, description="e.g. gp, nurse, pharmacist.")
    referrer_structure_kind: str | None = Field(default=None, description="e.g. msp, hospital, cpam.")


@register
class ReferralAccepted(Payload):
    """A referral form that passed validation, sealed and deduplicated (or its correction)."""

    event_type = "ReferralAccepted"
    version = 1

    referral: ReferralCore
    is_correction: bool = False


@register
class ReferralRejected(Payload):
    """A referral form refused by intake, with every problem found."""

    event_type = "ReferralRejected"
    version = 1

    referral_id: uuid.UUID | None = None
    source_system: str | None = None
    source_reference: str | None = None
    problems: list[Problem] = Field(min_length=1)


class PlaceRef(Strict):
    kind: str = Field(description="commune or neighbourhood")
    code: str = Field(description="INSEE code for a commune, neighbourhood id otherwise.")
    name: str = Field(description="Official name.")
    department: str | None = Field(default=None, description="Department code, e.g. 30.")


class RoutingDecision(Strict):
    rule: str = Field(description="Which rule decided, e.g. exact_name, alias, fuzzy, manual.")
    territory_version: int
    score: float | None = None
    manual: bool = False
    assignment_reason: str = Field(
        default="area_mediator",
        description="area_mediator, or the fallback taken (mediator_absent, over_capacity...).",
    )
    assigned_by: str | None = Field(
        default=None, description="area, structure_fallback (another mediator of the "
        "structure because of assignment_reason), or manual.")
    trigger: str | None = Field(
        default=None, description="What made this decision: accepted, correction, "
        "territory_change, manual.")
    homonyms_elsewhere: list[str] = Field(
        default_factory=list, description="INSEE codes of same-name communes outside the "
        "territory that were set aside (the name was routed without a contrary hint).")


@register
class ReferralRouted(Payload):
    """The structure, area and mediator that take the referral."""

    event_type = "ReferralRouted"
    version = 1

    referral: ReferralCore
    structure: str
    area: str
    mediator_id: str
    place: PlaceRef
    decision: RoutingDecision


class Candidate(Strict):
    structure: str | None = None
    area: str | None = None
    place: PlaceRef
    score: float | None = None


@register
class ReferralUnroutable(Payload):
    """A referral routing cannot decide safely: it goes to the coordinator triage queue."""

    event_type = "ReferralUnroutable"
    version = 1

    referral: ReferralCore
    reason_code: str = Field(description="outside_territory, ambiguous, unknown_place, no_mediator")
    reason: str = Field(description="French explanation for the coordinator.")
    candidates: list[Candidate] = Field(default_factory=list)
    territory_version: int | None = None
    structure: str | None = Field(default=None, description="Triage queue's structure, if known.")
    area: str | None = Field(default=None, description="The area, when the place was found "
                             "but no mediator can take it (no_mediator).")
    reason_detail: str | None = Field(
        default=None, description="Finer machine code: postcode_mismatch, department_mismatch, "
        "homonyms, several_areas, postcode_shared, city_needs_neighbourhood, incomplete_name, "
        "uncertain_spelling, mediator_absent, over_capacity...")
    trigger: str | None = Field(default=None, description="accepted, correction, territory_change.")

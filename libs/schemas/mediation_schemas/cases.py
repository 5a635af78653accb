"""Events of a case (*dossier d'accompagnement*): no identity in clear, ever."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from .common import MotiveItem, Strict
from .envelope import Payload, register
from .vocab import CaseOrigin, ClosureReason, DysfunctionCategory, Urgency


class CaseRef(Strict):
    case_id: uuid.UUID
    structure: str
    area: str
    mediator_id: str


@register
class CaseOpened(Payload):
    event_type = "CaseOpened"
    version = 1

    case: CaseRef
    origin: CaseOrigin
    referral_id: uuid.UUID | None = None
    referral_received_at: datetime | None = None
    source_system: str | None = None
    person_ref: str | None = Field(default=None, description="Blind index, when known.")
    motives: list[MotiveItem] = Field(default_factory=list)
    urgency: Urgency = Urgency.normal
    opened_at: datetime
    attached_to_existing: bool = Field(
        default=False,
        description="True when the referral joined the person's open case instead of a new one.",
    )


@register
class FirstContactMade(Payload):
    event_type = "FirstContactMade"
    version = 1

    case: CaseRef
    channel: str = Field(description="phone, permanence, home_visit, partner_place")
    contacted_at: datetime
    attempts: int = Field(ge=1, description="Attempts including the successful one.")


@register
class ActionRecorded(Payload):
    """One thing done with or for the person, typed by HAS axis."""

    event_type = "ActionRecorded"
    version = 1

    case: CaseRef
    action_id: uuid.UUID
    axis: int = Field(ge=1, le=4, description="HAS axis 1..4")
    kind: str = Field(
        description="contact_attempt, interview, information, orientation, rights_procedure, "
        "appointment, accompaniment, interpreting, autonomy_assessment, other"
    )
    occurred_at: datetime
    outcome: str | None = None
    right: str | None = Field(default=None, description="For rights_procedure: puma, css, ame...")
    body: str | None = Field(default=None, description="Organisation concerned, e.g. cpam, caf.")
    status: str | None = Field(default=None, description="For rights_procedure: filed, opened, refused.")
    lasting_care: bool | None = Field(default=None, description="Orientation led to lasting care.")
    autonomy_phase: str | None = Field(default=None, description="T0 or T1 for autonomy_assessment")
    autonomy_score: int | None = Field(default=None, ge=0, le=10)
    channel: str | None = Field(default=None, description="For contact_attempt and interview: "
                                "phone, permanence, home_visit, partner_place.")
    target: str | None = Field(default=None, description="Kind of professional or structure "
                               "for orientation, appointment, accompaniment (gp, hospital...).")
    language: str | None = Field(default=None, description="For interpreting: ISO 639 code.")


@register
class CaseReassigned(Payload):
    event_type = "CaseReassigned"
    version = 1

    case: CaseRef
    from_mediator_id: str
    reason: str | None = None
    reassigned_at: datetime


@register
class CaseClosed(Payload):
    event_type = "CaseClosed"
    version = 1

    case: CaseRef
    reason: ClosureReason
    closed_at: datetime
    reason_kind: str | None = Field(default=None, description="has (HAS framework reason) or "
                                    "practical (moved away, unreachable, deceased).")


@register
class CaseReopened(Payload):
    event_type = "CaseReopened"
    version = 1

    case: CaseRef
    reopened_at: datetime


@register
class DysfunctionReported(Payload):
    """A dysfunction of the care system or a health risk, without the person's identity."""

    event_type = "DysfunctionReported"
    version = 1

    dysfunction_id: uuid.UUID
    case_id: uuid.UUID | None = None
    structure: str
    area: str | None = None
    category: DysfunctionCategory
    urgency: Urgency = Urgency.normal
    concerned: str = Field(description="Structure or professional concerned (not the person).")
    commune: str | None = Field(default=None, description="Official place name, no address.")
    description: str = Field(description="Facts, written without the person's identity.")
    observed_on: datetime
    reported_at: datetime
    person_consents_to_be_named: bool = False
    sealed_identity: dict | None = Field(
        default=None,
        description="Sealed identity block, present only with consent; alerts opens it only "
        "when a rule requires naming the person.",
    )


@register
class ReferralStatusChanged(Payload):
    """Closed-loop feedback to the referrer: coarse status only, per the person's consent."""

    event_type = "ReferralStatusChanged"
    version = 1

    referral_id: uuid.UUID
    source_system: str
    source_reference: str
    status: str = Field(description="received, in_progress, closed")
    outcome: str | None = Field(default=None, description="Coarse outcome when closed.")
    changed_at: datetime


# --------------------------------------------------------------------------- added by cases
# Additive events of the cases service (version 1). No identity in clear in any of them.


@register
class CaseReferralUpdated(Payload):
    """A referral already linked to a case came again with a new revision or a new routing
    (a correction): the case keeps its id; motives and urgency follow the latest revision."""

    event_type = "CaseReferralUpdated"
    version = 1

    case: CaseRef
    referral_id: uuid.UUID
    revision: int = Field(ge=1)
    motives: list[MotiveItem] = Field(default_factory=list)
    urgency: Urgency = Urgency.normal
    rerouted: bool = Field(default=False, description="The routing (area or mediator) changed.")
    updated_at: datetime


@register
class FirstContactOverdue(Payload):
    """No first contact within the deadline (working days, Europe/Paris, French public
    holidays): level ``reminder`` goes to the mediator, ``escalation`` to the coordinator."""

    event_type = "FirstContactOverdue"
    version = 1

    case: CaseRef
    level: str = Field(description="reminder (to the mediator) or escalation (to the coordinator)")
    notify_role: str = Field(description="mediator or coordinator")
    notify_id: str | None = Field(default=None, description="Mediator id for a reminder; None "
                                  "means the structure's coordinators.")
    opened_at: datetime
    due_at: datetime = Field(description="End of the deadline, UTC.")
    working_days: int = Field(ge=0, description="The deadline, in working days.")
    detected_at: datetime


@register
class CaseInactivityFlagged(Payload):
    """An open case with no recorded activity for the configured time."""

    event_type = "CaseInactivityFlagged"
    version = 1

    case: CaseRef
    last_activity_at: datetime
    inactive_days: int = Field(ge=0)
    flagged_at: datetime


class Attendance(Strict):
    """Counts only, never identities."""

    participants: int = Field(ge=0, description="People from the public who attended.")
    professionals: int = Field(default=0, ge=0, description="Professionals who attended.")
    new_people: int | None = Field(default=None, ge=0,
                                   description="Participants met for the first time.")


@register
class CollectiveActionRecorded(Payload):
    """Collective work (HAS axis 3, and partner work): workshops, prevention and screening
    actions, awareness sessions for professionals, partner meetings, tools for professionals.
    Counts and themes only: no identities. Key: collective action id."""

    event_type = "CollectiveActionRecorded"
    version = 1

    collective_action_id: uuid.UUID
    structure: str
    area: str | None = None
    kind: str = Field(description="workshop, prevention_action, screening_action, "
                      "vaccination_action, community_health_group, awareness_session, "
                      "partner_meeting, professional_tool")
    axis: int = Field(ge=1, le=4, description="HAS axis (3 for collective health promotion).")
    theme: str
    held_on: datetime
    place: str | None = Field(default=None, description="Place name (a venue, not an address "
                              "of a person).")
    partners: list[str] = Field(default_factory=list, description="Partner structures.")
    attendance: Attendance
    recorded_by: str = Field(description="Mediator or coordinator id.")
    recorded_at: datetime

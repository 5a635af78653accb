"""Request and response models of the mediator API (with OpenAPI examples).

Free text about the person (interview notes) is sealed under the person's key as soon as it
arrives; labels and codes elsewhere are vocabularies, so nothing personal ends up in events.
"""

from __future__ import annotations

import uuid
from datetime import date, datetime
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from mediation_schemas.cases import Attendance
from mediation_schemas.common import MotiveItem
from mediation_schemas.vocab import (
    ClosureReason,
    DysfunctionCategory,
    HealthRight,
    Urgency,
)

Channel = Literal["phone", "permanence", "home_visit", "partner_place"]
Target = Literal["gp", "specialist", "dentist", "hospital", "pass", "pmi", "mental_health",
                 "addiction", "social_service", "cpam", "caf", "pharmacy", "screening_centre",
                 "vaccination_centre", "association", "other"]
VERSION_DOC = ("Case version you read (alternatively the If-Match header). A stale version "
               "is refused with 409.")


class ApiModel(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorBody(BaseModel):
    """Every 4xx of this API: a machine code, which field, why, never a submitted value."""

    error: str = Field(description="Machine-readable code, e.g. stale_version, not_found.")
    detail: str = Field(description="What is wrong and what is accepted.")
    field: str | None = Field(default=None, description="The field concerned, if one is.")
    current_version: int | None = Field(default=None, description="For stale_version.")
    case_id: uuid.UUID | None = Field(default=None, description="For person_has_open_case, "
                                      "when the caller may see that case.")

    model_config = ConfigDict(json_schema_extra={"examples": [{
        "error": "stale_version", "field": "version", "current_version": 4,
        "detail": "the case was changed since you read it (you sent version 3, current is 4); "
                  "reload the case and apply your change again"}]})


class Problem(BaseModel):
    field: str
    code: str
    message: str


class ValidationErrorBody(BaseModel):
    error: Literal["validation_failed"] = "validation_failed"
    detail: str
    problems: list[Problem]


# ----------------------------------------------------------------------------- opening

class PersonIdentity(ApiModel):
    family_name: str = Field(min_length=1, max_length=100, pattern=r"\S")
    given_name: str = Field(min_length=1, max_length=100, pattern=r"\S")
    birth_date: date = Field(description="Between 1900-01-01 and today.")

    @field_validator("birth_date")
    @classmethod
    def _plausible(cls, v: date) -> date:
        if not date(1900, 1, 1) <= v <= date.today():
            raise ValueError("must be between 1900-01-01 and today")
        return v
    phone: str | None = Field(default=None, max_length=30)
    email: str | None = Field(default=None, max_length=200)
    address: str | None = Field(default=None, max_length=300)


class OpenCaseRequest(ApiModel):
    """A case opened without a referral: outreach (*aller vers*), a person met at a
    permanence, or self-referral. The person was met: that is the first contact."""

    origin: Literal["outreach", "permanence", "self_referral"]
    identity: PersonIdentity = Field(description="Sealed at once under the person's own key.")
    motives: list[MotiveItem] = Field(min_length=1)
    urgency: Urgency = Urgency.normal
    channel: Channel = Field(description="Where or how the person was met.")
    met_at: AwareDatetime | None = Field(default=None, description="Default: now.")
    area: str | None = Field(default=None, description="Coordinators only; a mediator's area "
                             "comes from the token.")
    mediator_id: str | None = Field(default=None, description="Coordinators only.")
    commune: str | None = Field(default=None, max_length=100, description="Official name.")
    interpreter_needed: bool = False
    language: str | None = Field(default=None, pattern=r"^[a-z]{2,3}$")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "origin": "permanence", "channel": "permanence",
        "identity": {"family_name": "Martin", "given_name": "Aline",
                     "birth_date": "1961-04-02", "phone": "0600000000"},
        "motives": [{"code": "access_to_rights", "right": "css"}],
        "urgency": "normal", "commune": "Lasalle"}]})


# ----------------------------------------------------------------------------- work

class Versioned(ApiModel):
    version: int | None = Field(default=None, ge=1, description=VERSION_DOC)


class ContactRequest(Versioned):
    """One attempt to reach the person; the first one that reaches them is the first contact."""

    channel: Channel
    outcome: Literal["reached", "no_answer", "message_left", "wrong_contact", "declined"]
    at: AwareDatetime | None = Field(default=None, description="Default: now.")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"version": 1, "channel": "phone", "outcome": "no_answer"},
        {"version": 2, "channel": "home_visit", "outcome": "reached",
         "at": "2026-11-24T10:00:00+01:00"}]})


class InterviewRequest(Versioned):
    channel: Channel
    at: AwareDatetime | None = None
    duration_minutes: int | None = Field(default=None, ge=1, le=600)
    interpreter_used: bool = False
    note: str | None = Field(default=None, max_length=4000,
                             description="Sealed under the person's key; read back through "
                             "the audited note endpoint.")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "version": 3, "channel": "permanence", "duration_minutes": 45,
        "note": "Situation administrative à reprendre avec la CPAM."}]})


class ActionBase(Versioned):
    at: AwareDatetime | None = Field(default=None, description="When it happened; default now.")
    note: str | None = Field(default=None, max_length=4000, description="Sealed.")


class InformationAction(ActionBase):
    kind: Literal["information"]
    topic: Literal["rights", "care_system", "prevention", "screening", "vaccination",
                   "mental_health", "other"]
    outcome: Literal["given", "understood", "to_repeat"] | None = None


class OrientationAction(ActionBase):
    kind: Literal["orientation"]
    target: Target
    outcome: Literal["proposed", "accepted", "declined", "completed"] | None = None
    lasting_care: bool | None = Field(default=None, description="Led to lasting care.")


class RightsProcedureAction(ActionBase):
    kind: Literal["rights_procedure"]
    right: HealthRight
    body: Literal["cpam", "msa", "caf", "mdph", "prefecture", "ccas",
                  "complementary_insurer", "other"]
    status: Literal["started", "filed", "opened", "refused"]


class AppointmentAction(ActionBase):
    kind: Literal["appointment"]
    target: Target
    outcome: Literal["booked", "attended", "missed", "cancelled"]
    appointment_on: date | None = None


class AccompanimentAction(ActionBase):
    kind: Literal["accompaniment"]
    target: Target
    outcome: Literal["done", "cancelled", "person_absent"]


class InterpretingAction(ActionBase):
    kind: Literal["interpreting"]
    language: str = Field(pattern=r"^[a-z]{2,3}$", description="ISO 639 code.")
    mode: Literal["professional_on_site", "professional_phone", "mediator", "other"]
    outcome: Literal["done", "unavailable"] | None = None


class OtherAction(ActionBase):
    kind: Literal["other"]
    label: Literal["administrative_help", "digital_help", "transport", "material_help",
                   "coordination_with_professional", "other"]
    axis: int = Field(default=2, ge=1, le=4, description="HAS axis 1..4")
    outcome: Literal["done", "not_done"] | None = None


ActionUnion = (InformationAction | OrientationAction | RightsProcedureAction | AppointmentAction
               | AccompanimentAction | InterpretingAction | OtherAction)

ACTION_EXAMPLES = {
    "information": {"value": {"version": 3, "kind": "information", "topic": "rights"}},
    "orientation": {"value": {"version": 3, "kind": "orientation", "target": "gp",
                              "outcome": "accepted", "lasting_care": True}},
    "rights_procedure": {"value": {"version": 3, "kind": "rights_procedure", "right": "css",
                                   "body": "cpam", "status": "filed"}},
    "appointment": {"value": {"version": 3, "kind": "appointment", "target": "dentist",
                              "outcome": "booked", "appointment_on": "2026-12-02"}},
    "accompaniment": {"value": {"version": 3, "kind": "accompaniment", "target": "hospital",
                                "outcome": "done"}},
    "interpreting": {"value": {"version": 3, "kind": "interpreting", "language": "ar",
                               "mode": "professional_phone", "outcome": "done"}},
    "other": {"value": {"version": 3, "kind": "other", "label": "digital_help", "axis": 2}},
}


class AutonomyDimensions(ApiModel):
    """HAS criteria of autonomy, each self-assessed 0..10."""

    procedures_alone: int | None = Field(default=None, ge=0, le=10)
    appointments_alone: int | None = Field(default=None, ge=0, le=10)
    self_care: int | None = Field(default=None, ge=0, le=10)
    people_to_call_on: int | None = Field(default=None, ge=0, le=10)


class AutonomyRequest(Versioned):
    phase: Literal["T0", "T1"] = Field(description="T0 at the start, T1 at closure.")
    score: int = Field(ge=0, le=10, description="The person's overall self-assessment.")
    dimensions: AutonomyDimensions | None = None
    at: AwareDatetime | None = None

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "version": 2, "phase": "T0", "score": 3,
        "dimensions": {"procedures_alone": 2, "appointments_alone": 4}}]})


class DysfunctionRequest(Versioned):
    category: DysfunctionCategory
    concerned: str = Field(min_length=2, max_length=200,
                           description="The structure or professional concerned, not the person.")
    urgency: Urgency = Urgency.normal
    description: str = Field(min_length=10, max_length=4000,
                             description="Facts, without the person's identity: a description "
                             "naming the person is refused (422, field description).")
    observed_on: AwareDatetime
    person_consents_to_be_named: bool = False
    commune: str | None = Field(default=None, max_length=100,
                                description="Official place name; default: the case's commune.")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "version": 5, "category": "care_refusal", "concerned": "Cabinet dentaire du centre",
        "urgency": "priority", "observed_on": "2026-11-20T09:00:00+01:00",
        "description": "Refus de rendez-vous opposé à une bénéficiaire de la CSS.",
        "person_consents_to_be_named": False}]})


class ObservedDysfunctionRequest(ApiModel):
    """A dysfunction seen outside any one person's case (at a permanence, with partners):
    no person is involved, so nothing about anyone is sealed or sent."""

    category: DysfunctionCategory
    concerned: str = Field(min_length=2, max_length=200)
    urgency: Urgency = Urgency.normal
    description: str = Field(min_length=10, max_length=4000,
                             description="Facts, without identifying anyone.")
    observed_on: AwareDatetime
    commune: str | None = Field(default=None, max_length=100)
    area: str | None = Field(default=None, description="Coordinators may set it; a mediator's "
                             "area comes from the token.")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "category": "interpreting_lack", "concerned": "Service des urgences de l'hôpital",
        "urgency": "normal", "observed_on": "2026-11-18T10:00:00+01:00",
        "description": "Aucun interprétariat proposé aux patients non francophones ce mois-ci."}]})


class DysfunctionOut(BaseModel):
    dysfunction_id: uuid.UUID
    structure: str
    area: str | None
    category: str
    urgency: str
    reported_at: datetime


class CloseRequest(Versioned):
    reason: ClosureReason = Field(description="HAS: autonomous, barriers_lifted, relay_in_place, "
                                  "need_met_no_wish, no_adherence; practical: moved_away, "
                                  "unreachable (needs N attempts), deceased.")
    closed_at: AwareDatetime | None = None
    autonomy_t1: int | None = Field(default=None, ge=0, le=10,
                                    description="T1 self-assessment, if not recorded yet.")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "version": 9, "reason": "relay_in_place", "autonomy_t1": 7}]})


class ReopenRequest(Versioned):
    reason: Literal["new_need", "contact_resumed", "closed_by_mistake", "other"] = "new_need"

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "version": 10, "reason": "new_need"}]})


class ReassignRequest(Versioned):
    mediator_id: str = Field(min_length=1, max_length=80)
    area: str | None = Field(default=None, max_length=80,
                             description="New area in the same structure; default: unchanged.")
    reason: Literal["absence", "workload", "territory_change", "person_request",
                    "other"] = "other"

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "version": 4, "mediator_id": "med-sauve", "area": "sauve", "reason": "absence"}]})


class CollectiveActionRequest(ApiModel):
    """Collective work: counts and themes only, no identities."""

    kind: Literal["workshop", "prevention_action", "screening_action", "vaccination_action",
                  "community_health_group", "awareness_session", "partner_meeting",
                  "professional_tool"]
    theme: str = Field(min_length=2, max_length=200)
    held_on: AwareDatetime
    place: str | None = Field(default=None, max_length=200, description="A venue name.")
    partners: list[Annotated[str, Field(min_length=1, max_length=120)]] = Field(
        default_factory=list, max_length=30)
    attendance: Attendance
    area: str | None = Field(default=None, description="Coordinators may set it; a mediator's "
                             "area comes from the token.")

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "kind": "screening_action", "theme": "Octobre rose : dépistage du cancer du sein",
        "held_on": "2026-10-14T14:00:00+02:00", "place": "Salle des fêtes de Sauve",
        "partners": ["CPAM du Gard", "Centre régional de dépistage"],
        "attendance": {"participants": 23, "professionals": 4, "new_people": 9}}]})


# ----------------------------------------------------------------------------- responses

class CaseSummary(BaseModel):
    case_id: uuid.UUID
    version: int
    status: str
    structure: str
    area: str
    mediator_id: str
    origin: str
    motives: list[MotiveItem]
    urgency: str
    commune: str | None
    interpreter_needed: bool
    language: str | None
    opened_at: datetime
    first_contact_due: datetime | None
    first_contact_at: datetime | None
    contact_attempts: int
    waiting_first_contact: bool
    overdue: bool
    last_activity_at: datetime
    inactive: bool
    closed_at: datetime | None
    closure_reason: str | None
    autonomy_t0: int | None
    autonomy_t1: int | None
    referral_count: int


class CaseloadLine(BaseModel):
    """The active caseload (file active) of one mediator in one area."""

    area: str
    mediator_id: str
    open: int
    waiting_first_contact: int
    overdue: int
    inactive: int


class NoticeOut(BaseModel):
    """A reminder (to the mediator), an escalation (to the coordinators) or an inactivity
    flag; resolved by acknowledging it or by doing the work it asks for."""

    notice_id: uuid.UUID
    case_id: uuid.UUID
    kind: str = Field(description="first_contact_reminder, first_contact_escalation, "
                      "inactivity")
    notify_role: str
    notify_id: str | None
    area: str
    due_at: datetime | None
    created_at: datetime
    resolved_at: datetime | None
    resolved_by: str | None


class ReferralLink(BaseModel):
    referral_id: uuid.UUID
    revision: int
    is_primary: bool
    source_system: str
    received_at: datetime
    consent_share_with_referrer: bool
    last_feedback: str | None


class TimelineEntry(BaseModel):
    entry_id: uuid.UUID
    at: datetime
    recorded_at: datetime
    kind: str
    axis: int | None
    actor: str
    details: dict
    has_note: bool


class AccessEntry(BaseModel):
    actor: str
    role: str
    purpose: str
    fields: list[str]
    at: datetime


class CaseDetail(CaseSummary):
    referrals: list[ReferralLink]
    timeline: list[TimelineEntry]
    personal_data_access: list[AccessEntry] = Field(
        description="Audit trail: every opening of this person's sealed data.")


class MutationResult(BaseModel):
    case: CaseSummary
    entry_id: uuid.UUID | None = Field(default=None, description="The timeline entry written.")
    dysfunction_id: uuid.UUID | None = None


class IdentityOut(BaseModel):
    case_id: uuid.UUID
    identity: dict = Field(description="The person's identity and contact data (sealed at rest).")


class NoteOut(BaseModel):
    case_id: uuid.UUID
    entry_id: uuid.UUID
    note: str


class CollectiveActionOut(BaseModel):
    collective_action_id: uuid.UUID
    structure: str
    area: str | None
    kind: str
    axis: int
    theme: str
    held_on: datetime
    place: str | None
    partners: list[str]
    attendance: Attendance
    recorded_by: str
    recorded_at: datetime

"""Domain rules of a case, as plain functions (no broker, no database).

Handlers and API use cases call these to decide; they then write state and events.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from datetime import datetime, timedelta

from mediation_schemas.vocab import ClosureReason, Urgency

# ----------------------------------------------------------------------------- opening

@dataclass(frozen=True)
class KnownReferral:
    """What the case store knows of a referral it already linked to a case."""

    case_id: str
    revision: int
    structure: str
    area: str
    mediator_id: str
    is_primary: bool        # the referral that opened the case
    case_open: bool


@dataclass(frozen=True)
class OpeningDecision:
    action: str             # open, attach, update, ignore
    case_id: str | None = None
    reroute: bool = False   # update: area or mediator changed -> reassign the case
    reason: str = ""


def decide_opening(*, known: KnownReferral | None, open_case_for_person: str | None,
                   revision: int, structure: str, area: str, mediator_id: str) -> OpeningDecision:
    """What a ReferralRouted does to the caseload.

    - a referral already linked to a case is never opened twice: an older revision is
      ignored; a new revision or a new routing updates the case (and reassigns it when the
      area or mediator changed, if the referral opened the case and the case is open);
    - a person (same blind index) with an open case in the structure: the referral joins it;
    - otherwise a new case.
    """
    if known is not None:
        routed_elsewhere = (known.structure, known.area, known.mediator_id) != (
            structure, area, mediator_id)
        if revision < known.revision:
            return OpeningDecision("ignore", known.case_id, reason="older_revision")
        if revision == known.revision and not routed_elsewhere:
            return OpeningDecision("ignore", known.case_id, reason="same_revision_same_routing")
        reroute = routed_elsewhere and known.is_primary and known.case_open
        return OpeningDecision("update", known.case_id, reroute=reroute,
                               reason="rerouted" if routed_elsewhere else "new_revision")
    if open_case_for_person is not None:
        return OpeningDecision("attach", open_case_for_person, reason="person_has_open_case")
    return OpeningDecision("open")


URGENCY_RANK = {Urgency.normal: 0, Urgency.priority: 1, Urgency.urgent: 2}


def merge_urgency(a: str, b: str) -> str:
    return a if URGENCY_RANK[Urgency(a)] >= URGENCY_RANK[Urgency(b)] else b


def merge_motives(current: list[dict], new: list[dict]) -> list[dict]:
    """Union of motives, in order of first appearance."""
    out = list(current)
    for m in new:
        if m not in out:
            out.append(m)
    return out


# ----------------------------------------------------------------------------- actions

# HAS axes: 1 (re)create contact and trust; 2 coordinate the care path;
# 3 collective health promotion; 4 feed back and alert.
ACTION_AXIS = {
    "contact_attempt": 1,
    "interview": 2,
    "information": 2,
    "orientation": 2,
    "rights_procedure": 2,
    "appointment": 2,
    "accompaniment": 2,
    "interpreting": 2,
    "autonomy_assessment": 2,
}

COLLECTIVE_AXIS = {
    "workshop": 3,
    "prevention_action": 3,
    "screening_action": 3,
    "vaccination_action": 3,
    "community_health_group": 3,
    "awareness_session": 1,    # reaching professionals (HAS axis 1) ...
    "partner_meeting": 4,      # ... and feeding back to them (axis 4)
    "professional_tool": 4,
}


def axis_for(kind: str, requested: int | None = None) -> int:
    if kind == "other":
        return requested or 2
    return ACTION_AXIS[kind]


# ----------------------------------------------------------------------------- closure

HAS_REASONS = {ClosureReason.autonomous, ClosureReason.barriers_lifted,
               ClosureReason.relay_in_place, ClosureReason.need_met_no_wish,
               ClosureReason.no_adherence}
PRACTICAL_REASONS = {ClosureReason.moved_away, ClosureReason.unreachable, ClosureReason.deceased}


class RuleViolation(Exception):
    """A request the case's state does not allow: ``field`` and ``code`` say why."""

    def __init__(self, code: str, detail: str, field: str | None = None, status: int = 409,
                 **extra: object):
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail
        self.field = field
        self.status = status
        self.extra = extra


def reason_kind(reason: ClosureReason) -> str:
    return "has" if reason in HAS_REASONS else "practical"


def check_closure(*, status: str, reason: ClosureReason, contact_attempts: int,
                  first_contact: bool, min_attempts: int) -> None:
    if status != "open":
        raise RuleViolation("case_not_open", "only an open case can be closed", "status")
    if reason == ClosureReason.unreachable and contact_attempts < min_attempts:
        raise RuleViolation(
            "not_enough_attempts",
            f"closing as unreachable needs at least {min_attempts} recorded contact attempts "
            f"(the case has {contact_attempts})", "reason", status=422)
    if reason in HAS_REASONS and not first_contact:
        raise RuleViolation(
            "no_first_contact",
            "a HAS closure reason needs a first contact with the person; use moved_away, "
            "unreachable or deceased otherwise", "reason", status=422)


def check_open(status: str) -> None:
    if status != "open":
        raise RuleViolation("case_not_open", "the case is closed; reopen it first", "status")


# ----------------------------------------------------------------------------- concurrency

def check_version(*, expected: int | None, current: int) -> None:
    if expected is None:
        raise RuleViolation(
            "version_required",
            "send the case version you read, in the If-Match header or the 'version' field",
            "version", status=428)
    if expected != current:
        raise RuleViolation(
            "stale_version",
            f"the case was changed since you read it (you sent version {expected}, current is "
            f"{current}); reload the case and apply your change again", "version",
            current_version=current)


# ----------------------------------------------------------------------------- feedback

# Closed-loop feedback to the referrer (ReferralStatusChanged):
# - 'received' is always sent: it only tells the referrer that the form they sent reached a
#   mediator, which they know they asked for, and nothing about the person's choices;
# - 'in_progress' (first contact made, or case reopened) and 'closed' with a coarse outcome
#   are sent only when the person consented to share with the referrer
#   (consent_share_with_referrer on the referral's latest revision);
# - the outcome is coarse: completed (a HAS reason: autonomy, barriers lifted, relay in place,
#   need met), ended (the person stopped, moved away, or died: never said which), not_reached.
COARSE_OUTCOME = {
    ClosureReason.autonomous: "completed",
    ClosureReason.barriers_lifted: "completed",
    ClosureReason.relay_in_place: "completed",
    ClosureReason.need_met_no_wish: "completed",
    ClosureReason.no_adherence: "ended",
    ClosureReason.moved_away: "ended",
    ClosureReason.deceased: "ended",
    ClosureReason.unreachable: "not_reached",
}


def feedback_allowed(status: str, consent_share: bool) -> bool:
    return status == "received" or consent_share


def coarse_outcome(reason: ClosureReason) -> str:
    return COARSE_OUTCOME[reason]


# ----------------------------------------------------------------------------- redaction

def _norm(s: str) -> str:
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c))
    return " ".join("".join(c if c.isalnum() else " " for c in s.lower()).split())


def identity_fields_in(text: str, identity: dict) -> list[str]:
    """Names of the identity fields whose value appears in ``text`` (never the values).

    ``identity`` is a sealed block's content: intake's shape ``{"person": {...}, ...}``."""
    if isinstance(identity.get("person"), dict):
        identity = identity["person"]
    hay = f" {_norm(text)} "
    digits = "".join(c for c in text if c.isdigit())
    found = []
    for field in ("family_name", "given_name", "birth_name", "usual_name"):
        v = identity.get(field)
        if isinstance(v, str) and len(_norm(v)) >= 2 and f" {_norm(v)} " in hay:
            found.append(field)
    phone = identity.get("phone")
    if isinstance(phone, str):
        p = "".join(c for c in phone if c.isdigit())
        if len(p) >= 6 and p[-9:] in digits:
            found.append("phone")
    bd = identity.get("birth_date")
    if isinstance(bd, str) and len(bd) == 10:
        y, m, d = bd.split("-")
        if any(x in text for x in (bd, f"{d}/{m}/{y}", f"{d}.{m}.{y}", f"{d}-{m}-{y}")):
            found.append("birth_date")
    email = identity.get("email")
    if isinstance(email, str) and email and email.lower() in text.lower():
        found.append("email")
    return found


def inactivity_cutoff(now: datetime, days: int) -> datetime:
    """An open case whose last activity is at or before this instant is inactive."""
    return now - timedelta(days=days)


def is_inactive(last_activity_at: datetime, now: datetime, days: int) -> bool:
    return last_activity_at <= inactivity_cutoff(now, days)

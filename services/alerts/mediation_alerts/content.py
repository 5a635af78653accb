"""What an authority receives: the minimum it needs to act, and the person only when allowed.

Minimal content (HAS axis 4, "in respect of confidentiality"): category, place (commune,
never an address), structure or professional concerned, dates, description of the facts.
The person's identity is added only when BOTH the person consented to be named AND the
rule for this category requires it (:func:`identity_allowed`); the caller opens the sealed
block only then.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from .deadlines import PARIS

CATEGORY_LABELS = {
    "care_refusal": "Refus de soins / discrimination",
    "insalubrious_housing": "Logement insalubre ou dangereux",
    "rights_blockage": "Blocage dans le traitement des droits",
    "interpreting_lack": "Absence d'interprétariat",
    "health_risk": "Risque pour la santé (signal sanitaire)",
    "other": "Autre dysfonctionnement",
}
URGENCY_LABELS = {"normal": "normale", "priority": "prioritaire", "urgent": "URGENTE"}
NOTICE_LABELS = {
    "no_acknowledgement": "aucun accusé de réception dans le délai",
    "delivery_failed": "le signalement n'a pu être remis",
}

# identity fields an authority may receive: never the free texts, the referrer, e-mail...
IDENTITY_FIELDS = ("family_name", "given_name", "birth_date", "phone", "address", "postcode",
                   "commune")


def identity_allowed(*, consented: bool, rule_requires: bool, sealed_present: bool) -> bool:
    return consented and rule_requires and sealed_present


def minimal_identity(opened: dict[str, Any]) -> dict[str, Any]:
    """The identity fields of an opened sealed block (intake's shape ``{"person": {...},
    "referrer": ..., "comment": ...}``, or a flat person)."""
    person = opened.get("person") if isinstance(opened.get("person"), dict) else opened
    return {k: person[k] for k in IDENTITY_FIELDS if person.get(k) not in (None, "")}


def alert_body(*, message_id: str, kind: str, alert: dict[str, Any], dysfunction: dict[str, Any],
               authority_name: str, ack_due_at: datetime | None, ack_url: str | None,
               identity: dict[str, Any] | None = None,
               notice: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON document sent by webhook (and the data of the e-mail template)."""
    body: dict[str, Any] = {
        "message_id": message_id,
        "kind": kind,
        "alert_id": str(alert["alert_id"]),
        "dysfunction_id": str(dysfunction["dysfunction_id"]),
        "structure": dysfunction["structure"],
        "authority_id": alert["authority_id"],
        "authority_name": authority_name,
        "category": dysfunction["category"],
        "category_label": CATEGORY_LABELS.get(dysfunction["category"], dysfunction["category"]),
        "urgency": dysfunction["urgency"],
        "commune": dysfunction["commune"],
        "concerned": dysfunction["concerned"],
        "description": dysfunction["description"],
        "observed_on": dysfunction["observed_on"].isoformat(),
        "reported_at": dysfunction["reported_at"].isoformat(),
        "ack_due_at": ack_due_at.isoformat() if ack_due_at else None,
        "ack_url": ack_url,
    }
    if identity:
        body["person"] = identity
    if notice:
        body["notice"] = notice
    return body


_env = Environment(
    loader=FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
    undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
)


def _fr_date(iso: str | None) -> str:
    if not iso:
        return "—"
    return datetime.fromisoformat(iso).astimezone(PARIS).strftime("%d/%m/%Y %H:%M")


_env.filters["fr_date"] = _fr_date


def render_email(body: dict[str, Any]) -> tuple[str, str]:
    """(subject, plain-text body) in French."""
    if body["kind"] == "coordinator_notice":
        reason = NOTICE_LABELS.get(body["notice"]["reason"], body["notice"]["reason"])
        subject = f"[Veille] Signalement à suivre : {reason} – {body['category_label']}"
    else:
        urg = URGENCY_LABELS.get(body["urgency"], body["urgency"])
        subject = f"[Signalement {urg}] {body['category_label']} – {body['commune'] or 'lieu non précisé'}"
    text = _env.get_template("alert_email.txt.j2").render(
        b=body, urgency_label=URGENCY_LABELS.get(body["urgency"], body["urgency"]),
        notice_label=NOTICE_LABELS.get((body.get("notice") or {}).get("reason", ""), ""))
    return subject, text

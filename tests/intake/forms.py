"""Test data for intake: valid forms (from the published examples) and Kafka envelopes."""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson

from mediation_intake.contract import EXAMPLES

GP = "referral-received-msp-gp.json"
HOSPITAL = "referral-received-hospital-social-service.json"

# Canary personal values: must never appear in clear in any event, log, span or dead letter.
CANARY = {
    "family_name": "Canarynom",
    "given_name": "Canaryprenom",
    "address": "7 impasse Canaryrue",
    "phone_raw": "06 98 76 54 32",
    "phone": "+33698765432",
    "email": "canary.mail@exemple-canari.fr",
    "comment": "CANARY-COMMENT secret médical",
    "other_text": "CANARY-OTHER motif libre",
    "note": "CANARY-NOTE disponibilités",
    "referrer": "Dr Canaryprescripteur",
}


def form(example: str = GP, **top: Any) -> dict[str, Any]:
    """A valid form with a fresh source_reference; keyword args replace top-level fields."""
    f = copy.deepcopy(EXAMPLES[example])
    f["source_reference"] = f"T-{uuid.uuid4().hex[:10]}"
    f.update(top)
    return f


def canary_form(**top: Any) -> dict[str, Any]:
    f = form(HOSPITAL, **top)
    p = f["person"]
    p.update(family_name=CANARY["family_name"], given_name=CANARY["given_name"],
             address=CANARY["address"], phone=CANARY["phone_raw"], email=CANARY["email"])
    f["referrer"]["name"] = CANARY["referrer"]
    f["comment"] = CANARY["comment"]
    f["availability_note"] = CANARY["note"]
    f["motives"][-1]["text"] = CANARY["other_text"]
    return f


def canary_values() -> list[bytes]:
    return [v.encode() for v in CANARY.values()] + [b"Canarynom".upper()]


def envelope(payload: dict, *, version: int = 1, producer: str = "test-sender") -> bytes:
    return orjson.dumps({
        "event_id": str(uuid.uuid4()), "type": "ReferralReceived", "version": version,
        "occurred_at": datetime.now(UTC).isoformat(), "producer": producer,
        "correlation_id": f"corr-{uuid.uuid4().hex[:8]}", "payload": payload,
    })


def key(payload: dict) -> bytes:
    return f"{payload.get('source_system')}:{payload.get('source_reference')}".encode()

"""The envelope every event travels in, and the registry of payload models.

One envelope for all events (SYSTEM.md "Events"): the event id is the dedup key that
consumers record in their inbox; the correlation id follows one referral end to end;
the causation id names the event that caused this one. Trace context is *not* here: it
travels in the Kafka headers (W3C ``traceparent``).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, field_validator


class Payload(BaseModel):
    """Base of every event payload.

    Subclasses set ``event_type`` and ``version``; adding an optional field keeps the
    version, removing or retyping one is a new version (a new class).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)

    event_type: ClassVar[str]
    version: ClassVar[int] = 1


class Envelope(BaseModel):
    """The outer record of every event on every topic."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    event_id: uuid.UUID = Field(description="Unique id of this event; consumers dedup on it.")
    type: str = Field(min_length=1, max_length=80, description="Event type, e.g. ReferralAccepted.")
    version: int = Field(ge=1, description="Schema version of the payload for this type.")
    occurred_at: AwareDatetime = Field(description="When the fact happened, UTC.")
    producer: str = Field(min_length=1, max_length=80, description="Service or system that wrote it.")
    correlation_id: str = Field(
        min_length=1, max_length=200,
        description="Follows one referral (or case) end to end across services.",
    )
    causation_id: uuid.UUID | None = Field(
        default=None, description="event_id of the event that caused this one, if any."
    )
    structure: str | None = Field(
        default=None, max_length=80,
        description="Tenant: the mediation structure (e.g. a CPTS) the event belongs to.",
    )
    payload: dict[str, Any] = Field(description="The event's own fields, per type and version.")

    @field_validator("occurred_at")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v.astimezone(UTC)


class DecodeError(Exception):
    """A message that can never be processed as is (goes to the dead-letter topic).

    ``code`` is machine-readable; ``detail`` names fields and rules, never values.
    """

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


_REGISTRY: dict[tuple[str, int], type[Payload]] = {}


def register(cls: type[Payload]) -> type[Payload]:
    """Class decorator: make a payload model decodable by (type, version)."""
    key = (cls.event_type, cls.version)
    if key in _REGISTRY and _REGISTRY[key] is not cls:
        raise RuntimeError(f"duplicate event model for {key}")
    _REGISTRY[key] = cls
    return cls


def registry() -> dict[tuple[str, int], type[Payload]]:
    return dict(_REGISTRY)


def known_versions(event_type: str) -> list[int]:
    return sorted(v for (t, v) in _REGISTRY if t == event_type)


def new_envelope(
    payload: Payload,
    *,
    producer: str,
    correlation_id: str,
    causation_id: uuid.UUID | None = None,
    structure: str | None = None,
    occurred_at: datetime | None = None,
    event_id: uuid.UUID | None = None,
) -> Envelope:
    return Envelope(
        event_id=event_id or uuid.uuid4(),
        type=payload.event_type,
        version=payload.version,
        occurred_at=occurred_at or datetime.now(UTC),
        producer=producer,
        correlation_id=correlation_id,
        causation_id=causation_id,
        structure=structure,
        payload=payload.model_dump(mode="json"),
    )


def encode(envelope: Envelope) -> bytes:
    return orjson.dumps(envelope.model_dump(mode="json"))


def validation_problems(err: ValidationError) -> list[dict[str, str]]:
    """Field paths and rule codes of a pydantic error, without the offending values."""
    out = []
    for e in err.errors(include_url=False, include_input=False, include_context=False):
        path = ".".join(str(p) for p in e["loc"]) or "(root)"
        out.append({"field": path, "code": e["type"], "message": e["msg"]})
    return out


def _describe(err: ValidationError) -> str:
    return "; ".join(f"{p['field']}: {p['code']}" for p in validation_problems(err)[:20])


def decode_envelope(raw: bytes | None) -> Envelope:
    """Parse the envelope only (payload stays a dict). Raises DecodeError."""
    if raw is None:
        raise DecodeError("empty_message", "the message has no value (tombstone?)")
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise DecodeError("bad_json", "the message value is not valid UTF-8 JSON") from None
    if not isinstance(data, dict):
        raise DecodeError("bad_envelope", "the message value is not a JSON object")
    try:
        return Envelope.model_validate(data)
    except ValidationError as err:
        raise DecodeError("bad_envelope", _describe(err)) from None


def decode_payload(envelope: Envelope) -> Payload:
    """Validate the payload against its registered model. Raises DecodeError."""
    model = _REGISTRY.get((envelope.type, envelope.version))
    if model is None:
        versions = known_versions(envelope.type)
        if not versions:
            raise DecodeError("unknown_type", f"no event type named {envelope.type!r}")
        raise DecodeError(
            "unknown_version",
            f"{envelope.type} version {envelope.version} is not supported (accepted: {versions})",
        )
    try:
        return model.model_validate(envelope.payload)
    except ValidationError as err:
        raise DecodeError("schema_invalid", f"{envelope.type} v{envelope.version}: {_describe(err)}") from None


def decode(raw: bytes | None) -> tuple[Envelope, Payload]:
    env = decode_envelope(raw)
    return env, decode_payload(env)

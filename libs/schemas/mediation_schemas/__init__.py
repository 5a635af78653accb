"""Event contracts of the mediation backend: one source of truth for every service."""

from . import (  # noqa: F401  (registers the event models)
    alerts,
    cases,
    received,  # noqa: F401  (the public ReferralReceived contract)
    referrals,
    territory,  # noqa: F401  (TerritoryChanged, consumed by routing)
)
from .envelope import (
    DecodeError,
    Envelope,
    Payload,
    decode,
    decode_envelope,
    decode_payload,
    encode,
    new_envelope,
    register,
    registry,
)
from .topics import Topics, topics_from_env

__all__ = [
    "DecodeError", "Envelope", "Payload", "Topics", "decode", "decode_envelope",
    "decode_payload", "encode", "new_envelope", "register", "registry", "topics_from_env",
]

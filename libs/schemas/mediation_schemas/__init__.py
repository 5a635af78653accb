"""Event contracts of the mediation backend: one source of truth for every service."""

from . import alerts, cases, referrals  # noqa: F401  (registers the event models)
from . import received  # noqa: F401  (the public ReferralReceived contract)
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

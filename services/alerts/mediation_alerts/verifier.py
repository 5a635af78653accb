"""Receiver-side verification of alert webhooks, for the authorities that receive them.

Copy this file (standard library only) or import it. Each webhook is an HTTP POST whose
JSON body is the alert, with these headers:

- ``X-Mediation-Timestamp``: unix seconds when the request was signed;
- ``X-Mediation-Signature``: ``v1=<hex HMAC-SHA256(secret, timestamp + "." + raw body)>``;
  during a secret rotation several ``v1=`` values may be sent, comma-separated;
- ``Idempotency-Key``: the message id (the alert id), identical on every re-send of the
  same alert. It also appears signed in the body (``message_id``).

A receiver must, on the *raw* body bytes, before parsing anything::

    result = verify_webhook(secret=SECRET, headers=request.headers, body=raw_body,
                            seen=already_processed_keys)
    if not result.ok:          # 401: wrong signature, stale timestamp, bad key
        return 401, result.reason
    if result.duplicate:       # 200: already processed, don't act twice
        return 200
    process(body); remember(result.idempotency_key); return 200

Answer 2xx once the alert is stored: anything else (or no answer) makes the sender retry
with exponential backoff, always with the same ``Idempotency-Key``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from collections.abc import Container, Mapping
from dataclasses import dataclass

SIGNATURE_HEADER = "X-Mediation-Signature"
TIMESTAMP_HEADER = "X-Mediation-Timestamp"
IDEMPOTENCY_HEADER = "Idempotency-Key"
DEFAULT_TOLERANCE = 300  # seconds of clock skew / replay window accepted


def _key(secret: str | bytes) -> bytes:
    return secret.encode() if isinstance(secret, str) else secret


def sign(secret: str | bytes, timestamp: int, body: bytes) -> str:
    """The signature header value for ``body`` sent at ``timestamp``."""
    mac = hmac.new(_key(secret), str(int(timestamp)).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


@dataclass(frozen=True)
class Verification:
    ok: bool
    reason: str | None = None          # why it was refused (never quotes the body)
    idempotency_key: str | None = None
    duplicate: bool = False            # signed and valid, but already processed


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for k, v in headers.items():
        if k.lower() == name.lower():
            return v
    return None


def verify_webhook(*, secret: str | bytes, headers: Mapping[str, str], body: bytes,
                   now: float | None = None, tolerance: int = DEFAULT_TOLERANCE,
                   seen: Container[str] = ()) -> Verification:
    """Check signature, timestamp window and idempotency key. Pure: no I/O, no state.

    ``seen`` holds the idempotency keys this receiver already processed.
    """
    ts_raw = _header(headers, TIMESTAMP_HEADER)
    sig_raw = _header(headers, SIGNATURE_HEADER)
    key = _header(headers, IDEMPOTENCY_HEADER)
    if not ts_raw or not sig_raw:
        return Verification(False, "missing_signature_headers")
    try:
        ts = int(ts_raw)
    except ValueError:
        return Verification(False, "bad_timestamp")
    expected = sign(secret, ts, body)
    candidates = [c.strip() for c in sig_raw.split(",") if c.strip()]
    if not any(hmac.compare_digest(expected, c) for c in candidates):
        return Verification(False, "bad_signature")
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return Verification(False, "timestamp_outside_tolerance")
    if not key:
        return Verification(False, "missing_idempotency_key")
    try:
        uuid.UUID(key)
    except ValueError:
        return Verification(False, "bad_idempotency_key")
    try:
        signed_id = json.loads(body).get("message_id")
    except (ValueError, AttributeError):
        return Verification(False, "body_not_json_object")
    if signed_id != key:
        return Verification(False, "idempotency_key_mismatch")
    return Verification(True, None, key, duplicate=key in seen)

"""Signed acknowledgement links: ``/alerts/ack/<token>`` lets an authority acknowledge
without an account. The token is ``base64url(alert_id|exp) + "." + hex HMAC-SHA256``."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from datetime import datetime


class BadLink(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


def link_key(api_key: bytes) -> bytes:
    """A key of its own, derived from the API key (not usable as a bearer-token key)."""
    return hmac.new(api_key, b"mediation-alerts-ack-link-v1", hashlib.sha256).digest()


def make_token(key: bytes, alert_id: uuid.UUID, expires: datetime) -> str:
    body = base64.urlsafe_b64encode(f"{alert_id}|{int(expires.timestamp())}".encode())
    body_s = body.decode().rstrip("=")
    sig = hmac.new(key, body_s.encode(), hashlib.sha256).hexdigest()
    return f"{body_s}.{sig}"


def read_token(key: bytes, token: str, now: datetime) -> uuid.UUID:
    try:
        body, sig = token.rsplit(".", 1)
    except ValueError:
        raise BadLink("malformed_link") from None
    expected = hmac.new(key, body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, sig):
        raise BadLink("bad_link_signature")
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
        alert_s, exp_s = raw.split("|")
        alert_id, exp = uuid.UUID(alert_s), int(exp_s)
    except (ValueError, UnicodeDecodeError):
        raise BadLink("malformed_link") from None
    if now.timestamp() > exp:
        raise BadLink("link_expired")
    return alert_id

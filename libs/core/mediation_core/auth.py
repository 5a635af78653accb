"""Bearer tokens for the HTTP APIs, and the caller's scope.

A token is ``base64url(claims JSON) + "." + hex HMAC-SHA256(first part, MEDIATION_API_KEY)``.
Claims: ``sub``, ``role`` (mediator, coordinator, authority, source_system, admin),
``structure``, ``area``, ``authority``, ``exp`` (unix seconds). Tokens are issued by the
programme's identity provider in production (any issuer that signs these claims), and by
``mediation token`` locally. A mediator sees their own area, a coordinator their structure,
an authority its own alerts, a source system its own referrals.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
from typing import Literal

import orjson
from fastapi import Depends, HTTPException
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel

Role = Literal["mediator", "coordinator", "authority", "source_system", "admin"]


class Caller(BaseModel):
    sub: str
    role: Role
    structure: str | None = None
    area: str | None = None
    authority: str | None = None
    exp: int = 0

    def can_see(self, *, structure: str | None, area: str | None = None) -> bool:
        """Scope rule shared by every API."""
        if self.role == "admin":
            return True
        if self.role == "coordinator":
            return structure is not None and structure == self.structure
        if self.role == "mediator":
            return structure == self.structure and area is not None and area == self.area
        return False


def api_key() -> bytes:
    val = os.environ.get("MEDIATION_API_KEY")
    return val.encode() if val else hashlib.sha256(b"mediation-dev-only:api").digest()


def issue_token(*, sub: str, role: Role, structure: str | None = None, area: str | None = None,
                authority: str | None = None, ttl: int = 12 * 3600, key: bytes | None = None) -> str:
    claims = {"sub": sub, "role": role, "structure": structure, "area": area,
              "authority": authority, "exp": int(time.time()) + ttl}
    body = base64.urlsafe_b64encode(orjson.dumps(claims)).decode().rstrip("=")
    sig = hmac.new(key or api_key(), body.encode(), hashlib.sha256).hexdigest()
    return f"{body}.{sig}"


def verify_token(token: str, key: bytes | None = None) -> Caller:
    try:
        body, sig = token.rsplit(".", 1)
    except ValueError:
        raise HTTPException(401, detail="malformed bearer token") from None
    expected = hmac.new(key or api_key(), body.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(sig, expected):
        raise HTTPException(401, detail="invalid token signature")
    try:
        claims = orjson.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        caller = Caller.model_validate(claims)
    except Exception:
        raise HTTPException(401, detail="malformed token claims") from None
    if caller.exp and caller.exp < time.time():
        raise HTTPException(401, detail="token expired")
    return caller


_bearer = HTTPBearer(auto_error=False)


async def current_caller(
    cred: HTTPAuthorizationCredentials | None = Depends(_bearer),
) -> Caller:
    if cred is None:
        raise HTTPException(401, detail="missing bearer token", headers={"WWW-Authenticate": "Bearer"})
    return verify_token(cred.credentials)


def require_role(*roles: Role):
    async def dep(caller: Caller = Depends(current_caller)) -> Caller:
        if caller.role not in roles and caller.role != "admin":
            raise HTTPException(403, detail=f"role {caller.role} may not do this; needs {', '.join(roles)}")
        return caller

    return dep

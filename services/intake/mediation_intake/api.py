"""HTTP way in, for systems that cannot produce to Kafka: ``POST /referrals``.

Same use case as the Kafka consumer (:meth:`Intake.take`), in one transaction with the
outbox. Answers 202 with the referral id, 422 with every problem, 413 when the body is too
large, 429 with ``Retry-After`` when the sending system exceeds its rate.
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING

import orjson
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse
from opentelemetry.trace import SpanKind

from mediation_core import telemetry
from mediation_core.auth import Caller, require_role
from mediation_schemas.common import Problem

from .validation import NotJson, too_large

if TYPE_CHECKING:
    from .service import Runtime

_CORRELATION = re.compile(r"^[A-Za-z0-9._:/-]{1,200}$")


def _problem(problem: Problem, status: int, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"problems": [problem.model_dump()]}, status_code=status, headers=headers)


async def _read_limited(request: Request, limit: int) -> bytes | None:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            return None
    return bytes(body)


def router(rt: Runtime) -> APIRouter:
    r = APIRouter(tags=["intake"])
    tracer = telemetry.tracer("mediation.intake.http")

    @r.post("/referrals", status_code=202, summary="Send a referral form (fiche d'orientation)")
    async def post_referral(request: Request,
                            caller: Caller = Depends(require_role("source_system"))):
        source = caller.sub
        wait = rt.buckets.take(source)
        if wait > 0:
            return _problem(Problem(field="(payload)", code="rate_limited",
                                    message="trop de fiches envoyées par ce système : réessayer "
                                    "après le délai indiqué (Retry-After)"), 429,
                            {"Retry-After": str(rt.buckets.retry_after(wait))})
        max_bytes = rt.intake.max_bytes
        body = await _read_limited(request, max_bytes)
        if body is None:
            return _problem(too_large(max_bytes), 413)
        try:
            raw: object = orjson.loads(body)
        except orjson.JSONDecodeError:
            raw = NotJson()
        corr = request.headers.get("x-correlation-id", "")
        correlation = corr if _CORRELATION.match(corr) else str(uuid.uuid4())
        sender = source if caller.role == "source_system" else None
        with tracer.start_as_current_span("POST /referrals", kind=SpanKind.SERVER,
                                          attributes={"http.request.method": "POST",
                                                      "http.route": "/referrals"}):
            async with rt.pool.acquire() as conn, conn.transaction():
                async def emit(payload, topic, key):
                    return await rt.outbox.add(conn, payload, topic=topic, key=key,
                                               correlation_id=correlation)

                outcome = await rt.intake.take(conn, emit, raw, size=len(body), channel="http",
                                               sender=sender)
        if outcome.status == "rejected":
            return JSONResponse({
                "referral_id": str(outcome.referral_id) if outcome.referral_id else None,
                "problems": [p.model_dump() for p in outcome.problems]}, status_code=422)
        return JSONResponse({"referral_id": str(outcome.referral_id),
                             "revision": outcome.revision, "status": outcome.status},
                            status_code=202)

    return r

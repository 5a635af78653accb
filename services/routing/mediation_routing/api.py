"""HTTP: the coordinator triage queue, and territory versions.

- ``GET  /triage?status=open`` -- entries of the caller's structure, plus entries no
  structure could be attached to (a referral from outside every territory must reach a
  person). Coordinators and admins only.
- ``POST /triage/{referral_id}/resolve`` -- route by hand: ``ReferralRouted`` with
  ``decision.manual = true``, in the same transaction as the state change (outbox).
- ``GET  /territory/{structure}`` -- the version in force (``?on=YYYY-MM-DD``).
- ``POST /territory/{structure}/versions`` -- publish a new version (TerritoryChanged);
  the service applies it when it consumes it, like any other producer's change.

Errors name the field and the rule, never the submitted values.
"""

from __future__ import annotations

import uuid
from datetime import date
from typing import Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from mediation_core.auth import Caller, require_role
from mediation_core.service import Service
from mediation_schemas.territory import TerritoryChanged

from . import territory as terr
from .store import RoutingStore


class ResolveBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    structure: str | None = Field(default=None, description="Defaults to the entry's structure.")
    area: str = Field(min_length=1, max_length=120)
    mediator_id: str | None = Field(default=None, max_length=120,
                                    description="Defaults to the assignment rule's choice.")
    place_code: str | None = Field(default=None, max_length=40)


class VersionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    effective_from: date
    territory: dict[str, Any]
    reason: str | None = Field(default=None, max_length=500)


def _field_error(err: Exception) -> dict[str, str]:
    """Our domain errors read "field: why" (never a submitted value)."""
    field_, _, why = str(err).partition(": ")
    return {"field": field_, "message": why}


def router(svc: Service, store: RoutingStore) -> APIRouter:
    r = APIRouter()
    coordinator = require_role("coordinator")

    def pool():
        if svc.pool is None:
            raise HTTPException(503, detail="service not ready")
        return svc.pool

    @r.get("/triage")
    async def list_triage(status: str = Query("open", pattern="^(open|resolved|rerouted)$"),
                          caller: Caller = Depends(coordinator)) -> dict:
        async with pool().acquire() as conn:
            items = await store.triage_list(conn, structure=caller.structure,
                                            all_=caller.role == "admin", status=status)
        return {"items": items, "count": len(items)}

    @r.post("/triage/{referral_id}/resolve")
    async def resolve_entry(referral_id: uuid.UUID, body: ResolveBody,
                            caller: Caller = Depends(coordinator)) -> dict:
        async with pool().acquire() as conn, conn.transaction():
            async def emit(payload, key, structure, correlation_id):
                await svc.outbox.add(conn, payload, topic=svc.settings.topics.routing_decisions,
                                     key=key, correlation_id=correlation_id, structure=structure)
            try:
                p = await store.resolve_by_hand(
                    conn, emit, referral_id=referral_id, caller_structure=caller.structure,
                    is_admin=caller.role == "admin", caller=caller.sub, structure=body.structure,
                    area=body.area, mediator_id=body.mediator_id, place_code=body.place_code)
            except LookupError:
                raise HTTPException(404, detail="referral_id: no triage entry visible to you") from None
            except PermissionError as err:
                raise HTTPException(403, detail=str(err)) from None
            except ValueError as err:
                detail = _field_error(err)
                raise HTTPException(409 if detail["field"] == "status" else 422,
                                    detail=detail) from None
        return {"status": "routed", "structure": p.structure, "area": p.area,
                "mediator_id": p.mediator_id, "place": p.place.model_dump(),
                "decision": p.decision.model_dump()}

    @r.get("/territory/{structure}")
    async def get_territory(structure: str, on: date | None = None,
                            caller: Caller = Depends(coordinator)) -> dict:
        if caller.role != "admin" and caller.structure != structure:
            raise HTTPException(403, detail="structure: not yours")
        async with pool().acquire() as conn:
            await store.refresh(conn)
        sv = store.history.structure_in_force(structure, on or date.today())
        if sv is None:
            raise HTTPException(404, detail="structure: unknown or not in force at that date")
        return {"structure": structure, "version": sv.version,
                "effective_from": sv.effective_from.isoformat(),
                "territory": terr.to_document(sv)}

    @r.post("/territory/{structure}/versions", status_code=202)
    async def publish_version(structure: str, body: VersionBody,
                              caller: Caller = Depends(coordinator)) -> dict:
        if caller.role != "admin" and caller.structure != structure:
            raise HTTPException(403, detail="structure: not yours")
        try:
            sv = terr.from_document(body.territory, version=1, effective_from=body.effective_from)
        except terr.TerritoryError as err:
            raise HTTPException(422, detail=_field_error(err)) from None
        if sv.structure != structure:
            raise HTTPException(422, detail={"field": "territory.structure",
                                             "message": "must be the structure of the URL"})
        async with pool().acquire() as conn, conn.transaction():
            version = await store.allocate_version(conn, structure)
            await svc.outbox.add(conn, TerritoryChanged(
                structure=structure, territory_version=version,
                effective_from=body.effective_from, territory=body.territory,
                reason=body.reason), topic=svc.settings.topics.territory_changes, key=structure,
                correlation_id=f"territory:{structure}:{version}", structure=structure)
        return {"structure": structure, "territory_version": version, "status": "published"}

    return r

"""HTTP API of the alerts service.

- ``GET|POST /alerts/ack/{token}``: the signed link an authority follows to acknowledge.
- ``POST /alerts/{alert_id}/ack``: acknowledgement by API (bearer token, role authority).
- ``GET /alerts/mine``: an authority's own alerts.
- ``GET /alerts/{alert_id}/identity``: the person's identity, for the authority of the
  alert, only when the person consented and the rule requires it (every opening recorded).
- ``GET /alerts/structures/{s}/dysfunctions``: the dysfunction table of the guide's annex 5
  (coordinator of ``s`` or admin), JSON or ``?format=csv``.
- ``GET /alerts/structures/{s}/directory``, ``PUT .../authorities/{id}``, ``PUT .../rules/{id}``:
  the structure's authority directory and rules.
"""

from __future__ import annotations

import csv
import html
import io
import uuid
from typing import Any
from urllib.parse import parse_qs

import orjson
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field

from mediation_core.auth import Caller, require_role
from mediation_core.sealing import KeyDestroyed

from . import content, store
from .directory import Authority, ConfigError, Rule, validate_authority, validate_rule
from .links import BadLink, read_token
from .runtime import Runtime


class AckBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    response: str | None = Field(default=None, max_length=4000,
                                 description="What the authority did or will do.")


class AuthorityIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=200)
    channels: list[str] = Field(default_factory=list)
    webhook_url: str | None = Field(default=None, max_length=2000)
    webhook_secret: str | None = Field(default=None, min_length=16, max_length=200)
    email: str | None = Field(default=None, max_length=320)
    ack: dict[str, str] = Field(default_factory=dict,
                                description="Deadline by urgency: '4h' or '2d' (working days).")


class RuleIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    category: str
    authorities: list[str] = Field(min_length=1)
    escalation: list[str] = Field(default_factory=list)
    urgencies: list[str] = Field(default_factory=list)
    communes: list[str] = Field(default_factory=list)
    requires_identity: bool = False
    priority: int = 100


_ALERT_COLS = """a.alert_id, a.dysfunction_id, a.structure, a.authority_id, a.authority_name,
  a.category, a.urgency, a.status, a.parent_alert_id, a.escalation_level, a.escalated_to,
  a.created_at, a.first_delivered_at, a.ack_due_at, a.acknowledged_at, a.ack_via, a.response,
  a.failed_at, a.failure_reason, a.escalated_at"""


def _jsonable(r: Any) -> dict:
    return orjson.loads(orjson.dumps(dict(r), default=str))


def install_error_handlers(app: FastAPI) -> None:
    """422 with field paths and rules, never the submitted values (they may be personal)."""

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ()) if p not in ("body", "query", "path")]
            problems.append({"field": ".".join(loc) or "(body)", "code": e.get("type", ""),
                             "message": e.get("msg", "")})
        return JSONResponse(status_code=422, content={"detail": "invalid request",
                                                      "problems": problems})


def router(rt: Runtime) -> APIRouter:
    r = APIRouter(prefix="/alerts", tags=["alerts"])

    def pool():
        if rt.svc.pool is None:
            raise HTTPException(503, detail="service starting")
        return rt.svc.pool

    def _scope_structure(caller: Caller, structure: str) -> None:
        if not caller.can_see(structure=structure):
            raise HTTPException(403, detail="structure: outside the caller's scope")

    async def _save(structure: str, item: Any, validate: Any, upsert: Any) -> None:
        """A directory entry or a rule: checked (422 naming the field), then upserted."""
        try:
            validate(item)
        except ConfigError as err:
            raise HTTPException(422, detail=str(err)) from None
        async with pool().acquire() as conn:
            await upsert(conn, structure, item)

    async def _ack(alert_id: uuid.UUID, response: str | None, via: str) -> dict:
        async with pool().acquire() as conn, conn.transaction():
            outcome, row = await store.acknowledge(conn, rt.events, alert_id, response=response,
                                                   via=via, now=rt.clock())
        if outcome == "not_found":
            raise HTTPException(404, detail="alert_id: no such alert")
        return {"alert_id": str(alert_id), "status": "acknowledged",
                "already_acknowledged": outcome == "already",
                "acknowledged_at": row["acknowledged_at"].isoformat()}

    # ------------------------------------------------------------------ signed link
    def _link_alert(token: str) -> uuid.UUID:
        try:
            return read_token(rt.link_key, token, rt.clock())
        except BadLink as err:
            raise HTTPException(403, detail=f"link: {err.code}") from None

    @r.get("/ack/{token}", response_class=HTMLResponse, summary="Acknowledgement page")
    async def ack_page(token: str) -> HTMLResponse:
        alert_id = _link_alert(token)
        row = await pool().fetchrow(
            "SELECT a.*, d.commune, d.concerned, d.description, d.observed_on FROM alerts a "
            "JOIN dysfunctions d USING (dysfunction_id) WHERE alert_id=$1", alert_id)
        if row is None:
            raise HTTPException(404, detail="alert: no such alert")
        e = html.escape
        done = row["acknowledged_at"] is not None
        page = f"""<!doctype html><html lang="fr"><meta charset="utf-8">
<title>Signalement {e(str(alert_id))}</title><body>
<h1>{e(content.CATEGORY_LABELS.get(row['category'], row['category']))}</h1>
<p>Lieu : {e(row['commune'] or 'non précisé')}<br>Concerné : {e(row['concerned'])}<br>
Date des faits : {e(row['observed_on'].date().isoformat())}</p>
<p>{e(row['description'])}</p>
{'<p><strong>Accusé de réception déjà enregistré.</strong></p>' if done else '''
<form method="post"><label>Suites données (facultatif)<br>
<textarea name="response" rows="5" cols="60" maxlength="4000"></textarea></label><br>
<button type="submit">Accuser réception</button></form>'''}
</body></html>"""
        return HTMLResponse(page)

    @r.post("/ack/{token}", summary="Acknowledge through the signed link")
    async def ack_link(token: str, request: Request) -> dict:
        alert_id = _link_alert(token)
        raw = await request.body()
        try:  # the page's form, or JSON: one model checks both
            if request.headers.get("content-type", "").startswith("application/json"):
                body = AckBody.model_validate_json(raw or b"{}")
            else:
                form = parse_qs(raw.decode(errors="replace"))
                body = AckBody(response=(form.get("response") or [None])[0])
        except ValueError:
            raise HTTPException(422, detail="response: must be a string of at most "
                                            "4000 characters") from None
        return await _ack(alert_id, body.response or None, "link")

    # ------------------------------------------------------------------ authority API
    @r.post("/{alert_id}/ack", summary="Acknowledge by API (authority)")
    async def ack_api(alert_id: uuid.UUID, body: AckBody,
                      caller: Caller = Depends(require_role("authority"))) -> dict:
        row = await pool().fetchrow("SELECT authority_id, structure FROM alerts WHERE alert_id=$1",
                                    alert_id)
        if row is None or not _authority_owns(caller, row):
            raise HTTPException(404, detail="alert_id: no such alert for this authority")
        return await _ack(alert_id, body.response, "api")

    def _authority_owns(caller: Caller, row: Any) -> bool:
        if caller.role == "admin":
            return True
        return (caller.authority is not None and row["authority_id"] == caller.authority
                and (caller.structure is None or caller.structure == row["structure"]))

    @r.get("/mine", summary="The calling authority's alerts")
    async def mine(caller: Caller = Depends(require_role("authority")),
                   status: str | None = None, limit: int = Query(200, le=1000)) -> dict:
        if caller.authority is None:
            raise HTTPException(403, detail="token: the authority claim is required")
        rows = await pool().fetch(
            f"""SELECT {_ALERT_COLS}, d.commune, d.concerned, d.description, d.observed_on,
                       d.reported_at
                FROM alerts a JOIN dysfunctions d USING (dysfunction_id)
                WHERE a.authority_id = $1 AND ($2::text IS NULL OR a.structure = $2)
                  AND ($3::text IS NULL OR a.status = $3)
                ORDER BY a.created_at DESC LIMIT $4""",
            caller.authority, caller.structure, status, limit)
        return {"authority": caller.authority, "alerts": [_jsonable(x) for x in rows]}

    @r.get("/{alert_id}/identity", summary="The person's identity, when allowed")
    async def identity(alert_id: uuid.UUID,
                       caller: Caller = Depends(require_role("authority"))) -> dict:
        row = await pool().fetchrow(
            "SELECT a.authority_id, a.structure, a.requires_identity, d.consented, "
            "d.sealed_identity FROM alerts a JOIN dysfunctions d USING (dysfunction_id) "
            "WHERE a.alert_id=$1", alert_id)
        if row is None or not _authority_owns(caller, row):
            raise HTTPException(404, detail="alert_id: no such alert for this authority")
        if not content.identity_allowed(consented=row["consented"],
                                        rule_requires=row["requires_identity"],
                                        sealed_present=row["sealed_identity"] is not None):
            raise HTTPException(403, detail="identity: not shared (needs the person's consent "
                                            "and a rule that requires it)")
        try:
            person = await rt.open_identity(row["sealed_identity"],
                                            actor=f"alerts-api:{caller.sub}",
                                            purpose=f"alert {alert_id}")
        except KeyDestroyed:
            raise HTTPException(410, detail="identity: erased") from None
        return {"alert_id": str(alert_id), "person": person}

    # ------------------------------------------------------------------ annex 5 table
    @r.get("/structures/{structure}/dysfunctions", summary="Dysfunction table (annex 5)")
    async def table(structure: str, caller: Caller = Depends(require_role("coordinator")),
                    format: str = Query("json", pattern="^(json|csv)$")) -> Any:
        _scope_structure(caller, structure)
        rows = await pool().fetch(
            f"""SELECT d.dysfunction_id, d.category, d.urgency, d.commune, d.concerned,
                       d.description, d.observed_on, d.reported_at, d.rule_id, {_ALERT_COLS}
                FROM dysfunctions d LEFT JOIN alerts a USING (dysfunction_id)
                WHERE d.structure = $1 ORDER BY d.reported_at DESC, a.created_at""", structure)
        out: dict[str, dict] = {}
        for x in rows:
            dkey = str(x["dysfunction_id"])
            entry = out.setdefault(dkey, {
                "dysfunction_id": dkey, "category": x["category"],
                "category_label": content.CATEGORY_LABELS.get(x["category"], x["category"]),
                "urgency": x["urgency"], "commune": x["commune"], "concerned": x["concerned"],
                "description": x["description"], "observed_on": x["observed_on"].isoformat(),
                "reported_at": x["reported_at"].isoformat(), "rule_id": x["rule_id"],
                "alerts": []})
            if x["alert_id"] is not None:
                a = _jsonable(x)
                entry["alerts"].append({k: a[k] for k in (
                    "alert_id", "authority_id", "authority_name", "status", "parent_alert_id",
                    "escalation_level", "escalated_to", "created_at", "first_delivered_at",
                    "ack_due_at", "acknowledged_at", "ack_via", "response", "failed_at",
                    "failure_reason")})
        items = list(out.values())
        if format == "csv":
            buf = io.StringIO()
            w = csv.writer(buf, delimiter=";")
            w.writerow(["signalement", "catégorie", "urgence", "commune", "concerné",
                        "date des faits", "date du signalement", "autorité", "statut",
                        "transmis le", "accusé de réception le", "réponse de l'autorité",
                        "échec", "escaladé vers"])
            for it in items:
                for a in it["alerts"] or [{}]:
                    w.writerow([it["dysfunction_id"], it["category_label"], it["urgency"],
                                it["commune"] or "", it["concerned"], it["observed_on"],
                                it["reported_at"], a.get("authority_name", ""),
                                a.get("status", ""), a.get("first_delivered_at") or "",
                                a.get("acknowledged_at") or "", a.get("response") or "",
                                a.get("failure_reason") or "", a.get("escalated_to") or ""])
            return Response(buf.getvalue(), media_type="text/csv; charset=utf-8")
        return {"structure": structure, "dysfunctions": items}

    # ------------------------------------------------------------------ directory
    @r.get("/structures/{structure}/directory", summary="Authorities and rules in force")
    async def get_directory(structure: str,
                            caller: Caller = Depends(require_role("coordinator"))) -> dict:
        _scope_structure(caller, structure)
        async with pool().acquire() as conn:
            d = await store.load_directory(conn, structure)
            rules = await store.load_rules(conn, structure)
        return {
            "authorities": [{"authority_id": a.authority_id, "name": a.name,
                             "channels": list(a.channels), "webhook_url": a.webhook_url,
                             "webhook_secret_set": bool(a.webhook_secret), "email": a.email,
                             "ack": a.ack, "usable_channels": a.usable_channels()}
                            for a in d.values()],
            "rules": [{"rule_id": x.rule_id, "category": x.category,
                       "authorities": list(x.authorities), "escalation": list(x.escalation),
                       "urgencies": list(x.urgencies), "communes": list(x.communes),
                       "requires_identity": x.requires_identity, "priority": x.priority,
                       "own": x.structure_specific} for x in rules],
        }

    @r.put("/structures/{structure}/authorities/{authority_id}", summary="Set an authority")
    async def put_authority(structure: str, authority_id: str, body: AuthorityIn,
                            caller: Caller = Depends(require_role("coordinator"))) -> dict:
        _scope_structure(caller, structure)
        a = Authority(authority_id=authority_id, name=body.name, channels=tuple(body.channels),
                      webhook_url=body.webhook_url, webhook_secret=body.webhook_secret,
                      email=body.email, ack=body.ack)
        await _save(structure, a, validate_authority, store.upsert_authority)
        return {"authority_id": authority_id, "usable_channels": a.usable_channels()}

    @r.put("/structures/{structure}/rules/{rule_id}", summary="Set a rule")
    async def put_rule(structure: str, rule_id: str, body: RuleIn,
                       caller: Caller = Depends(require_role("coordinator"))) -> dict:
        _scope_structure(caller, structure)
        rule = Rule(rule_id=rule_id, category=body.category, authorities=tuple(body.authorities),
                    escalation=tuple(body.escalation), urgencies=tuple(body.urgencies),
                    communes=tuple(body.communes), requires_identity=body.requires_identity,
                    priority=body.priority, structure_specific=True)
        await _save(structure, rule, validate_rule, store.upsert_rule)
        return {"rule_id": rule_id}

    return r

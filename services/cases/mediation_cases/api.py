"""HTTP API of the cases service: the mediator's tools and the coordinator's caseload.

Thin: authenticate and scope the caller, parse, call :mod:`work`, shape the answer.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from mediation_core.auth import Caller, require_role
from mediation_schemas.vocab import Motive

from . import apimodels as m
from . import work
from .context import Deps
from .rules import RuleViolation

CaseCaller = Annotated[Caller, Depends(require_role("mediator", "coordinator"))]
Coordinator = Annotated[Caller, Depends(require_role("coordinator"))]

ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": m.ErrorBody, "description": "Missing, invalid or expired bearer token."},
    403: {"model": m.ErrorBody, "description": "Your role may not do this."},
    404: {"model": m.ErrorBody, "description": "No such case in your scope (a case of another "
          "area or structure is answered the same way)."},
    422: {"model": m.ValidationErrorBody, "description": "A field is missing or invalid: "
          "each problem names the field and the rule, never the value sent."},
}
MUTATION_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    409: {"model": m.ErrorBody, "description": "Stale version (someone changed the case since "
          "you read it), or the case's state forbids it (e.g. closing a closed case)."},
    428: {"model": m.ErrorBody, "description": "No version sent (If-Match or 'version')."},
}
IfMatch = Annotated[str | None, Header(alias="If-Match", description="Case version you read "
                                       "(the ETag of GET /cases/{case_id}), e.g. \"3\".")]


def _version(body_version: int | None, if_match: str | None) -> int | None:
    header = None
    if if_match is not None:
        raw = if_match.strip().removeprefix("W/").strip('"')
        if not raw.isdigit():
            raise RuleViolation("invalid_if_match", "If-Match must be the case version, a "
                                "positive integer such as \"3\"", "If-Match", status=400)
        header = int(raw)
    if header is not None and body_version is not None and header != body_version:
        raise RuleViolation("version_mismatch", "If-Match and the 'version' field disagree; "
                            "send one of them", "version", status=400)
    return body_version if body_version is not None else header


def _result(response: Response, case: m.CaseSummary, **kw) -> m.MutationResult:
    response.headers["ETag"] = f'"{case.version}"'
    return m.MutationResult(case=case, **kw)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RuleViolation)
    async def _rule(request: Request, exc: RuleViolation) -> JSONResponse:
        body = m.ErrorBody(error=exc.code, detail=exc.detail, field=exc.field,
                           current_version=exc.extra.get("current_version"),  # type: ignore[arg-type]
                           case_id=exc.extra.get("case_id"))  # type: ignore[arg-type]
        return JSONResponse(body.model_dump(mode="json", exclude_none=True),
                            status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for e in exc.errors():
            loc = [str(p) for p in e.get("loc", ())]
            if loc and loc[0] in ("body", "query", "path", "header"):
                loc = loc[1:] if loc[0] == "body" else loc
            code, msg = e.get("type", ""), e.get("msg", "")
            ctx = e.get("ctx") or {}
            if code == "union_tag_invalid":  # pydantic's message quotes the value sent
                loc.append(str(ctx.get("discriminator", "kind")).strip("'"))
                msg = f"must be one of {ctx.get('expected_tags', '')}"
            elif code == "union_tag_not_found":
                loc.append(str(ctx.get("discriminator", "kind")).strip("'"))
                msg = "is required"
            problems.append({"field": ".".join(loc) or "(body)", "code": code,
                             "message": msg})
        detail = "; ".join(f"{p['field']}: {p['code']}" for p in problems[:20])
        return JSONResponse({"error": "validation_failed", "detail": detail,
                             "problems": problems}, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 403: "forbidden", 404: "not_found",
                405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(exc.detail)},
                            status_code=exc.status_code, headers=getattr(exc, "headers", None))


def router(deps: Deps) -> APIRouter:
    r = APIRouter(tags=["cases"])

    # ------------------------------------------------------------------ caseload
    @r.get("/cases", response_model=list[m.CaseSummary], responses=ERRORS,
           summary="The active caseload (file active) in your scope, with filters")
    async def list_cases(
        caller: CaseCaller,
        status: Literal["open", "closed", "all"] = "open",
        waiting_first_contact: bool | None = Query(None, description="No first contact yet."),
        overdue: bool | None = Query(None, description="First-contact deadline passed."),
        inactive: bool | None = Query(None, description="No activity for the configured time."),
        motive: Motive | None = None,
        area: str | None = Query(None, description="Coordinators: one area."),
        mediator_id: str | None = None,
        limit: int = Query(100, ge=1, le=500),
        offset: int = Query(0, ge=0),
    ) -> list[m.CaseSummary]:
        return await work.caseload(
            deps, caller, status=status, waiting_first_contact=waiting_first_contact,
            overdue=overdue, inactive=inactive, motive=motive.value if motive else None,
            area=area, mediator_id=mediator_id, limit=limit, offset=offset)

    @r.get("/caseload/summary", response_model=list[m.CaseloadLine], responses=ERRORS,
           summary="Open cases per area and mediator: waiting, overdue, inactive")
    async def caseload_summary(caller: CaseCaller) -> list[m.CaseloadLine]:
        return await work.caseload_summary(deps, caller)

    @r.post("/cases", response_model=m.CaseSummary, status_code=201,
            responses={**ERRORS, 409: {"model": m.ErrorBody, "description":
                                       "The person already has an open case here."}},
            summary="Open a case without a referral (outreach, permanence, self-referral)")
    async def open_case(caller: CaseCaller, req: m.OpenCaseRequest,
                        response: Response) -> m.CaseSummary:
        out = await work.open_case(deps, caller, req)
        response.headers["ETag"] = f'"{out.version}"'
        response.headers["Location"] = f"/cases/{out.case_id}"
        return out

    @r.get("/cases/{case_id}", response_model=m.CaseDetail, responses=ERRORS,
           summary="One case with its referrals, timeline and personal-data audit trail")
    async def get_case(caller: CaseCaller, case_id: uuid.UUID,
                       response: Response) -> m.CaseDetail:
        out = await work.case_detail(deps, caller, case_id)
        response.headers["ETag"] = f'"{out.version}"'
        return out

    @r.get("/cases/{case_id}/identity", response_model=m.IdentityOut,
           responses={**ERRORS, 410: {"model": m.ErrorBody, "description": "Erased."}},
           summary="Open the person's sealed identity (written to the audit trail)")
    async def get_identity(caller: CaseCaller, case_id: uuid.UUID) -> m.IdentityOut:
        return await work.read_identity(deps, caller, case_id)

    @r.get("/cases/{case_id}/timeline/{entry_id}/note", response_model=m.NoteOut,
           responses={**ERRORS, 410: {"model": m.ErrorBody, "description": "Erased."}},
           summary="Open a sealed note of the timeline (written to the audit trail)")
    async def get_note(caller: CaseCaller, case_id: uuid.UUID,
                       entry_id: uuid.UUID) -> m.NoteOut:
        return await work.read_note(deps, caller, case_id, entry_id)

    # ------------------------------------------------------------------ the work
    @r.post("/cases/{case_id}/contacts", response_model=m.MutationResult,
            responses=MUTATION_ERRORS, summary="A contact attempt (the first reached one is "
            "the first contact)")
    async def contact(caller: CaseCaller, case_id: uuid.UUID, req: m.ContactRequest,
                      response: Response, if_match: IfMatch = None) -> m.MutationResult:
        case, entry = await work.record_contact(deps, caller, case_id,
                                                _version(req.version, if_match), req)
        return _result(response, case, entry_id=entry)

    @r.post("/cases/{case_id}/interviews", response_model=m.MutationResult,
            responses=MUTATION_ERRORS, summary="An individual interview")
    async def interview(caller: CaseCaller, case_id: uuid.UUID, req: m.InterviewRequest,
                        response: Response, if_match: IfMatch = None) -> m.MutationResult:
        case, entry = await work.record_interview(deps, caller, case_id,
                                                  _version(req.version, if_match), req)
        return _result(response, case, entry_id=entry)

    @r.post("/cases/{case_id}/actions", response_model=m.MutationResult,
            responses=MUTATION_ERRORS, summary="An action typed by HAS axis (information, "
            "orientation, rights procedure, appointment, accompaniment, interpreting, other)")
    async def action(caller: CaseCaller, case_id: uuid.UUID, response: Response,
                     req: Annotated[m.ActionUnion, Body(discriminator="kind",
                                                        openapi_examples=m.ACTION_EXAMPLES)],
                     if_match: IfMatch = None) -> m.MutationResult:
        case, entry = await work.record_action(deps, caller, case_id,
                                               _version(req.version, if_match), req)
        return _result(response, case, entry_id=entry)

    @r.post("/cases/{case_id}/autonomy", response_model=m.MutationResult,
            responses=MUTATION_ERRORS, summary="Autonomy self-assessment, T0 or T1")
    async def autonomy(caller: CaseCaller, case_id: uuid.UUID, req: m.AutonomyRequest,
                       response: Response, if_match: IfMatch = None) -> m.MutationResult:
        case, entry = await work.record_autonomy(deps, caller, case_id,
                                                 _version(req.version, if_match), req)
        return _result(response, case, entry_id=entry)

    @r.post("/cases/{case_id}/dysfunctions", response_model=m.MutationResult, status_code=201,
            responses=MUTATION_ERRORS, summary="Report a dysfunction or a health risk "
            "(DysfunctionReported, without the person's identity unless they consent)")
    async def dysfunction(caller: CaseCaller, case_id: uuid.UUID, req: m.DysfunctionRequest,
                          response: Response, if_match: IfMatch = None) -> m.MutationResult:
        case, did = await work.report_dysfunction(deps, caller, case_id,
                                                  _version(req.version, if_match), req)
        return _result(response, case, dysfunction_id=did)

    @r.post("/cases/{case_id}/close", response_model=m.MutationResult,
            responses=MUTATION_ERRORS, summary="Close with a HAS or practical reason")
    async def close(caller: CaseCaller, case_id: uuid.UUID, req: m.CloseRequest,
                    response: Response, if_match: IfMatch = None) -> m.MutationResult:
        case, entry = await work.close_case(deps, caller, case_id,
                                            _version(req.version, if_match), req)
        return _result(response, case, entry_id=entry)

    @r.post("/cases/{case_id}/reopen", response_model=m.MutationResult,
            responses=MUTATION_ERRORS, summary="Reopen a closed case")
    async def reopen(caller: CaseCaller, case_id: uuid.UUID, req: m.ReopenRequest,
                     response: Response, if_match: IfMatch = None) -> m.MutationResult:
        case, entry = await work.reopen_case(deps, caller, case_id,
                                             _version(req.version, if_match), req)
        return _result(response, case, entry_id=entry)

    @r.post("/cases/{case_id}/reassign", response_model=m.MutationResult,
            responses=MUTATION_ERRORS, summary="Reassign to another mediator (coordinators)")
    async def reassign(caller: Coordinator, case_id: uuid.UUID, req: m.ReassignRequest,
                       response: Response, if_match: IfMatch = None) -> m.MutationResult:
        case, entry = await work.reassign_case(deps, caller, case_id,
                                               _version(req.version, if_match), req)
        return _result(response, case, entry_id=entry)

    @r.post("/dysfunctions", response_model=m.DysfunctionOut, status_code=201,
            responses=ERRORS, tags=["dysfunctions"],
            summary="Report a dysfunction seen outside any one case (DysfunctionReported)")
    async def observed_dysfunction(caller: CaseCaller,
                                   req: m.ObservedDysfunctionRequest) -> m.DysfunctionOut:
        return await work.report_observed_dysfunction(deps, caller, req)

    # ------------------------------------------------------------------ notices
    @r.get("/notices", response_model=list[m.NoticeOut], responses=ERRORS, tags=["notices"],
           summary="Your reminders (mediator) or escalations (coordinator)")
    async def notices(caller: CaseCaller, include_resolved: bool = False,
                      limit: int = Query(100, ge=1, le=500)) -> list[m.NoticeOut]:
        return await work.list_notices(deps, caller, include_resolved=include_resolved,
                                       limit=limit)

    @r.post("/notices/{notice_id}/ack", response_model=m.NoticeOut, responses=ERRORS,
            tags=["notices"], summary="Acknowledge a notice (idempotent)")
    async def ack_notice(caller: CaseCaller, notice_id: uuid.UUID) -> m.NoticeOut:
        return await work.acknowledge_notice(deps, caller, notice_id)

    # ------------------------------------------------------------------ collective work
    @r.post("/collective-actions", response_model=m.CollectiveActionOut, status_code=201,
            responses=ERRORS, tags=["collective work"],
            summary="Record a workshop, prevention/screening action, awareness session, "
            "partner meeting or tool for professionals (counts, no identities)")
    async def collective(caller: CaseCaller,
                         req: m.CollectiveActionRequest) -> m.CollectiveActionOut:
        return await work.record_collective(deps, caller, req)

    @r.get("/collective-actions", response_model=list[m.CollectiveActionOut], responses=ERRORS,
           tags=["collective work"], summary="Collective actions in your scope")
    async def list_collective(caller: CaseCaller, limit: int = Query(100, ge=1, le=500),
                              offset: int = Query(0, ge=0)) -> list[m.CollectiveActionOut]:
        return await work.list_collective(deps, caller, limit=limit, offset=offset)

    return r

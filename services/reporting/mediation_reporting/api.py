"""HTTP read access to the indicator views (SQL clients and BI tools read Postgres directly).

- ``GET /reports/freshness``: lag of the read models (coordinator).
- ``GET /reports/views/{view}``: rows of a view; coordinators read raw ``v_*`` and
  published ``pub_*`` views of their own structure; other roles only ``pub_*`` views.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, HTTPException

from mediation_core.auth import Caller, current_caller, require_role

from . import catalog, setup


def router(svc) -> APIRouter:
    r = APIRouter(prefix="/reports", tags=["reporting"])

    @r.get("/freshness")
    async def freshness(caller: Caller = Depends(require_role("coordinator"))) -> list[dict]:
        rows = await svc.pool.fetch("SELECT * FROM v_fraicheur ORDER BY source")
        return [dict(x) for x in rows]

    @r.get("/views/{view}")
    async def view(view: str, caller: Caller = Depends(current_caller)) -> dict:
        if view not in catalog.VIEWS and view not in catalog.PUBLISHED:
            raise HTTPException(404, detail="unknown view; accepted: the v_* and pub_* views of VIEWS.md")
        raw = view.startswith("v_")
        if raw and caller.role not in ("coordinator", "admin"):
            raise HTTPException(403, detail="raw views are for coordinators; use the pub_* views")
        cols = await setup.columns(svc.pool, view)
        if "structure" in cols and caller.role != "admin":
            rows = await svc.pool.fetch(f"SELECT * FROM {view} WHERE structure = $1",
                                        caller.structure)
        else:
            rows = await svc.pool.fetch(f"SELECT * FROM {view}")
        return {"view": view, "title": catalog.view_doc(view)[0], "columns": cols,
                "rows": [dict(x) for x in rows]}

    return r

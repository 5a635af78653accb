"""CSV and XLSX exports of any indicator view (raw v_* or published pub_*)."""

from __future__ import annotations

import asyncio
import csv
import io
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import asyncpg

from mediation_core import db

from . import catalog

SECRET = "s"  # shown for a masked cell (secret statistique), as in French official statistics


def check_view(view: str) -> str:
    if view not in catalog.VIEWS and view not in catalog.PUBLISHED:
        raise ValueError(f"unknown view {view!r}; accepted: {', '.join(sorted([*catalog.VIEWS, *catalog.PUBLISHED]))}")
    return view


async def fetch_view(conn: asyncpg.Connection, view: str, *, structure: str | None = None,
                     role: str | None = None) -> tuple[list[str], list[dict]]:
    """Columns and rows of ``view``; with ``role``, read under that role (SET ROLE) so the
    export can only contain what the role may read."""
    check_view(view)
    async with conn.transaction():
        if role:
            await conn.execute(f"SET LOCAL ROLE {db.check_ident(role)}")
        stmt = await conn.prepare(f"SELECT * FROM {view}"
                                  + (" WHERE structure = $1" if structure else ""))
        cols = [a.name for a in stmt.get_attributes()]
        rows = await (stmt.fetch(structure) if structure else stmt.fetch())
    order = [c for c in ("type_periode", "periode", "niveau", "structure", "secteur", "mediateur")
             if c in cols]
    data = [dict(r) for r in rows]
    data.sort(key=lambda r: tuple("" if r[c] is None else str(r[c]) for c in order))
    return cols, data


def _cell(row: dict, col: str):
    v = row.get(col)
    if v is None and col in (row.get("cellules_masquees") or []):
        return SECRET
    if isinstance(v, Decimal):
        return float(v)
    if isinstance(v, datetime):
        return v.isoformat()
    if isinstance(v, list):
        return ",".join(map(str, v))
    return v


def to_csv(view: str, cols: list[str], rows: list[dict]) -> bytes:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(cols)
    for r in rows:
        w.writerow(["" if _cell(r, c) is None else _cell(r, c) for c in cols])
    return ("\ufeff" + buf.getvalue()).encode("utf-8")  # BOM: spreadsheets read UTF-8 right


def to_xlsx(view: str, cols: list[str], rows: list[dict]) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    title, labels = catalog.view_doc(view)
    wb = Workbook()
    ws = wb.active
    ws.title = view[:31]
    ws.append(cols)
    for c in ws[1]:
        c.font = Font(bold=True)
    for r in rows:
        ws.append([_cell(r, c) for c in cols])
    ws.freeze_panes = "A2"
    doc = wb.create_sheet("Définitions")
    doc.append(["Vue", view])
    doc.append(["Description", title])
    doc.append([])
    doc.append(["Colonne", "Libellé"])
    for c in cols:
        doc.append([c, labels.get(c, "")])
    doc.append([])
    doc.append(["s", "valeur masquée (secret statistique)"])
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


async def export(conn: asyncpg.Connection, view: str, fmt: str, out: Path, *,
                 structure: str | None = None, role: str | None = None) -> Path:
    cols, rows = await fetch_view(conn, view, structure=structure, role=role)
    if fmt == "csv":
        data = to_csv(view, cols, rows)
    elif fmt == "xlsx":
        data = to_xlsx(view, cols, rows)
    else:
        raise ValueError("format must be csv or xlsx")
    def write() -> None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(data)

    await asyncio.to_thread(write)
    return out

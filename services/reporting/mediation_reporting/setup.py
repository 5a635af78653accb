"""Database setup run at start (and on a rebuilt schema): code labels, French comments on
every view and column, and the access roles.

Roles (NOLOGIN group roles; real logins are granted membership by the DBA):
- ``<schema>_coordinator`` reads the raw ``v_*`` views and the published ``pub_*`` views;
- ``<schema>_public`` reads the published ``pub_*`` views only;
- neither reads any table (views run with their owner's rights).
Names derive from the schema so test schemas never collide; creation is idempotent.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import asyncpg

from mediation_core import db

from . import catalog

MIGRATIONS = Path(__file__).parent / "migrations"
log = logging.getLogger(__name__)


def role_names(schema: str) -> tuple[str, str]:
    coord = os.environ.get("MEDIATION_REPORTING_COORDINATOR_ROLE") if schema == "reporting" else None
    public = os.environ.get("MEDIATION_REPORTING_PUBLIC_ROLE") if schema == "reporting" else None
    return (db.check_ident(coord or f"{schema}_coordinator"[:63]),
            db.check_ident(public or f"{schema}_public"[:63]))


async def _ensure_role(conn: asyncpg.Connection, role: str) -> None:
    exists = await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role)
    if not exists:
        try:
            await conn.execute(f"CREATE ROLE {role} NOLOGIN")
        except (asyncpg.DuplicateObjectError, asyncpg.UniqueViolationError):
            pass


async def relations(conn: asyncpg.Connection, schema: str) -> dict[str, str]:
    """name -> kind ('r' table, 'v' view) of the schema's relations."""
    rows = await conn.fetch(
        "SELECT c.relname, c.relkind::text AS relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = $1 AND c.relkind IN ('r', 'v', 'm', 'p')", schema)
    return {r["relname"]: r["relkind"] for r in rows}


async def columns(conn: asyncpg.Connection | asyncpg.Pool, rel: str) -> list[str]:
    """Column names of a table or view, in order; ``rel`` as the search path finds it, or
    schema-qualified."""
    return [r["attname"] for r in await conn.fetch(
        "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass AND attnum > 0 "
        "AND NOT attisdropped ORDER BY attnum", rel)]


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


async def apply(conn: asyncpg.Connection, schema: str, role_schema: str | None = None) -> None:
    """Labels, comments and grants on ``schema``; roles named after ``role_schema``."""
    db.check_ident(schema)
    coord, public = role_names(role_schema or schema)
    async with conn.transaction():
        for dom, codes in catalog.LABELS.items():
            await conn.executemany(
                f"INSERT INTO {schema}.libelles (domaine, code, libelle) VALUES ($1, $2, $3) "
                "ON CONFLICT (domaine, code) DO UPDATE SET libelle = EXCLUDED.libelle",
                [(dom, k, v) for k, v in codes.items()])
        rels = await relations(conn, schema)
        views = sorted(n for n, k in rels.items() if k == "v" and (n.startswith("v_") or n.startswith("pub_")))
        for v in views:
            title, labels = catalog.view_doc(v)
            await conn.execute(f"COMMENT ON VIEW {schema}.{v} IS {_lit(title)}")
            for c in await columns(conn, f"{schema}.{v}"):
                if c in labels:
                    await conn.execute(f"COMMENT ON COLUMN {schema}.{v}.{c} IS {_lit(labels[c])}")
    # roles are cluster-wide: outside the transaction, idempotent
    try:
        await _ensure_role(conn, coord)
        await _ensure_role(conn, public)
    except asyncpg.InsufficientPrivilegeError:
        # a database user without CREATEROLE: the DBA creates them (see README)
        log.warning("cannot create the reporting roles; create them as NOLOGIN roles",
                    extra={"fields": {"roles": [coord, public]}})
        if not all([await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", r)
                    for r in (coord, public)]):
            return
    async with conn.transaction():
        await conn.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM PUBLIC, {coord}, {public}")
        await conn.execute(f"GRANT USAGE ON SCHEMA {schema} TO {coord}, {public}")
        for v in views:
            await conn.execute(f"GRANT SELECT ON {schema}.{v} TO {coord}")
            if v.startswith("pub_"):
                await conn.execute(f"GRANT SELECT ON {schema}.{v} TO {public}")


async def drop_roles(conn: asyncpg.Connection, schema: str) -> None:
    """For tests and teardown: remove the schema's roles (after its objects are gone)."""
    for role in role_names(schema):
        if await conn.fetchval("SELECT 1 FROM pg_roles WHERE rolname = $1", role):
            await conn.execute(f"DROP OWNED BY {role}")
            await conn.execute(f"DROP ROLE {role}")


async def view_columns_from_scratch(database_url: str | None = None) -> dict[str, list[str]]:
    """Columns of every v_/pub_ view, from a scratch schema (for VIEWS.md)."""
    import uuid

    from mediation_core.settings import from_env

    url = database_url or from_env("reporting").database_url
    schema = f"reporting_doc_{uuid.uuid4().hex[:8]}"
    pool = await db.create_pool(url, schema, application="reporting-doc")
    try:
        await db.migrate(pool, schema, MIGRATIONS)
        async with pool.acquire() as conn:
            rels = await relations(conn, schema)
            return {v: await columns(conn, f"{schema}.{v}") for v, k in rels.items()
                    if k == "v" and (v.startswith("v_") or v.startswith("pub_"))}
    finally:
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")
        await pool.close()

"""Postgres: one asyncpg pool per service, its own schema, migrations applied on start.

Migrations are plain SQL files, ``NNN_name.sql``, applied in order inside one
transaction each, under an advisory lock (two instances starting together don't race),
and recorded in ``<schema>.schema_migrations``. Every service first gets the core
tables (outbox, inbox) from ``mediation_core/migrations``.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from pathlib import Path

import asyncpg

log = logging.getLogger(__name__)

CORE_MIGRATIONS = Path(__file__).parent / "migrations"
_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def check_ident(name: str) -> str:
    if not _IDENT.match(name):
        raise ValueError(f"not a safe SQL identifier: {name!r}")
    return name


async def create_pool(database_url: str, schema: str, *, application: str,
                      min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    check_ident(schema)
    await ensure_schema(database_url, schema)
    return await asyncpg.create_pool(
        database_url, min_size=min_size, max_size=max_size,
        server_settings={"search_path": f"{schema},public", "application_name": application,
                         "timezone": "UTC"},
        command_timeout=60,
    )


async def ensure_schema(database_url: str, schema: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {check_ident(schema)}")
    except asyncpg.UniqueViolationError:  # two starts racing on the catalog
        pass
    finally:
        await conn.close()


def _files(*dirs: Path) -> list[tuple[str, Path]]:
    out: list[tuple[str, Path]] = []
    for d in dirs:
        for f in sorted(d.glob("*.sql")):
            out.append((f"{d.parent.name}/{f.stem}", f))
    return out


async def migrate(pool: asyncpg.Pool, schema: str, *dirs: Path) -> list[str]:
    """Apply pending migrations (core first, then the service's own). Returns applied names."""
    check_ident(schema)
    applied: list[str] = []
    lock_id = int.from_bytes(hashlib.sha256(schema.encode()).digest()[:8], "big", signed=True)
    async with pool.acquire() as conn:
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", lock_id)
            await conn.execute(
                f"CREATE TABLE IF NOT EXISTS {schema}.schema_migrations ("
                " name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["name"] for r in await conn.fetch(f"SELECT name FROM {schema}.schema_migrations")}
            for name, path in _files(CORE_MIGRATIONS, *dirs):
                if name in done:
                    continue
                sql = path.read_text().replace("{schema}", schema)
                await conn.execute(sql)
                await conn.execute(f"INSERT INTO {schema}.schema_migrations(name) VALUES ($1)", name)
                applied.append(name)
    if applied:
        log.info("migrations applied", extra={"fields": {"schema": schema, "count": len(applied)}})
    return applied


async def wait_for_db(database_url: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    delay = 0.1
    while True:
        try:
            conn = await asyncpg.connect(database_url, timeout=5)
            await conn.close()
            return
        except (TimeoutError, OSError, asyncpg.PostgresError):
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)

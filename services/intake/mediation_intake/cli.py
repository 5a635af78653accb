"""``mediation erase``: crypto-shred a person's data (right to erasure, retention)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncpg

    from mediation_core.sealing import KeyVault
    from mediation_core.settings import Settings


def register(sub) -> None:
    p = sub.add_parser("erase", help="destroy a person's data key (crypto-shredding), recorded")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--referral-id", type=uuid.UUID, help="any accepted referral of the person")
    g.add_argument("--person-ref", help="the person's blind index (person_ref)")
    from .erase import REASONS

    p.add_argument("--reason", choices=REASONS, default="right_to_erasure")
    p.add_argument("--actor", default=os.environ.get("USER", "ops"),
                   help="who asks (recorded; an operator id, not a patient's name)")
    p.set_defaults(func=_cmd_erase)

    r = sub.add_parser("rewrap-keys", help="key rotation: re-wrap every person's data key "
                       "under the current master key (MEDIATION_MASTER_KEY_ID)")
    r.set_defaults(func=_cmd_rewrap)


@contextlib.asynccontextmanager
async def _vault(application: str) -> AsyncIterator[tuple[Settings, asyncpg.Pool, KeyVault]]:
    """Intake's settings, a small pool on its schema and its key vault, for one command."""
    from mediation_core import db, sealing
    from mediation_core.settings import from_env


    s = from_env("intake")
    pool = await db.create_pool(s.database_url, s.schema, application=application, max_size=2)
    try:
        vault = sealing.KeyVault.from_settings(pool, s)
        await vault.ensure()
        yield s, pool, vault
    finally:
        await pool.close()


def _cmd_rewrap(args: argparse.Namespace) -> int:
    return asyncio.run(_rewrap())


async def _rewrap() -> int:
    async with _vault("intake-rewrap") as (s, _, vault):
        n = await vault.rewrap(s.master_key_id)
        print(json.dumps({"rewrapped": n, "master_key_id": s.master_key_id}))
        return 0


def _cmd_erase(args: argparse.Namespace) -> int:
    return asyncio.run(_erase(args))


async def _erase(args: argparse.Namespace) -> int:
    from .erase import NotFound, erase

    async with _vault("intake-erase") as (_, pool, vault):
        try:
            done = await erase(pool, vault, now=datetime.now(UTC), actor=args.actor,
                               reason=args.reason, referral_id=args.referral_id,
                               person_ref=args.person_ref)
        except NotFound as err:
            print(f"mediation erase: {err}", file=sys.stderr)
            return 1
        print(json.dumps({"person_ref": done.person_ref, "key_ids": done.key_ids,
                          "destroyed": done.destroyed}))
        return 0

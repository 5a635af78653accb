"""Master key rotation: data keys re-wrapped under a new master key still open old blocks."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest

from mediation_core import db, sealing
from mediation_core.settings import previous_master_keys

pytestmark = pytest.mark.stack


async def test_rotation_rewraps_every_data_key_and_old_blocks_still_open(settings_for):
    old = settings_for("intake", master_key=os.urandom(32), master_key_id="kek-2025")
    pool = await db.create_pool(old.database_url, old.schema, application="t")
    try:
        v1 = sealing.KeyVault.from_settings(pool, old)
        await v1.ensure()
        async with pool.acquire() as conn, conn.transaction():
            key_id, dek = await v1.key_for_person(conn, "person-ref-1")
        block = sealing.seal(dek, key_id, {"family_name": "ROUVIÈRE"})

        new = old.with_(master_key=os.urandom(32), master_key_id="kek-2026")
        previous = f"kek-2025:{base64.b64encode(old.master_key).decode()}"
        rotating = new.with_(previous_master_keys=previous_master_keys(previous))
        assert set(rotating.master_keys) == {"kek-2025", "kek-2026"}
        v2 = sealing.KeyVault.from_settings(pool, rotating)
        assert await v2.rewrap("kek-2026") == 1
        v3 = sealing.KeyVault.from_settings(pool, new)  # the old master key is gone from config
        assert (await v3.open(block, actor="t", purpose="t")) == {"family_name": "ROUVIÈRE"}
        kek = await pool.fetchval(f"SELECT kek_id FROM {new.keyvault_schema}.person_keys")
        assert kek == "kek-2026"
        with pytest.raises(ValueError):
            previous_master_keys("broken")
    finally:
        await pool.close()


async def test_rewrap_keys_command_moves_keys_to_the_configured_master_key(settings_for,
                                                                          monkeypatch):
    old = settings_for("intake", master_key=os.urandom(32), master_key_id="kek-a")
    pool = await db.create_pool(old.database_url, old.schema, application="t")
    try:
        v1 = sealing.KeyVault.from_settings(pool, old)
        await v1.ensure()
        async with pool.acquire() as conn, conn.transaction():
            for ref in ("person-ref-1", "person-ref-2"):
                await v1.key_for_person(conn, ref)
        new_key = os.urandom(32)
        for name, value in {
            "MEDIATION_INTAKE_SCHEMA": old.schema,
            "MEDIATION_KEYVAULT_SCHEMA": old.keyvault_schema,
            "KAFKA_BOOTSTRAP_SERVERS": old.kafka_bootstrap,
            "DATABASE_URL": old.database_url,
            "MEDIATION_MASTER_KEY": base64.b64encode(new_key).decode(),
            "MEDIATION_MASTER_KEY_ID": "kek-b",
            "MEDIATION_MASTER_KEYS_PREVIOUS": f"kek-a:{base64.b64encode(old.master_key).decode()}",
        }.items():
            monkeypatch.setenv(name, value)
        from mediation_core.cli import main

        assert await asyncio.to_thread(main, ["rewrap-keys"]) == 0
        keks = await pool.fetch(f"SELECT kek_id FROM {old.keyvault_schema}.person_keys")
        assert [r["kek_id"] for r in keks] == ["kek-b", "kek-b"]
    finally:
        await pool.close()

"""Master key rotation: data keys re-wrapped under a new master key still open old blocks."""

from __future__ import annotations

import base64
import os

import pytest
from mediation_core import db, sealing
from mediation_intake.service import make_vault, master_keys

pytestmark = pytest.mark.stack


async def test_rotation_rewraps_every_data_key_and_old_blocks_still_open(settings_for):
    old = settings_for("intake", master_key=os.urandom(32), master_key_id="kek-2025")
    pool = await db.create_pool(old.database_url, old.schema, application="t")
    try:
        v1 = make_vault(pool, old, previous="")
        await v1.ensure()
        async with pool.acquire() as conn, conn.transaction():
            key_id, dek = await v1.key_for_person(conn, "person-ref-1")
        block = sealing.seal(dek, key_id, {"family_name": "ROUVIÈRE"})

        new = old.with_(master_key=os.urandom(32), master_key_id="kek-2026")
        previous = f"kek-2025:{base64.b64encode(old.master_key).decode()}"
        assert set(master_keys(new, previous)) == {"kek-2025", "kek-2026"}
        v2 = make_vault(pool, new, previous=previous)
        assert await v2.rewrap("kek-2026") == 1
        v3 = make_vault(pool, new, previous="")  # the old master key is gone from config
        assert (await v3.open(block, actor="t", purpose="t")) == {"family_name": "ROUVIÈRE"}
        kek = await pool.fetchval(f"SELECT kek_id FROM {new.keyvault_schema}.person_keys")
        assert kek == "kek-2026"
        with pytest.raises(ValueError):
            master_keys(new, "broken")
    finally:
        await pool.close()

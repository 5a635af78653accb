"""Sealing personal data: envelope encryption with one data key per person.

- Each person gets a random 256-bit data key (DEK). Identity and contact fields are
  sealed with AES-256-GCM under it (the key id is the associated data).
- The DEK is stored *wrapped* (AES-256-GCM) by a master key from configuration
  (``MEDIATION_MASTER_KEY``, id ``MEDIATION_MASTER_KEY_ID``); :meth:`KeyVault.rewrap`
  moves every key to a new master key (rotation).
- The key vault is a small table in its own schema (``keyvault``): a stand-in for a KMS
  that intake and cases reach, and alerts only to name a person who consented when a rule
  requires it. Routing and reporting never get a key.
- Erasure (right to erasure, retention) destroys the person's DEK: every sealed copy, in
  Kafka's log or in any table, becomes unreadable (crypto-shredding).
- The blind index is an HMAC-SHA256 of the normalised identity under its own key: equal
  for the same person, meaningless without the key.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import time
import unicodedata
import uuid
from datetime import date
from typing import Any

import asyncpg
import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from mediation_schemas.common import SealedBlock

from .db import check_ident
from .settings import Settings


class KeyDestroyed(Exception):
    """The person's key was destroyed (erasure): the sealed data can no longer be opened."""


def normalise_identity_part(s: str) -> str:
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c))
    return " ".join("".join(c if c.isalnum() else " " for c in s.upper()).split())


def blind_index(key: bytes, family_name: str, given_name: str, birth_date: date | str) -> str:
    """Keyed blind index of a person's normalised identity (hex, 32 chars)."""
    msg = "|".join([normalise_identity_part(family_name), normalise_identity_part(given_name),
                    str(birth_date)])
    return hmac.new(key, msg.encode(), hashlib.sha256).hexdigest()[:32]


def seal(dek: bytes, key_id: str, data: dict[str, Any]) -> SealedBlock:
    nonce = os.urandom(12)
    ct = AESGCM(dek).encrypt(nonce, orjson.dumps(data), key_id.encode())
    return SealedBlock(key_id=key_id, nonce=base64.b64encode(nonce).decode(),
                       ciphertext=base64.b64encode(ct).decode())


def unseal(dek: bytes, block: SealedBlock) -> dict[str, Any]:
    try:
        plain = AESGCM(dek).decrypt(base64.b64decode(block.nonce),
                                    base64.b64decode(block.ciphertext), block.key_id.encode())
    except InvalidTag as err:
        raise ValueError("sealed block does not open with this key") from err
    return orjson.loads(plain)


class KeyVault:
    """Per-person data keys, wrapped by the master key, in schema ``keyvault``."""

    @classmethod
    def from_settings(cls, pool: asyncpg.Pool, settings: Settings) -> KeyVault:
        """The vault as configured: current master key, previous ones during a rotation."""
        return cls(pool, settings.master_keys, settings.master_key_id,
                   schema=settings.keyvault_schema)

    def __init__(self, pool: asyncpg.Pool, master_keys: dict[str, bytes], current_kek: str,
                 schema: str = "keyvault", cache_ttl: float = 30.0) -> None:
        self.pool = pool
        self.master_keys = master_keys
        self.current_kek = current_kek
        self.schema = check_ident(schema)
        self.cache_ttl = cache_ttl
        self._cache: dict[str, tuple[float, bytes]] = {}

    async def ensure(self) -> None:
        async with self.pool.acquire() as conn:
            lock = int.from_bytes(hashlib.sha256(self.schema.encode()).digest()[:8], "big", signed=True)
            async with conn.transaction():
                await conn.execute("SELECT pg_advisory_xact_lock($1)", lock)
                await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.schema}")
                await conn.execute(f"""
                CREATE TABLE IF NOT EXISTS {self.schema}.person_keys (
                    key_id       text PRIMARY KEY,
                    person_ref   text UNIQUE,
                    wrapped_key  bytea,
                    kek_id       text NOT NULL,
                    created_at   timestamptz NOT NULL DEFAULT now(),
                    destroyed_at timestamptz,
                    destroy_reason text
                )""")
                await conn.execute(f"""
                CREATE TABLE IF NOT EXISTS {self.schema}.key_events (
                    id bigserial PRIMARY KEY, key_id text NOT NULL, action text NOT NULL,
                    actor text NOT NULL, reason text, at timestamptz NOT NULL DEFAULT now()
                )""")

    def _wrap(self, key_id: str, dek: bytes) -> bytes:
        nonce = os.urandom(12)
        return nonce + AESGCM(self.master_keys[self.current_kek]).encrypt(nonce, dek, key_id.encode())

    def _unwrap(self, key_id: str, kek_id: str, wrapped: bytes) -> bytes:
        kek = self.master_keys.get(kek_id)
        if kek is None:
            raise RuntimeError(f"master key {kek_id!r} is not configured")
        return AESGCM(kek).decrypt(wrapped[:12], wrapped[12:], key_id.encode())

    async def key_for_person(self, conn: asyncpg.Connection, person_ref: str) -> tuple[str, bytes]:
        """The person's live key, created if needed (in the caller's transaction).

        A person whose key was destroyed gets a new one: erasure is about the past data.
        """
        row = await conn.fetchrow(
            f"SELECT key_id, kek_id, wrapped_key FROM {self.schema}.person_keys "
            "WHERE person_ref = $1", person_ref)
        if row and row["wrapped_key"] is not None:
            dek = self._unwrap(row["key_id"], row["kek_id"], bytes(row["wrapped_key"]))
            return row["key_id"], dek
        key_id = str(uuid.uuid4())
        dek = AESGCM.generate_key(bit_length=256)
        if row:  # destroyed earlier: free the person_ref for the new key
            await conn.execute(f"UPDATE {self.schema}.person_keys SET person_ref = NULL "
                               "WHERE key_id = $1", row["key_id"])
        inserted = await conn.fetchval(
            f"INSERT INTO {self.schema}.person_keys(key_id, person_ref, wrapped_key, kek_id) "
            "VALUES ($1,$2,$3,$4) ON CONFLICT (person_ref) DO NOTHING RETURNING key_id",
            key_id, person_ref, self._wrap(key_id, dek), self.current_kek)
        if inserted is None:  # a concurrent transaction created it first
            return await self.key_for_person(conn, person_ref)
        return key_id, dek

    async def live_keys_for(self, conn: asyncpg.Connection, person_refs: list[str]
                            ) -> dict[str, tuple[str, bytes]]:
        """The live keys of many people in two round trips: those that exist, then one
        insert for those that have none. A person missing from the answer (a key destroyed
        earlier, or created concurrently) goes through :meth:`key_for_person`."""
        refs = sorted(set(person_refs))
        rows = await conn.fetch(
            f"SELECT person_ref, key_id, kek_id, wrapped_key FROM {self.schema}.person_keys "
            "WHERE person_ref = ANY($1::text[])", refs)
        out = {r["person_ref"]: (r["key_id"], self._unwrap(r["key_id"], r["kek_id"],
                                                          bytes(r["wrapped_key"])))
               for r in rows if r["wrapped_key"] is not None}
        seen = {r["person_ref"] for r in rows}
        new = [(ref, str(uuid.uuid4()), AESGCM.generate_key(bit_length=256))
               for ref in refs if ref not in seen]
        if new:
            inserted = {r["person_ref"] for r in await conn.fetch(
                f"INSERT INTO {self.schema}.person_keys(key_id, person_ref, wrapped_key, kek_id) "
                "SELECT * FROM unnest($1::text[], $2::text[], $3::bytea[], $4::text[]) "
                "ON CONFLICT (person_ref) DO NOTHING RETURNING person_ref",
                [k for _, k, _ in new], [r for r, _, _ in new],
                [self._wrap(k, dek) for _, k, dek in new], [self.current_kek] * len(new))}
            out.update({ref: (k, dek) for ref, k, dek in new if ref in inserted})
        return out

    async def get(self, key_id: str) -> bytes:
        """The data key, or KeyDestroyed. Cached briefly (``cache_ttl``) per process."""
        hit = self._cache.get(key_id)
        now = time.monotonic()
        if hit and now - hit[0] < self.cache_ttl:
            return hit[1]
        row = await self.pool.fetchrow(
            f"SELECT kek_id, wrapped_key FROM {self.schema}.person_keys WHERE key_id = $1", key_id)
        if row is None or row["wrapped_key"] is None:
            self._cache.pop(key_id, None)
            raise KeyDestroyed(key_id)
        dek = self._unwrap(key_id, row["kek_id"], bytes(row["wrapped_key"]))
        self._cache[key_id] = (now, dek)
        return dek

    async def open(self, block: SealedBlock | dict, *, actor: str, purpose: str) -> dict[str, Any]:
        """Unseal a block; every opening is recorded (actor and purpose, never the data)."""
        b = block if isinstance(block, SealedBlock) else SealedBlock.model_validate(block)
        dek = await self.get(b.key_id)
        await self.pool.execute(
            f"INSERT INTO {self.schema}.key_events(key_id, action, actor, reason) "
            "VALUES ($1, 'open', $2, $3)", b.key_id, actor, purpose)
        return unseal(dek, b)

    async def destroy(self, key_id: str, *, actor: str, reason: str) -> bool:
        """Crypto-shredding: the wrapped key is erased; returns False if already gone."""
        async with self.pool.acquire() as conn, conn.transaction():
            done = await conn.fetchval(
                f"UPDATE {self.schema}.person_keys SET wrapped_key = NULL, destroyed_at = now(), "
                "destroy_reason = $2 WHERE key_id = $1 AND wrapped_key IS NOT NULL RETURNING 1",
                key_id, reason)
            await conn.execute(
                f"INSERT INTO {self.schema}.key_events(key_id, action, actor, reason) "
                "VALUES ($1, 'destroy', $2, $3)", key_id, actor, reason)
        self._cache.pop(key_id, None)
        return bool(done)

    async def rewrap(self, new_kek_id: str) -> int:
        """Key rotation: re-wrap every live data key under another master key."""
        if new_kek_id not in self.master_keys:
            raise RuntimeError(f"master key {new_kek_id!r} is not configured")
        n = 0
        old = self.current_kek
        self.current_kek = new_kek_id
        try:
            async with self.pool.acquire() as conn, conn.transaction():
                rows = await conn.fetch(
                    f"SELECT key_id, kek_id, wrapped_key FROM {self.schema}.person_keys "
                    "WHERE wrapped_key IS NOT NULL AND kek_id <> $1 FOR UPDATE", new_kek_id)
                for r in rows:
                    dek = self._unwrap(r["key_id"], r["kek_id"], bytes(r["wrapped_key"]))
                    await conn.execute(
                        f"UPDATE {self.schema}.person_keys SET wrapped_key=$2, kek_id=$3 "
                        "WHERE key_id=$1", r["key_id"], self._wrap(r["key_id"], dek), new_kek_id)
                    n += 1
        except Exception:
            self.current_kek = old
            raise
        return n

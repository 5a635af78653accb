"""Kafka forms over their source's budget: parked durably, drained fairly.

- :func:`park` writes the form into ``parked`` inside the consumer's batch transaction (so
  the inbox row and the parked form commit together: a crash loses nothing). The payload is
  sealed with the ops key (AES-256-GCM, associated data = the event id).
- :class:`Drainer` takes parked forms at each source's budget, round-robin across sources
  (fairness.py), oldest first within a source, claiming rows ``FOR UPDATE SKIP LOCKED``, and
  runs each through :meth:`Intake.take` with its events written by ``Outbox.add`` in the
  transaction that deletes the parked row.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import logging
import os
import random
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import asyncpg
import orjson
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client import Counter, Gauge

from mediation_core import telemetry
from mediation_core.errors import is_transient
from mediation_core.outbox import Outbox
from mediation_schemas.envelope import Envelope

from .fairness import RoundRobin
from .intake import Intake, source_label

log = logging.getLogger(__name__)
PARKED_BACKLOG = Gauge(
    "mediation_intake_parked_backlog",
    "Kafka referral forms parked (over their sender's budget) and not yet taken, by sender",
    ["source_system"])
PARKED = Counter("mediation_intake_parked_total",
                 "Kafka referral forms parked because their sender was over budget", ["source_system"])
DRAINED = Counter("mediation_intake_drained_total",
                  "Parked referral forms taken by the drainer", ["source_system"])

_SELECT = ("SELECT id, event_id, source_system, correlation_id, structure, occurred_at,"
           " received_at, size, sealed FROM parked")


def seal_payload(key: bytes, event_id: uuid.UUID, payload: dict) -> bytes:
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, orjson.dumps(payload), event_id.bytes)


def open_payload(key: bytes, event_id: uuid.UUID, blob: bytes) -> dict:
    return orjson.loads(AESGCM(key).decrypt(blob[:12], blob[12:], event_id.bytes))


async def has_backlog(conn: asyncpg.Connection, source: str) -> bool:
    """Whether this source already has parked forms (its new ones queue behind them)."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM parked WHERE source_system = $1)", source))


async def park(conn: asyncpg.Connection, key: bytes, *, env: Envelope, payload: dict,
               source: str, size: int, now: datetime) -> None:
    await conn.execute(
        "INSERT INTO parked(event_id, source_system, correlation_id, structure, occurred_at,"
        " received_at, size, sealed) VALUES ($1,$2,$3,$4,$5,$6,$7,$8)"
        " ON CONFLICT (event_id) DO NOTHING",
        env.event_id, source, env.correlation_id, env.structure, env.occurred_at, now, size,
        seal_payload(key, env.event_id, payload))
    PARKED.labels(source_label(source)).inc()


class Drainer:
    """One drain round = one transaction: up to ``batch`` forms planned by the round-robin."""

    def __init__(self, *, pool: asyncpg.Pool, intake: Intake, outbox: Outbox,
                 rr: RoundRobin, key: bytes, dlq_topic: str, service: str = "intake",
                 batch: int = 100, idle: float = 0.2) -> None:
        self.pool = pool
        self.intake = intake
        self.outbox = outbox
        self.rr = rr
        self.key = key
        self.dlq_topic = dlq_topic
        self.service = service
        self.batch = batch
        self.idle = idle
        self.drained = 0
        self.fault: Callable[[], Awaitable[None]] | None = None  # crash injection for tests
        self._labels: set[str] = set()
        self._tracer = telemetry.tracer("mediation.intake.drain")

    async def backlog(self) -> dict[str, int]:
        rows = await self.pool.fetch(
            "SELECT source_system, count(*) AS n FROM parked GROUP BY source_system")
        counts = {r["source_system"]: r["n"] for r in rows}
        by_label: dict[str, int] = collections.Counter()
        for s, n in counts.items():
            by_label[source_label(s)] += n
        for label in self._labels | set(by_label):
            PARKED_BACKLOG.labels(label).set(by_label.get(label, 0))
        self._labels |= set(by_label)
        return counts

    async def drain_once(self) -> tuple[int, float]:
        """Take what the budgets allow now. Returns (forms taken, seconds to wait before the
        next round: 0 to go on at once)."""
        counts = await self.backlog()
        if not counts:
            return 0, self.idle
        picked, wait = self.rr.plan(counts, self.batch)
        if not picked:
            return 0, min(wait, self.idle * 5) if wait > 0 else self.idle
        per_source = collections.Counter(picked)
        done: list[str] = []
        async with self.pool.acquire() as conn, conn.transaction():
            claimed: dict[str, collections.deque] = {}
            for src, n in per_source.items():
                rows = await conn.fetch(f"{_SELECT} WHERE source_system = $1 ORDER BY id"
                                        " LIMIT $2 FOR UPDATE SKIP LOCKED", src, n)
                head = await conn.fetchval(
                    "SELECT min(id) FROM parked WHERE source_system = $1", src)
                if rows and rows[0]["id"] == head:  # else another drainer holds its oldest
                    claimed[src] = collections.deque(rows)
            ids = []
            for src in picked:  # interleaved: the round-robin order
                q = claimed.get(src)
                if not q:
                    continue
                row = q.popleft()
                await self._take(conn, row)
                ids.append(row["id"])
                done.append(src)
                if self.fault is not None:
                    await self.fault()
            if ids:
                await conn.execute("DELETE FROM parked WHERE id = ANY($1::bigint[])", ids)
        for src in done:
            DRAINED.labels(source_label(src)).inc()
        self.drained += len(done)
        return len(done), 0.0

    async def _take(self, conn: asyncpg.Connection, row: asyncpg.Record) -> None:
        """The same use case as the consumer, its events caused by the parked envelope."""
        event_id: uuid.UUID = row["event_id"]

        async def emit(payload, topic, key):
            return await self.outbox.add(conn, payload, topic=topic, key=key,
                                         correlation_id=row["correlation_id"],
                                         causation_id=event_id, structure=row["structure"])

        with self._tracer.start_as_current_span(
                "intake drain parked form",
                attributes={"messaging.message.id": str(event_id),
                            "mediation.correlation_id": row["correlation_id"],
                            "mediation.source_system": row["source_system"]}):
            try:
                async with conn.transaction():  # savepoint: a failure leaves no trace
                    raw = open_payload(self.key, event_id, bytes(row["sealed"]))
                    await self.intake.take(conn, emit, raw, size=row["size"], channel="kafka")
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    raise
                log.error("parked form failed; dead-lettered", exc_info=True, extra={"fields": {
                    "event_id": str(event_id), "source_system": row["source_system"],
                    "exc_type": type(exc).__name__}})
                await self._dead_letter(conn, row, type(exc).__name__)

    async def _dead_letter(self, conn: asyncpg.Connection, row: asyncpg.Record,
                           reason: str) -> None:
        """Like the consumer's dead letters: reason and ids in clear, the form sealed with the
        ops key (associated data = the dead letter id), so it can be replayed, never read."""
        dl_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.service}/parked/{row['event_id']}")
        try:
            value = orjson.dumps({
                "event_id": str(row["event_id"]), "type": "ReferralReceived", "version": 1,
                "occurred_at": row["occurred_at"].isoformat(), "producer": "parked",
                "correlation_id": row["correlation_id"], "structure": row["structure"],
                "payload": open_payload(self.key, row["event_id"], bytes(row["sealed"]))})
        except Exception:
            value = b""  # the parked copy does not open (key changed): nothing to replay
        original = orjson.dumps({"key": None, "value": base64.b64encode(value).decode() or None,
                                 "headers": []})
        nonce = os.urandom(12)
        body = {
            "dead_letter_id": str(dl_id), "consumer": f"{self.service}.drain",
            "service": self.service, "reason_code": "handler_error", "reason": reason,
            "source": {"parked_id": row["id"]}, "event_id": str(row["event_id"]),
            "event_type": "ReferralReceived", "event_version": 1,
            "correlation_id": row["correlation_id"],
            "original_sealed": {
                "alg": "AES-256-GCM", "nonce": base64.b64encode(nonce).decode(),
                "ciphertext": base64.b64encode(
                    AESGCM(self.key).encrypt(nonce, original, dl_id.bytes)).decode()},
            "dead_lettered_at": datetime.now(UTC).isoformat(),
        }
        await self.outbox.add_raw(conn, topic=self.dlq_topic, key=str(dl_id),
                                  value=orjson.dumps(body), event_id=dl_id,
                                  headers={"dead_letter": "1", "reason_code": "handler_error"})

    async def run(self, stopping: asyncio.Event) -> None:
        """Until ``stopping`` is set; transient faults back off and retry (nothing skipped)."""
        delay = 0.1
        while not stopping.is_set():
            try:
                n, wait = await self.drain_once()
                delay = 0.1
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                telemetry.RETRIES.labels(self.service, "drain").inc()
                log.warning("drain round failed, will retry", exc_info=not is_transient(exc),
                            extra={"fields": {"exc_type": type(exc).__name__}})
                n, wait = 0, delay * (0.5 + random.random())
                delay = min(delay * 2, 5.0)
            if n and not wait:
                await asyncio.sleep(0)
                continue
            try:
                await asyncio.wait_for(stopping.wait(), timeout=max(wait, 0.01))
            except TimeoutError:
                pass

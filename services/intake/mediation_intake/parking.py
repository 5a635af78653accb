"""Kafka forms over their source's budget: parked durably, drained fairly and at full speed.

- :func:`park` writes the form into ``parked`` inside the consumer's batch transaction, so
  the inbox row and the parked form commit together (a crash loses nothing, a redelivery
  is dropped by the inbox). The record (key, value, headers) is sealed with the ops key
  (AES-256-GCM, associated data = the event id). A form over the size limit is parked
  without its body (only what its rejection needs): a flood of huge records cannot fill
  the table.
- :class:`Drainer` takes parked forms round-robin across sources (fairness.RoundRobin),
  oldest first within a source, as fast as it can: one round = one transaction of up to
  ``batch`` forms, each run through :meth:`Intake.take` (the consumer's use case), its
  events written to the outbox and its row deleted in that transaction. A crash (process
  killed, task cancelled) mid-round rolls the whole round back. Several drainers (replicas)
  share the work: a source is drained by one at a time (transaction-scoped advisory lock),
  so its order holds.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import logging
import os
import random
import time
import uuid
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiokafka import ConsumerRecord
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from prometheus_client import Counter, Gauge

from mediation_core import telemetry
from mediation_core.consumer import Batch, Write
from mediation_core.errors import is_transient
from mediation_core.outbox import Outbox
from mediation_schemas.envelope import Envelope, Payload, decode_envelope, new_envelope

from .fairness import RoundRobin
from .intake import Intake, source_label
from .validation import safe_ids

log = logging.getLogger(__name__)
PARKED_BACKLOG = Gauge(
    "mediation_intake_parked_backlog",
    "Kafka referral forms parked (their sender over its budget, or behind its own parked "
    "forms) and not yet taken, by sending system (bounded label)", ["source_system"])
DRAINED = Counter("mediation_intake_drained_total",
                  "Parked referral forms taken by the drainer (counted once committed)",
                  ["source_system"])
CHANNEL = "mediation_intake_parked"


class _Isolate(Exception):
    """A form failed for good in a round without savepoints: run it again with them."""


def seal_record(key: bytes, event_id: uuid.UUID, rec: ConsumerRecord, *,
                oversize: bool, payload: Any) -> bytes:
    """The record as the dead-letter format keeps it ({key, value, headers}, base64); an
    oversize one keeps no value, only the form's ids (what its rejection needs)."""
    body: dict[str, Any] = {
        "key": base64.b64encode(rec.key).decode() if rec.key else None,
        "value": None if oversize or not rec.value else base64.b64encode(rec.value).decode(),
        "headers": [[k, base64.b64encode(v).decode()] for k, v in (rec.headers or [])],
    }
    if oversize:
        src, ref = safe_ids(payload)
        body["ids"] = {"source_system": src, "source_reference": ref}
    nonce = os.urandom(12)
    return nonce + AESGCM(key).encrypt(nonce, orjson.dumps(body), event_id.bytes)


def open_record(key: bytes, event_id: uuid.UUID, blob: bytes) -> dict[str, Any]:
    return orjson.loads(AESGCM(key).decrypt(blob[:12], blob[12:], event_id.bytes))


async def has_backlog(conn: asyncpg.Connection, source: str) -> bool:
    """Whether this source has parked forms (committed, or parked earlier in this transaction)."""
    return bool(await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM parked WHERE source_system = $1)", source))


async def sources_with_backlog(conn: asyncpg.Connection, sources: list[str]) -> set[str]:
    """Which of these sources have parked forms (one query for a batch)."""
    return {r["source_system"] for r in await conn.fetch(
        "SELECT DISTINCT source_system FROM parked WHERE source_system = ANY($1::text[])",
        sources)}


async def park(conn: asyncpg.Connection, key: bytes, *, env: Envelope, rec: ConsumerRecord,
               payload: Any, source: str, size: int, max_bytes: int,
               write: Write | None = None) -> None:
    """``write``: a batch's deferred write (parked rows keep their batch order: ids are
    given as the batch's rows are inserted, in order)."""
    await (write or conn.execute)(
        "INSERT INTO parked(event_id, source_system, correlation_id, structure, size, topic,"
        " partition, \"offset\", sealed) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)"
        " ON CONFLICT (event_id) DO NOTHING",
        env.event_id, source, env.correlation_id, env.structure, size, rec.topic,
        rec.partition, rec.offset,
        seal_record(key, env.event_id, rec, oversize=size > max_bytes, payload=payload))


# The distinct parked sources after $1 ('': from the first; a source is never ''), at most
# $2: a loose index scan on parked_source, its cost follows the sources, not the rows.
_SOURCES = """
WITH RECURSIVE s(src) AS (
    (SELECT source_system FROM parked WHERE source_system > $1
     ORDER BY source_system LIMIT 1)
    UNION ALL
    SELECT (SELECT p.source_system FROM parked p WHERE p.source_system > s.src
            ORDER BY p.source_system LIMIT 1)
    FROM s WHERE s.src IS NOT NULL
)
SELECT src FROM s WHERE src IS NOT NULL LIMIT $2
"""
_LOCK = ("SELECT s FROM unnest($1::text[]) AS s WHERE"
         " pg_try_advisory_xact_lock(hashtextextended('intake.parked:' || current_schema()"
         " || ':' || s, 0))")
_HEADS = ("SELECT q.src, p.id FROM unnest($1::text[]) AS q(src) CROSS JOIN LATERAL"
          " (SELECT id FROM parked WHERE source_system = q.src ORDER BY id LIMIT $2) p")


class Drainer:
    """Takes parked forms, round after round, until ``run``'s ``stopping`` is set."""

    def __init__(self, *, pool: asyncpg.Pool, intake: Intake, outbox: Outbox, key: bytes,
                 dlq_topic: str, consumer: str, service: str = "intake", batch: int = 200,
                 idle_poll: float = 1.0) -> None:
        self.pool = pool
        self.intake = intake
        self.outbox = outbox
        self.key = key
        self.dlq_topic = dlq_topic
        self.consumer = consumer  # dead letters are the consumer's: same name, same format
        self.service = service
        self.batch = batch
        self.idle_poll = idle_poll
        self.rr = RoundRobin()
        self.wake = asyncio.Event()
        self.drained = 0  # committed
        # test hook, awaited after each form taken inside the round's transaction
        self.after_take: Callable[[str], Awaitable[None]] | None = None
        self._labels: set[str] = set()
        self._backlogged: set[str] = set()
        self._gauge_at = 0.0
        self._schema: str | None = None
        self._listener: asyncpg.Connection | None = None  # held for LISTEN while running
        self._tracer = telemetry.tracer("mediation.intake.drain")

    # ------------------------------------------------------------------ one round
    async def drain_once(self) -> int:
        """One round (one transaction): up to ``batch`` parked forms, round-robin across
        sources. Returns the number of forms taken (0: nothing parked, or every parked
        source is being drained by another replica)."""
        async with self.pool.acquire() as conn:
            last = self.rr.last  # the rerun plans the same round: same sources, same heads
            try:
                taken = await self._round(conn, isolate=False)
            except _Isolate:
                self.rr.last = last
                taken = await self._round(conn, isolate=True)
        for src, n in Tally(taken).items():
            DRAINED.labels(source_label(src)).inc(n)
        self.drained += len(taken)
        return len(taken)

    async def _round(self, conn: asyncpg.Connection, *, isolate: bool) -> list[str]:
        async with conn.transaction():
            found = [r["src"] for r in await conn.fetch(_SOURCES, self.rr.last or "", self.batch)]
            if len(found) < self.batch and self.rr.last is not None:  # wrap around
                found += [r["src"] for r in await conn.fetch(_SOURCES, "", self.batch)
                          if r["src"] not in found][: self.batch - len(found)]
            if not found:
                return []
            mine = [r["s"] for r in await conn.fetch(_LOCK, found)]
            queues: dict[str, list[int]] = {}
            for r in await conn.fetch(_HEADS, mine, self.batch):
                queues.setdefault(r["src"], []).append(r["id"])
            for q in queues.values():
                q.sort()
            plan = self.rr.plan(queues, self.batch)
            if not plan:
                return []
            rows = {r["id"]: r for r in await conn.fetch(
                "SELECT id, event_id, source_system, correlation_id, structure, size, topic,"
                " partition, \"offset\", sealed FROM parked WHERE id = ANY($1::bigint[])",
                [pid for _, pid in plan])}
            emitted: list[tuple[Envelope, str, str | None, dict[str, str]]] = []
            taken: list[str] = []
            batch = None if isolate else await self._prepare(conn, [rows[pid] for _, pid in plan])
            for src, pid in plan:
                await self._take(conn, rows[pid], emitted, isolate, batch)
                taken.append(src)
                if self.after_take is not None:
                    await self.after_take(src)
            if batch is not None:
                try:
                    await batch.finish()
                except Exception as exc:
                    if is_transient(exc):
                        raise
                    raise _Isolate() from exc
            if emitted:
                await self.outbox.add_many(conn, emitted)
            await conn.execute("DELETE FROM parked WHERE id = ANY($1::bigint[])",
                               [pid for _, pid in plan])
            return taken

    def _open(self, row: asyncpg.Record) -> tuple[dict[str, Any], Any]:
        """The parked record and the form it carries."""
        rec = open_record(self.key, row["event_id"], bytes(row["sealed"]))
        if rec["value"] is not None:
            return rec, dict(decode_envelope(base64.b64decode(rec["value"])).payload)
        # parked oversize: only its ids were kept; take() rejects it on its size
        return rec, {k: v for k, v in rec["ids"].items() if v is not None}

    async def _prepare(self, conn: asyncpg.Connection, rows: list[asyncpg.Record]) -> Batch:
        """The round's forms prepared together, as the consumer prepares a batch (a form
        that does not open is left out: it fails again when taken, and is isolated)."""
        batch = Batch(conn=conn, isolate=False)
        forms = []
        for row in rows:
            with contextlib.suppress(Exception):
                forms.append((str(row["event_id"]), self._open(row)[1], row["size"]))
        try:
            await self.intake.prepare(batch, forms)
        except Exception as exc:
            if is_transient(exc):
                raise
            raise _Isolate() from exc
        return batch

    async def _take(self, conn: asyncpg.Connection, row: asyncpg.Record,
                    emitted: list, isolate: bool, batch: Batch | None = None) -> None:
        """The consumer's use case, its events caused by the parked envelope, in a span
        that continues the record's trace."""
        event_id: uuid.UUID = row["event_id"]
        rec: dict[str, Any] = {"key": None, "value": None, "headers": []}
        try:
            rec, raw = self._open(row)
        except Exception as exc:  # sealed under another ops key, or damaged
            if not isolate:
                raise _Isolate() from exc
            log.error("parked form does not open; dead-lettered", extra={"fields": {
                "event_id": str(event_id), "exc_type": type(exc).__name__}})
            await self._dead_letter(conn, row, rec, type(exc).__name__)
            telemetry.DEAD_LETTERS.labels(self.service, self.consumer, "handler_error").inc()
            return
        headers = [(k, base64.b64decode(v)) for k, v in rec["headers"]]
        mine: list[tuple[Envelope, str, str | None, dict[str, str]]] = []

        async def emit(payload: Payload, topic: str, key: str) -> Envelope:
            env = new_envelope(payload, producer=self.outbox.producer_name,
                               correlation_id=row["correlation_id"], causation_id=event_id,
                               structure=row["structure"])
            mine.append((env, topic, key, telemetry.inject_headers()))
            return env

        with self._tracer.start_as_current_span(
                "intake drain parked form", context=telemetry.extract_context(headers),
                attributes={"messaging.message.id": str(event_id),
                            "mediation.correlation_id": row["correlation_id"],
                            "mediation.source_system": source_label(row["source_system"])}):
            try:
                if isolate:
                    async with conn.transaction():  # savepoint: a failure leaves no trace
                        await self.intake.take(conn, emit, raw, size=row["size"], channel="kafka")
                else:
                    await self.intake.take(conn, emit, raw, size=row["size"], channel="kafka",
                                           batch=batch, event_id=str(event_id))
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    raise
                if not isolate:
                    raise _Isolate() from exc
                log.error("parked form failed; dead-lettered", exc_info=True, extra={"fields": {
                    "event_id": str(event_id), "source_system": row["source_system"],
                    "exc_type": type(exc).__name__}})
                await self._dead_letter(conn, row, rec, type(exc).__name__)
                telemetry.DEAD_LETTERS.labels(self.service, self.consumer, "handler_error").inc()
                return
        emitted.extend(mine)

    async def _dead_letter(self, conn: asyncpg.Connection, row: asyncpg.Record,
                           rec: dict[str, Any], reason: str) -> None:
        """The consumer's dead-letter format (mediation_core.consumer.open_dead_letter opens
        it): reason and position in clear, the original record sealed with the ops key."""
        original = orjson.dumps({k: rec[k] for k in ("key", "value", "headers")})
        dl_id = uuid.uuid5(uuid.NAMESPACE_URL,
                           f"{self.consumer}/{row['topic']}/{row['partition']}/{row['offset']}")
        nonce = os.urandom(12)
        value = rec["value"]
        body = {
            "dead_letter_id": str(dl_id), "consumer": self.consumer, "service": self.service,
            "reason_code": "handler_error", "reason": reason,
            "source": {"topic": row["topic"], "partition": row["partition"],
                       "offset": row["offset"], "parked": True},
            "event_id": str(row["event_id"]), "event_type": "ReferralReceived",
            "event_version": 1, "correlation_id": row["correlation_id"],
            "value_sha256": hashlib.sha256(base64.b64decode(value) if value else b"").hexdigest(),
            "original_sealed": {
                "alg": "AES-256-GCM", "nonce": base64.b64encode(nonce).decode(),
                "ciphertext": base64.b64encode(
                    AESGCM(self.key).encrypt(nonce, original, dl_id.bytes)).decode()},
            "dead_lettered_at": datetime.now(UTC).isoformat(),
        }
        await self.outbox.add_raw(conn, topic=self.dlq_topic, key=str(dl_id),
                                  value=orjson.dumps(body), event_id=dl_id,
                                  headers={"dead_letter": "1", "reason_code": "handler_error",
                                           **telemetry.inject_headers()})

    # ------------------------------------------------------------------ backlog metric
    async def refresh_backlog(self) -> dict[str, int]:
        """Parked forms per source label, into the gauge; logs a source starting or ending
        a backlog (ids and counts only)."""
        rows = await self.pool.fetch(
            "SELECT source_system, count(*) AS n FROM parked GROUP BY source_system")
        by_label: Tally[str] = Tally()
        for r in rows:
            by_label[source_label(r["source_system"])] += r["n"]
        for label in self._labels | set(by_label):
            PARKED_BACKLOG.labels(label).set(by_label.get(label, 0))
        self._labels |= set(by_label)
        now = set(by_label)
        for label in sorted(now - self._backlogged):
            log.info("sender over its Kafka budget: forms parked", extra={"fields": {
                "source_system": label, "parked": by_label[label]}})
        for label in sorted(self._backlogged - now):
            log.info("sender's parked forms all taken", extra={"fields": {
                "source_system": label}})
        self._backlogged = now
        self._gauge_at = time.monotonic()
        return dict(by_label)

    # ------------------------------------------------------------------ loop
    async def run(self, stopping: asyncio.Event) -> None:
        """Rounds back to back while there is something to take; otherwise waits for a
        parked row to commit (NOTIFY) or stopping, polling every ``idle_poll`` s in case a
        notification is lost. Transient faults back off and retry: nothing is skipped."""
        delay = 0.1
        try:
            while not stopping.is_set():
                try:
                    if not _alive(self._listener):
                        if self._listener is not None:
                            await self._release(self._listener)
                        self._listener = None
                        self._listener = await self._listen()
                    self.wake.clear()
                    if time.monotonic() - self._gauge_at >= 1.0:
                        await self.refresh_backlog()
                    n = await self.drain_once()
                    if not n and self._backlogged:  # the gauge to 0 as soon as it is
                        await self.refresh_backlog()
                    delay = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    telemetry.RETRIES.labels(self.service, "drain").inc()
                    log.warning("drain round failed, will retry", exc_info=not is_transient(exc),
                                extra={"fields": {"exc_type": type(exc).__name__}})
                    await _wait_any(stopping, None, delay * (0.5 + random.random()))
                    delay = min(delay * 2, 5.0)
                    continue
                if n:
                    await asyncio.sleep(0)  # let the consumer and the relay run; no delay
                    continue
                await _wait_any(stopping, self.wake, self.idle_poll)
        finally:
            if self._listener is not None:
                await self._release(self._listener)
                self._listener = None

    async def _listen(self) -> asyncpg.Connection:
        conn = await self.pool.acquire()
        try:
            self._schema = await conn.fetchval("SELECT current_schema()")
            await conn.add_listener(CHANNEL, self._on_notify)
        except BaseException:
            await self._release(conn)  # not leaked from the pool when the database is down
            raise
        return conn

    async def _release(self, conn: asyncpg.Connection) -> None:
        with contextlib.suppress(Exception):
            if not conn.is_closed():
                await conn.remove_listener(CHANNEL, self._on_notify)
            await self.pool.release(conn)

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        if payload == self._schema:
            self.wake.set()


def _alive(conn: asyncpg.Connection | None) -> bool:
    """A pooled connection whose server connection died is handed back to the pool by
    asyncpg itself (after a database restart): its proxy then refuses every call."""
    if conn is None:
        return False
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:
        return False


async def _wait_any(stopping: asyncio.Event, wake: asyncio.Event | None, timeout: float) -> None:
    waits = [asyncio.ensure_future(stopping.wait())]
    if wake is not None:
        waits.append(asyncio.ensure_future(wake.wait()))
    try:
        await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()

"""The consumer every service runs: at-least-once delivery made exactly-once in effect.

For each batch fetched from Kafka (auto-commit off):

1. one Postgres transaction: the event ids go into the inbox (``ON CONFLICT DO NOTHING``);
   only the new ones reach their handler, each inside a savepoint;
2. a message that can never be processed (bad JSON, schema-invalid, unknown version,
   a handler bug) becomes a dead letter written to the outbox *in that same transaction*,
   and its inbox row stays: it is dealt with, once;
3. a transient fault (database or broker down, deadlock) aborts the whole transaction and
   the batch is retried with capped exponential backoff and jitter: nothing is skipped;
4. only after the commit are the offsets committed. A crash before that redelivers the
   batch, and the inbox turns the copies into no-ops.

Round trips are what a hop costs (each statement waits for Postgres), so a batch shares
its work: handlers *defer* writes that return nothing (``ctx.defer``), and deferred
statements run at the end of the batch, one ``executemany`` per statement text; a route
may have a *prepare* step that reads (and locks) what the whole batch needs in one
statement before the handlers run. Both are optimisations with a safe fallback: when a
handler fails for good, the batch is rerun one savepoint per message with no prepare
step and every deferred statement executed at once, so the failure is pinned to its
message. Grouping by statement reorders writes across messages of a batch, so a handler
defers only writes that commute with the others' (or flushes first: ``ctx.flush()``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
import os
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, ConsumerRecord, TopicPartition
from aiokafka.errors import CommitFailedError, KafkaError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from opentelemetry.trace import SpanKind, Status, StatusCode

from mediation_schemas.envelope import (
    DecodeError,
    Envelope,
    Payload,
    decode_envelope,
    decode_payload,
    new_envelope,
    registry,
)

from . import telemetry
from .errors import DomainRejection, is_transient
from .outbox import Outbox

log = logging.getLogger(__name__)


@dataclass
class Batch:
    """What the handlers of one batch share: deferred writes and data prepared for them."""

    conn: asyncpg.Connection
    isolate: bool
    pending: dict[str, list[tuple]] = field(default_factory=dict)
    data: dict[str, Any] = field(default_factory=dict)
    before_flush: list[Callable[[Batch], Awaitable[None]]] = field(default_factory=list)

    async def defer(self, sql: str, *args: Any) -> None:
        """Run ``sql`` with ``args`` at the end of the batch (at once in isolation mode)."""
        if self.isolate:
            await self.conn.execute(sql, *args)
        else:
            self.pending.setdefault(sql, []).append(args)

    async def flush(self) -> None:
        """Execute the deferred statements now, one round trip per statement text."""
        pending, self.pending = self.pending, {}
        for sql, rows in pending.items():
            if len(rows) == 1:
                await self.conn.execute(sql, *rows[0])
            else:
                await self.conn.executemany(sql, rows)

    async def finish(self) -> None:
        hooks, self.before_flush = self.before_flush, []
        for hook in hooks:
            await hook(self)
        await self.flush()


@dataclass
class HandlerContext:
    """What a handler gets besides the event: the transaction and a way to emit events.

    Emitted events are buffered and written to the outbox in one statement at the end of
    the batch, inside the same transaction (so they commit with the handler's effects).
    """

    conn: asyncpg.Connection
    outbox: Outbox
    envelope: Envelope
    record: ConsumerRecord
    emitted: list[tuple[Envelope, str, str | None, dict[str, str]]] = field(default_factory=list)
    batch: Batch | None = None

    async def defer(self, sql: str, *args: Any) -> None:
        """A write that returns nothing and commutes with the batch's other deferred
        writes: executed with the others of the same text at the end of the batch."""
        if self.batch is None:
            await self.conn.execute(sql, *args)
        else:
            await self.batch.defer(sql, *args)

    async def flush(self) -> None:
        """Run the batch's deferred writes now (before a read that must see them)."""
        if self.batch is not None:
            await self.batch.flush()

    async def emit(self, payload: Payload, *, topic: str, key: str,
                   structure: str | None = None, correlation_id: str | None = None,
                   **kw: Any) -> Envelope:
        """Write an event caused by the current one (same correlation, causation = it)."""
        env = new_envelope(
            payload, producer=self.outbox.producer_name,
            correlation_id=correlation_id or self.envelope.correlation_id,
            causation_id=self.envelope.event_id,
            structure=structure if structure is not None else self.envelope.structure, **kw)
        self.emitted.append((env, topic, key, telemetry.inject_headers()))
        return env


class _ReadyOnAssignment(ConsumerRebalanceListener):
    """Marks the consumer ready as soon as the group gave it partitions."""

    def __init__(self, ready: asyncio.Event) -> None:
        self.ready = ready

    async def on_partitions_revoked(self, revoked) -> None:
        pass

    async def on_partitions_assigned(self, assigned) -> None:
        if assigned:
            self.ready.set()


class _IsolateFailures(Exception):
    """A handler failed for good on the fast path: rerun the batch with savepoints."""


Handler = Callable[[HandlerContext, Payload], Awaitable[None]]
RawHandler = Callable[[HandlerContext, dict], Awaitable[None]]
# a write that returns nothing: a batch's ``defer`` or a connection's ``execute``
Write = Callable[..., Awaitable[Any]]
# reads/locks for the whole batch before its handlers run: (batch, [(ctx, payload)...])
Prepare = Callable[[Batch, list[tuple[HandlerContext, Any]]], Awaitable[None]]


@dataclass
class _Route:
    handler: Callable[..., Awaitable[None]]
    validate: bool
    prepare: Prepare | None = None


@dataclass
class _Item:
    rec: ConsumerRecord
    env: Envelope
    route: _Route
    payload: Any
    ctx: HandlerContext


@dataclass
class DeadLetter:
    reason_code: str
    reason: str
    record: ConsumerRecord
    envelope: Envelope | None = None


@dataclass
class ConsumerStats:
    processed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    ignored: int = 0
    batches: int = 0
    retries: int = 0
    isolated: int = 0  # batches rerun one savepoint per message after a handler failed
    by_type: dict[str, int] = field(default_factory=dict)


class EventConsumer:
    """Consumes topics for one consumer group and dispatches events by type."""

    def __init__(self, *, name: str, service: str, pool: asyncpg.Pool, outbox: Outbox,
                 bootstrap: str, group_id: str, topics: list[str], dlq_topic: str,
                 dlq_key: bytes, batch_size: int = 500, client_id: str | None = None,
                 auto_offset_reset: str = "earliest") -> None:
        self.name = name
        self.service = service
        self.pool = pool
        self.outbox = outbox
        self.bootstrap = bootstrap
        self.group_id = group_id
        self.topics = topics
        self.dlq_topic = dlq_topic
        self._dlq_aead = AESGCM(dlq_key)
        self.batch_size = batch_size
        self.client_id = client_id or f"{service}-{name}-{os.getpid()}"
        self.auto_offset_reset = auto_offset_reset
        self.routes: dict[str, _Route] = {}
        self.stats = ConsumerStats()
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = False
        self._tracer = telemetry.tracer("mediation.consumer")
        self.ready = asyncio.Event()

    # ------------------------------------------------------------------ registration
    def on(self, model: type[Payload], handler: Handler, *, prepare: Prepare | None = None) -> None:
        """Handle every registered version of ``model.event_type`` with ``handler``;
        ``prepare``, if given, runs once per batch with all its messages of that type
        first (it must leave the handler correct when it did not run)."""
        self.routes[model.event_type] = _Route(handler, validate=True, prepare=prepare)

    def on_raw(self, event_type: str, handler: RawHandler, *,
               prepare: Prepare | None = None) -> None:
        """Handle ``event_type`` with the payload as a dict (the handler validates it)."""
        self.routes[event_type] = _Route(handler, validate=False, prepare=prepare)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap, group_id=self.group_id,
            client_id=self.client_id, enable_auto_commit=False,
            auto_offset_reset=self.auto_offset_reset, max_poll_records=self.batch_size,
            isolation_level="read_committed",
            # a member killed without leaving is noticed after this: its partitions wait
            # that long for the process that replaces it (the broker default is 45 s)
            session_timeout_ms=10000,
            heartbeat_interval_ms=3000, max_poll_interval_ms=600000,
            metadata_max_age_ms=30000,
            # a fetch parked at the broker waits at most this long for data: it bounds the
            # latency added when several topics/partitions are fetched together
            fetch_max_wait_ms=100,
        )
        self._consumer.subscribe(self.topics, listener=_ReadyOnAssignment(self.ready))
        delay = 0.2
        while True:
            try:
                await self._consumer.start()
                break
            except KafkaError:
                telemetry.RETRIES.labels(self.service, "consumer_start").inc()
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5)

    def stop(self) -> None:
        self._stopping = True

    async def close(self) -> None:
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None

    async def run(self) -> None:
        if self._consumer is None:
            await self.start()
        assert self._consumer is not None
        try:
            while not self._stopping:
                batches = await self._consumer.getmany(timeout_ms=200, max_records=self.batch_size)
                records = [r for tp in sorted(batches, key=lambda t: (t.topic, t.partition))
                           for r in batches[tp]]
                if not records:
                    continue
                await self._process_with_retry(records)
                await self._commit(batches)
                self._update_lag(batches)
        finally:
            await self.close()

    async def _commit(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        assert self._consumer is not None
        offsets = {tp: recs[-1].offset + 1 for tp, recs in batches.items() if recs}
        try:
            await self._consumer.commit(offsets)
        except (CommitFailedError, KafkaError):
            # a rebalance or broker restart: the batch will be redelivered to whoever owns
            # the partition, and the inbox makes it a no-op.
            log.warning("offset commit failed; redelivery will be deduplicated",
                        extra={"fields": {"consumer": self.name}})

    def _update_lag(self, batches: dict[TopicPartition, list[ConsumerRecord]]) -> None:
        assert self._consumer is not None
        for tp, recs in batches.items():
            hw = self._consumer.highwater(tp)
            if hw is not None and recs:
                telemetry.CONSUMER_LAG.labels(self.service, self.name, tp.topic,
                                              str(tp.partition)).set(max(hw - recs[-1].offset - 1, 0))

    # ------------------------------------------------------------------ processing
    async def _process_with_retry(self, records: list[ConsumerRecord]) -> None:
        delay = 0.1
        attempt = 0
        while True:
            try:
                t0 = time.perf_counter()
                await self.process_batch(records)
                telemetry.BATCH_SECONDS.labels(self.service, self.name).observe(time.perf_counter() - t0)
                self.stats.batches += 1
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not is_transient(exc):
                    raise
                attempt += 1
                self.stats.retries += 1
                telemetry.RETRIES.labels(self.service, self.name).inc()
                log.warning("transient fault, batch will be retried",
                            extra={"fields": {"consumer": self.name, "attempt": attempt,
                                              "exc_type": type(exc).__name__}})
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)

    async def process_batch(self, records: list[ConsumerRecord]) -> None:
        """Process one batch in one transaction (see module doc). Public for tests.

        Fast path: no savepoints. If a handler fails for good, the transaction is rolled
        back and the batch runs again with one savepoint per message, so the failure is
        isolated and dead-lettered while the others commit.
        """
        try:
            await self._process_batch(records, isolate=False)
        except _IsolateFailures:
            self.stats.isolated += 1
            await self._process_batch(records, isolate=True)

    async def _process_batch(self, records: list[ConsumerRecord], *, isolate: bool) -> None:
        decoded: list[tuple[ConsumerRecord, Envelope | None, DecodeError | None, str]] = []
        for rec in records:
            try:
                env = decode_envelope(rec.value)
                decoded.append((rec, env, None, str(env.event_id)))
            except DecodeError as err:
                # undecodable: dedup on its position, which is stable across redeliveries
                decoded.append((rec, None, err, f"{rec.topic}:{rec.partition}:{rec.offset}"))

        dead: list[DeadLetter] = []
        emitted: list[tuple[Envelope, str, str | None, dict[str, str]]] = []
        stats = ConsumerStats()
        async with self.pool.acquire() as conn, conn.transaction():
            new_ids = {r["event_id"] for r in await conn.fetch(
                "INSERT INTO inbox(consumer, event_id) SELECT $1, unnest($2::text[]) "
                "ON CONFLICT DO NOTHING RETURNING event_id",
                self.name, [d[3] for d in decoded])}
            batch = Batch(conn=conn, isolate=isolate)
            items: list[_Item] = []
            seen: set[str] = set()
            for rec, maybe_env, derr, dedup_id in decoded:
                if dedup_id not in new_ids or dedup_id in seen:
                    stats.duplicates += 1
                    continue
                seen.add(dedup_id)
                if derr is not None or maybe_env is None:
                    assert derr is not None
                    dead.append(DeadLetter(derr.code, derr.detail, rec))
                    continue
                env = maybe_env
                route = self.routes.get(env.type)
                if route is None:
                    if env.type in {t for (t, _v) in registry()}:
                        stats.ignored += 1  # a known event this consumer has no use for
                    else:
                        dead.append(DeadLetter("unknown_type", f"no event type named {env.type!r}",
                                               rec, env))
                    continue
                try:
                    payload: Any = decode_payload(env) if route.validate else dict(env.payload)
                except DecodeError as err:
                    dead.append(DeadLetter(err.code, err.detail, rec, env))
                    continue
                items.append(_Item(rec, env, route, payload, HandlerContext(
                    conn=conn, outbox=self.outbox, envelope=env, record=rec, batch=batch)))
            if not isolate:
                await self._prepare(batch, items)
            for it in items:
                if await self._dispatch(it, dead, emitted, isolate) == "processed":
                    stats.processed += 1
                    stats.by_type[it.env.type] = stats.by_type.get(it.env.type, 0) + 1
            try:
                await batch.finish()
            except Exception as exc:
                if is_transient(exc) or isolate:
                    raise
                raise _IsolateFailures() from exc
            if emitted:
                await self.outbox.add_many(conn, emitted)
            for d in dead:
                await self._write_dead_letter(conn, d)
        # counted only once committed
        self.stats.processed += stats.processed
        self.stats.duplicates += stats.duplicates
        self.stats.ignored += stats.ignored
        self.stats.dead_lettered += len(dead)
        for t, n in stats.by_type.items():
            self.stats.by_type[t] = self.stats.by_type.get(t, 0) + n
        telemetry.MESSAGES.labels(self.service, self.name, "processed").inc(stats.processed)
        telemetry.MESSAGES.labels(self.service, self.name, "duplicate").inc(stats.duplicates)
        telemetry.MESSAGES.labels(self.service, self.name, "ignored").inc(stats.ignored)
        for d in dead:
            telemetry.DEAD_LETTERS.labels(self.service, self.name, d.reason_code).inc()
            log.warning("message dead-lettered", extra={"fields": {
                "consumer": self.name, "reason_code": d.reason_code, "topic": d.record.topic,
                "partition": d.record.partition, "offset": d.record.offset}})

    async def _prepare(self, batch: Batch, items: list[_Item]) -> None:
        """Each route's prepare step, once, with all the batch's messages of that route."""
        groups: dict[int, tuple[Prepare, list[tuple[HandlerContext, Any]]]] = {}
        for it in items:
            if it.route.prepare is not None:
                groups.setdefault(id(it.route), (it.route.prepare, []))[1].append(
                    (it.ctx, it.payload))
        for prepare, group in groups.values():
            try:
                await prepare(batch, group)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    raise
                raise _IsolateFailures() from exc

    async def _dispatch(self, it: _Item, dead: list[DeadLetter], emitted: list,
                        isolate: bool) -> str:
        rec, env, ctx = it.rec, it.env, it.ctx
        parent = telemetry.extract_context(rec.headers)
        with self._tracer.start_as_current_span(
            f"consume {env.type}", context=parent, kind=SpanKind.CONSUMER,
            attributes={"messaging.system": "kafka", "messaging.destination.name": rec.topic,
                        "messaging.kafka.partition": rec.partition,
                        "messaging.kafka.offset": rec.offset,
                        "messaging.consumer.group.name": self.group_id,
                        "messaging.message.id": str(env.event_id),
                        "mediation.event_type": env.type,
                        # the aggregate's id (referral, case, alert...): how ops find a trace
                        "mediation.key": rec.key.decode(errors="replace") if rec.key else "",
                        "mediation.correlation_id": env.correlation_id},
        ) as span:
            t0 = time.perf_counter()
            try:
                if isolate:
                    # savepoint: a failing handler leaves no trace; what it deferred or
                    # hooked runs inside it (the batch defers nothing in isolation mode)
                    async with ctx.conn.transaction():
                        await it.route.handler(ctx, it.payload)
                        assert ctx.batch is not None
                        await ctx.batch.finish()
                else:
                    await it.route.handler(ctx, it.payload)
                emitted.extend(ctx.emitted)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if is_transient(exc):
                    raise
                if not isolate:
                    raise _IsolateFailures() from exc
                code = exc.code if isinstance(exc, DomainRejection) else "handler_error"
                detail = exc.detail if isinstance(exc, DomainRejection) else type(exc).__name__
                span.set_status(Status(StatusCode.ERROR, code))
                log.error("handler failed; message dead-lettered", exc_info=not isinstance(exc, DomainRejection),
                          extra={"fields": {"consumer": self.name, "event_type": env.type,
                                            "exc_type": type(exc).__name__}})
                dead.append(DeadLetter(code, detail, rec, env))
                return "dead"
            finally:
                telemetry.HANDLER_SECONDS.labels(self.service, self.name, env.type).observe(
                    time.perf_counter() - t0)
        return "processed"

    async def _write_dead_letter(self, conn: asyncpg.Connection, d: DeadLetter) -> None:
        """The dead letter names the reason and the source position; the original bytes
        are sealed (AES-GCM, ops key) so they can be replayed but never read in clear."""
        rec = d.record
        original = orjson.dumps({
            "key": base64.b64encode(rec.key).decode() if rec.key else None,
            "value": base64.b64encode(rec.value).decode() if rec.value else None,
            "headers": [[k, base64.b64encode(v).decode()] for k, v in (rec.headers or [])],
        })
        nonce = os.urandom(12)
        dl_id = uuid.uuid5(uuid.NAMESPACE_URL, f"{self.name}/{rec.topic}/{rec.partition}/{rec.offset}")
        body = {
            "dead_letter_id": str(dl_id),
            "consumer": self.name,
            "service": self.service,
            "reason_code": d.reason_code,
            "reason": d.reason,
            "source": {"topic": rec.topic, "partition": rec.partition, "offset": rec.offset,
                       "timestamp": rec.timestamp},
            "event_id": str(d.envelope.event_id) if d.envelope else None,
            "event_type": d.envelope.type if d.envelope else None,
            "event_version": d.envelope.version if d.envelope else None,
            "correlation_id": d.envelope.correlation_id if d.envelope else None,
            "value_sha256": hashlib.sha256(rec.value or b"").hexdigest(),
            "original_sealed": {
                "alg": "AES-256-GCM", "nonce": base64.b64encode(nonce).decode(),
                "ciphertext": base64.b64encode(
                    self._dlq_aead.encrypt(nonce, original, dl_id.bytes)).decode(),
            },
            "dead_lettered_at": datetime.now(UTC).isoformat(),
        }
        await self.outbox.add_raw(
            conn, topic=self.dlq_topic, key=str(dl_id), value=orjson.dumps(body), event_id=dl_id,
            headers={"dead_letter": "1", "reason_code": d.reason_code,
                     **telemetry.inject_headers()})


def open_dead_letter(body: dict, dlq_key: bytes) -> dict:
    """Ops tool: recover the original record of a dead letter (to replay it once fixed)."""
    sealed = body["original_sealed"]
    dl_id = uuid.UUID(body["dead_letter_id"])
    plain = AESGCM(dlq_key).decrypt(base64.b64decode(sealed["nonce"]),
                                    base64.b64decode(sealed["ciphertext"]), dl_id.bytes)
    data = orjson.loads(plain)
    return {
        "key": base64.b64decode(data["key"]) if data["key"] else None,
        "value": base64.b64decode(data["value"]) if data["value"] else None,
        "headers": [(k, base64.b64decode(v)) for k, v in data["headers"]],
    }

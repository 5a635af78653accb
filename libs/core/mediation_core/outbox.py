"""Transactional outbox and its relay.

A state change and the events it produces commit in one Postgres transaction: handlers
and API use cases call :meth:`Outbox.add` on the connection of their transaction. The
:class:`OutboxRelay` claims rows with ``FOR UPDATE SKIP LOCKED`` (so several relays may
run), publishes them with an idempotent producer (``acks=all``), and deletes them in the
same transaction once the broker acknowledged every one. A relay killed between publish
and delete publishes again on restart: consumers drop the copy through their inbox.
Order is kept per key (aggregate), which is what consumers rely on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from mediation_schemas.envelope import Envelope, Payload, encode, new_envelope

from . import telemetry
from .errors import is_transient

log = logging.getLogger(__name__)


def make_producer(bootstrap: str, client_id: str) -> AIOKafkaProducer:
    return AIOKafkaProducer(
        bootstrap_servers=bootstrap,
        client_id=client_id,
        enable_idempotence=True,  # implies acks=all; no duplicates on producer retries
        acks="all",
        linger_ms=5,
        max_batch_size=256 * 1024,
        request_timeout_ms=30000,
        compression_type="lz4" if _has_lz4() else None,
    )


def _has_lz4() -> bool:
    try:
        import lz4  # noqa: F401
        return True
    except ImportError:
        return False


class Outbox:
    """Writes events into the service's outbox table, inside the caller's transaction."""

    def __init__(self, producer_name: str) -> None:
        self.producer_name = producer_name

    async def add_envelope(self, conn: asyncpg.Connection, envelope: Envelope, *, topic: str,
                           key: str | None, headers: dict[str, str] | None = None) -> None:
        hdrs = {"event_type": envelope.type, "event_version": str(envelope.version),
                **telemetry.inject_headers(), **(headers or {})}
        await conn.execute(
            "INSERT INTO outbox(event_id, topic, key, value, headers) VALUES ($1,$2,$3,$4,$5)",
            envelope.event_id, topic, key.encode() if key is not None else None,
            encode(envelope), orjson.dumps(hdrs).decode(),
        )

    async def add(self, conn: asyncpg.Connection, payload: Payload, *, topic: str, key: str,
                  correlation_id: str, causation_id: uuid.UUID | None = None,
                  structure: str | None = None, **kw: Any) -> Envelope:
        env = new_envelope(payload, producer=self.producer_name, correlation_id=correlation_id,
                           causation_id=causation_id, structure=structure, **kw)
        await self.add_envelope(conn, env, topic=topic, key=key)
        return env

    async def add_many(self, conn: asyncpg.Connection,
                       items: list[tuple[Envelope, str, str | None, dict[str, str]]]) -> None:
        """Many envelopes in one statement: (envelope, topic, key, trace headers)."""
        await conn.executemany(
            "INSERT INTO outbox(event_id, topic, key, value, headers) VALUES ($1,$2,$3,$4,$5)",
            [(env.event_id, topic, key.encode() if key is not None else None, encode(env),
              orjson.dumps({"event_type": env.type, "event_version": str(env.version),
                            **trace_headers}).decode())
             for env, topic, key, trace_headers in items])

    async def add_raw(self, conn: asyncpg.Connection, *, topic: str, key: str | None,
                      value: bytes, event_id: uuid.UUID, headers: dict[str, str]) -> None:
        """A non-envelope record (a dead letter), published through the same relay."""
        await conn.execute(
            "INSERT INTO outbox(event_id, topic, key, value, headers) VALUES ($1,$2,$3,$4,$5)",
            event_id, topic, key.encode() if key is not None else None, value,
            orjson.dumps(headers).decode(),
        )


class OutboxRelay:
    """Publishes outbox rows and deletes them once the broker acknowledged them."""

    def __init__(self, pool: asyncpg.Pool, producer: AIOKafkaProducer, *, service: str,
                 wake: asyncio.Event | None = None, batch_size: int = 500,
                 idle_poll: float = 0.25,
                 after_publish: Callable[[list[int]], Awaitable[None]] | None = None) -> None:
        self.pool = pool
        self.producer = producer
        self.service = service
        self.wake = wake or asyncio.Event()
        self.batch_size = batch_size
        self.idle_poll = idle_poll
        self.after_publish = after_publish  # fault-injection hook for tests
        self._stopping = False
        self._schema: str | None = None
        self._listen_lost = False
        self._tracer = telemetry.tracer("mediation.outbox")

    def stop(self) -> None:
        self._stopping = True
        self.wake.set()

    async def run(self) -> None:
        delay = 0.1
        listener: asyncpg.Connection | None = None
        try:
            while not self._stopping:
                try:
                    if listener is not None and self._listen_lost:
                        # the database restarted (or ended the backend): asyncpg has already
                        # taken the dead connection back into the pool, and its proxy refuses
                        # every call, is_closed() included; a new LISTEN on a new connection
                        await self._release(listener)
                        listener = None
                    if listener is None:
                        listener = await self._listen()
                    # cleared before the claim, not after: a NOTIFY arriving while a batch is
                    # published must not be wiped out (it would wait the idle poll)
                    self.wake.clear()
                    n = await self.publish_once()
                    delay = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not is_transient(exc):
                        log.error("outbox relay failed", exc_info=True,
                                  extra={"fields": {"service": self.service}})
                    else:  # visible, as the consumer's retries are: a fault that never clears shows
                        log.warning("transient fault, outbox relay will retry",
                                    extra={"fields": {"service": self.service,
                                                      "exc_type": type(exc).__name__}})
                    telemetry.RETRIES.labels(self.service, "outbox").inc()
                    await asyncio.sleep(delay * (0.5 + random.random()))
                    delay = min(delay * 2, 5.0)
                    continue
                if n < self.batch_size and not self._stopping:
                    try:
                        await asyncio.wait_for(self.wake.wait(), timeout=self.idle_poll)
                    except TimeoutError:
                        pass
        finally:
            if listener is not None:
                await self._release(listener)

    async def _release(self, conn: asyncpg.Connection) -> None:
        # each step on its own: on a connection the pool already took back, the first two
        # raise and the release is a no-op
        with contextlib.suppress(Exception):
            conn.remove_termination_listener(self._on_listen_lost)
        with contextlib.suppress(Exception):
            await conn.remove_listener("mediation_outbox", self._on_notify)
        with contextlib.suppress(Exception):
            await self.pool.release(conn)

    async def _listen(self) -> asyncpg.Connection:
        """A pooled connection kept for LISTEN: commits of outbox rows wake the relay at once
        (the idle poll remains the fallback if notifications are lost)."""
        conn = await self.pool.acquire()
        try:
            self._schema = await conn.fetchval("SELECT current_schema()")
            self._listen_lost = False
            conn.add_termination_listener(self._on_listen_lost)
            await conn.add_listener("mediation_outbox", self._on_notify)
        except BaseException:  # not kept: back to the pool, or the pool loses a connection
            await self._release(conn)
            raise
        return conn

    def _on_listen_lost(self, _conn) -> None:
        self._listen_lost = True
        self.wake.set()  # LISTEN again now, not after the idle poll

    def _on_notify(self, _conn, _pid, _channel, payload: str) -> None:
        if payload == self._schema:
            self.wake.set()

    async def publish_once(self) -> int:
        """Claim one batch, publish it, delete it. Returns the number of rows published."""
        async with self.pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, topic, key, value, headers FROM outbox ORDER BY id "
                "LIMIT $1 FOR UPDATE SKIP LOCKED", self.batch_size)
            if not rows:
                telemetry.OUTBOX_BACKLOG.labels(self.service).set(0)
                return 0
            # Each record carries the trace context stored with it (the span that wrote the
            # event), so the consumer's span continues that trace. One relay span per batch,
            # linked to every record's context, shows the outbox hop without a span per row.
            contexts = []
            futures = []
            for r in rows:
                headers: dict[str, str] = orjson.loads(r["headers"])
                contexts.append(headers)
                futures.append(await self.producer.send(
                    r["topic"], value=bytes(r["value"]),
                    key=bytes(r["key"]) if r["key"] is not None else None,
                    headers=[(k, v.encode()) for k, v in headers.items()],
                ))
            links = []
            for h in contexts[:64]:
                sc = trace.get_current_span(telemetry.extract_context(h)).get_span_context()
                if sc.is_valid:
                    links.append(trace.Link(sc))
            with self._tracer.start_as_current_span(
                "outbox publish", kind=SpanKind.PRODUCER, links=links,
                attributes={"messaging.system": "kafka", "messaging.batch.message_count": len(rows),
                            "messaging.destination.name": rows[0]["topic"]},
            ):
                pass
            await asyncio.gather(*futures)  # every record acknowledged by the broker (acks=all)
            ids = [r["id"] for r in rows]
            if self.after_publish is not None:
                await self.after_publish(ids)
            await conn.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids)
            for r in rows:
                telemetry.PUBLISHED.labels(self.service, r["topic"]).inc()
        if len(rows) == self.batch_size:
            backlog = await self.pool.fetchval("SELECT count(*) FROM outbox")
            telemetry.OUTBOX_BACKLOG.labels(self.service).set(backlog)
        else:
            telemetry.OUTBOX_BACKLOG.labels(self.service).set(0)
        return len(rows)


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None

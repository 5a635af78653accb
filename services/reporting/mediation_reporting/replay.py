"""Rebuild the read models by replaying the topics from the beginning.

``mediation replay reporting``:
1. refuses while the live reporting consumer group has active members (stop the service
   first: a live consumer writing into the old schema during the swap would lose events);
2. creates a fresh schema ``<schema>_rb_<id>``, applies the migrations, and feeds every
   record of the source topics, from offset 0 to the end offsets taken at start, through
   the *same* consumer code (inbox, projections, freshness) in batches;
3. sets labels, comments and grants, computes the published tables, and swaps the
   schemas in one transaction (the old one is dropped, or kept with ``--keep-old``);
4. commits the live group's offsets at the replayed end, so the restarted service goes on
   from there (events published meanwhile are applied then; the inbox drops overlaps).
Assumes the source topics keep their whole history (retention -1 in deploy/k8s/topics).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from mediation_core import db
from mediation_core.consumer import EventConsumer, HandlerContext
from mediation_core.errors import is_transient
from mediation_core.outbox import Outbox
from mediation_core.settings import Settings
from mediation_schemas.envelope import DecodeError, decode_envelope, decode_payload

from . import publish, setup
from .service import SOURCES, register_handlers, threshold_from_env

log = logging.getLogger(__name__)


class ReplayRefused(RuntimeError):
    pass


@dataclass
class ReplayResult:
    schema: str
    records: int
    processed: int
    duplicates: int
    seconds: float
    old_schema_kept: str | None


async def group_has_members(bootstrap: str, group: str) -> bool:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        resp = await admin.describe_consumer_groups([group])
        for r in resp:
            for g in getattr(r, "groups", []):
                # (error_code, group_id, state, protocol_type, protocol, members, ...)
                state, members = g[2], g[5]
                if members or state not in ("Empty", "Dead", ""):
                    return True
        return False
    finally:
        await admin.close()


async def replay(settings: Settings, *, batch_size: int = 2000, keep_old: bool = False,
                 force: bool = False, threshold: int | None = None) -> ReplayResult:
    t0 = time.perf_counter()
    schema = db.check_ident(settings.schema)
    group = f"{settings.group_id}.projections"
    if not force and await group_has_members(settings.kafka_bootstrap, group):
        raise ReplayRefused(f"consumer group {group} has active members: stop the reporting "
                            "service before replaying (or pass --force)")
    new = db.check_ident(f"{schema[:50]}_rb_{uuid.uuid4().hex[:6]}")
    pool = await db.create_pool(settings.database_url, new, application="reporting-replay")
    records_total = 0
    try:
        await db.migrate(pool, new, setup.MIGRATIONS)
        consumer = EventConsumer(
            name=f"{settings.service}.projections", service=settings.service, pool=pool,
            outbox=Outbox(settings.service), bootstrap=settings.kafka_bootstrap, group_id=group,
            topics=[], dlq_topic=settings.topics.dead_letters(f"{settings.service}.projections"),
            dlq_key=settings.dlq_key or b"\0" * 32, batch_size=batch_size)
        register_handlers(consumer, settings)

        topics = [getattr(settings.topics, n) for n in SOURCES]
        reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                  enable_auto_commit=False, isolation_level="read_committed",
                                  max_poll_records=batch_size, fetch_max_bytes=64 * 1024 * 1024)
        await reader.start()
        try:
            parts = []
            for t in topics:
                for p in sorted(reader.partitions_for_topic(t) or await _partitions(reader, t)):
                    parts.append(TopicPartition(t, p))
            end = {}
            if parts:
                reader.assign(parts)
                await reader.seek_to_beginning(*parts)
                end = await reader.end_offsets(parts)
            pending = {tp for tp in parts if end[tp] > 0}
            while pending:
                batches = await reader.getmany(*pending, timeout_ms=500, max_records=batch_size)
                records = []
                for tp, recs in batches.items():
                    records.extend(r for r in recs if r.offset < end[tp])
                if records:
                    await apply_batch(pool, consumer, records)
                    records_total += len(records)
                for tp in list(pending):
                    if await reader.position(tp) >= end[tp]:
                        pending.discard(tp)
        finally:
            await reader.stop()
        async with pool.acquire() as conn:
            # dead letters of replayed records were published by the live run already
            await conn.execute("DELETE FROM outbox")
            await setup.apply(conn, new, role_schema=schema)
        await publish.publish(pool, threshold if threshold is not None else threshold_from_env())
    except BaseException:
        await pool.execute(f"DROP SCHEMA IF EXISTS {new} CASCADE")
        await pool.close()
        raise
    await pool.close()

    old = db.check_ident(f"{schema[:50]}_old_{uuid.uuid4().hex[:6]}")
    conn = await db.asyncpg.connect(settings.database_url)
    try:
        async with conn.transaction():
            exists = await conn.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = $1", schema)
            if exists:
                await conn.execute(f"ALTER SCHEMA {schema} RENAME TO {old}")
            await conn.execute(f"ALTER SCHEMA {new} RENAME TO {schema}")
            if exists and not keep_old:
                await conn.execute(f"DROP SCHEMA {old} CASCADE")
    finally:
        await conn.close()

    await _commit_group_offsets(settings.kafka_bootstrap, group, end)
    result = ReplayResult(schema=schema, records=records_total,
                          processed=consumer.stats.processed, duplicates=consumer.stats.duplicates,
                          seconds=time.perf_counter() - t0,
                          old_schema_kept=old if (keep_old and exists) else None)
    log.info("read models rebuilt", extra={"fields": {"schema": schema, "records": records_total,
                                                      "seconds": round(result.seconds, 2)}})
    return result


class _Recorder:
    """Stands for the connection while handlers run: records their statements so that a
    whole batch is sent with one executemany per statement (pipelined). Valid because
    every projection statement is a commutative upsert: their order does not matter."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple]] = {}

    async def execute(self, sql: str, *args) -> None:
        self.calls.setdefault(sql, []).append(args)


async def apply_batch(pool, consumer: EventConsumer, records: list) -> None:
    """Apply records like the live consumer (same inbox, same handlers), batched. Any
    failure falls back to the consumer's own per-event path (dead letters and all)."""
    decoded = []
    for rec in records:
        try:
            env = decode_envelope(rec.value)
        except DecodeError:
            continue  # dead-lettered by the live run already
        decoded.append((rec, env))
    try:
        async with pool.acquire() as conn, conn.transaction():
            new_ids = {r["event_id"] for r in await conn.fetch(
                "INSERT INTO inbox(consumer, event_id) SELECT $1, unnest($2::text[]) "
                "ON CONFLICT DO NOTHING RETURNING event_id",
                consumer.name, [str(env.event_id) for _, env in decoded])}
            rec_conn = _Recorder()
            seen: set[str] = set()
            processed = 0
            for rec, env in decoded:
                eid = str(env.event_id)
                if eid not in new_ids or eid in seen:
                    continue
                seen.add(eid)
                route = consumer.routes.get(env.type)
                if route is None:
                    continue
                try:
                    payload = decode_payload(env)
                except DecodeError:
                    continue
                ctx = HandlerContext(conn=rec_conn, outbox=consumer.outbox, envelope=env,  # type: ignore[arg-type]
                                     record=rec)
                await route.handler(ctx, payload)
                processed += 1
            for sql, rows in rec_conn.calls.items():
                await conn.executemany(sql, rows)
        consumer.stats.processed += processed
        consumer.stats.duplicates += len(records) - processed
    except Exception as exc:
        if is_transient(exc):
            raise
        log.warning("batched replay failed, falling back to per-event processing",
                    extra={"fields": {"exc_type": type(exc).__name__}})
        await consumer.process_batch(records)


async def _partitions(reader: AIOKafkaConsumer, topic: str) -> set[int]:
    await reader._client.force_metadata_update()  # topic may be new to this client
    return reader.partitions_for_topic(topic) or set()


async def _commit_group_offsets(bootstrap: str, group: str, end: dict[TopicPartition, int]) -> None:
    offsets = {tp: off for tp, off in end.items() if off > 0}
    if not offsets:
        return
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group, enable_auto_commit=False)
    await c.start()
    try:
        c.assign(list(offsets))
        await c.commit(offsets)
    finally:
        await c.stop()

"""Rebuild the read models by replaying the topics from the beginning.

``mediation replay reporting``:
1. refuses while the live reporting consumer group has active members (stop the service
   first: a live consumer writing into the old schema during the swap would lose events);
2. creates a fresh schema ``<schema>_rb_<id>``, applies the migrations, and feeds every
   record of the source topics, from offset 0 to the end offsets taken at start, through
   the *same* projection handlers and inbox in batches (see ``_Feed``: statements grouped
   per SQL and sent with ``executemany``, the freshness marks summed per batch, secondary
   indexes built once at the end, decoding of the next batch overlapping the database
   work of the current one);
3. sets labels, comments and grants, computes the published tables, and swaps the
   schemas in one transaction (the old one is dropped, or kept with ``--keep-old``);
4. commits the live group's offsets at the replayed end, so the restarted service goes on
   from there (events published meanwhile are applied then; the inbox drops overlaps).
Assumes the source topics keep their whole history (retention -1 in deploy/k8s/topics).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import GroupCoordinatorNotAvailableError

from mediation_core import db
from mediation_core.consumer import EventConsumer, HandlerContext
from mediation_core.errors import is_transient
from mediation_core.outbox import Outbox
from mediation_core.settings import Settings
from mediation_schemas.envelope import DecodeError, decode_envelope, decode_payload, registry

from . import projection, publish, setup
from .service import SOURCES, handler_for, register_handlers, threshold_from_env

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
        for attempt in range(10):
            try:
                resp = await admin.describe_consumer_groups([group])
                break
            except GroupCoordinatorNotAvailableError:
                # a broker that never had a consumer group creates its offsets topic on
                # this first request: the coordinator answers a moment later
                if attempt == 9:
                    raise
                await asyncio.sleep(0.5)
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
        feed = _Feed(consumer, {getattr(settings.topics, n): n for n in SOURCES})
        reader = AIOKafkaConsumer(bootstrap_servers=settings.kafka_bootstrap, group_id=None,
                                  enable_auto_commit=False, isolation_level="read_committed",
                                  max_poll_records=batch_size, fetch_max_bytes=64 * 1024 * 1024)
        await reader.start()
        indexes = await _drop_secondary_indexes(pool, new)
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
            # one batch decoded and recorded while the previous one is in the database
            queue: asyncio.Queue[_Prepared | None] = asyncio.Queue(maxsize=1)

            async def read() -> None:
                nonlocal records_total
                try:
                    while pending:
                        batches = await reader.getmany(*pending, timeout_ms=500,
                                                       max_records=batch_size)
                        records = []
                        for tp, recs in batches.items():
                            records.extend(r for r in recs if r.offset < end[tp])
                        if records:
                            await queue.put(await feed.prepare(records))
                            records_total += len(records)
                        for tp in list(pending):
                            if await reader.position(tp) >= end[tp]:
                                pending.discard(tp)
                finally:
                    await queue.put(None)

            async def write() -> None:
                while (prepared := await queue.get()) is not None:
                    await feed.apply(pool, prepared)

            reading = asyncio.create_task(read())
            try:
                await write()
            finally:
                if not reading.done():
                    reading.cancel()
                await asyncio.gather(reading, return_exceptions=True)
            reading.result()
        finally:
            await reader.stop()
        async with pool.acquire() as conn:
            for ddl in indexes:
                await conn.execute(ddl, timeout=3600)
            await conn.execute("ANALYZE", timeout=3600)
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
    """Stands for the connection while handlers run: records their statements, tagged with
    the event they belong to, so that a whole batch is sent with one executemany per
    statement (pipelined). Valid because every projection statement is a commutative
    upsert: their order does not matter."""

    def __init__(self) -> None:
        self.calls: dict[str, list[tuple[str, tuple]]] = {}
        self.event_id = ""

    async def execute(self, sql: str, *args) -> None:
        self.calls.setdefault(sql, []).append((self.event_id, args))


@dataclass
class _Prepared:
    records: list
    event_ids: list[str] = field(default_factory=list)
    calls: dict[str, list[tuple[str, tuple]]] = field(default_factory=dict)
    # event id -> (source, occurred_at) of each event that reached a projection
    applied: dict[str, tuple] = field(default_factory=dict)
    failed: bool = False


class _Feed:
    """The replay's batch path. Same projection functions as the live consumer
    (``service.handler_for``), called without the live wrapper's freshness mark: here the
    marks are summed per source over the events the inbox had not seen, and written with
    the same statement (``projection.FRESHNESS``)."""

    def __init__(self, consumer: EventConsumer, sources: dict[str, str]) -> None:
        self.consumer = consumer
        self.sources = sources
        self.handlers: dict[str, object] = {}
        for (event_type, _version), model in sorted(registry().items()):
            if event_type in consumer.routes:  # the live consumer's route table
                self.handlers.setdefault(event_type, handler_for(model))

    async def prepare(self, records: list) -> _Prepared:
        """Decode and run the handlers against a recorder: no database work."""
        out = _Prepared(records)
        rec_conn = _Recorder()
        seen: set[str] = set()
        try:
            for i, rec in enumerate(records):
                if i % 256 == 255:
                    await asyncio.sleep(0)  # let the writer feed the database meanwhile
                try:
                    env = decode_envelope(rec.value)
                except DecodeError:
                    continue  # dead-lettered by the live run already
                eid = str(env.event_id)
                if eid in seen:
                    continue
                seen.add(eid)
                out.event_ids.append(eid)
                handler = self.handlers.get(env.type)
                if handler is None:
                    continue
                try:
                    payload = decode_payload(env)
                except DecodeError:
                    continue
                rec_conn.event_id = eid
                ctx = HandlerContext(conn=rec_conn, outbox=self.consumer.outbox,  # type: ignore[arg-type]
                                     envelope=env, record=rec)
                await handler(ctx, payload)  # type: ignore[operator]
                out.applied[eid] = (self.sources.get(rec.topic, rec.topic), env.occurred_at)
        except Exception as exc:
            log.warning("batched replay failed, falling back to per-event processing",
                        extra={"fields": {"exc_type": type(exc).__name__}})
            out.failed = True
        out.calls = rec_conn.calls
        return out

    async def apply(self, pool, prepared: _Prepared) -> None:
        """One transaction: inbox rows, then each statement's rows for the events the
        inbox had not seen, then the freshness sums. Any failure other than a transient
        one falls back to the consumer's own per-event path (dead letters and all)."""
        if prepared.failed:
            await self.consumer.process_batch(prepared.records)
            return
        try:
            async with pool.acquire() as conn, conn.transaction():
                # a crash loses the whole fresh schema anyway: no need to wait for the WAL
                await conn.execute("SET LOCAL synchronous_commit = off")
                new_ids = {r["event_id"] for r in await conn.fetch(
                    "INSERT INTO inbox(consumer, event_id) SELECT $1, unnest($2::text[]) "
                    "ON CONFLICT DO NOTHING RETURNING event_id",
                    self.consumer.name, prepared.event_ids)}
                for sql, calls in prepared.calls.items():
                    rows = [args for eid, args in calls if eid in new_ids]
                    if rows:
                        await conn.executemany(sql, rows)
                fresh: dict[str, list] = {}
                for eid, (source, at) in prepared.applied.items():
                    if eid in new_ids:
                        f = fresh.setdefault(source, [at, 0])
                        f[0], f[1] = max(f[0], at), f[1] + 1
                if fresh:
                    await conn.executemany(projection.FRESHNESS, [(s, at, n) for s, (at, n) in fresh.items()])
            processed = sum(1 for eid in prepared.applied if eid in new_ids)
            self.consumer.stats.processed += processed
            self.consumer.stats.duplicates += len(prepared.records) - processed
        except Exception as exc:
            if is_transient(exc):
                raise
            log.warning("batched replay failed, falling back to per-event processing",
                        extra={"fields": {"exc_type": type(exc).__name__}})
            await self.consumer.process_batch(prepared.records)


async def apply_batch(pool, consumer: EventConsumer, records: list,
                      sources: dict[str, str] | None = None) -> None:
    """Apply records like the replay does (same inbox, same handlers, batched), without
    the overlap. ``sources`` maps topic names to freshness sources (default: the topic)."""
    feed = _Feed(consumer, sources or {})
    await feed.apply(pool, await feed.prepare(records))


async def _drop_secondary_indexes(pool, schema: str) -> list[str]:
    """Drop the fresh schema's indexes that back no constraint (the upserts need only the
    primary keys) and return their definitions, to build each once after the feed rather
    than maintain it through a million upserts."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(
            "SELECT i.indexrelid::regclass::text AS name, pg_get_indexdef(i.indexrelid) AS ddl "
            "FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relkind = 'r' AND NOT i.indisunique "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid)",
            schema)
        for r in rows:
            await conn.execute(f"DROP INDEX {r['name']}")
    return [r["ddl"] for r in rows]


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

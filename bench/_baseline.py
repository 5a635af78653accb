"""The bare baselines every bench module compares against, on the same broker and database.

``bare_hop`` is the hop without our machinery: raw aiokafka consume, parse the envelope,
one ``executemany`` insert per batch in a transaction (ON CONFLICT DO NOTHING on the event
id), optionally produce each record on, then commit offsets. No inbox, no outbox, no spans,
no pydantic, no domain logic: the ceiling a service hop could approach.
"""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def fill(bootstrap: str, topic: str, items: list) -> None:
    """Produce ``items`` (values, or (key, value) pairs) with an idempotent producer."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await p.start()
    try:
        futs = []
        for i, item in enumerate(items):
            key, value = item if isinstance(item, tuple) else (str(i % 64).encode(), item)
            futs.append(await p.send(topic, key=key, value=value))
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def bare_hop(urls, topics: list[str], n: int, *, produce_to: str | None = None) -> float:
    """Events/s of the bare hop over ``n`` records, timed from the first record received."""
    schema = f"bench_bare_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(urls.database_url)
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.execute(f"CREATE TABLE {schema}.raw (event_id uuid PRIMARY KEY, type text, payload jsonb)")
    consumer = AIOKafkaConsumer(*topics, bootstrap_servers=urls.kafka_bootstrap,
                                group_id=f"{schema}.group", enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=500,
                                isolation_level="read_committed")
    producer = None
    if produce_to:
        producer = AIOKafkaProducer(bootstrap_servers=urls.kafka_bootstrap,
                                    enable_idempotence=True, linger_ms=5)
        await producer.start()
    await consumer.start()
    done, t0 = 0, None
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            recs = [r for rs in batch.values() for r in rs]
            if not recs:
                continue
            t0 = t0 or time.perf_counter()
            rows = []
            for r in recs:
                e = orjson.loads(r.value)
                rows.append((uuid.UUID(e["event_id"]), e["type"], orjson.dumps(e["payload"]).decode()))
            async with conn.transaction():
                await conn.executemany(
                    f"INSERT INTO {schema}.raw VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING", rows)
            if producer is not None:
                futs = [await producer.send(produce_to, key=r.key, value=r.value) for r in recs]
                await asyncio.gather(*futs)
            await consumer.commit()
            done += len(recs)
        return n / (time.perf_counter() - (t0 or time.perf_counter()))
    finally:
        await consumer.stop()
        if producer is not None:
            await producer.stop()
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


async def service_rate(svc, n: int, *, drain_outbox: bool = True, limit_s: float = 600) -> float:
    """Events/s of a started service over ``n`` pre-filled records: from the moment its
    consumers have partitions (as the baseline, group join excluded) until every record is
    processed or dead-lettered and, by default, every resulting event published."""
    await svc.wait_ready(timeout=90)
    t0 = time.perf_counter()
    deadline = t0 + limit_s

    def handled() -> int:
        return sum(c.stats.processed + c.stats.dead_lettered + c.stats.ignored
                   for c in svc.consumers)

    while handled() < n:  # noqa: ASYNC110 (polling a counter is the measurement)
        if time.perf_counter() > deadline:
            raise TimeoutError(f"only {handled()}/{n} handled")
        await asyncio.sleep(0.005)
    while drain_outbox and await svc.pool.fetchval("SELECT count(*) FROM outbox") > 0:  # noqa: ASYNC110
        await asyncio.sleep(0.005)
    return n / (time.perf_counter() - t0)

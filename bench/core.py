"""One messaging hop (consume -> inbox + effect + outbox -> relay -> produce) next to the
bare baseline on the same broker and database: raw aiokafka consume -> asyncpg insert ->
produce, with offsets committed after the insert."""

from __future__ import annotations

import asyncio
import time
import uuid

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from mediation_core.settings import from_env
from mediation_schemas.envelope import encode, new_envelope
from mediation_schemas.topics import Topics

from tests.core import toy


async def _fill(bootstrap: str, topic: str, values: list[bytes]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await p.start()
    try:
        futs = [await p.send(topic, key=str(i % 64).encode(), value=v) for i, v in enumerate(values)]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def bare_hop(urls, topic_in: str, topic_out: str, n: int) -> float:
    """Messages/s of the bare baseline."""
    conn = await asyncpg.connect(urls.database_url)
    await conn.execute("CREATE TABLE IF NOT EXISTS public.bench_bare (id uuid, v bytea)")
    consumer = AIOKafkaConsumer(topic_in, bootstrap_servers=urls.kafka_bootstrap,
                                group_id=f"bare-{uuid.uuid4().hex[:6]}", enable_auto_commit=False,
                                auto_offset_reset="earliest", max_poll_records=500)
    producer = AIOKafkaProducer(bootstrap_servers=urls.kafka_bootstrap, enable_idempotence=True,
                                linger_ms=5)
    await consumer.start()
    await producer.start()
    done = 0
    t0 = None
    try:
        while done < n:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            recs = [r for rs in batch.values() for r in rs]
            if not recs:
                continue
            if t0 is None:
                t0 = time.perf_counter()
            await conn.executemany("INSERT INTO public.bench_bare VALUES ($1, $2)",
                                   [(uuid.uuid4(), r.value) for r in recs])
            futs = [await producer.send(topic_out, key=r.key, value=r.value) for r in recs]
            await asyncio.gather(*futs)
            await consumer.commit()
            done += len(recs)
        return n / (time.perf_counter() - (t0 or time.perf_counter()))
    finally:
        await consumer.stop()
        await producer.stop()
        await conn.execute("DROP TABLE IF EXISTS public.bench_bare")
        await conn.close()


async def framework_hop(urls, prefix: str, n: int) -> float:
    s = from_env("toy").with_(kafka_bootstrap=urls.kafka_bootstrap, database_url=urls.database_url,
                             schema=f"bench_{prefix.strip('.')}", topics=Topics(prefix=prefix),
                             group_id=f"{prefix}toy", http_port=0)
    svc = toy.build(s)
    await svc.start(http=False)
    t0 = time.perf_counter()
    try:
        while svc.consumers[0].stats.processed < n:
            await asyncio.sleep(0.01)
        while await svc.pool.fetchval("SELECT count(*) FROM outbox") > 0:
            await asyncio.sleep(0.01)
        return n / (time.perf_counter() - t0)
    finally:
        await svc.stop()
        conn = await asyncpg.connect(urls.database_url)
        await conn.execute(f"DROP SCHEMA IF EXISTS {s.schema} CASCADE")
        await conn.close()


async def run(urls, scale: float = 1.0) -> list[dict]:
    n = int(20000 * scale)
    prefix = f"bench{uuid.uuid4().hex[:6]}."
    values = [encode(new_envelope(toy.TestPing(ping_id=uuid.uuid4(), n=i), producer="bench",
                                  correlation_id=str(i))) for i in range(n)]
    await _fill(urls.kafka_bootstrap, f"{prefix}bare_in", values)
    await _fill(urls.kafka_bootstrap, f"{prefix}ping", values)
    base = await bare_hop(urls, f"{prefix}bare_in", f"{prefix}bare_out", n)
    ours = await framework_hop(urls, prefix, n)
    return [{"name": f"messaging hop (inbox+effect+outbox+relay), {n} events", "value": ours,
             "unit": "events/s", "baseline": base, "ratio": ours / base,
             "note": "baseline: raw aiokafka consume -> asyncpg insert -> produce -> commit"}]

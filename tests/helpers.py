"""Helpers shared by tests: read a topic from the beginning, produce raw records."""

from __future__ import annotations

import asyncio
import uuid

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer


async def read_topic(bootstrap: str, topic: str, *, expect: int | None = None,
                     timeout: float = 30.0, idle: float = 1.0) -> list:
    """All records of a topic: until ``expect`` records arrived, or ``idle`` s without any."""
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                auto_offset_reset="earliest", enable_auto_commit=False,
                                isolation_level="read_committed")
    await consumer.start()
    out = []
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last = loop.time()
    try:
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                out.extend(recs)
                last = loop.time()
            if expect is not None and len(out) >= expect:
                # a little longer, to catch extra (duplicate) records
                if loop.time() - last > 0.5:
                    break
            elif expect is None and out and loop.time() - last > idle:
                break
    finally:
        await consumer.stop()
    return out


def values(records) -> list[dict]:
    return [orjson.loads(r.value) for r in records]


async def produce(bootstrap: str, topic: str, items: list[tuple[bytes | None, bytes | None]],
                  headers: list | None = None) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all")
    await p.start()
    try:
        futs = [await p.send(topic, key=k, value=v, headers=headers) for k, v in items]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


def new_id() -> str:
    return str(uuid.uuid4())

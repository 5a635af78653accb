"""One messaging hop (consume -> inbox + effect + outbox -> relay -> produce) next to the
bare baseline on the same broker and database: raw aiokafka consume -> asyncpg insert ->
produce, with offsets committed after the insert."""

from __future__ import annotations

import uuid

import asyncpg

from bench._baseline import bare_hop, fill, service_rate
from mediation_core.settings import from_env
from mediation_schemas.envelope import encode, new_envelope
from mediation_schemas.topics import Topics
from tests.core import toy


async def framework_hop(urls, prefix: str, n: int, *, deferred: bool = False) -> float:
    tag = "d" if deferred else ""
    s = from_env("toy").with_(kafka_bootstrap=urls.kafka_bootstrap, database_url=urls.database_url,
                             schema=f"bench_{prefix.strip('.')}{tag}", topics=Topics(prefix=prefix),
                             group_id=f"{prefix}toy{tag}", http_port=0)
    svc = toy.build(s, deferred=deferred)
    await svc.start(http=False)
    try:
        return await service_rate(svc, n)
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
    await fill(urls.kafka_bootstrap, f"{prefix}bare_in", values)
    await fill(urls.kafka_bootstrap, f"{prefix}ping", values)
    base = await bare_hop(urls, [f"{prefix}bare_in"], n, produce_to=f"{prefix}bare_out")
    ours = await framework_hop(urls, prefix, n)
    deferred = await framework_hop(urls, prefix, n, deferred=True)
    note = "baseline: bench/_baseline.bare_hop with produce (consume, insert, produce, commit)"
    return [{"name": f"messaging hop (inbox+effect+outbox+relay), {n} events", "value": ours,
             "unit": "events/s", "baseline": base, "ratio": ours / base,
             "note": "the effect one statement per event; " + note},
            {"name": f"messaging hop, effect a deferred write, {n} events", "value": deferred,
             "unit": "events/s", "baseline": base, "ratio": deferred / base,
             "note": "the effect deferred to the batch's end (ctx.defer, one executemany); " + note}]

"""Intake throughput on the real stack, next to a bare consume-and-insert baseline.

Both read the same N ``ReferralReceived`` records from the same topic:
- baseline: a bare aiokafka consumer that parses each record and inserts it (asyncpg
  ``executemany``) into a table, one transaction and one offset commit per batch;
- intake: the real service (inbox, validation and normalisation, blind index, per-person
  key from the vault, AES-GCM sealing, state upsert, outbox row, one transaction per batch).

Rates are steady state: from the first record processed to the last (so group join and
service start-up are not counted, for either). The sender is given a Kafka budget above
its rate there; the same forms are then taken again by a fresh service at the default
budget, one sender flooding (parked, drained). The hop is also put next to the bare hop
that produces (consume, insert, produce). The HTTP path is measured too (sequential POSTs
through the ASGI app, no network), without a baseline.
"""

from __future__ import annotations

import asyncio
import random
import string
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import orjson
from aiokafka import AIOKafkaProducer

from bench._baseline import bare_hop, service_rate
from mediation_core.settings import from_env
from mediation_core.stack import StackUrls
from mediation_schemas.topics import Topics


def _name(rng: random.Random, n: int = 8) -> str:
    return "".join(rng.choice(string.ascii_lowercase) for _ in range(n))


def _forms(n: int, source: str, seed: int = 7) -> list[dict]:
    from mediation_intake.contract import EXAMPLES

    rng = random.Random(seed)
    base = EXAMPLES["referral-received-msp-gp.json"]
    people = [(_name(rng), _name(rng, 6), f"19{rng.randint(30, 99)}-0{rng.randint(1, 9)}-1"
               f"{rng.randint(0, 9)}") for _ in range(max(1, n * 3 // 4))]
    out = []
    for i in range(n):
        fam, giv, bd = people[i % len(people)]  # a quarter are people referred again
        f = orjson.loads(orjson.dumps(base))
        f["source_system"] = source
        f["source_reference"] = f"B-{i:07d}"
        f["person"].update(family_name=fam, given_name=giv, birth_date=bd,
                           phone=f"06 {rng.randint(10, 99)} {rng.randint(10, 99)} "
                           f"{rng.randint(10, 99)} {rng.randint(10, 99)}")
        out.append(f)
    return out


def _envelope(payload: dict) -> bytes:
    return orjson.dumps({
        "event_id": str(uuid.uuid4()), "type": "ReferralReceived", "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(), "producer": payload["source_system"],
        "correlation_id": payload["source_reference"], "payload": payload})


async def _produce(bootstrap: str, topic: str, forms: list[dict]) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                         linger_ms=5)
    await p.start()
    try:
        futs = [await p.send(topic, key=f"{f['source_system']}:{f['source_reference']}".encode(),
                             value=_envelope(f)) for f in forms]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def run(urls: StackUrls, scale: float = 1.0) -> list[dict]:
    import httpx

    from mediation_core.auth import issue_token
    from mediation_intake.service import build

    n = max(50, int(2000 * scale))
    ns = f"bench_{uuid.uuid4().hex[:6]}"
    topics = Topics(prefix=f"{ns}.")
    settings = from_env("intake").with_(
        kafka_bootstrap=urls.kafka_bootstrap, database_url=urls.database_url,
        schema=f"intake_{ns}", topics=topics, group_id=f"{ns}.intake", http_port=0,
        keyvault_schema=f"keyvault_{ns}")
    forms = _forms(n, "bench-msp")
    from mediation_core.service import ensure_topics

    await ensure_topics(urls.kafka_bootstrap, [topics.referrals_received], settings.partitions)
    await _produce(urls.kafka_bootstrap, topics.referrals_received, forms)

    base_rate = await bare_hop(urls, [topics.referrals_received], n)
    hop_base = await bare_hop(urls, [topics.referrals_received], n,
                              produce_to=f"{ns}.bare_out")

    # the hop: the sender within its Kafka budget (every form taken at once)
    svc = build(settings, http_rate=1e6, http_burst=1_000_000, kafka_rate=1e6,
                kafka_burst=1_000_000)
    await svc.start(http=False)
    try:
        rate = await service_rate(svc, n)
        accepted = await svc.pool.fetchval("SELECT count(*) FROM referrals WHERE revision = 1")
        # HTTP path: sequential POSTs (one transaction each), new forms
        m = max(20, n // 10)
        http_forms = _forms(m, "bench-http", seed=11)
        headers = {"Authorization": f"Bearer {issue_token(sub='bench-http', role='source_system')}"}
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app),
                                     base_url="http://intake") as http:
            t0 = time.perf_counter()
            for f in http_forms:
                r = await http.post("/referrals", json=f, headers=headers)
                assert r.status_code == 202, r.text
            http_rate = m / (time.perf_counter() - t0)
    finally:
        await svc.stop()
        await _drop(urls, settings)
    flood_rate = await _flood(urls, settings.with_(group_id=f"{ns}.intake-flood"), n, build)
    return [
        {"name": "intake.kafka_referrals_per_s", "value": round(rate, 1), "unit": "referrals/s",
         "baseline": round(base_rate, 1), "ratio": round(rate / base_rate, 3),
         "note": f"{n} forms ({accepted} accepted), steady state; baseline = bare aiokafka "
                 "consume + asyncpg executemany insert + commit per batch, same topic, same run"},
        {"name": "intake hop vs consume -> insert -> produce", "value": round(rate, 1),
         "unit": "referrals/s", "baseline": round(hop_base, 1), "ratio": round(rate / hop_base, 3),
         "note": "the same run; baseline: bench/_baseline.bare_hop with produce"},
        {"name": "intake, one sender flooding (default budget: parked, drained)",
         "value": round(flood_rate, 1), "unit": "referrals/s", "baseline": round(rate, 1),
         "ratio": round(flood_rate / rate, 3),
         "note": f"the same {n} forms from one sender over its budget (50/s, burst 500): "
                 "all but the burst parked and drained round-robin; baseline: the hop above"},
        {"name": "intake.http_referrals_per_s", "value": round(http_rate, 1),
         "unit": "referrals/s", "baseline": None, "ratio": None,
         "note": f"{m} sequential POST /referrals through the ASGI app (one transaction each)"},
    ]


if __name__ == "__main__":
    from mediation_core import stack

    for row in asyncio.run(run(stack.up())):
        print(orjson.dumps(row).decode())


async def _drop(urls: StackUrls, settings) -> None:
    conn = await asyncpg.connect(urls.database_url)
    try:
        for schema in (settings.schema, settings.keyvault_schema):
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    finally:
        await conn.close()


async def _flood(urls: StackUrls, settings, n: int, build) -> float:
    """Referrals/s when one sender floods: from partition assignment until every form is
    accepted (parked ones drained) and every event published."""
    svc = build(settings)
    await svc.start(http=False)
    try:
        await svc.wait_ready(timeout=90)
        t0 = time.perf_counter()
        while await svc.pool.fetchval(
                "SELECT count(*) FROM referrals WHERE revision = 1") < n \
                or await svc.pool.fetchval("SELECT count(*) FROM outbox") > 0:  # noqa: ASYNC110
            if time.perf_counter() - t0 > 600:
                raise TimeoutError("the flood was not taken in 600 s")
            await asyncio.sleep(0.01)
        return n / (time.perf_counter() - t0)
    finally:
        await svc.stop()
        await _drop(urls, settings)

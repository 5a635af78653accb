"""The whole system: the five services as separate processes on the same broker and database.

- throughput from ``ReferralReceived`` to ``CaseOpened`` committed, on a backlog of 20,000
  referrals (scaled by ``scale``) published before the services start;
- latency p50/p95/p99 from sending a ``ReferralReceived`` to its ``CaseOpened`` (the event's
  time, written in the transaction that opened the case) at a steady 50 referrals/s;
- peak resident memory (RSS) of each service process over both runs.

The CPTS territory is given a version without capacity limits first, so that every referral
of the load reaches a case (the packaged version caps each mediator's caseload at 40).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import threading
import time
import uuid
from datetime import datetime

import asyncpg
import orjson
import psutil

from bench._baseline import fill
from mediation_core.demo import envelope_for
from mediation_core.system import SERVICES, ServiceProcesses, namespaced_env
from mediation_intake.intake import referral_id
from mediation_schemas.envelope import encode
from mediation_schemas.topics import Topics
from tests.helpers import read_topic
from tests.system.territory import unlimited_cpts_version
from tests.system.test_chaos import chaos_form

SENDERS = 20


class PeakRss(threading.Thread):
    """Samples each service's RSS every 200 ms; keeps the peak per service."""

    def __init__(self, procs: ServiceProcesses) -> None:
        super().__init__(daemon=True)
        self.procs = procs
        self.peak = dict.fromkeys(SERVICES, 0)
        self.stop_flag = threading.Event()

    def run(self) -> None:
        while not self.stop_flag.wait(0.2):
            for name, p in self.procs.procs.items():
                try:
                    self.peak[name] = max(self.peak[name], psutil.Process(p.pid).memory_info().rss)
                except psutil.Error:
                    pass


def _records(forms: list[dict]) -> list[tuple[bytes, bytes]]:
    return [(f"{f['source_system']}:{f['source_reference']}".encode(), encode(envelope_for(f)))
            for f in forms]


async def _count(db: str, sql: str) -> int:
    conn = await asyncpg.connect(db)
    try:
        return await conn.fetchval(sql)
    finally:
        await conn.close()


async def _wait_count(db: str, sql: str, n: int, limit_s: float) -> None:
    deadline = time.monotonic() + limit_s
    while await _count(db, sql) < n:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{sql}: fewer than {n} after {limit_s:.0f}s")
        await asyncio.sleep(0.2)


async def run(urls, scale: float = 1.0) -> list[dict]:
    ns = f"bsys{uuid.uuid4().hex[:6]}"
    topics = Topics(prefix=f"{ns}.")
    env = namespaced_env(ns, urls)
    cases_sql = f"SELECT count(*) FROM cases_{ns}.cases"
    rnd = random.Random(20)
    n_backlog = max(500, int(20000 * scale))
    n_steady = max(250, int(1000 * scale))
    # 20 sending systems (a structure's GPs, pharmacies, hospital...), each within intake's
    # per-sender Kafka budget in the steady phase (2.5/s each); in the backlog each is over
    # its burst, so part of every sender's forms goes through intake's parking
    forms = [{**chaos_form(i, rnd), "source_system": f"bench-src-{i % SENDERS:02d}"}
             for i in range(n_backlog + n_steady)]
    backlog, steady = forms[:n_backlog], forms[n_backlog:]

    await fill(urls.kafka_bootstrap, topics.territory_changes, [unlimited_cpts_version()])
    await fill(urls.kafka_bootstrap, topics.referrals_received, _records(backlog))

    procs = ServiceProcesses(env)
    rss = PeakRss(procs)
    procs.start_all()
    rss.start()
    try:
        await asyncio.to_thread(procs.wait_ready, 180)
        t0 = time.perf_counter()
        await _wait_count(urls.database_url, cases_sql, n_backlog, limit_s=1800)
        throughput = n_backlog / (time.perf_counter() - t0)

        # steady 50/s, each referral sent alone, send time recorded
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=urls.kafka_bootstrap,
                                    enable_idempotence=True, linger_ms=0)
        await producer.start()
        sent: dict[str, float] = {}
        try:
            start = time.time()
            for i, (key, value) in enumerate(_records(steady)):
                await asyncio.sleep(max(0.0, start + i / 50.0 - time.time()))
                f = steady[i]
                sent[str(referral_id(f["source_system"], f["source_reference"]))] = time.time()
                await producer.send_and_wait(topics.referrals_received, key=key, value=value)
        finally:
            await producer.stop()
        await _wait_count(urls.database_url, cases_sql, n_backlog + n_steady, limit_s=600)
        opened: dict[str, float] = {}
        for rec in await read_topic(urls.kafka_bootstrap, topics.cases, idle=3.0, timeout=300):
            e = orjson.loads(rec.value)
            if e["type"] == "CaseOpened" and e["payload"]["referral_id"] in sent:
                opened[e["payload"]["referral_id"]] = datetime.fromisoformat(
                    e["occurred_at"]).timestamp()
        lat = sorted((opened[r] - sent[r]) * 1000 for r in sent if r in opened)
    finally:
        rss.stop_flag.set()
        await asyncio.to_thread(procs.stop_all)
        conn = await asyncpg.connect(urls.database_url)
        for s in [*SERVICES, "keyvault"]:
            await conn.execute(f"DROP SCHEMA IF EXISTS {s}_{ns} CASCADE")
        await conn.close()

    def pct(p: float) -> float:
        return lat[min(len(lat) - 1, int(p * len(lat)))]

    rows = [
        {"name": f"end to end ReferralReceived -> CaseOpened, backlog of {n_backlog}",
         "value": throughput, "unit": "referrals/s", "baseline": None, "ratio": None,
         "note": f"five service processes + Kafka + PostgreSQL on this machine, {SENDERS} senders "
                 "(intake's default per-sender budget parks part of the backlog); target 1,000/s"},
    ]
    for p, label in ((0.50, "p50"), (0.95, "p95"), (0.99, "p99")):
        rows.append({"name": f"latency ReferralReceived -> CaseOpened at 50/s, {label}",
                     "value": pct(p), "unit": "ms", "baseline": None, "ratio": None,
                     "note": f"{len(lat)}/{n_steady} measured; mean {statistics.fmean(lat):.0f} ms"
                     if label == "p50" else ""})
    for name in SERVICES:
        rows.append({"name": f"peak RSS {name}", "value": rss.peak[name] / 2**20, "unit": "MiB",
                     "baseline": None, "ratio": None, "note": "target 150 MB" if name == "intake" else ""})
    return rows

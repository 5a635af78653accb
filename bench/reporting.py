"""Reporting benchmark: ingest rate into the read models, rebuild (replay) time, and p95
latency of the main indicator queries on many cases, each next to a bare-Postgres
baseline measured in the same run.

Sizes are scaled down from the issue's million so the whole module stays under a minute
on a small machine: at scale 1.0, 20,000 events for ingest and rebuild (the rebuild
figure is also extrapolated linearly to 1,000,000 events in its note) and 100,000 cases
(plus 200,000 actions and 100,000 referrals, generated with SQL generate_series) for
the query latencies. ``BENCH_SCALE`` multiplies all sizes.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from bench._baseline import bare_hop, service_rate
from mediation_core import db
from mediation_core.settings import from_env
from mediation_reporting import publish, setup
from mediation_reporting.replay import replay
from mediation_reporting.service import build
from mediation_schemas import cases as cs
from mediation_schemas import referrals as rf
from mediation_schemas.common import MotiveItem, SealedBlock
from mediation_schemas.envelope import encode, new_envelope
from mediation_schemas.topics import Topics
from mediation_schemas.vocab import CaseOrigin, ClosureReason, Motive

MOTIVES = [Motive.complex_care_path, Motive.access_to_rights, Motive.care_interruption,
           Motive.care_renunciation]
KINDS = ["interview", "orientation", "accompaniment", "rights_procedure", "information"]


def _events(n: int) -> list[tuple[str, bytes, bytes]]:
    """About n events: per case a referral accepted + routed, the case opened, a first
    contact, two actions, and a closure for one case in three."""
    out: list[tuple[str, bytes, bytes]] = []
    base = datetime(2025, 1, 1, 8, tzinfo=UTC)
    sealed = SealedBlock(key_id="k", nonce="bm9uY2U=", ciphertext="eA==")
    i = 0
    while len(out) < n:
        at = base + timedelta(hours=7 * i)
        rid, cid = uuid.uuid4(), uuid.uuid4()
        area, med = f"a{i % 6}", f"m{i % 12}"
        core = rf.ReferralCore(
            referral_id=rid, revision=1, source_system="bench", source_reference=str(i),
            received_at=at, referral_date=at.date(), person_ref=f"p{i % 5000}", sealed=sealed,
            motives=[MotiveItem(code=MOTIVES[i % 4])], consent_share_with_referrer=True,
            referrer_structure_kind=["msp", "hospital", "cpam"][i % 3])
        ref = cs.CaseRef(case_id=cid, structure=f"s{i % 3}", area=area, mediator_id=med)
        evs = [("referrals_intake", rid, rf.ReferralAccepted(referral=core), at),
               ("routing_decisions", rid, rf.ReferralRouted(
                   referral=core, structure=ref.structure, area=area, mediator_id=med,
                   place=rf.PlaceRef(kind="commune", code="30000", name="X"),
                   decision=rf.RoutingDecision(rule="exact_name", territory_version=1)), at),
               ("cases", cid, cs.CaseOpened(case=ref, origin=CaseOrigin.referral, referral_id=rid,
                                            referral_received_at=at, person_ref=core.person_ref,
                                            motives=core.motives, opened_at=at), at),
               ("cases", cid, cs.FirstContactMade(case=ref, channel="phone",
                                                  contacted_at=at + timedelta(days=i % 9),
                                                  attempts=1), at)]
        for k in range(2):
            evs.append(("cases", cid, cs.ActionRecorded(
                case=ref, action_id=uuid.uuid4(), axis=2, kind=KINDS[(i + k) % 5],
                occurred_at=at + timedelta(days=10 + k),
                status="opened" if KINDS[(i + k) % 5] == "rights_procedure" else None), at))
        if i % 3 == 0:
            evs.append(("cases", cid, cs.CaseClosed(case=ref, reason=ClosureReason.autonomous,
                                                    closed_at=at + timedelta(days=40)), at))
        for topic, key, payload, t in evs:
            env = new_envelope(payload, producer="bench", correlation_id=str(rid), occurred_at=t,
                               structure=ref.structure)
            out.append((topic, str(key).encode(), encode(env)))
        i += 1
    return out[:n]


async def _produce(bootstrap: str, topics: Topics, events) -> None:
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                         linger_ms=10, max_batch_size=512 * 1024)
    await p.start()
    try:
        futs = [await p.send(getattr(topics, t), key=k, value=v) for t, k, v in events]
        await asyncio.gather(*futs)
    finally:
        await p.stop()


async def _bare_rebuild(urls, topics: list[str], n: int, schema: str) -> float:
    """Baseline: read every record from offset 0 and COPY the raw events into a table."""
    conn = await asyncpg.connect(urls.database_url)
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.execute(f"CREATE TABLE {schema}.raw (event_id uuid, type text, payload jsonb)")
    t0 = time.perf_counter()
    c = AIOKafkaConsumer(*topics, bootstrap_servers=urls.kafka_bootstrap, group_id=None,
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         max_poll_records=2000)
    await c.start()
    done = 0
    try:
        while done < n:
            batches = await c.getmany(timeout_ms=500, max_records=2000)
            rows = []
            for recs in batches.values():
                for r in recs:
                    e = orjson.loads(r.value)
                    rows.append((uuid.UUID(e["event_id"]), e["type"], orjson.dumps(e["payload"]).decode()))
            if rows:
                await conn.copy_records_to_table("raw", schema_name=schema, records=rows)
                done += len(rows)
        return time.perf_counter() - t0
    finally:
        await c.stop()
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


GENERATE = """
INSERT INTO cases (case_id, structure, area, mediator_id, assigned_at, origin, referral_received_at,
                   person_ref, motives, urgency, opened_at, first_contact_at, closed_at, closure_reason)
SELECT md5('c' || i)::uuid, 's' || (i % 5), 'a' || (i % 20), 'm' || (i % 40), ts, 'referral',
       ts - interval '2 days', 'p' || (i % ($1 * 4 / 5)), ARRAY['complex_care_path'], 'normal', ts,
       ts + (i % 10) * interval '1 day',
       CASE WHEN i % 3 = 0 THEN ts + interval '40 days' END,
       CASE WHEN i % 3 = 0 THEN 'autonomous' END
FROM generate_series(1, $1) i,
     LATERAL (SELECT timestamptz '2025-01-01 08:00Z' + (i % 700) * interval '1 day'
                     + (i % 24) * interval '1 hour' AS ts) t;
INSERT INTO case_actions (action_id, case_id, structure, area, mediator_id, axis, kind, occurred_at, status)
SELECT md5('a' || i || '-' || k)::uuid, md5('c' || i)::uuid, 's' || (i % 5), 'a' || (i % 20), 'm' || (i % 40), 2,
       (ARRAY['interview', 'orientation', 'accompaniment', 'rights_procedure', 'information'])[1 + (i + k) % 5],
       timestamptz '2025-01-01 08:00Z' + (i % 700) * interval '1 day' + k * interval '5 days',
       CASE WHEN (i + k) % 5 = 3 THEN 'opened' END
FROM generate_series(1, $1) i, generate_series(1, 2) k;
INSERT INTO referrals (referral_key, referral_id, env_structure, source_system, referrer_kind, received_at,
                       accepted_at, revision, motives, urgency, routing_at, routing_status, structure, area, mediator_id)
SELECT md5('r' || i), md5('r' || i)::uuid, 's' || (i % 5), 'bench', (ARRAY['msp', 'hospital', 'cpam'])[1 + i % 3],
       ts, ts, 1, ARRAY[(ARRAY['complex_care_path', 'access_to_rights', 'care_interruption', 'care_renunciation'])[1 + i % 4]],
       'normal', ts, 'routed', 's' || (i % 5), 'a' || (i % 20), 'm' || (i % 40)
FROM generate_series(1, $1) i,
     LATERAL (SELECT timestamptz '2025-01-01 06:00Z' + (i % 700) * interval '1 day' AS ts) t;
ANALYZE cases; ANALYZE case_actions; ANALYZE referrals;
"""

QUERIES = {
    "activité (v_activite), 1 structure, 1 an":
        "SELECT * FROM v_activite WHERE structure = 's1' AND type_periode = 'annee' AND periode = '2025'",
    "file active (v_file_active), 1 structure":
        "SELECT * FROM v_file_active WHERE structure = 's1'",
    "délais médiane/p90 (v_delais), 1 structure, 1 an":
        "SELECT * FROM v_delais WHERE structure = 's1' AND type_periode = 'annee' AND periode = '2025'",
    "motifs (v_motifs), 1 structure, 1 an":
        "SELECT * FROM v_motifs WHERE structure = 's1' AND type_periode = 'annee' AND periode = '2025'",
}
BARE = ("SELECT area, mediator_id, count(*), count(DISTINCT person_ref) FROM cases "
        "WHERE structure = 's1' AND opened_at >= '2025-01-01' AND opened_at < '2026-01-01' "
        "GROUP BY ROLLUP (area, mediator_id)")


def _p95(samples: list[float]) -> float:
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


async def _timed(pool, sql: str, runs: int) -> float:
    await pool.fetch(sql)  # warm-up
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        await pool.fetch(sql)
        out.append(time.perf_counter() - t0)
    return _p95(out) * 1000


async def run(urls, scale: float = 1.0) -> list[dict]:
    rows: list[dict] = []
    n = max(int(20000 * scale), 500)
    m = max(int(100000 * scale), 1000)
    tag = uuid.uuid4().hex[:6]
    prefix = f"benchrep{tag}."
    settings = from_env("reporting").with_(
        kafka_bootstrap=urls.kafka_bootstrap, database_url=urls.database_url,
        schema=f"reporting_bench_{tag}", topics=Topics(prefix=prefix),
        group_id=f"{prefix}reporting", http_port=0, batch_size=500)
    events = _events(n)
    admin = await asyncpg.connect(urls.database_url)
    try:
        # ---------------------------------------------------------------- ingest
        await _produce(urls.kafka_bootstrap, settings.topics, events)
        svc = build(settings, publish_every=0)
        await svc.start(http=False)
        ours = await service_rate(svc, n, drain_outbox=False)
        await svc.stop()
        topics = [getattr(settings.topics, t) for t in
                  ("referrals_intake", "routing_decisions", "cases")]
        bare = await bare_hop(urls, topics, n)
        rows.append({"name": f"ingest into read models, {n} events", "value": ours,
                     "unit": "events/s", "baseline": bare, "ratio": ours / bare,
                     "note": "service consumer (inbox + projection upserts + freshness) from "
                             "produce-time; baseline: aiokafka consume -> executemany raw JSON "
                             "-> commit, same topics, same run"})

        # ---------------------------------------------------------------- rebuild
        t0 = time.perf_counter()
        res = await replay(settings, batch_size=2000)
        rebuild = time.perf_counter() - t0
        bare_rb = await _bare_rebuild(urls, topics, n, f"bare_rebuild_{tag}")
        rows.append({"name": f"rebuild (replay + swap) of {res.records} events", "value": rebuild,
                     "unit": "s", "baseline": bare_rb, "ratio": rebuild / bare_rb,
                     "note": f"scaled from the issue's 1,000,000 events; linear extrapolation "
                             f"{rebuild * 1_000_000 / max(res.records, 1) / 60:.1f} min per million; "
                             "baseline: read all from offset 0 + COPY raw into one table"})

        # ---------------------------------------------------------------- queries
        qschema = f"reporting_benchq_{tag}"
        pool = await db.create_pool(urls.database_url, qschema, application="bench-reporting")
        try:
            await db.migrate(pool, qschema, setup.MIGRATIONS)
            t0 = time.perf_counter()
            async with pool.acquire() as conn:
                for stmt in GENERATE.strip().split(";\n"):
                    if stmt.strip():
                        await conn.execute(stmt.replace("$1", str(m)))
            gen = time.perf_counter() - t0
            bare_q = await _timed(pool, BARE, 5)
            for label, sql in QUERIES.items():
                p95 = await _timed(pool, sql, 5)
                rows.append({"name": f"p95 {label}, {m} cases", "value": p95, "unit": "ms",
                             "baseline": bare_q, "ratio": p95 / bare_q,
                             "note": "5 runs after a warm-up; baseline: bare GROUP BY ROLLUP "
                                     "count + count distinct on the cases table, same rows "
                                     f"(5 structures; data generated in {gen:.1f} s)"})
        finally:
            await pool.execute(f"DROP SCHEMA {qschema} CASCADE")
            await pool.close()
        # ---------------------------------------------------------------- publication
        pschema = f"reporting_benchp_{tag}"
        mp = max(int(10000 * scale), 500)
        pool = await db.create_pool(urls.database_url, pschema, application="bench-reporting")
        try:
            await db.migrate(pool, pschema, setup.MIGRATIONS)
            async with pool.acquire() as conn:
                for stmt in GENERATE.strip().split(";\n"):
                    if stmt.strip():
                        await conn.execute(stmt.replace("$1", str(mp)))
            t0 = time.perf_counter()
            async with pool.acquire() as conn:
                for view, _spec in publish.SPECS.values():
                    await conn.fetch(f"SELECT * FROM {view} WHERE niveau <> 'mediateur'")
            read_only = time.perf_counter() - t0
            t0 = time.perf_counter()
            masked = await publish.publish(pool, 11)
            pub = time.perf_counter() - t0
            rows.append({"name": f"statistical release (all masked views), {mp} cases", "value": pub,
                         "unit": "s", "baseline": read_only, "ratio": pub / read_only,
                         "note": f"{len(masked)} views, every period and level, "
                                 f"{sum(masked.values())} masked cells; baseline: reading the "
                                 "same raw views without masking or writing"})
        finally:
            await pool.execute(f"DROP SCHEMA {pschema} CASCADE")
            await pool.close()
    finally:
        for s in (settings.schema,):
            for r in await admin.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", s + "%"):
                await admin.execute(f"DROP SCHEMA {r['nspname']} CASCADE")
        await setup.drop_roles(admin, settings.schema)
        await admin.close()
    return rows

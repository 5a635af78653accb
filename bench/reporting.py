"""Reporting benchmark: ingest rate into the read models, rebuild (replay) time for a
million events, and p95 latency of the main indicator queries on a million cases, each
next to a bare-Postgres baseline measured in the same run.

At scale 1.0 (``BENCH_SCALE`` multiplies every size):
- ingest: 20,000 events through the live service consumer;
- rebuild: 1,000,000 events (about 140,000 cases: referral accepted and routed, case
  opened, first contact, one to five actions, a closure for most) generated from templates
  and produced in bulk (record batches per partition), then ``replay`` into fresh tables;
- queries: 1,000,000 cases, their actions, closures and referrals written straight into
  the read-model tables with SQL ``generate_series`` (loading them through events would
  take longer than the whole bench), with the same distributions as the events.

Distributions (synthetic, no personal data): four structures of unequal size with two to
five sectors each and one to three mediators per sector; openings over 22 months with a
summer and year-end dip and a 15 % yearly growth; the CPTS motive mix (complex path 38,
rights 33, interruption 16, renunciation 14) with a second motive one time in four; first
contact after an exponential delay (mean 4 days); closures for 65 % of the cases with the
HAS reasons weighted; one to five actions per case (one to four in the SQL fill).
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.partitioner import DefaultPartitioner

from bench._baseline import bare_hop, service_rate
from mediation_core import db
from mediation_core.settings import from_env
from mediation_reporting import publish, setup
from mediation_reporting.replay import _drop_secondary_indexes, replay
from mediation_reporting.service import build
from mediation_schemas import cases as cs
from mediation_schemas import referrals as rf
from mediation_schemas.common import MotiveItem, SealedBlock
from mediation_schemas.envelope import decode_envelope, decode_payload, encode, new_envelope
from mediation_schemas.topics import Topics
from mediation_schemas.vocab import CaseOrigin, ClosureReason, Motive

# ------------------------------------------------------------------ distributions

# (structure, weight, sectors); sector k of a structure has 1 + k % 3 mediators
STRUCTURES = [("cpts-a", 40, 5), ("cpts-b", 30, 4), ("msp-c", 20, 3), ("ccas-d", 10, 2)]
GEO = [(s, f"{s}-{k}", f"med-{s}-{k}-{j}", w / n / (1 + k % 3))
       for s, w, n in STRUCTURES for k in range(1, n + 1) for j in range(1, 2 + k % 3)]
SEASON = [1.0, 1.0, 1.1, 1.0, 1.0, 0.9, 0.7, 0.5, 1.1, 1.1, 1.0, 0.8]
MONTHS = [(datetime(2025 + m // 12, 1 + m % 12, 1, tzinfo=UTC), SEASON[m % 12] * (1 + 0.15 * (m // 12)))
          for m in range(22)]  # 2025-01 .. 2026-10
MOTIVES = [("complex_care_path", 38), ("access_to_rights", 33), ("care_interruption", 16),
           ("care_renunciation", 14)]
SECOND_MOTIVES = [("find_gp", 40), ("mental_health", 25), ("cancer_screening", 20), ("vaccination", 15)]
CLOSURES = [("autonomous", 30), ("relay_in_place", 20), ("barriers_lifted", 15),
            ("need_met_no_wish", 10), ("no_adherence", 9), ("unreachable", 9), ("moved_away", 6),
            ("deceased", 1)]
KINDS = [("interview", 30), ("orientation", 20), ("rights_procedure", 17), ("information", 15),
         ("accompaniment", 10), ("appointment", 8)]
RIGHT_STATUS = [("opened", 50), ("filed", 35), ("refused", 15)]
REFERRERS = [("msp", 30), ("hospital", 25), ("cpam", 15), ("ccas", 10), ("pharmacy", 10),
             ("association", 10)]
ORIGINS = [("referral", 85), ("outreach", 8), ("permanence", 5), ("self_referral", 2)]
URGENCIES = [("normal", 85), ("priority", 12), ("urgent", 3)]
CHANNELS = [("phone", 70), ("permanence", 15), ("home_visit", 10), ("partner_place", 5)]
CLOSED_SHARE = 0.65
SECOND_MOTIVE_SHARE = 0.25


def _slots(weighted, n: int = 1000) -> list:
    """n values in proportion to their weights (the last ones take the rounding)."""
    total = sum(w for *_v, w in weighted)
    out: list = []
    for *v, w in weighted:
        out += [v[0] if len(v) == 1 else tuple(v)] * round(n * w / total)
    return (out + [out[-1]] * n)[:n]


class _Pick:
    def __init__(self, weighted) -> None:
        self.values = [v[0] if len(v) == 1 else tuple(v) for *v, _w in weighted]
        self.cum = list(itertools.accumulate(w for *_v, w in weighted))

    def __call__(self, r: random.Random):
        return self.values[bisect.bisect(self.cum, r.random() * self.cum[-1])]


# ------------------------------------------------------------------ events, in bulk

def _templates() -> dict[str, dict]:
    """One envelope of each generated type, built and validated by the schema models; the
    generator copies them and changes ids, times and codes (orjson, no model per event)."""
    at = datetime(2025, 1, 1, 8, tzinfo=UTC)
    rid, cid = uuid.uuid4(), uuid.uuid4()
    core = rf.ReferralCore(
        referral_id=rid, revision=1, source_system="bench", source_reference="0", received_at=at,
        referral_date=at.date(), person_ref="p0",
        sealed=SealedBlock(key_id="k", nonce="bm9uY2U=", ciphertext="eA=="),
        motives=[MotiveItem(code=Motive.complex_care_path)], consent_share_with_referrer=True,
        referrer_structure_kind="msp")
    ref = cs.CaseRef(case_id=cid, structure="s", area="a", mediator_id="m")
    payloads = [
        rf.ReferralAccepted(referral=core),
        rf.ReferralRouted(referral=core, structure="s", area="a", mediator_id="m",
                          place=rf.PlaceRef(kind="commune", code="30000", name="X"),
                          decision=rf.RoutingDecision(rule="exact_name", territory_version=1)),
        cs.CaseOpened(case=ref, origin=CaseOrigin.referral, referral_id=rid, referral_received_at=at,
                      person_ref="p0", motives=core.motives, opened_at=at),
        cs.FirstContactMade(case=ref, channel="phone", contacted_at=at, attempts=1),
        cs.ActionRecorded(case=ref, action_id=uuid.uuid4(), axis=2, kind="interview", occurred_at=at),
        cs.CaseClosed(case=ref, reason=ClosureReason.autonomous, closed_at=at),
    ]
    return {p.event_type: orjson.loads(encode(new_envelope(p, producer="bench", correlation_id="c",
                                                           occurred_at=at, structure="s")))
            for p in payloads}


class EventGenerator:
    """Events case by case with the module's distributions (seeded, synthetic)."""

    def __init__(self, seed: int = 42) -> None:
        self.r = random.Random(seed)
        self.t = _templates()
        self.geo = _Pick([(g[:3], g[3]) for g in GEO])
        self.month = _Pick(MONTHS)
        self.motive, self.second = _Pick(MOTIVES), _Pick(SECOND_MOTIVES)
        self.closure, self.kind = _Pick(CLOSURES), _Pick(KINDS)
        self.right_status, self.referrer = _Pick(RIGHT_STATUS), _Pick(REFERRERS)
        self.origin, self.urgency, self.channel = _Pick(ORIGINS), _Pick(URGENCIES), _Pick(CHANNELS)
        self.i = 0

    def _env(self, type_: str, at: datetime, corr: str, structure: str, payload: dict) -> bytes:
        t = self.t[type_]
        return orjson.dumps({**t, "event_id": str(uuid.uuid4()), "occurred_at": at.isoformat(),
                             "correlation_id": corr, "structure": structure,
                             "payload": {**t["payload"], **payload}})

    def case(self) -> list[tuple[str, bytes, bytes]]:
        r, i = self.r, self.i
        self.i += 1
        structure, area, med = self.geo(r)
        month = self.month(r)
        opened = month + timedelta(days=r.random() * 28, hours=r.random() * 10)
        received = opened - timedelta(days=r.random() * 6)
        rid, cid = str(uuid.uuid4()), str(uuid.uuid4())
        motives = [{"code": self.motive(r), "right": None, "screening": None}]
        if r.random() < SECOND_MOTIVE_SHARE:
            motives.append({"code": self.second(r), "right": None, "screening": None})
        urgency, person = self.urgency(r), f"p{r.randrange(850_000)}"
        core = {**self.t["ReferralAccepted"]["payload"]["referral"], "referral_id": rid,
                "source_reference": str(i), "received_at": received.isoformat(),
                "referral_date": received.date().isoformat(), "person_ref": person,
                "motives": motives, "urgency": urgency, "referrer_structure_kind": self.referrer(r)}
        case = {"case_id": cid, "structure": structure, "area": area, "mediator_id": med}
        key_r, key_c = rid.encode(), cid.encode()
        out = [("referrals_intake", key_r, self._env("ReferralAccepted", received, rid, structure,
                                                     {"referral": core})),
               ("routing_decisions", key_r, self._env("ReferralRouted", received, rid, structure,
                                                      {"referral": core, "structure": structure,
                                                       "area": area, "mediator_id": med})),
               ("cases", key_c, self._env("CaseOpened", opened, rid, structure, {
                   "case": case, "origin": self.origin(r), "referral_id": rid,
                   "referral_received_at": received.isoformat(), "person_ref": person,
                   "motives": motives, "urgency": urgency, "opened_at": opened.isoformat()}))]
        contact = opened + timedelta(days=int(r.expovariate(1 / 4)), hours=r.random() * 8)
        out.append(("cases", key_c, self._env("FirstContactMade", contact, rid, structure, {
            "case": case, "channel": self.channel(r), "contacted_at": contact.isoformat(),
            "attempts": 1 + int(r.expovariate(1))})))
        at = contact
        for _ in range(1 + int(r.random() * 5)):
            at += timedelta(days=1 + r.expovariate(1 / 12))
            kind = self.kind(r)
            out.append(("cases", key_c, self._env("ActionRecorded", at, rid, structure, {
                "case": case, "action_id": str(uuid.uuid4()), "kind": kind,
                "axis": 2 if kind == "rights_procedure" else 1 if kind == "interview" else 3,
                "occurred_at": at.isoformat(),
                "status": self.right_status(r) if kind == "rights_procedure" else None})))
        if r.random() < CLOSED_SHARE:
            closed = at + timedelta(days=1 + r.expovariate(1 / 20))
            out.append(("cases", key_c, self._env("CaseClosed", closed, rid, structure, {
                "case": case, "reason": self.closure(r), "closed_at": closed.isoformat()})))
        return out


def check_generator() -> None:
    """The generated events pass the schema models (the bench would measure dead letters)."""
    g = EventGenerator(seed=1)
    for _ in range(50):
        for _topic, _key, value in g.case():
            decode_payload(decode_envelope(value))


async def produce_bulk(bootstrap: str, topics: Topics, n: int, seed: int = 42) -> tuple[int, float]:
    """Produce about ``n`` events (whole cases) in record batches, one per partition, with
    the default partitioner's choice for each key. Returns (events, seconds)."""
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, acks="all",
                         linger_ms=50, max_batch_size=1024 * 1024, max_request_size=8 * 1024 * 1024)
    await p.start()
    t0 = time.perf_counter()
    done = 0
    try:
        names = {t: getattr(topics, t) for t in ("referrals_intake", "routing_decisions", "cases")}
        parts = {t: sorted(await p.partitions_for(name)) for t, name in names.items()}
        partitioner = DefaultPartitioner()
        batches: dict[tuple[str, int], object] = {}
        inflight: list = []
        gen = EventGenerator(seed)
        while done < n:
            for topic, key, value in gen.case():
                part = partitioner(key, parts[topic], parts[topic])
                b = batches.get((topic, part))
                if b is None:
                    b = batches[(topic, part)] = p.create_batch()
                if b.append(key=key, value=value, timestamp=None) is None:  # full: send it
                    inflight.append(await p.send_batch(b, names[topic], partition=part))
                    b = batches[(topic, part)] = p.create_batch()
                    b.append(key=key, value=value, timestamp=None)
                done += 1
            if len(inflight) > 16:
                await asyncio.gather(*inflight)
                inflight.clear()
        for (topic, part), b in batches.items():
            if b.record_count():
                inflight.append(await p.send_batch(b, names[topic], partition=part))
        await asyncio.gather(*inflight)
    finally:
        await p.stop()
    return done, time.perf_counter() - t0


async def delete_topics(bootstrap: str, topics: Topics) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.delete_topics([getattr(topics, t) for t in
                                   ("referrals_intake", "routing_decisions", "cases")])
    except Exception:  # noqa: BLE001 (cleanup only)
        pass
    finally:
        await admin.close()


async def _bare_rebuild(urls, topics: list[str], n: int, schema: str) -> float:
    """Baseline: read every record from offset 0, parse the envelope, and insert the raw
    events with one executemany per batch in a transaction (primary key on the event id,
    ON CONFLICT DO NOTHING): no inbox, no models, no projection."""
    conn = await asyncpg.connect(urls.database_url)
    await conn.execute(f"CREATE SCHEMA {schema}")
    await conn.execute(f"CREATE TABLE {schema}.raw (event_id uuid PRIMARY KEY, type text, payload jsonb)")
    t0 = time.perf_counter()
    c = AIOKafkaConsumer(*topics, bootstrap_servers=urls.kafka_bootstrap, group_id=None,
                         enable_auto_commit=False, auto_offset_reset="earliest",
                         max_poll_records=2000, fetch_max_bytes=64 * 1024 * 1024)
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
                async with conn.transaction():
                    await conn.executemany(
                        f"INSERT INTO {schema}.raw VALUES ($1, $2, $3::jsonb) ON CONFLICT DO NOTHING", rows)
                done += len(rows)
        return time.perf_counter() - t0
    finally:
        await c.stop()
        await conn.execute(f"DROP SCHEMA {schema} CASCADE")
        await conn.close()


def _arr(values) -> str:
    return "ARRAY[" + ",".join("'" + str(v).replace("'", "''") + "'" for v in values) + "]"


def generate_sql(m: int) -> list[str]:
    """Statements that fill the read-model tables with ``m`` cases (and their referrals,
    about 2.5 actions each, closures, 8 % extra rejected referrals), drawn with the same
    distributions as the events: each weighted dimension is a 1,000-slot array indexed by
    a seeded random()."""
    geo = _slots([(g[:3], g[3]) for g in GEO])
    S, A, M = (_arr(g[k] for g in geo) for k in range(3))
    months = _arr(d.isoformat() for d in _slots(MONTHS))
    mot, mot2 = _arr(_slots(MOTIVES)), _arr(_slots(SECOND_MOTIVES))
    clo, kind = _arr(_slots(CLOSURES)), _arr(_slots(KINDS))
    rst, refk = _arr(_slots(RIGHT_STATUS)), _arr(_slots(REFERRERS))
    orig, urg, chan = _arr(_slots(ORIGINS)), _arr(_slots(URGENCIES)), _arr(_slots(CHANNELS))

    def slot() -> str:
        return "1 + floor(random() * 1000)::int"
    return [
        "SELECT setseed(0.42)",
        f"""CREATE TEMP TABLE bench_draw AS
SELECT i, {slot()} AS g, {slot()} AS mo, random() AS day, {slot()} AS m1, {slot()} AS m2,
       random() < {SECOND_MOTIVE_SHARE} AS two, random() AS fc, random() < {CLOSED_SHARE} AS closed,
       {slot()} AS cr, random() AS dur, floor(random() * {m} * 0.85)::int AS person,
       {slot()} AS o, {slot()} AS u, {slot()} AS ch, {slot()} AS rk, random() AS lead
FROM generate_series(1, {m}) i""",
        f"""INSERT INTO cases (case_id, structure, area, mediator_id, assigned_at, last_activity_at,
    origin, referral_id, referral_received_at, source_system, person_ref, motives, urgency,
    attached_to_existing, opened_at, first_contact_at, first_contact_channel,
    first_contact_attempts, closed_at, closure_reason)
SELECT md5('c' || i)::uuid, ({S})[g], ({A})[g], ({M})[g], opened, coalesce(closed_at, contact, opened),
       ({orig})[o], md5('r' || i)::uuid, opened - lead * interval '6 days', 'bench', 'p' || person,
       CASE WHEN two THEN ARRAY[({mot})[m1], ({mot2})[m2]] ELSE ARRAY[({mot})[m1]] END, ({urg})[u],
       false, opened, contact, ({chan})[ch], 1 + (i % 3), closed_at,
       CASE WHEN closed_at IS NOT NULL THEN ({clo})[cr] END
FROM (SELECT d.*, o2.opened, o2.opened + floor(-ln(1 - fc) * 4) * interval '1 day' AS contact,
             CASE WHEN closed THEN o2.opened + (5 + floor(-ln(1 - dur) * 45)) * interval '1 day' END AS closed_at
      FROM bench_draw d,
           LATERAL (SELECT ({months})[d.mo]::timestamptz + d.day * interval '28 days'
                           + (d.i % 10) * interval '1 hour' + interval '8 hours' AS opened) o2) x""",
        f"""INSERT INTO case_actions (action_id, case_id, structure, area, mediator_id, axis, kind,
    occurred_at, status)
SELECT md5(c.case_id::text || k)::uuid, c.case_id, c.structure, c.area, c.mediator_id,
       CASE kd WHEN 'rights_procedure' THEN 2 WHEN 'interview' THEN 1 ELSE 3 END, kd,
       c.first_contact_at + k * interval '9 days',
       CASE WHEN kd = 'rights_procedure' THEN ({rst})[{slot()}] END
FROM cases c, generate_series(1, 1 + get_byte(decode(md5(c.case_id::text), 'hex'), 0) % 4) k,
     LATERAL (SELECT ({kind})[1 + (get_byte(decode(md5(c.case_id::text || k), 'hex'), 1) * 1000 / 256)] AS kd) kk""",
        """INSERT INTO case_closures (case_id, closed_at, reason, structure, area, mediator_id)
SELECT case_id, closed_at, closure_reason, structure, area, mediator_id FROM cases WHERE closed_at IS NOT NULL""",
        f"""INSERT INTO referrals (referral_key, referral_id, env_structure, source_system, referrer_kind,
    received_at, accepted_at, revision, motives, urgency, routing_at, routing_status, structure,
    area, mediator_id)
SELECT c.referral_id::text, c.referral_id, c.structure, 'bench', ({refk})[d.rk], c.referral_received_at,
       c.referral_received_at, 1, c.motives, c.urgency, c.referral_received_at, 'routed',
       c.structure, c.area, c.mediator_id
FROM cases c JOIN bench_draw d ON c.referral_id = md5('r' || d.i)::uuid""",
        f"""INSERT INTO referrals (referral_key, env_structure, source_system, referrer_kind, received_at,
    rejected_at, revision)
SELECT 'src:bench:x' || i, ({S})[g], 'bench', ({refk})[rk], ({months})[mo]::timestamptz + day * interval '28 days',
       ({months})[mo]::timestamptz + day * interval '28 days', 0
FROM bench_draw WHERE i <= {m} * 0.08""",
        "DROP TABLE bench_draw",
        "ANALYZE cases", "ANALYZE case_actions", "ANALYZE case_closures", "ANALYZE referrals",
    ]


BIG = STRUCTURES[0][0]
QUERIES = {
    "v_activite (1 structure, 1 an)":
        f"SELECT * FROM v_activite WHERE structure = '{BIG}' AND type_periode = 'annee' AND periode = '2025'",
    "v_file_active (1 structure)":
        f"SELECT * FROM v_file_active WHERE structure = '{BIG}'",
    "v_delais (1 structure, 1 an)":
        f"SELECT * FROM v_delais WHERE structure = '{BIG}' AND type_periode = 'annee' AND periode = '2025'",
    "v_motifs (1 structure, 1 an)":
        f"SELECT * FROM v_motifs WHERE structure = '{BIG}' AND type_periode = 'annee' AND periode = '2025'",
    "v_motifs_cloture (1 structure, 1 an)":
        f"SELECT * FROM v_motifs_cloture WHERE structure = '{BIG}' AND type_periode = 'annee' AND periode = '2025'",
}
BARE = ("SELECT area, mediator_id, count(*), count(DISTINCT person_ref) FROM cases "
        f"WHERE structure = '{BIG}' AND opened_at >= '2025-01-01' AND opened_at < '2026-01-01' "
        "GROUP BY ROLLUP (area, mediator_id)")


def _p95(samples: list[float]) -> float:
    if len(samples) < 2:
        return samples[0]
    return statistics.quantiles(samples, n=20, method="inclusive")[18]


async def _timed(pool, sql: str, bare: str, runs: int) -> tuple[float, float, float]:
    """p95 and median of ``sql`` and p95 of the ``bare`` baseline, in ms, their runs
    interleaved (after one warm-up each) so that both see the same neighbours' load."""
    await pool.fetch(sql)
    await pool.fetch(bare)
    ours, base = [], []
    for _ in range(runs):
        for q, out in ((sql, ours), (bare, base)):
            t0 = time.perf_counter()
            await pool.fetch(q)
            out.append(time.perf_counter() - t0)
    return _p95(ours) * 1000, statistics.median(ours) * 1000, _p95(base) * 1000


def _settings(urls, tag: str):
    prefix = f"benchrep{tag}."
    return from_env("reporting").with_(
        kafka_bootstrap=urls.kafka_bootstrap, database_url=urls.database_url,
        schema=f"reporting_bench_{tag}", topics=Topics(prefix=prefix),
        group_id=f"{prefix}reporting", http_port=0, batch_size=500)


async def _fill(pool, schema: str, statements: list[str]) -> float:
    """Run the generating statements with the secondary indexes dropped, then build them
    (as the replay does); no statement timeout."""
    t0 = time.perf_counter()
    indexes = await _drop_secondary_indexes(pool, schema)
    async with pool.acquire() as conn:
        for stmt in statements + indexes:
            await conn.execute(stmt, timeout=3600)
    return time.perf_counter() - t0


def _progress(msg: str) -> None:
    print(f"   reporting: {msg}", file=sys.stderr, flush=True)


async def run(urls, scale: float = 1.0) -> list[dict]:
    rows: list[dict] = []
    n = max(int(20000 * scale), 500)
    n_rb = max(int(1_000_000 * scale), 2000)
    m = max(int(1_000_000 * scale), 1000)
    tag = uuid.uuid4().hex[:6]
    settings = _settings(urls, tag)
    rb_settings = _settings(urls, tag + "rb")
    check_generator()
    admin = await asyncpg.connect(urls.database_url)
    try:
        # ---------------------------------------------------------------- ingest
        n, _ = await produce_bulk(urls.kafka_bootstrap, settings.topics, n)
        svc = build(settings, publish_every=0)
        await svc.start(http=False)
        ours = await service_rate(svc, n, drain_outbox=False)
        await svc.stop()
        topics = [getattr(settings.topics, t) for t in
                  ("referrals_intake", "routing_decisions", "cases")]
        bare = await bare_hop(urls, topics, n)
        rows.append({"name": f"ingest into read models, {n:,} events", "value": ours,
                     "unit": "events/s", "baseline": bare, "ratio": ours / bare,
                     "note": "live service consumer (inbox + projection upserts + freshness), "
                             "timed from partition assignment; baseline: aiokafka consume -> "
                             "executemany raw JSON -> commit, same topics, same run"})
        _progress(f"ingest {ours:,.0f} events/s, bare {bare:,.0f}")
        await delete_topics(urls.kafka_bootstrap, settings.topics)

        # ---------------------------------------------------------------- rebuild
        n_rb, produce_s = await produce_bulk(urls.kafka_bootstrap, rb_settings.topics, n_rb)
        rb_topics = [getattr(rb_settings.topics, t) for t in
                     ("referrals_intake", "routing_decisions", "cases")]
        _progress(f"{n_rb} events produced in {produce_s:.0f} s")
        t0 = time.perf_counter()
        res = await replay(rb_settings, batch_size=4000)
        rebuild = time.perf_counter() - t0
        if res.records != n_rb or res.processed != n_rb:
            raise RuntimeError(f"replay applied {res.processed} of {n_rb} events")
        _progress(f"replay {rebuild:.0f} s")
        cases_rb = await admin.fetchval(f"SELECT count(*) FROM {rb_settings.schema}.cases")
        bare_rb = await _bare_rebuild(urls, rb_topics, n_rb, f"bare_rebuild_{tag}")
        rows.append({"name": f"rebuild (replay + swap), {res.records:,} events", "value": rebuild,
                     "unit": "s", "baseline": bare_rb, "ratio": rebuild / bare_rb,
                     "note": f"{cases_rb} cases; replay from offset 0 into fresh tables, indexes, "
                             "publication and schema swap included "
                             f"({res.records / rebuild:,.0f} events/s); events generated from "
                             f"templates and produced in record batches in {produce_s:.0f} s "
                             "(not counted); baseline: read all from offset 0 + executemany raw "
                             "JSON into one table, one transaction per batch"})
        _progress(f"bare rebuild {bare_rb:.0f} s")
        await delete_topics(urls.kafka_bootstrap, rb_settings.topics)

        # ---------------------------------------------------------------- queries
        qschema = f"reporting_benchq_{tag}"
        pool = await db.create_pool(urls.database_url, qschema, application="bench-reporting")
        try:
            await db.migrate(pool, qschema, setup.MIGRATIONS)
            gen = await _fill(pool, qschema, generate_sql(m))
            _progress(f"{m} cases generated in {gen:.0f} s")
            counts = await pool.fetchrow(
                "SELECT (SELECT count(*) FROM case_actions) AS a, (SELECT count(*) FROM referrals) AS r")
            for label, sql in QUERIES.items():
                p95, p50, bare_q = await _timed(pool, sql, BARE, 5)
                _progress(f"p95 {label}: {p95:,.0f} ms (bare {bare_q:,.0f})")
                rows.append({"name": f"p95 {label}, {m:,} cases", "value": p95, "unit": "ms",
                             "baseline": bare_q, "ratio": p95 / bare_q,
                             "note": f"median {p50:,.0f} ms; read-model tables filled directly "
                                     f"with SQL generate_series (not through events): {m:,} "
                                     f"cases, {counts['a']:,} actions, {counts['r']:,} referrals, "
                                     f"in {gen:.0f} s; 5 runs after a warm-up, structure {BIG} "
                                     "(40 % of cases); baseline: bare GROUP BY ROLLUP count + "
                                     "count distinct on the cases table, its runs interleaved"})
        finally:
            await pool.execute(f"DROP SCHEMA {qschema} CASCADE")
            await pool.close()
        # ---------------------------------------------------------------- publication
        pschema = f"reporting_benchp_{tag}"
        mp = max(int(10000 * scale), 500)
        pool = await db.create_pool(urls.database_url, pschema, application="bench-reporting")
        try:
            await db.migrate(pool, pschema, setup.MIGRATIONS)
            await _fill(pool, pschema, generate_sql(mp))
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
        for s in (settings.schema, rb_settings.schema):
            for r in await admin.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", s + "%"):
                await admin.execute(f"DROP SCHEMA {r['nspname']} CASCADE")
            await setup.drop_roles(admin, s)
        await admin.close()
    return rows

"""Case opening from ReferralRouted events (inbox, person lock, attach-or-open decision, case
and referral rows, timeline, CaseOpened + ReferralStatusChanged through the outbox and relay)
next to a bare baseline measured in the same run on the same broker and database: raw
aiokafka consume -> asyncpg insert of one row per event -> offset commit.

Mix: 90 % new people, 10 % a second referral for someone who already has an open case
(the attach path). Throughput counts from the first event processed to the last event's
outbox rows published, so consumer-group joining is not counted on either side."""

from __future__ import annotations

import random
import time
import uuid
from datetime import UTC, date, datetime

import asyncpg

from bench._baseline import bare_hop, fill, service_rate
from mediation_cases.config import CasesConfig
from mediation_cases.service import build
from mediation_core.sealing import KeyVault, seal
from mediation_core.settings import from_env
from mediation_schemas.envelope import encode, new_envelope
from mediation_schemas.referrals import PlaceRef, ReferralCore, ReferralRouted, RoutingDecision
from mediation_schemas.topics import Topics


def _events(n: int, block) -> tuple[list[bytes], int]:
    people: list[str] = []
    out = []
    attached = 0
    rnd = random.Random(7)
    for i in range(n):
        if people and rnd.random() < 0.10:
            ref = rnd.choice(people)
            attached += 1
        else:
            ref = uuid.uuid4().hex
            people.append(ref)
        rid = uuid.uuid4()
        core = ReferralCore(
            referral_id=rid, revision=1, source_system="bench-msp", source_reference=f"b{i}",
            received_at=datetime.now(UTC), referral_date=date(2026, 11, 2), person_ref=ref,
            sealed=block, commune="Lasalle", motives=[{"code": "access_to_rights"}],
            consent_share_with_referrer=bool(i % 2))
        p = ReferralRouted(referral=core, structure="cpts-ecm", area=f"area-{i % 2}",
                           mediator_id=f"med-{i % 2}",
                           place=PlaceRef(kind="commune", code="30140", name="Lasalle"),
                           decision=RoutingDecision(rule="exact_name", territory_version=1))
        out.append(encode(new_envelope(p, producer="bench", correlation_id=str(rid),
                                       structure="cpts-ecm")))
    return out, attached


async def _ours(settings, n: int) -> tuple[float, int, int]:
    svc = build(settings, config=CasesConfig(scan_interval=3600))
    await svc.start(http=False)
    try:
        rate = await service_rate(svc, n)
        cases = await svc.pool.fetchval("SELECT count(*) FROM cases")
        return rate, cases, svc.consumers[0].stats.dead_lettered
    finally:
        await svc.stop()


async def _api_latency(settings, n: int) -> tuple[float, float]:
    """p50 latency (ms) of POST /cases/{id}/actions through the ASGI app (auth, scope,
    row lock, version check, timeline row, outbox row), and of the bare SQL baseline: one
    transaction with SELECT ... FOR UPDATE, an UPDATE and an INSERT."""
    import statistics

    import httpx

    from mediation_core.auth import issue_token

    svc = build(settings, config=CasesConfig(scan_interval=3600))
    await svc.start(http=False)
    headers = {"Authorization": "Bearer " + issue_token(sub="med-0", role="mediator",
                                                        structure="cpts-ecm", area="area-0")}
    ours: list[float] = []
    base: list[float] = []
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app),
                                     base_url="http://cases") as client:
            r = await client.post("/cases", headers=headers, json={
                "origin": "permanence", "channel": "permanence",
                "identity": {"family_name": "Bench", "given_name": "Api",
                             "birth_date": "1970-01-01"},
                "motives": [{"code": "find_gp"}]})
            case = r.json()
            cid, v = case["case_id"], case["version"]
            for _ in range(n):
                t0 = time.perf_counter()
                r = await client.post(f"/cases/{cid}/actions", headers=headers, json={
                    "version": v, "kind": "information", "topic": "rights"})
                ours.append(time.perf_counter() - t0)
                v = r.json()["case"]["version"]
        pool = svc.pool
        assert pool is not None
        await pool.execute("CREATE TABLE bench_bare_case (id int PRIMARY KEY, version int)")
        await pool.execute("CREATE TABLE bench_bare_log (id bigserial, case_id int, d jsonb)")
        await pool.execute("INSERT INTO bench_bare_case VALUES (1, 1)")
        for _ in range(n):
            t0 = time.perf_counter()
            async with pool.acquire() as conn, conn.transaction():
                await conn.fetchrow("SELECT * FROM bench_bare_case WHERE id = 1 FOR UPDATE")
                await conn.execute("UPDATE bench_bare_case SET version = version + 1 "
                                   "WHERE id = 1")
                await conn.execute("INSERT INTO bench_bare_log(case_id, d) VALUES (1, '{}')")
            base.append(time.perf_counter() - t0)
    finally:
        await svc.stop()
    return statistics.median(ours) * 1000, statistics.median(base) * 1000


async def run(urls, scale: float = 1.0) -> list[dict]:
    n = max(200, int(4000 * scale))
    prefix = f"benchcases{uuid.uuid4().hex[:6]}."
    s = from_env("cases").with_(
        kafka_bootstrap=urls.kafka_bootstrap, database_url=urls.database_url,
        schema=f"bench_{prefix.strip('.')}", topics=Topics(prefix=prefix),
        group_id=f"{prefix}cases", http_port=0, keyvault_schema=f"kv_{prefix.strip('.')}")
    # one sealed block for all (cases never opens it when opening a case)
    pool = await asyncpg.create_pool(urls.database_url, min_size=1, max_size=2)
    vault = KeyVault(pool, {s.master_key_id: s.master_key}, s.master_key_id,
                     schema=s.keyvault_schema)
    await vault.ensure()
    async with pool.acquire() as conn, conn.transaction():
        key_id, dek = await vault.key_for_person(conn, "bench-person")
    block = seal(dek, key_id, {"person": {"family_name": "Bench"}})
    values, attached = _events(n, block)
    try:
        await fill(urls.kafka_bootstrap, f"{prefix}bare_in", values)
        await fill(urls.kafka_bootstrap, s.topics.routing_decisions, values)
        base = await bare_hop(urls, [f"{prefix}bare_in"], n)
        hop_base = await bare_hop(urls, [f"{prefix}bare_in"], n, produce_to=f"{prefix}bare_out")
        ours, cases, dead = await _ours(s, n)
        n_api = max(50, int(300 * scale))
        api_ms, bare_ms = await _api_latency(s, n_api)
    finally:
        async with pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {s.schema} CASCADE")
            await conn.execute(f"DROP SCHEMA IF EXISTS {s.keyvault_schema} CASCADE")
        await pool.close()
    expected = n - attached
    note = (f"{n} ReferralRouted ({attached} attached to an open case); {cases} cases opened "
            f"(expected {expected}), {dead} dead letters; baseline: bench/_baseline.bare_hop "
            "(consume, executemany insert, commit), same run")
    return [{"name": f"case opening from ReferralRouted, {n} events", "value": ours,
             "unit": "events/s", "baseline": base, "ratio": ours / base, "note": note},
            {"name": "case opening vs consume -> insert -> produce", "value": ours,
             "unit": "events/s", "baseline": hop_base, "ratio": ours / hop_base,
             "note": "the same run; baseline: bench/_baseline.bare_hop with produce"},
            {"name": f"mediator command POST /actions, p50 of {n_api}", "value": api_ms,
             "unit": "ms", "baseline": bare_ms, "ratio": api_ms / bare_ms,
             "note": "in-process ASGI (no network); baseline: one asyncpg transaction "
                     "SELECT FOR UPDATE + UPDATE + INSERT"}]

"""Two instances of the service, referrals for the same people arriving on different
partitions at once: one case per person, every referral attached, nothing dead-lettered."""

from __future__ import annotations

import asyncio

import pytest

from mediation_cases import opening
from mediation_cases.service import build
from mediation_schemas.envelope import encode, new_envelope
from tests.conftest import eventually
from tests.helpers import produce

from .conftest import TEST_CONFIG
from .support import person, routed_referral

pytestmark = pytest.mark.stack


async def test_two_instances_never_open_two_cases_for_one_person(cases_svc, clock):
    second = build(cases_svc.settings, clock=clock, config=TEST_CONFIG)
    await second.start(http=False)
    try:
        await eventually(lambda: all(c._consumer and c._consumer.assignment()
                                     for c in cases_svc.consumers + second.consumers)
                         and len(cases_svc.consumers[0]._consumer.assignment())
                         + len(second.consumers[0]._consumer.assignment()) == 3, 90,
                         what="partitions shared by the two instances")
        people = [person(f"Race{i}", "Pair", f"19{50 + i}-01-01") for i in range(40)]
        payloads = []
        for who in people:
            for src in ("msp-lasalle", "cms-sauve"):
                payloads.append(await routed_referral(cases_svc, who=who, source_system=src,
                                                      publish=False))
        # all at once, so that both instances work on the same people at the same time
        await produce(cases_svc.settings.kafka_bootstrap,
                      cases_svc.settings.topics.routing_decisions,
                      [(str(p.referral.referral_id).encode(),
                        encode(new_envelope(p, producer="routing",
                                            correlation_id=str(p.referral.referral_id))))
                       for p in payloads])

        def processed() -> int:
            return sum(c.stats.processed + c.stats.dead_lettered
                       for c in cases_svc.consumers + second.consumers)

        await eventually(lambda: processed() >= len(payloads), 90, what="all processed")
        assert sum(c.stats.processed for c in cases_svc.consumers + second.consumers) == 80
        assert all(c.stats.processed for c in cases_svc.consumers + second.consumers), \
            "both instances took part"
        rows = await cases_svc.pool.fetch(
            "SELECT c.person_ref, count(DISTINCT c.case_id) AS cases, count(r.*) AS refs "
            "FROM cases c JOIN case_referrals r USING (case_id) GROUP BY c.person_ref")
        assert len(rows) == 40
        assert all((r["cases"], r["refs"]) == (1, 2) for r in rows)
    finally:
        await second.stop()


async def test_two_writers_for_one_person_are_serialised_and_the_second_attaches(cases_svc):
    """Deterministic version of the race: transaction A opens the case and holds; B, for the
    same person, must wait for A and then attach (without the person lock B would insert a
    second case and fail on the one-open-case-per-person index)."""
    who = person("Course", "Deux", "1977-03-03")
    p1 = await routed_referral(cases_svc, who=who, publish=False)
    p2 = await routed_referral(cases_svc, who=who, source_system="cms-sauve", publish=False)
    emitted: list = []

    async def emit(payload, **kw):
        emitted.append(payload)

    deps = cases_svc.deps
    async with cases_svc.pool.acquire() as conn_a, cases_svc.pool.acquire() as conn_b:
        tx_a = conn_a.transaction()
        await tx_a.start()
        assert await opening.on_referral_routed(deps, conn_a, emit, p1,
                                                correlation_id="a") == "open"

        async def writer_b() -> str:
            async with conn_b.transaction():
                return await opening.on_referral_routed(deps, conn_b, emit, p2,
                                                        correlation_id="b")

        task_b = asyncio.create_task(writer_b())
        pid_b = conn_b.get_server_pid()
        await eventually(lambda: cases_svc.pool.fetchval(
            "SELECT count(*) FROM pg_locks WHERE pid = $1 AND NOT granted", pid_b), 60,
            what="B waits for A")
        assert not task_b.done()
        await tx_a.commit()
        assert await asyncio.wait_for(task_b, 60) == "attach"
    assert await cases_svc.pool.fetchval("SELECT count(*) FROM cases") == 1
    assert await cases_svc.pool.fetchval("SELECT count(*) FROM case_referrals") == 2
    assert [type(e).__name__ for e in emitted].count("CaseOpened") == 2

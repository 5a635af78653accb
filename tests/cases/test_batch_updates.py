"""A case vacated by an earlier message of the batch (its identity corrected, or moved to
another structure) is no longer its former person's open case for the rest of the batch:
the batch gives what one by one gives (a new referral for that person opens a case)."""

from __future__ import annotations

import asyncpg
import pytest

from mediation_cases.opening import case_id_for_referral
from mediation_cases.service import build
from tests.conftest import eventually

from .support import as_one_batch, person, publish_routing, routed_referral

pytestmark = pytest.mark.stack


async def _run(settings_for, clock, *, one_by_one: bool, reroute: bool):
    from .conftest import TEST_CONFIG as config

    settings = settings_for("cases", partitions=1)
    svc = build(settings, clock=clock, config=config)
    await svc.start(http=False)
    await svc.wait_ready(timeout=90)
    x = person("Xavier", "Ana", "1940-01-01")
    y = person("Yvon", "Bea", "1941-01-01")
    first = await routed_referral(svc, who=x)
    await eventually(lambda: svc.consumers[0].stats.processed == 1, 60, what="first case")
    c = case_id_for_referral(first.referral.referral_id)
    if reroute:   # R1 rev 2 routed to another structure, same person
        fix = await routed_referral(svc, who=x, referral_id=first.referral.referral_id,
                                    revision=2, structure="qpv-marseille", publish=False)
    else:         # R1 rev 2: the person's identity corrected (X -> Y)
        fix = await routed_referral(svc, who=y, referral_id=first.referral.referral_id,
                                    revision=2, publish=False)
    r2 = await routed_referral(svc, who=x, publish=False)  # a new referral for X, structure A
    if one_by_one:
        await publish_routing(svc, fix, structure=fix.structure)
        await eventually(lambda: svc.consumers[0].stats.processed == 2, 60, what="fix")
        await publish_routing(svc, r2, structure=r2.structure)
        await eventually(lambda: svc.consumers[0].stats.processed == 3, 60, what="r2")
        pool = svc.pool
        res = await _result(pool, r2, c)
        await svc.stop()
    else:
        svc = await as_one_batch(svc, [fix, r2], clock=clock, config=config)
        try:
            cons = svc.consumers[0]
            await eventually(lambda: cons.stats.processed == 2, 60, what="the batch")
            assert cons.stats.batches == 1 and cons.stats.isolated == 0
            res = await _result(svc.pool, r2, c)
        finally:
            await svc.stop()
    conn = await asyncpg.connect(settings.database_url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {settings.schema} CASCADE")
        await conn.execute(f"DROP SCHEMA IF EXISTS {settings.keyvault_schema} CASCADE")
    finally:
        await conn.close()
    return res


async def _result(pool, r2, c):
    case_of_r2 = await pool.fetchval("SELECT case_id FROM case_referrals WHERE referral_id = $1",
                                     r2.referral.referral_id)
    row = await pool.fetchrow("SELECT structure, person_ref FROM cases WHERE case_id = $1",
                              case_of_r2)
    return {"r2_in_first_case": case_of_r2 == c, "r2_case_structure": row["structure"],
            "r2_case_person_is_x": row["person_ref"] == r2.referral.person_ref,
            "cases": await pool.fetchval("SELECT count(*) FROM cases")}


@pytest.mark.parametrize("reroute", [False, True])
async def test_batch_matches_one_by_one_when_an_update_vacates_a_case(settings_for, clock,
                                                                      reroute):
    one = await _run(settings_for, clock, one_by_one=True, reroute=reroute)
    batch = await _run(settings_for, clock, one_by_one=False, reroute=reroute)
    print("one-by-one", one, "batch", batch)
    assert one["r2_case_person_is_x"] and one["r2_case_structure"] == "cpts-ecm"
    assert batch == one


async def test_a_case_closed_after_the_batch_read_it_is_not_attached_to(cases_svc, monkeypatch):
    """Closing over HTTP locks the case row, not the person: a close that commits after the
    batch read the person's open case (here: right after the prepare step) must not get
    the new referral attached to the closed case; a new case is opened instead."""
    from mediation_cases import opening

    x = person("Clotilde", "Ana", "1944-04-04")
    first = await routed_referral(cases_svc, who=x)
    c = case_id_for_referral(first.referral.referral_id)
    await eventually(lambda: cases_svc.consumers[0].stats.processed == 1, 60, what="case")
    prepare = opening.prepare_routed
    closer = await asyncpg.connect(cases_svc.settings.database_url)

    async def prepare_then_close(batch, routed):
        await prepare(batch, routed)
        assert batch.data[opening.PREPARED].open_cases, "the open case was read"
        await closer.execute(f"UPDATE {cases_svc.settings.schema}.cases SET status = 'closed', "
                             "closed_at = now() WHERE case_id = $1", c)

    monkeypatch.setattr(opening, "prepare_routed", prepare_then_close)
    try:
        second = await routed_referral(cases_svc, who=x)
        await eventually(lambda: cases_svc.consumers[0].stats.processed == 2, 60, what="second")
    finally:
        await closer.close()
    case_of_second = await cases_svc.pool.fetchval(
        "SELECT case_id FROM case_referrals WHERE referral_id = $1", second.referral.referral_id)
    assert case_of_second == case_id_for_referral(second.referral.referral_id) != c
    assert await cases_svc.pool.fetchval("SELECT status FROM cases WHERE case_id = $1",
                                         case_of_second) == "open"

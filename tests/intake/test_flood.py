"""Fairness on the Kafka way in, on the real stack: a flooding sender's forms over its budget
are parked (sealed) and drained at its budget, so other senders' forms are taken at once;
a crash mid-drain loses and doubles nothing."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client import REGISTRY

from mediation_intake.parking import open_payload
from mediation_intake.service import build
from tests.conftest import eventually
from tests.intake.forms import GP, HOSPITAL, canary_form, form
from tests.intake.test_canary import assert_clean
from tests.intake.test_service import send, topic

pytestmark = pytest.mark.stack
FLOOD, QUIET = "msp-lasalle", "ch-ales-service-social"  # the examples' source systems


async def started(settings, **kw):
    svc = build(settings, **kw)
    await svc.start(http=False)
    await svc.wait_ready()
    return svc


def metric(name: str, source: str) -> float:
    return REGISTRY.get_sample_value(name, {"source_system": source}) or 0.0


async def accepted(svc, source: str) -> list:
    return await svc.pool.fetch(
        "SELECT source_reference, updated_at, revision, duplicates FROM referrals"
        " WHERE source_system = $1 AND revision > 0 ORDER BY updated_at", source)


async def parked(svc, source: str) -> int:
    return await svc.pool.fetchval("SELECT count(*) FROM parked WHERE source_system = $1",
                                   source)


async def test_a_kafka_flood_from_one_source_does_not_starve_another(settings_for):
    n = 40
    drained_before = metric("mediation_intake_drained_total", FLOOD)
    svc = await started(settings_for("intake"), kafka_rate=4.0, kafka_burst=4)
    try:
        flood = [form(GP) for _ in range(n)]
        quiet = [form(HOSPITAL) for _ in range(3)]
        assert {f["source_system"] for f in flood} == {FLOOD}
        assert {f["source_system"] for f in quiet} == {QUIET}
        await send(svc, *flood)
        await send(svc, *quiet)  # behind the whole flood in the log

        b = await eventually(lambda: _len(accepted(svc, QUIET), 3), timeout=60,
                             what="the 3 quiet forms accepted")
        a_then = await accepted(svc, FLOOD)
        assert len(a_then) < n and await parked(svc, FLOOD) > 0, \
            "the quiet sender's forms were taken while the flood's backlog was still parked"
        await eventually(lambda: metric("mediation_intake_parked_backlog", FLOOD) > 0,
                         timeout=60, what="backlog gauge shows the flood")

        a = await eventually(lambda: _len(accepted(svc, FLOOD), n), timeout=60,
                             what="every flood form accepted")
        await eventually(lambda: svc.pool.fetchval(
            "SELECT count(*) = 0 FROM outbox UNION ALL SELECT count(*) = 0 FROM parked"
            " ORDER BY 1 LIMIT 1"), timeout=60, what="outbox and parked table empty")
        assert max(r["updated_at"] for r in b) < max(r["updated_at"] for r in a)
        events = await topic(svc, svc.settings.topics.referrals_intake, n + 3)
        assert [e["type"] for e in events] == ["ReferralAccepted"] * (n + 3)
        refs = [e["payload"]["referral"]["source_reference"] for e in events]
        assert sorted(refs) == sorted(f["source_reference"] for f in flood + quiet), \
            "every form accepted exactly once"
        assert {e["payload"]["referral"]["revision"] for e in events} == {1}
        assert all(r["duplicates"] == 0 for r in a + b)
        assert metric("mediation_intake_drained_total", FLOOD) - drained_before >= n - 8
        await eventually(lambda: metric("mediation_intake_parked_backlog", FLOOD) == 0,
                         timeout=60, what="backlog gauge back to 0")
    finally:
        await svc.stop()


async def _len(coro, n: int):
    rows = await coro
    return rows if len(rows) == n else None


async def test_parked_forms_are_sealed_and_survive_a_crash_mid_drain_exactly_once(
        settings_for, pg, spans, json_logs):
    s = settings_for("intake")
    forms_ = [canary_form() for _ in range(12)]
    assert {f["source_system"] for f in forms_} == {QUIET}
    # 1. a budget of 2 forms and (almost) no refill: 10 forms parked
    svc = await started(s, kafka_rate=1e-3, kafka_burst=2)
    try:
        await send(svc, *forms_)
        await eventually(lambda: svc.consumers[0].stats.processed == 12, timeout=60,
                         what="12 forms handled")
        rows = await svc.pool.fetch("SELECT * FROM parked ORDER BY id")
        assert len(rows) == 10 and len(await accepted(svc, QUIET)) == 2
        assert_clean(repr([dict(r) for r in rows]).encode(), "the parked table")
        opened = [open_payload(s.dlq_key, r["event_id"], bytes(r["sealed"])) for r in rows]
        parked_refs = [p["source_reference"] for p in opened]
        first = {r["source_reference"] for r in await accepted(svc, QUIET)}
        assert sorted(parked_refs + list(first)) == sorted(f["source_reference"] for f in forms_)
        assert all(r["source_system"] == QUIET and r["size"] > 0 for r in rows)
        causes = {str(r["event_id"]): r["correlation_id"] for r in rows}
    finally:
        await svc.stop()

    # 2. restarted with a budget: three forms drained and committed, then a crash in the
    #    middle of the fourth's transaction (after its take, before its commit)
    svc = await started(s, kafka_rate=3.0, kafka_burst=1)
    calls = 0

    async def crash() -> None:
        nonlocal calls
        calls += 1
        if calls >= 4:
            raise RuntimeError("simulated crash before commit")

    svc.intake.drainer.fault = crash
    try:
        await eventually(lambda: calls >= 6, timeout=60, what="crash, then failing retries")
    finally:
        await svc.stop()
    left = await pg.fetchval(f"SELECT count(*) FROM {s.schema}.parked")
    taken = await pg.fetchval(f"SELECT count(*) FROM {s.schema}.referrals WHERE revision > 0")
    assert (left, taken) == (7, 5), "3 drained and committed; the crashed one is still parked"

    # 3. restarted again: the rest is drained, every form accepted once, in parked order
    svc = await started(s)
    try:
        await eventually(lambda: _len(accepted(svc, QUIET), 12), timeout=60,
                         what="every form accepted")
        await eventually(lambda: svc.pool.fetchval("SELECT count(*) = 0 FROM outbox"),
                         timeout=60, what="outbox drained")
        assert await parked(svc, QUIET) == 0
        done = await accepted(svc, QUIET)
        assert all(r["revision"] == 1 and r["duplicates"] == 0 for r in done)
        drained_order = [r["source_reference"] for r in done if r["source_reference"] not in first]
        assert drained_order == parked_refs, "a source's parked forms are taken oldest first"
        events = await topic(svc, s.topics.referrals_intake, 12)
        assert sorted(e["payload"]["referral"]["source_reference"] for e in events) == \
            sorted(f["source_reference"] for f in forms_), "no form lost, none doubled"
        drained = [e for e in events if e["causation_id"] in causes]
        assert len(drained) == 10
        assert all(e["correlation_id"] == causes[e["causation_id"]] for e in drained), \
            "drained forms' events carry the original envelope's correlation"
        for e in events:
            assert_clean(orjson.dumps(e), "an event")
    finally:
        await svc.stop()
    assert "parked form failed" not in json_logs.getvalue()
    assert_clean(json_logs.getvalue().encode(), "the logs")
    for sp in spans.get_finished_spans():
        assert_clean(sp.to_json().encode(), f"span {sp.name}")
    assert any(sp.name == "intake drain parked form" for sp in spans.get_finished_spans())

"""Fairness on the Kafka way in, on the real broker and database.

The token buckets run on a clock that never moves (a source's burst is all it gets
straight through), and the drainer is driven by hand where a test needs a precise moment:
no assertion depends on how fast anything runs."""

from __future__ import annotations

import asyncio
import base64
import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import orjson
import pytest
from prometheus_client import REGISTRY

from mediation_core.consumer import open_dead_letter
from mediation_intake.parking import open_record
from mediation_intake.service import build
from tests.conftest import eventually
from tests.helpers import produce
from tests.intake.forms import GP, HOSPITAL, canary_form, envelope, form
from tests.intake.test_canary import assert_clean
from tests.intake.test_ratelimit import Clock
from tests.intake.test_service import topic

pytestmark = pytest.mark.stack
FLOOD, QUIET = "msp-lasalle", "ch-ales-service-social"  # the examples' source systems
FROZEN = lambda: 0.0  # noqa: E731  the buckets' clock: no refill, ever


def ticking() -> Callable[[], datetime]:
    """Intake's clock: one microsecond later at each call, so ``updated_at`` orders takes."""
    base = datetime.now(UTC)
    n = itertools.count()
    return lambda: base + timedelta(microseconds=next(n))


async def started(settings, kafka_clock=FROZEN, **kw):
    svc = build(settings, kafka_clock=kafka_clock, clock=ticking(), **kw)
    await svc.start(http=False)
    await svc.wait_ready()
    return svc


async def send_one_partition(svc, forms: list[dict]) -> None:
    """Every form under one Kafka key: one partition, so the log order is the send order."""
    await produce(svc.settings.kafka_bootstrap, svc.settings.topics.referrals_received,
                  [(b"one-partition", envelope(f)) for f in forms])


async def handled(svc, n: int) -> None:
    c = svc.consumers[0]
    await eventually(lambda: c.stats.processed + c.stats.dead_lettered >= n, timeout=60,
                     what=f"{n} messages handled by the consumer")


async def accepted(svc, source: str) -> list[str]:
    """The source's accepted references, in the order they were taken."""
    return [r["source_reference"] for r in await svc.pool.fetch(
        "SELECT source_reference FROM referrals WHERE source_system = $1 AND revision > 0"
        " ORDER BY updated_at", source)]


async def parked(svc, source: str) -> int:
    return await svc.pool.fetchval("SELECT count(*) FROM parked WHERE source_system = $1",
                                   source)


def gauge(source: str) -> float | None:
    return REGISTRY.get_sample_value("mediation_intake_parked_backlog",
                                     {"source_system": source})


async def test_a_flood_does_not_starve_a_quiet_sender_behind_it_and_is_taken_once_in_order(
        settings_for):
    n = 200
    buckets_clock = Clock()  # driven by hand
    svc = await started(settings_for("intake"), kafka_clock=buckets_clock, kafka_burst=5,
                        drain=False)
    try:
        flood = [form(GP) for _ in range(n)]
        oversize = flood[120] = form(GP, comment="x" * 70_000)
        quiet = [form(HOSPITAL) for _ in range(3)]
        await send_one_partition(svc, flood + quiet)  # the quiet forms behind the whole flood
        await handled(svc, n + 3)

        # the consumer went through the flood by parking it: the quiet sender's forms,
        # behind it in the partition, were taken at once, the flood's backlog still parked
        assert await accepted(svc, QUIET) == [f["source_reference"] for f in quiet]
        assert await accepted(svc, FLOOD) == [f["source_reference"] for f in flood[:5]]
        assert await parked(svc, FLOOD) == n - 5 and await parked(svc, QUIET) == 0
        [big] = await svc.pool.fetch("SELECT * FROM parked WHERE size > 65536")
        rec = open_record(svc.settings.dlq_key, big["event_id"], bytes(big["sealed"]))
        assert rec["value"] is None and len(big["sealed"]) < 1024, \
            "an oversize form is parked without its body"
        assert rec["ids"]["source_reference"] == oversize["source_reference"]

        # an hour later the flood's bucket is full again, but it has forms parked: its new
        # forms queue behind them (its order is kept)
        buckets_clock.t += 3600
        late = [form(GP) for _ in range(2)]
        flood += late
        await send_one_partition(svc, late)
        await handled(svc, n + 5)
        assert await parked(svc, FLOOD) == n - 3
        assert await accepted(svc, FLOOD) == [f["source_reference"] for f in flood[:5]]
        await svc.intake.drainer.refresh_backlog()
        assert gauge(FLOOD) == n - 3 and gauge(QUIET) in (None, 0.0)

        # the drainer takes the backlog at full speed: no budget, no clock involved
        stop = asyncio.Event()
        task = asyncio.create_task(svc.intake.drainer.run(stop))
        try:
            await eventually(lambda: svc.intake.drainer.drained == n - 3, timeout=120,
                             what="the flood's backlog drained")
            await eventually(lambda: gauge(FLOOD) == 0.0, timeout=30, what="gauge back to 0")
        finally:
            stop.set()
            await task
        assert await parked(svc, FLOOD) == 0
        expected = [f["source_reference"] for f in flood if f is not oversize]
        assert await accepted(svc, FLOOD) == expected, "every flood form once, in its order"
        await eventually(lambda: svc.pool.fetchval("SELECT count(*) = 0 FROM outbox"),
                         timeout=60, what="outbox published")
        events = await topic(svc, svc.settings.topics.referrals_intake, n + 5)
        refs = [(e["type"], e["payload"].get("referral", e["payload"]).get("source_reference"))
                for e in events]
        assert sorted(refs) == sorted(
            [("ReferralAccepted", r) for r in expected + [f["source_reference"] for f in quiet]]
            + [("ReferralRejected", oversize["source_reference"])]), "no form lost or doubled"
        answers = await topic(svc, svc.settings.topics.referrals_answers, 1)
        [answer] = answers
        assert answer["key"] == FLOOD and answer["payload"]["problems"][0]["code"] == \
            "payload_too_large", "the parked oversize form is rejected with its reason"
        rows = await svc.pool.fetch("SELECT duplicates FROM referrals")
        assert len(rows) == n + 4 and {r["duplicates"] for r in rows} == {0}
    finally:
        await svc.stop()


async def test_parked_sources_take_turns_a_flood_does_not_hold_back_another_parked_source(
        settings_for):
    svc = await started(settings_for("intake"), kafka_burst=2, drain=False)
    try:
        flood = [form(GP) for _ in range(30)]
        quiet = [form(HOSPITAL) for _ in range(6)]  # over its burst too: 4 parked
        await send_one_partition(svc, flood + quiet)
        await handled(svc, 36)
        assert (await parked(svc, FLOOD), await parked(svc, QUIET)) == (28, 4)
        svc.intake.drainer.batch = 4
        assert await svc.intake.drainer.drain_once() == 4
        assert (await parked(svc, FLOOD), await parked(svc, QUIET)) == (26, 2), \
            "a round alternates the two sources"
        assert await svc.intake.drainer.drain_once() == 4
        assert (await parked(svc, FLOOD), await parked(svc, QUIET)) == (24, 0), \
            "the quiet sender is done while 24 forms of the flood wait"
        assert await accepted(svc, QUIET) == [f["source_reference"] for f in quiet]
        assert await svc.intake.drainer.drain_once() == 4, "then the flood has every slot"
        assert await parked(svc, FLOOD) == 20
        assert await accepted(svc, FLOOD) == [f["source_reference"] for f in flood[:10]]
    finally:
        await svc.stop()


async def test_parked_forms_are_sealed_and_a_crash_mid_drain_loses_and_doubles_nothing(
        settings_for, spans, json_logs):
    s = settings_for("intake")
    forms = [canary_form() for _ in range(12)]
    sent = [f["source_reference"] for f in forms]
    svc = await started(s, kafka_burst=2, drain=False)
    try:
        await send_one_partition(svc, forms)
        await handled(svc, 12)
        rows = await svc.pool.fetch("SELECT * FROM parked ORDER BY id")
        assert len(rows) == 10 and await accepted(svc, QUIET) == sent[:2]
        assert_clean(repr([dict(r) for r in rows]).encode(), "the parked table")
        opened = [orjson.loads(base64.b64decode(
            open_record(s.dlq_key, r["event_id"], bytes(r["sealed"]))["value"]))
            for r in rows]
        assert [o["payload"]["source_reference"] for o in opened] == sent[2:], \
            "parked in log order, the whole record kept (sealed)"
        causes = {str(r["event_id"]): r["correlation_id"] for r in rows}

        # one round of 4 commits; the next is cancelled after its third form (a crash
        # before its commit): it must leave no trace
        drainer = svc.intake.drainer
        drainer.batch = 4
        assert await drainer.drain_once() == 4
        reached, never = asyncio.Event(), asyncio.Event()
        calls = 0

        async def hang_on_third(_src: str) -> None:
            nonlocal calls
            calls += 1
            if calls == 3:
                reached.set()
                await never.wait()

        drainer.after_take = hang_on_third
        round2 = asyncio.create_task(drainer.drain_once())
        await asyncio.wait_for(reached.wait(), 60)
        round2.cancel()
        with pytest.raises(asyncio.CancelledError):
            await round2
        drainer.after_take = None
        assert (await parked(svc, QUIET), len(await accepted(svc, QUIET))) == (6, 6), \
            "4 drained and committed; the cancelled round's 3 forms are still parked"
    finally:
        await svc.stop()

    # restarted, with its background drainer: the rest is taken, each form once, in order
    svc = await started(s, kafka_burst=2)
    try:
        await eventually(lambda: _none_parked(svc),
                         timeout=60, what="every parked form taken")
        assert await accepted(svc, QUIET) == sent
        await eventually(lambda: svc.pool.fetchval("SELECT count(*) = 0 FROM outbox"),
                         timeout=60, what="outbox published")
        rows = await svc.pool.fetch("SELECT revision, duplicates FROM referrals")
        assert len(rows) == 12 and {(r["revision"], r["duplicates"]) for r in rows} == {(1, 0)}
        events = await topic(svc, s.topics.referrals_intake, 12)
        assert sorted(e["payload"]["referral"]["source_reference"] for e in events) == \
            sorted(sent), "no form lost, none doubled"
        drained = [e for e in events if e["causation_id"] in causes]
        assert len(drained) == 10 and all(
            e["correlation_id"] == causes[e["causation_id"]] for e in drained), \
            "a drained form's events are caused by its envelope, in its correlation"
        for e in events:
            assert_clean(orjson.dumps(e), "an event")
    finally:
        await svc.stop()
    logs = json_logs.getvalue()
    assert "dead-lettered" not in logs
    assert "sender over its Kafka budget: forms parked" in logs
    assert_clean(logs.encode(), "the logs")
    finished = spans.get_finished_spans()
    for sp in finished:
        assert_clean(sp.to_json().encode(), f"span {sp.name}")
    assert sum(sp.name == "intake drain parked form" for sp in finished) >= 10


async def _none_parked(svc) -> bool:
    return await svc.pool.fetchval("SELECT count(*) = 0 FROM parked")


async def test_a_parked_form_that_fails_for_good_is_dead_lettered_sealed_and_replayable(
        settings_for, json_logs):
    svc = await started(settings_for("intake"), kafka_burst=0, drain=False)  # all parked
    try:
        forms = [form(GP) for _ in range(3)]
        await send_one_partition(svc, forms)
        await handled(svc, 3)
        intake = svc.intake.intake
        real_take = intake.take

        async def buggy(conn, emit, raw, **kw):
            if raw.get("source_reference") == forms[1]["source_reference"]:
                raise RuntimeError("a bug")
            return await real_take(conn, emit, raw, **kw)

        intake.take = buggy
        assert await svc.intake.drainer.drain_once() == 3
        assert await parked(svc, FLOOD) == 0, "a failing form does not block its source"
        assert await accepted(svc, FLOOD) == [forms[0]["source_reference"],
                                              forms[2]["source_reference"]]
        [dl] = await topic(svc, svc.settings.topics.dead_letters("intake.received"), 1)
        assert (dl["consumer"], dl["reason_code"], dl["reason"]) == (
            "intake.received", "handler_error", "RuntimeError")
        assert forms[1]["source_reference"].encode() not in orjson.dumps(dl)
        original = open_dead_letter(dl, svc.settings.dlq_key)
        assert orjson.loads(original["value"])["payload"] == forms[1], "replayable as sent"
    finally:
        await svc.stop()
    assert "parked form failed; dead-lettered" in json_logs.getvalue()


async def test_the_drainer_recovers_when_its_listen_connection_dies(settings_for):
    """After a database restart asyncpg hands a dead pooled connection back to the pool
    itself, and its proxy then refuses every call: the drainer must listen again, not
    retry forever on the dead one (which a chaos run with a small budget showed)."""
    svc = await started(settings_for("intake"), kafka_burst=0)  # all parked
    try:
        drainer = svc.intake.drainer
        await eventually(lambda: drainer._listener is not None, timeout=30,
                         what="the drainer listening")
        dead = drainer._listener
        dead.terminate()  # the server connection is gone, as after a database restart
        forms = [form(GP) for _ in range(3)]
        await send_one_partition(svc, forms)
        await eventually(lambda: _len(accepted(svc, FLOOD), 3), timeout=60,
                         what="the parked forms taken after the connection died")
        assert drainer._listener is not dead
    finally:
        await svc.stop()


async def _len(rows_coro, n: int):
    rows = await rows_coro
    return len(rows) == n

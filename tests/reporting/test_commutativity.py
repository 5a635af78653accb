"""The read models do not depend on the order events are applied in: the scripted year
applied event by event (no broker) in several orders, including orders Kafka never
produces (a case's closure before its opening, a correction before the original), gives
the same indicators."""

from __future__ import annotations

import contextlib
import random
import uuid
from types import SimpleNamespace

import pytest

from mediation_core import db
from mediation_core.consumer import EventConsumer
from mediation_core.outbox import Outbox
from mediation_reporting import setup
from mediation_reporting.replay import apply_batch
from mediation_reporting.service import register_handlers
from mediation_schemas.envelope import encode
from tests.reporting import scenario
from tests.reporting.test_reporting import dump

pytestmark = pytest.mark.stack


@contextlib.asynccontextmanager
async def scratch(settings, suffix: str):
    """A fresh reporting schema and the service's consumer over it (no broker reads):
    records are applied with the replay's batch path, dropped with the schema after."""
    schema = f"{settings.schema}_{suffix}"
    pool = await db.create_pool(settings.database_url, schema, application="test")
    try:
        await db.migrate(pool, schema, setup.MIGRATIONS)
        c = EventConsumer(name="reporting.projections", service="reporting", pool=pool,
                          outbox=Outbox("reporting"), bootstrap=settings.kafka_bootstrap,
                          group_id="x", topics=[], dlq_topic="dlq", dlq_key=b"\0" * 32)
        register_handlers(c, settings)
        yield pool, c
    finally:
        await pool.execute(f"DROP SCHEMA {schema} CASCADE")
        await pool.close()


def record(settings, offset: int, topic: str, key: str, env) -> SimpleNamespace:
    """A Kafka record as the consumer sees it, on the test's ``topic``."""
    return SimpleNamespace(topic=getattr(settings.topics, topic), partition=0, offset=offset,
                           key=key.encode(), value=encode(env), headers=[], timestamp=0)


async def _apply(settings, items, order) -> dict:
    async with scratch(settings, uuid.uuid4().hex[:4]) as (pool, c):
        for i in order:
            await apply_batch(pool, c, [record(settings, i, *items[i])])
        assert c.stats.processed == len(items)
        out = await dump(pool)
        out.pop("v_fraicheur")
        out["v_file_active"] = sorted(out["v_file_active"])
        return out


async def test_any_order_gives_the_same_indicators(settings_for):
    settings = settings_for("reporting")
    items = scenario.build().items
    n = len(items)
    reference = await _apply(settings, items, range(n))
    orders = [list(reversed(range(n)))]
    for seed in (1, 2, 3):
        order = list(range(n))
        random.Random(seed).shuffle(order)
        orders.append(order)
    for order in orders:
        assert await _apply(settings, items, order) == reference


async def test_a_poison_event_in_a_replayed_batch_is_dead_lettered_alone(settings_for):
    """The batched replay falls back to the consumer's per-event path when a statement
    fails: the bad event becomes a dead letter, the rest of the batch is applied."""
    from datetime import UTC, datetime

    from mediation_schemas import cases as cs
    from mediation_schemas.envelope import new_envelope

    settings = settings_for("reporting")
    items = scenario.build().items[:10]
    poison = new_envelope(cs.CollectiveActionRecorded(
        collective_action_id=uuid.uuid4(), structure="s", kind="workshop", axis=3, theme="t",
        held_on=datetime(2026, 4, 1, tzinfo=UTC),
        attendance=cs.Attendance(participants=2**40), recorded_by="m", recorded_at=datetime(2026, 4, 1, tzinfo=UTC)),
        producer="test", correlation_id="p")
    batch = items[:5] + [("cases", "k", poison)] + items[5:]
    async with scratch(settings, "p") as (pool, c):
        await apply_batch(pool, c, [record(settings, i, *item) for i, item in enumerate(batch)])
        assert c.stats.dead_lettered == 1 and c.stats.processed == 10
        assert await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = 'dlq'") == 1
        assert await pool.fetchval("SELECT sum(events) FROM freshness") == 10


async def test_the_latest_routing_decision_wins_in_any_order(settings_for):
    """A referral found unroutable, then routed by hand, then re-routed to another sector:
    whatever the arrival order, its row holds the latest decision's columns together."""
    import itertools

    from mediation_schemas import referrals as rf

    settings = settings_for("reporting")
    st = scenario.Story("rerouted")
    place = rf.PlaceRef(kind="commune", code="30140", name="Lasalle")
    decision = rf.RoutingDecision(rule="manual", territory_version=1)
    orders = list(itertools.permutations(range(4)))
    for n, order in enumerate(orders):
        core = st.core(f"R{n}", scenario.t(3, 2), "msp", [scenario.Motive.access_to_rights])
        events = [
            (rf.ReferralAccepted(referral=core), scenario.t(3, 2)),
            (rf.ReferralUnroutable(referral=core, reason_code="outside_territory",
                                   reason="hors territoire", structure=scenario.S), scenario.t(3, 2, 9)),
            (rf.ReferralRouted(referral=core, structure=scenario.S, area="vb", mediator_id="m1",
                               place=place, decision=decision), scenario.t(3, 2, 10)),
            (rf.ReferralRouted(referral=core, structure=scenario.S, area="sh", mediator_id="m2",
                               place=place, decision=decision), scenario.t(3, 2, 11)),
        ]
        for i in order:
            payload, at = events[i]
            topic = "referrals_intake" if i == 0 else "routing_decisions"
            st.add(topic, core.referral_id, payload, at)
    async with scratch(settings, "rr") as (pool, c):
        for i, item in enumerate(st.items):  # one event per batch: the order is kept
            await apply_batch(pool, c, [record(settings, i, *item)])
        assert c.stats.processed == len(st.items)
        rows = {tuple(r) for r in await pool.fetch(
            "SELECT routing_status, structure, area, mediator_id, unroutable_reason, routing_at "
            "FROM referrals")}
        assert await pool.fetchval("SELECT count(*) FROM referrals") == len(orders)
        assert rows == {("routed", scenario.S, "sh", "m2", None, scenario.t(3, 2, 11))}

"""Reliable messaging on the real broker and database: outbox, inbox, dead letters."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import orjson
import pytest

from mediation_core import db
from mediation_core.consumer import open_dead_letter
from mediation_core.outbox import Outbox, OutboxRelay, make_producer
from mediation_schemas.envelope import Envelope, encode, new_envelope
from tests.conftest import eventually
from tests.core import toy
from tests.helpers import produce, read_topic, values

pytestmark = pytest.mark.stack


async def _effects(svc) -> list:
    return await svc.pool.fetch("SELECT ping_id, n FROM effects ORDER BY n")


def _ping(n: int, **kw) -> Envelope:
    return new_envelope(toy.TestPing(ping_id=uuid.uuid4(), n=n, **kw), producer="test",
                        correlation_id=f"corr-{n}")


@pytest.fixture
async def toy_service(settings_for):
    svc = toy.build(settings_for("toy"))
    await svc.start(http=False)
    await svc.wait_ready()
    yield svc
    await svc.stop()


class Crash(Exception):
    pass


async def test_relay_killed_between_publish_and_delete_republishes_and_inbox_dedups(
        settings_for, stack_urls, toy_service):
    s = settings_for("upstream")
    pool = await db.create_pool(s.database_url, s.schema, application="upstream")
    await db.migrate(pool, s.schema)
    outbox = Outbox("upstream")
    topic = f"{s.topics.prefix}ping"
    pings = [_ping(i) for i in range(20)]
    async with pool.acquire() as conn, conn.transaction():
        for env in pings:
            await outbox.add_envelope(conn, env, topic=topic, key=str(env.payload["ping_id"]))

    producer = make_producer(s.kafka_bootstrap, "upstream-relay")
    await producer.start()

    async def crash_after_publish(ids):
        raise Crash("killed after publish, before delete")

    crashing = OutboxRelay(pool, producer, service="upstream", after_publish=crash_after_publish)
    with pytest.raises(Crash):
        await crashing.publish_once()
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 20, "rows must survive the crash"

    relay = OutboxRelay(pool, producer, service="upstream")
    assert await relay.publish_once() == 20
    assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
    await producer.stop()

    published = await read_topic(s.kafka_bootstrap, topic, expect=40)
    assert len(published) == 40, "each event was published twice"

    await eventually(lambda: toy_service.consumers[0].stats.duplicates >= 20, what="copies seen")
    rows = await _effects(toy_service)
    assert [r["n"] for r in rows] == list(range(20)), "each effect happened exactly once"
    pongs = await read_topic(s.kafka_bootstrap, f"{s.topics.prefix}pong", expect=20)
    assert sorted(orjson.loads(r.value)["payload"]["n"] for r in pongs) == list(range(20))
    await pool.close()


async def test_redelivered_event_has_no_second_effect(settings_for, toy_service):
    s = toy_service.settings
    env = _ping(7)
    raw = encode(env)
    await produce(s.kafka_bootstrap, f"{s.topics.prefix}ping", [(b"k", raw)])
    await eventually(lambda: toy_service.consumers[0].stats.processed == 1, what="first copy")
    # the same event again, and a consumer of the same group restarted from scratch
    await produce(s.kafka_bootstrap, f"{s.topics.prefix}ping", [(b"k", raw), (b"k", raw)])
    await eventually(lambda: toy_service.consumers[0].stats.duplicates == 2, what="copies")
    await toy_service.pool.execute(
        "SELECT 1")  # the effect table is read through the service's own schema
    assert len(await _effects(toy_service)) == 1

    # replaying the whole topic with a fresh consumer group of the same service changes nothing
    svc2 = toy.build(s.with_(group_id=s.group_id + "-replay"))
    await svc2.start(http=False)
    await eventually(lambda: svc2.consumers[0].stats.duplicates == 3, what="replay dedup")
    await svc2.stop()
    assert len(await _effects(toy_service)) == 1


async def test_poison_messages_go_to_dead_letter_topic_and_the_rest_flows(settings_for, toy_service):
    s = toy_service.settings
    topic = f"{s.topics.prefix}ping"
    good_before, good_after = _ping(1), _ping(2)
    schema_invalid = _ping(3).model_dump(mode="json")
    schema_invalid["payload"]["n"] = "not a number"
    unknown_version = _ping(4).model_dump(mode="json")
    unknown_version["version"] = 9
    unknown_type = _ping(5).model_dump(mode="json")
    unknown_type["type"] = "NoSuchEvent"
    failing = _ping(6, explode=True)
    await produce(s.kafka_bootstrap, topic, [
        (b"same-key", encode(good_before)),
        (b"same-key", b"{not json at all"),
        (b"same-key", orjson.dumps(schema_invalid)),
        (b"same-key", orjson.dumps(unknown_version)),
        (b"same-key", orjson.dumps(unknown_type)),
        (b"same-key", b'{"event_id": "not-a-uuid"}'),
        (b"same-key", encode(failing)),
        (b"same-key", encode(good_after)),
    ])
    await eventually(lambda: toy_service.consumers[0].stats.processed == 2, what="good ones")
    rows = await _effects(toy_service)
    assert [r["n"] for r in rows] == [1, 2]

    dlq = values(await read_topic(s.kafka_bootstrap, s.topics.dead_letters("toy.pings"), expect=6))
    codes = sorted(d["reason_code"] for d in dlq)
    assert codes == sorted(["bad_json", "schema_invalid", "unknown_version", "unknown_type",
                            "bad_envelope", "cannot_ping"])
    by_code = {d["reason_code"]: d for d in dlq}
    assert "payload" not in by_code["schema_invalid"]
    assert "n: int_parsing" in by_code["schema_invalid"]["reason"]
    assert "accepted: [1]" in by_code["unknown_version"]["reason"]
    for d in dlq:
        assert d["source"]["topic"] == topic and d["source"]["offset"] >= 1
        assert d["consumer"] == "toy.pings"
    # the original is sealed, and opens with the ops key only
    opened = open_dead_letter(by_code["bad_json"], s.dlq_key)
    assert opened["value"] == b"{not json at all"


async def test_broker_restart_mid_stream_loses_nothing(settings_for, stack_urls, toy_service):
    from mediation_core import stack

    if stack.external_urls():
        pytest.fail("this test restarts the local broker; run it against the local stack")
    s = settings_for("upstream")
    pool = await db.create_pool(s.database_url, s.schema, application="upstream")
    await db.migrate(pool, s.schema)
    outbox = Outbox("upstream")
    producer = make_producer(s.kafka_bootstrap, "upstream-relay")
    await producer.start()
    relay = OutboxRelay(pool, producer, service="upstream", batch_size=50)
    relay_task = asyncio.create_task(relay.run())
    topic = f"{s.topics.prefix}ping"
    n_total = 600

    async def write(start: int, stop: int) -> None:
        for i in range(start, stop):
            env = _ping(i)
            async with pool.acquire() as conn, conn.transaction():
                await outbox.add_envelope(conn, env, topic=topic, key=str(i % 17))
            if i % 50 == 0:
                await asyncio.sleep(0.01)

    await write(0, 200)
    await eventually(lambda: toy_service.consumers[0].stats.processed >= 100, what="flow started")
    kafka = stack.Kafka()
    await asyncio.to_thread(kafka.stop)
    await write(200, 400)  # the outbox keeps accepting while the broker is down
    await asyncio.to_thread(kafka.start)
    await write(400, n_total)
    await eventually(lambda: toy_service.consumers[0].stats.processed >= n_total, timeout=120,
                     what="all processed after the restart")
    relay.stop()
    await relay_task
    await producer.stop()
    rows = await _effects(toy_service)
    assert sorted(r["n"] for r in rows) == list(range(n_total)), "all N processed, exactly once"
    await pool.close()


@pytest.fixture
async def batched_service(settings_for):
    svc = toy.build_batched(settings_for("toy"))
    yield svc
    await svc.stop()


async def test_deferred_writes_commit_once_per_batch_and_a_failing_one_is_pinned_to_its_message(
        batched_service):
    s = batched_service.settings
    topic = f"{s.topics.prefix}ping"
    pings = [_ping(i) for i in range(60)]
    bad = _ping(-1)  # the deferred insert breaks the CHECK constraint at the batch's flush
    # the messages are on the topic before the consumer starts (one key, one partition),
    # so the first batch holds all 30 of them
    await produce(s.kafka_bootstrap, topic, [(b"k", encode(e)) for e in pings[:30]])
    await batched_service.start(http=False)
    c = batched_service.consumers[0]
    await eventually(lambda: c.stats.processed == 30, what="first pings")
    # the fast way: one prepare step saw several messages at once
    assert await batched_service.pool.fetchval("SELECT max(messages) FROM prepares") > 1
    await produce(s.kafka_bootstrap, topic, [(b"k", encode(bad))]
                  + [(b"k", encode(e)) for e in pings[30:]])
    await eventually(lambda: c.stats.processed + c.stats.dead_lettered == 61, what="all handled")
    rows = await batched_service.pool.fetch("SELECT n, prepared FROM batched_effects ORDER BY n")
    assert [r["n"] for r in rows] == list(range(60)), "each effect exactly once, the bad one none"
    assert c.stats.dead_lettered == 1
    dlq = values(await read_topic(s.kafka_bootstrap, s.topics.dead_letters("toy.pings"), expect=1))
    assert [(d["reason_code"], d["event_id"]) for d in dlq] == [("handler_error", str(bad.event_id))]
    # the batch that held the bad message was rerun in isolation: no prepare step there
    assert any(not r["prepared"] for r in rows if r["n"] >= 30)
    assert all(r["prepared"] for r in rows if r["n"] < 30)


async def test_a_failing_prepare_step_loses_nothing(batched_service):
    s = batched_service.settings
    topic = f"{s.topics.prefix}ping"
    pings = [_ping(i) for i in range(20)] + [_ping(20, note="bad prepare")]
    await produce(s.kafka_bootstrap, topic, [(b"k", encode(e)) for e in pings])
    await batched_service.start(http=False)
    c = batched_service.consumers[0]
    await eventually(lambda: c.stats.processed == 21, what="all processed")
    rows = await batched_service.pool.fetch("SELECT n, prepared FROM batched_effects ORDER BY n")
    assert [r["n"] for r in rows] == list(range(21))
    assert not any(r["prepared"] for r in rows if r["n"] == 20)
    assert c.stats.dead_lettered == 0


async def test_relay_listens_again_and_keeps_publishing_after_its_listen_connection_dies(
        settings_for, ns):
    """A database restart ends the relay's LISTEN connection; asyncpg then takes it back into
    the pool by itself and its proxy refuses every call. The relay must notice, LISTEN on a
    new connection and keep publishing (it used to retry `is_closed()` on the dead proxy
    forever and never published again: the chaos test's stuck counts)."""
    s = settings_for("upstream")
    app = f"relay-{ns}"[:60]
    pool = await db.create_pool(s.database_url, s.schema, application=app)
    await db.migrate(pool, s.schema)
    outbox = Outbox("upstream")
    topic = f"{s.topics.prefix}ping"
    producer = make_producer(s.kafka_bootstrap, "upstream-relay")
    await producer.start()
    # a long idle poll: only a working LISTEN publishes within the waits below
    relay = OutboxRelay(pool, producer, service="upstream", idle_poll=60)
    relay_task = asyncio.create_task(relay.run())

    async def listen_pids() -> list[int]:
        return [r["pid"] for r in await pool.fetch(
            "SELECT pid FROM pg_stat_activity WHERE application_name = $1 "
            "AND query LIKE 'LISTEN%'", app)]

    async def write(n: int) -> None:
        env = _ping(n)
        async with pool.acquire() as conn, conn.transaction():
            await outbox.add_envelope(conn, env, topic=topic, key=str(n))

    async def backlog_empty() -> bool:
        return await pool.fetchval("SELECT count(*) FROM outbox") == 0

    try:
        first = await eventually(listen_pids, timeout=10, what="relay listening")
        await write(1)
        await eventually(backlog_empty, timeout=10, what="published, woken by NOTIFY")
        for pid in first:  # what a database restart does to the relay's connection
            await pool.execute("SELECT pg_terminate_backend($1)", pid)
        again = await eventually(lambda: _new(listen_pids, first), timeout=10,
                                 what="relay listening on a new connection")
        assert set(again).isdisjoint(first)
        await write(2)
        await eventually(backlog_empty, timeout=10, what="published after the LISTEN was lost")
        assert not relay_task.done()
    finally:
        relay.stop()
        await relay_task
        await producer.stop()
        await pool.close()
    published = await read_topic(s.kafka_bootstrap, topic, expect=2)
    assert sorted(orjson.loads(r.value)["payload"]["n"] for r in published) == [1, 2]


async def _new(pids, old: list[int]) -> list[int]:
    return [p for p in await pids() if p not in old]


async def test_consumer_and_relay_live_through_their_connections_being_ended(
        settings_for, stack_urls, toy_service):
    """What a database restart does to a running service, many times over: its connections
    are ended under it, mid-batch. Nothing is lost, nothing is applied twice, and neither the
    consumer nor the relay dies (an asyncpg 'another operation is in progress' error used
    to be taken for a bug: the consumer stopped, and the service with it)."""
    s = toy_service.settings
    n_total = 300
    items = [(str(i % 7).encode(), encode(_ping(i))) for i in range(n_total)]
    admin = await asyncpg.connect(stack_urls.database_url)
    streaming = asyncio.Event()
    streaming.set()

    async def end_connections() -> int:
        ended = 0
        while streaming.is_set():
            ended += len(await admin.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE application_name = 'toy' AND pid <> pg_backend_pid()"))
            await asyncio.sleep(0.1)
        return ended

    killer = asyncio.create_task(end_connections())
    try:
        for start in range(0, n_total, 15):
            await produce(s.kafka_bootstrap, f"{s.topics.prefix}ping", items[start:start + 15])
            await asyncio.sleep(0.15)
    finally:
        streaming.clear()
        ended = await killer
        await admin.close()
    assert ended > 0

    async def all_applied() -> bool:
        dead = [t.get_name() for t in toy_service._tasks if t.done()]
        assert not dead, f"died: {dead}"
        # the effects, not the consumer's counters: a commit whose answer was lost with its
        # connection is retried, and its events are then found in the inbox
        return await _effect_count(toy_service, n_total)

    await eventually(all_applied, timeout=60, what="every effect once the database is left alone")
    assert sorted(r["n"] for r in await _effects(toy_service)) == list(range(n_total))
    pongs = await read_topic(s.kafka_bootstrap, f"{s.topics.prefix}pong", expect=n_total)
    assert {orjson.loads(r.value)["payload"]["n"] for r in pongs} == set(range(n_total))


async def _effect_count(svc, at_least: int) -> bool:
    """On a connection of its own (the service's are being ended)."""
    conn = await asyncpg.connect(svc.settings.database_url)
    try:
        return await conn.fetchval(f"SELECT count(*) FROM {svc.settings.schema}.effects") >= at_least
    finally:
        await conn.close()

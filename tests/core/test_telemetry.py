"""Traces across hops, and personal data kept out of logs, spans and dead letters."""

from __future__ import annotations

import io
import logging
import uuid

import orjson
import pytest

from mediation_core import db, telemetry
from mediation_core.outbox import Outbox, OutboxRelay, make_producer
from mediation_schemas.envelope import new_envelope
from tests.conftest import eventually
from tests.core import toy
from tests.helpers import produce, read_topic

pytestmark = pytest.mark.stack

CANARY = "CANARY-Jeanne-Dupont-0612345678"


def _traceparent(rec) -> str:
    return dict(rec.headers)["traceparent"].decode()


async def test_one_trace_covers_produce_consume_outbox_produce(settings_for, spans):
    s_up = settings_for("upstream")
    pool = await db.create_pool(s_up.database_url, s_up.schema, application="upstream")
    await db.migrate(pool, s_up.schema)
    svc = toy.build(settings_for("toy"))
    await svc.start(http=False)
    try:
        await svc.wait_ready()
        tracer = telemetry.tracer("tests")
        ping_id = uuid.uuid4()
        with tracer.start_as_current_span("referral submitted") as root:
            trace_id = f"{root.get_span_context().trace_id:032x}"
            async with pool.acquire() as conn, conn.transaction():
                await Outbox("upstream").add(
                    conn, toy.TestPing(ping_id=ping_id, n=1), topic=f"{s_up.topics.prefix}ping",
                    key=str(ping_id), correlation_id="c1")
        producer = make_producer(s_up.kafka_bootstrap, "upstream-relay")
        await producer.start()
        await OutboxRelay(pool, producer, service="upstream").publish_once()
        await producer.stop()

        pongs = await read_topic(s_up.kafka_bootstrap, f"{s_up.topics.prefix}pong", expect=1)
        assert len(pongs) == 1
        assert _traceparent(pongs[0]).split("-")[1] == trace_id

        def chain():
            names = {s.name for s in spans.get_finished_spans()
                     if f"{s.context.trace_id:032x}" == trace_id}
            return {"referral submitted", "consume TestPing"} <= names
        await eventually(chain, what="every hop's span in one trace")
        consume = next(s for s in spans.get_finished_spans() if s.name == "consume TestPing")
        assert consume.parent.span_id == root.get_span_context().span_id
        # the pong carries the consumer's span: the next hop continues the same trace
        assert _traceparent(pongs[0]).split("-")[2] == f"{consume.context.span_id:016x}"
        # the relay's batch span links the records it published
        relay_spans = [s for s in spans.get_finished_spans() if s.name == "outbox publish"]
        linked = {(lk.context.trace_id, lk.context.span_id) for s in relay_spans for lk in s.links}
        assert (consume.context.trace_id, consume.context.span_id) in linked
    finally:
        await svc.stop()
        await pool.close()


async def test_canary_personal_value_reaches_no_log_span_or_dead_letter(
        settings_for, spans, json_logs):
    svc = toy.build(settings_for("toy"))
    await svc.start(http=False)
    try:
        await svc.wait_ready()
        s = svc.settings
        topic = f"{s.topics.prefix}ping"
        good = new_envelope(toy.TestPing(ping_id=uuid.uuid4(), n=1, note=CANARY),
                            producer="test", correlation_id="c")
        failing = new_envelope(toy.TestPing(ping_id=uuid.uuid4(), n=2, note=CANARY, explode=True),
                               producer="test", correlation_id="c")
        invalid = good.model_dump(mode="json")
        invalid["event_id"] = str(uuid.uuid4())
        invalid["payload"]["n"] = CANARY  # the canary as an invalid value
        broken = ('{"note": "' + CANARY + '", ').encode()  # not JSON, canary inside
        await produce(s.kafka_bootstrap, topic, [
            (b"k", orjson.dumps(good.model_dump(mode="json"))), (b"k", broken),
            (b"k", orjson.dumps(invalid)), (b"k", orjson.dumps(failing.model_dump(mode="json")))])
        await eventually(lambda: svc.consumers[0].stats.processed == 1
                         and svc.consumers[0].stats.dead_lettered == 3, what="all handled")
        dead = await read_topic(s.kafka_bootstrap, s.topics.dead_letters("toy.pings"), expect=3)
        assert len(dead) == 3
        for rec in dead:
            assert CANARY.encode() not in rec.value
            assert CANARY.encode() not in b"".join(v for _, v in rec.headers)
        await eventually(lambda: len(spans.get_finished_spans()) > 0, what="spans exported")
        for span in spans.get_finished_spans():
            assert CANARY not in span.to_json()
        logs = json_logs.getvalue()
        assert "dead-lettered" in logs, "the test must see the service's log lines"
        assert CANARY not in logs
    finally:
        await svc.stop()


def test_redaction_blanks_sensitive_keys_in_logs_and_attributes():
    buf = io.StringIO()
    telemetry.setup_logging("tests", stream=buf)
    try:
        logging.getLogger("x").info("person seen %s", CANARY,
                                    extra={"fields": {"family_name": CANARY, "case_id": "c-1",
                                                      "nested": {"phone": CANARY}}})
    finally:
        logging.getLogger().handlers = [h for h in logging.getLogger().handlers
                                        if not getattr(h, "_mediation", False)]
    line = orjson.loads(buf.getvalue().splitlines()[-1])
    assert CANARY not in buf.getvalue()
    assert line["case_id"] == "c-1" and line["family_name"] == telemetry.REDACTED
    assert telemetry.redact({"person.birth_date": "x", "referral_id": "r"}) == {
        "person.birth_date": telemetry.REDACTED, "referral_id": "r"}

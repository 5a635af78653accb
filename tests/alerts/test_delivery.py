"""Delivery on the real stack against real receivers that fail, hang, answer 500, then
recover: every alert reaches its receiver exactly once (idempotency key), none is lost;
a receiver down for the whole budget gives AlertDeliveryFailed and the coordinator is told."""

from __future__ import annotations

import asyncio
from collections import Counter

import orjson
import pytest

from mediation_alerts.policy import DeliveryPolicy
from mediation_schemas.envelope import encode, new_envelope
from tests.conftest import eventually
from tests.helpers import produce, read_topic, values

from .conftest import FAST, SECRET, configure, count_is, dysfunction, report
from .receivers import SmtpReceiver, WebhookReceiver, free_port

pytestmark = pytest.mark.stack


async def _events(svc, expect: int | None = None, idle: float = 1.5) -> list[dict]:
    s = svc.settings
    return values(await read_topic(s.kafka_bootstrap, s.topics.alerts, expect=expect,
                                   timeout=60, idle=idle))


async def test_flaky_receivers_get_every_alert_exactly_once(make_alerts):
    hook = WebhookReceiver(SECRET, script=["500", "timeout", "503", "500", "timeout", "500"])
    smtp = SmtpReceiver(script=["451", "timeout", "451"])
    svc = await make_alerts(smtp_port=smtp.port)
    # both receivers are down at first: connections refused
    await configure(svc, "defenseur_droits", channels=["webhook"], webhook_url=hook.url,
                    webhook_secret=SECRET)
    await configure(svc, "cpam_conciliateur", channels=["email"], email="conciliateur@cpam.test")
    await configure(svc, "mairie_hygiene", channels=["webhook", "email"], webhook_url=hook.url,
                    webhook_secret=SECRET, email="schs@mairie.test")
    await configure(svc, "ars", channels=["kafka"])
    await configure(svc, "cpam", channels=["webhook"], webhook_url=hook.url, webhook_secret=SECRET)
    await configure(svc, "ars_alerte", channels=["webhook", "kafka"], webhook_url=hook.url,
                    webhook_secret=SECRET)
    await configure(svc, "coordinator", channels=["email"], email="coordination@cpts.test")

    cats = ["care_refusal", "insalubrious_housing", "rights_blockage", "health_risk",
            "interpreting_lack", "other"] * 2
    items = [dysfunction(c, urgency="urgent" if i % 3 == 0 else "normal")
             for i, c in enumerate(cats)]
    await report(svc, items)
    pool = svc.pool
    # 2+2+1+1+1+1 alerts per round of categories
    await eventually(lambda: count_is(pool, "SELECT count(*) FROM alerts", 16), 60,
                     what="16 alerts")
    await eventually(lambda: _ge(pool, "SELECT count(*) FROM attempts WHERE detail = "
                                 "'connection_refused'", 6), 60, what="refused attempts")
    await hook.start()
    await smtp.start()
    try:
        await eventually(lambda: count_is(pool, "SELECT count(*) FROM dispatches WHERE "
                                          "state <> 'delivered'", 0),
                         90, what="every dispatch delivered")
        alerts = {r["alert_id"]: r for r in await pool.fetch("SELECT * FROM alerts")}
        dispatches = await pool.fetch("SELECT alert_id, channel, message_id FROM dispatches")
        want_hook = {str(d["message_id"]) for d in dispatches if d["channel"] == "webhook"}
        want_mail = {str(d["message_id"]) for d in dispatches if d["channel"] == "email"}
        want_kafka = [d for d in dispatches if d["channel"] == "kafka"]
        assert len(want_hook) == 8 and len(want_mail) == 8 and len(want_kafka) == 4

        # the receivers' view: each alert processed once, none missing, none extra
        assert set(hook.processed) == want_hook
        assert all(n == 1 for n in hook.process_count.values()), hook.process_count
        assert set(smtp.processed) == want_mail
        assert all(n == 1 for n in smtp.handler.process_count.values())
        # the faults really happened, and the copies after timeouts were recognised
        seen = Counter(what for _, what in hook.requests)
        assert seen["500"] >= 3 and seen["503"] >= 1 and seen["timeout"] == 2
        assert seen["duplicate"] >= 2, "a timed-out delivery is re-sent with the same key"
        assert "451" in smtp.handler.received
        assert hook.rejected == []
        details = {r["detail"] for r in await pool.fetch("SELECT DISTINCT detail FROM attempts "
                                                         "WHERE outcome = 'retry'")}
        assert {"connection_refused", "http_500", "http_503", "timeout", "smtp_451"} <= details
        # the breaker opened on the refusing endpoints: short-circuits, not real attempts
        assert await pool.fetchval("SELECT count(*) FROM attempts WHERE outcome='circuit_open'") > 0
        assert await pool.fetchval("SELECT count(*) FROM attempts WHERE outcome='delivered'") == 20

        # webhook bodies are the minimal content
        body = next(iter(hook.processed.values()))
        assert {"category", "commune", "concerned", "observed_on", "reported_at",
                "description", "ack_url"} <= set(body)
        assert "person" not in body

        # one AlertDispatched per (alert, channel), nothing failed
        evs = await _events(svc, expect=20)
        assert Counter(e["type"] for e in evs) == {"AlertDispatched": 20}
        assert Counter((e["payload"]["alert"]["alert_id"], e["payload"]["channel"])
                       for e in evs).most_common(1)[0][1] == 1
        assert all(a["status"] == "dispatched" and a["ack_due_at"] is not None
                   for a in alerts.values())
        # kafka-channel alerts on the outbound topic, keyed by authority id
        s = svc.settings
        out = await read_topic(s.kafka_bootstrap, s.topics.alerts_outbound, expect=4, timeout=60)
        assert sorted(r.key.decode() for r in out) == sorted(
            alerts[d["alert_id"]]["authority_id"] for d in want_kafka)
        assert all(orjson.loads(r.value)["type"] == "AlertOutbound" for r in out)
    finally:
        await hook.stop()
        await smtp.stop()


async def test_receiver_down_for_whole_budget_fails_and_tells_coordinator(smtp, make_alerts):
    wrong = WebhookReceiver("another-secret-than-the-senders")
    await wrong.start()
    policy = DeliveryPolicy(**{**FAST.__dict__, "max_attempts": 3, "base_delay": 0.02,
                               "max_delay": 0.1, "breaker_threshold": 10})
    svc = await make_alerts(policy=policy, smtp_port=smtp.port)
    dead_url = f"http://127.0.0.1:{free_port()}/hooks/alerts"
    try:
        await configure(svc, "defenseur_droits", channels=["webhook"], webhook_url=dead_url,
                        webhook_secret=SECRET)
        await configure(svc, "cpam_conciliateur", channels=["webhook"], webhook_url=dead_url,
                        webhook_secret=SECRET)
        await configure(svc, "cpam", channels=["webhook"], webhook_url=wrong.url,
                        webhook_secret=SECRET)
        await configure(svc, "coordinator", channels=["email"], email="coordination@cpts.test")
        d1 = dysfunction("care_refusal")
        d2 = dysfunction("rights_blockage")
        await report(svc, [d1, d2])
        pool = svc.pool
        await eventually(lambda: count_is(pool, "SELECT count(*) FROM alerts "
                                          "WHERE status='failed'", 3), 60, what="3 failed alerts")
        # the dead endpoint was tried exactly the budget; the refusing one once (401 is final)
        per = {r["authority_id"]: r["n"] for r in await pool.fetch(
            "SELECT a.authority_id, count(*) AS n FROM attempts t JOIN dispatches d USING "
            "(dispatch_id) JOIN alerts a USING (alert_id) WHERE d.purpose='alert' "
            "AND t.outcome <> 'circuit_open' GROUP BY 1")}
        assert per == {"defenseur_droits": 3, "cpam_conciliateur": 3, "cpam": 1}
        assert wrong.rejected == ["bad_signature"], "the verifier refused the forged signature"
        assert wrong.processed == {}

        evs = await _events(svc, expect=6)
        failed = [e["payload"] for e in evs if e["type"] == "AlertDeliveryFailed"]
        escal = [e["payload"] for e in evs if e["type"] == "AlertEscalated"]
        assert sorted(f["alert"]["authority_id"] for f in failed) == [
            "cpam", "cpam_conciliateur", "defenseur_droits"]
        assert all(f["coordinator_notified"] for f in failed)
        assert {f["reason"] for f in failed} == {"connection_refused", "http_401"}
        assert sorted(f["attempts"] for f in failed) == [1, 3, 3]
        assert [e["escalated_to"] for e in escal] == ["coordinator"] * 3
        assert {e["reason"] for e in escal} == {"delivery_failed"}
        assert not [e for e in evs if e["type"] == "AlertDispatched"]
        # the coordinator got one notice per failed alert, by e-mail
        await eventually(lambda: len(smtp.processed) == 3, 60, what="coordinator notices")
        texts = [smtp.body(k) for k in smtp.processed]
        assert all("n'a pu être remis" in t for t in texts)
        subjects = [m["Subject"] for m in smtp.processed.values()]
        assert all(s.startswith("[Veille]") for s in subjects)
    finally:
        await wrong.stop()


async def test_crash_between_delivery_and_record_resends_same_key_receiver_dedups(
        hook, make_alerts, clock):
    svc = await make_alerts()
    crashed = asyncio.Event()

    async def crash_once(d, outcome):
        if not crashed.is_set():
            crashed.set()
            raise RuntimeError("dispatcher killed after delivery, before recording it")

    svc.dispatcher.after_deliver = crash_once
    await configure(svc, "cpam", channels=["webhook"], webhook_url=hook.url,
                    webhook_secret=SECRET)
    await report(svc, [dysfunction("rights_blockage")])
    await eventually(crashed.is_set, 60, what="the crash")
    pool = svc.pool
    assert await pool.fetchval("SELECT state FROM dispatches") == "pending"
    assert len(hook.processed) == 1, "the receiver got it before the crash"
    clock.advance(seconds=FAST.lease + 1)  # the lease of the crashed claim expires
    await eventually(lambda: count_is(pool, "SELECT count(*) FROM dispatches WHERE "
                                      "state='delivered'", 1), 60, what="re-sent and recorded")
    keys = [k for k, what in hook.requests]
    assert len(keys) == 2 and keys[0] == keys[1], "same idempotency key on the re-send"
    assert [what for _, what in hook.requests] == ["ok", "duplicate"]
    assert hook.process_count == {keys[0]: 1}
    evs = await _events(svc, expect=1)
    assert [e["type"] for e in evs] == ["AlertDispatched"]


async def _ge(pool, sql: str, n: int) -> bool:
    return await pool.fetchval(sql) >= n


async def test_two_dispatchers_and_a_repeated_dysfunction_send_each_alert_once(
        hook, make_alerts):
    small_batches = DeliveryPolicy(**{**FAST.__dict__, "batch": 4})
    svc = await make_alerts(policy=small_batches)
    await configure(svc, "cpam", channels=["webhook"], webhook_url=hook.url,
                    webhook_secret=SECRET)
    await configure(svc, "ars_alerte", channels=["webhook"], webhook_url=hook.url,
                    webhook_secret=SECRET)
    # a second instance of the service on the same schema and group: two dispatchers
    svc2 = await make_alerts(policy=small_batches)
    assert svc2.settings.schema == svc.settings.schema
    items = [dysfunction("rights_blockage" if i % 2 else "health_risk") for i in range(40)]
    await report(svc, items)
    # the same dysfunction again, as a copy of the event and under a new event id
    await report(svc, items[:5])
    s = svc.settings
    env = new_envelope(items[0], producer="cases", correlation_id="again",
                       structure=items[0].structure)
    await produce(s.kafka_bootstrap, s.topics.dysfunctions,
                  [(str(items[0].dysfunction_id).encode(), encode(env))] * 2)
    await eventually(lambda: len(hook.processed) == 40, 60, what="40 alerts received")
    await eventually(lambda: count_is(svc.pool, "SELECT count(*) FROM dispatches WHERE "
                                      "state='delivered'", 40), 60, what="recorded")
    assert await svc.pool.fetchval("SELECT count(*) FROM alerts") == 40
    assert all(n == 1 for n in hook.process_count.values())
    assert len(hook.requests) == 40, "no alert was sent twice by the two dispatchers"
    assert svc.dispatcher.delivered + svc2.dispatcher.delivered == 40


async def test_an_authority_without_a_channel_fails_at_once_and_the_coordinator_is_told(
        hook, smtp, make_alerts, clock):
    svc = await make_alerts(smtp_port=smtp.port)
    pool = svc.pool
    # care_refusal goes to the Défenseur des droits (webhook here) and the CPAM conciliator
    # (no channel in this structure); its escalation chain ends with the ARS (no channel)
    await configure(svc, "defenseur_droits", channels=["webhook"], webhook_url=hook.url,
                    webhook_secret=SECRET)
    await configure(svc, "coordinator", channels=["email"], email="coordination@cpts.test")
    await report(svc, [dysfunction("care_refusal")])
    await eventually(lambda: len(hook.processed) == 1, 60, what="the Défenseur reached")
    await eventually(lambda: count_is(pool, "SELECT count(*) FROM alerts WHERE status='failed' "
                                      "AND authority_id='cpam_conciliateur'", 1),
                     60, what="the conciliator's alert failed at once")
    # no answer from the Défenseur: the coordinator, then the ARS, which cannot be reached
    clock.advance(days=10)
    await eventually(lambda: count_is(pool, "SELECT count(*) FROM alerts WHERE "
                                      "escalation_level=1 AND authority_id='defenseur_droits'", 1),
                     60, what="escalated to the coordinator")
    clock.advance(days=10)
    await eventually(lambda: count_is(pool, "SELECT count(*) FROM alerts WHERE status='failed'", 2),
                     60, what="the ARS alert failed at once")
    assert await pool.fetchval("SELECT count(*) FROM dispatches d JOIN alerts a USING (alert_id) "
                               "WHERE d.purpose='alert' AND a.authority_id <> "
                               "'defenseur_droits'") == 0, "nothing to send, nothing planned"
    evs = await _events(svc, expect=7)
    failed = {e["payload"]["alert"]["authority_id"]: e["payload"] for e in evs
              if e["type"] == "AlertDeliveryFailed"}
    assert set(failed) == {"cpam_conciliateur", "ars"}
    assert all(f["reason"] == "no_channel_configured" and f["attempts"] == 0
               and f["channel"] == "none" and f["coordinator_notified"] for f in failed.values())
    assert failed["ars"]["alert"]["parent_alert_id"] is not None, "the ARS alert is an escalation"
    escal = sorted((e["payload"]["alert"]["authority_id"], e["payload"]["reason"])
                   for e in evs if e["type"] == "AlertEscalated")
    assert escal == [("ars", "delivery_failed"), ("cpam_conciliateur", "delivery_failed"),
                     ("defenseur_droits", "no_acknowledgement"),
                     ("defenseur_droits", "no_acknowledgement")]
    # the coordinator's notices: two failures and one missing acknowledgement
    await eventually(lambda: len(smtp.processed) == 3, 60, what="three coordinator notices")
    texts = sorted(smtp.body(k) for k in smtp.processed)
    assert sum("n'a pu être remis" in t for t in texts) == 2
    assert sum("aucun accusé de réception" in t for t in texts) == 1

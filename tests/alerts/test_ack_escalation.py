"""Acknowledgement (signed link, API) and escalation driven by the controllable clock;
the authority's own view and the coordinator's dysfunction table (annex 5)."""

from __future__ import annotations

from collections import Counter
from urllib.parse import urlsplit

import pytest

from tests.conftest import eventually
from tests.helpers import read_topic, values

from .conftest import (
    SECRET,
    STRUCTURE,
    api,
    authority_headers,
    configure,
    coordinator_headers,
    dysfunction,
    report,
)

pytestmark = pytest.mark.stack


async def _types(svc, expect: int) -> list[dict]:
    s = svc.settings
    return values(await read_topic(s.kafka_bootstrap, s.topics.alerts, expect=expect, timeout=60))


async def test_ack_by_link_and_api_and_escalation_by_clock(hook, smtp, make_alerts, clock):
    svc = await make_alerts(smtp_port=smtp.port)
    pool = svc.pool
    await configure(svc, "defenseur_droits", channels=["webhook"], webhook_url=hook.url,
                    webhook_secret=SECRET)
    await configure(svc, "cpam_conciliateur", channels=["webhook"], webhook_url=hook.url,
                    webhook_secret=SECRET)
    await configure(svc, "ars", channels=["kafka"])
    await configure(svc, "coordinator", channels=["email"], email="coordination@cpts.test")
    d = dysfunction("care_refusal", urgency="urgent")
    await report(svc, [d])
    await eventually(lambda: len(hook.processed) == 2, 60, what="both authorities reached")
    bodies = {b["authority_id"]: b for b in hook.processed.values()}
    ddd, conc = bodies["defenseur_droits"], bodies["cpam_conciliateur"]

    async with api(svc) as c:
        # the conciliator acknowledges by the signed link in its message
        path = urlsplit(conc["ack_url"]).path
        page = await c.get(path)
        assert page.status_code == 200 and "Accuser réception" in page.text
        # too long a response, by the page's form or JSON: refused, the value never echoed
        for too_long in ({"data": {"response": "Z" * 5000}}, {"json": {"response": "Z" * 5000}}):
            r = await c.post(path, **too_long)
            assert r.status_code == 422 and "ZZZZ" not in r.text
        r = await c.post(path, data={"response": "Conciliation engagée avec le cabinet."})
        assert r.status_code == 200 and r.json()["already_acknowledged"] is False
        r = await c.post(path, data={"response": "encore"})
        assert r.json()["already_acknowledged"] is True, "a second click changes nothing"
        # a tampered link is refused
        tampered = path[:-1] + ("0" if path[-1] != "0" else "1")
        assert (await c.post(tampered)).status_code == 403
        # a malformed acknowledgement names the field, never echoes the value
        r = await c.post(f"/alerts/{ddd['alert_id']}/ack", json={"response": "Z" * 5000},
                         headers=authority_headers("defenseur_droits"))
        assert r.status_code == 422 and "ZZZZ" not in r.text
        assert r.json()["problems"][0]["field"] == "response"
        # another authority cannot acknowledge the Défenseur's alert
        r = await c.post(f"/alerts/{ddd['alert_id']}/ack", json={"response": "x"},
                         headers=authority_headers("cpam_conciliateur"))
        assert r.status_code == 404

    # deadline (urgent: 1 working day) passes without the Défenseur's answer
    clock.advance(days=10)
    await eventually(lambda: _status(pool, ddd["alert_id"], "escalated"), 60,
                     what="escalated to the coordinator")
    await eventually(lambda: len(smtp.processed) == 1, 60, what="coordinator notice")
    notice = next(iter(smtp.processed.values()))
    assert "aucun accusé de réception" in notice.get_payload(decode=True).decode()
    assert await _status(pool, conc["alert_id"], "acknowledged"), "acknowledged: no escalation"

    # still nothing: next authority of the rule (ARS, by Kafka)
    clock.advance(days=10)
    await eventually(lambda: pool.fetchval("SELECT alert_id FROM alerts WHERE "
                                           "authority_id='ars' AND status='dispatched'"),
                     60, what="alert to the ARS")
    ars_alert = await pool.fetchval("SELECT alert_id FROM alerts WHERE authority_id='ars'")
    s = svc.settings
    out = await read_topic(s.kafka_bootstrap, s.topics.alerts_outbound, expect=1, timeout=60)
    assert [r.key for r in out] == [b"ars"]

    async with api(svc) as c:
        mine = (await c.get("/alerts/mine", headers=authority_headers("ars"))).json()
        assert [a["alert_id"] for a in mine["alerts"]] == [str(ars_alert)]
        assert mine["alerts"][0]["parent_alert_id"] == ddd["alert_id"]
        r = await c.post(f"/alerts/{ars_alert}/ack", json={"response": "Inspection prévue."},
                         headers=authority_headers("ars"))
        assert r.status_code == 200
        assert (await c.get("/alerts/mine", headers=coordinator_headers())).status_code == 403

        # the coordinator's table: one signal, three authorities, statuses and responses
        t = await c.get(f"/alerts/structures/{STRUCTURE}/dysfunctions",
                        headers=coordinator_headers())
        assert t.status_code == 200
        [row] = t.json()["dysfunctions"]
        assert row["category"] == "care_refusal" and row["commune"] == "Lasalle"
        by = {a["authority_id"]: a for a in row["alerts"]}
        assert by["defenseur_droits"]["status"] == "escalated"
        assert by["defenseur_droits"]["escalation_level"] == 2
        assert by["defenseur_droits"]["escalated_to"] == "ars"
        assert by["cpam_conciliateur"]["response"] == "Conciliation engagée avec le cabinet."
        assert by["cpam_conciliateur"]["ack_via"] == "link"
        assert by["ars"]["status"] == "acknowledged" and by["ars"]["ack_via"] == "api"
        csv = await c.get(f"/alerts/structures/{STRUCTURE}/dysfunctions?format=csv",
                          headers=coordinator_headers())
        assert csv.text.count("\n") == 4 and "Inspection prévue." in csv.text
        other = await c.get(f"/alerts/structures/{STRUCTURE}/dysfunctions",
                            headers=coordinator_headers("another-structure"))
        assert other.status_code == 403

    clock.advance(days=30)  # nothing left to escalate: acknowledged or chain exhausted
    evs = await _types(svc, expect=7)
    kinds = Counter((e["type"], e["payload"]["alert"]["authority_id"]) for e in evs)
    # the coordinator notice is a message, not an alert of its own: no event for it
    assert kinds == Counter({
        ("AlertDispatched", "defenseur_droits"): 1, ("AlertDispatched", "cpam_conciliateur"): 1,
        ("AlertAcknowledged", "cpam_conciliateur"): 1, ("AlertEscalated", "defenseur_droits"): 2,
        ("AlertDispatched", "ars"): 1, ("AlertAcknowledged", "ars"): 1})
    escal = [e["payload"] for e in evs if e["type"] == "AlertEscalated"]
    assert [(e["level"], e["escalated_to"]) for e in escal] == [(1, "coordinator"), (2, "ars")]
    assert escal[1]["new_alert_id"] == str(ars_alert)
    acks = {e["payload"]["alert"]["authority_id"]: e["payload"] for e in evs
            if e["type"] == "AlertAcknowledged"}
    # the free text stays in the alerts service (checked in the coordinator's table above):
    # the event on the shared topic only says there is one
    assert acks["ars"]["response"] is None and acks["ars"]["has_response"] is True
    assert acks["ars"]["via"] == "api"
    assert all(e["correlation_id"] == f"case-{d.case_id}" for e in evs)


async def _status(pool, alert_id, status: str) -> bool:
    return await pool.fetchval("SELECT status FROM alerts WHERE alert_id=$1::uuid",
                               str(alert_id)) == status

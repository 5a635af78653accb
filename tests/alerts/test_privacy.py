"""Canary: the person's identity never leaves in an alert unless they consented AND the rule
requires it; and even then never in an event, a log line, a span, an e-mail or our tables."""

from __future__ import annotations

import logging
import uuid

import pytest

from mediation_core import telemetry
from mediation_core.sealing import KeyVault, seal
from tests.conftest import eventually
from tests.helpers import read_topic

from .conftest import SECRET, api, authority_headers, configure, count_is, dysfunction, report

pytestmark = pytest.mark.stack
CANARIES = ["Canaryfamille", "Zoélie-Canari", "0611223344", "12 rue du Canari"]
PRIVATE = ["Canarycomment", "Dr Canaryreferrer"]  # never leave, even when naming is allowed
# intake's sealed block shape (mediation_intake.intake.personal_block)
IDENTITY = {
    "person": {"family_name": "Canaryfamille", "given_name": "Zoélie-Canari",
               "birth_date": "1971-03-04", "sex": "F", "address": "12 rue du Canari",
               "commune": "Lasalle", "postcode": "30460", "phone": "0611223344",
               "email": "zoelie@canari.test"},
    "referrer": {"name": "Dr Canaryreferrer", "phone": "0466000000"},
    "motive_texts": [{"index": 0, "code": "other", "text": "Canarycomment"}],
    "comment": "Canarycomment",
}


def _clean(text: str) -> bool:
    return not any(c in text for c in CANARIES + PRIVATE)


async def _sealed_identity(svc) -> tuple[KeyVault, str, dict]:
    """IDENTITY sealed the way intake does, under a new person's key in the test's vault."""
    s = svc.settings
    vault = KeyVault(svc.pool, {s.master_key_id: s.master_key}, s.master_key_id,
                     schema=s.keyvault_schema)
    await vault.ensure()
    async with svc.pool.acquire() as conn, conn.transaction():
        key_id, dek = await vault.key_for_person(conn, f"person-{uuid.uuid4()}")
    return vault, key_id, seal(dek, key_id, IDENTITY).model_dump()


async def test_identity_only_with_consent_and_rule_and_never_in_events_logs_spans(
        hook, smtp, make_alerts, caplog, spans):
    caplog.set_level(logging.DEBUG)
    svc = await make_alerts(smtp_port=smtp.port)
    s = svc.settings
    _, _, sealed = await _sealed_identity(svc)
    await configure(svc, "mairie_hygiene", channels=["webhook"], webhook_url=hook.url,
                    webhook_secret=SECRET)
    await configure(svc, "defenseur_droits", channels=["webhook", "kafka"],
                    webhook_url=hook.url, webhook_secret=SECRET)
    await configure(svc, "ars", channels=["email", "kafka"], email="dd30@ars.test")
    await configure(svc, "cpam_conciliateur", channels=["kafka"])
    no_consent = dysfunction("insalubrious_housing", consent=False, sealed=sealed,
                             description="Moisissures et humidité dans tout le logement.")
    not_required = dysfunction("care_refusal", consent=True, sealed=sealed)
    named = dysfunction("insalubrious_housing", consent=True, sealed=sealed,
                        description="Installation électrique dangereuse, enfants présents.")
    await report(svc, [no_consent, not_required, named])
    await eventually(lambda: len(hook.processed) == 3, 60, what="3 webhooks")
    await eventually(lambda: len(smtp.processed) == 2, 60, what="2 e-mails to the ARS")
    by = {(b["dysfunction_id"], b["authority_id"]): b for b in hook.processed.values()}
    alert_a = by[(str(no_consent.dysfunction_id), "mairie_hygiene")]
    alert_b = by[(str(not_required.dysfunction_id), "defenseur_droits")]
    alert_c = by[(str(named.dysfunction_id), "mairie_hygiene")]

    # no consent: nothing, though the rule requires it; consent but not required: nothing
    assert "person" not in alert_a and "person" not in alert_b
    raw_a_b = [r for r in hook.raw_bodies if str(no_consent.dysfunction_id).encode() in r
               or str(not_required.dysfunction_id).encode() in r]
    assert raw_a_b and all(_clean(r.decode()) for r in raw_a_b)
    # consent AND required (housing: the inspector must reach the occupant): the
    # minimal identity, never the free text
    assert alert_c["person"]["family_name"] == "Canaryfamille"
    assert alert_c["person"]["address"] == "12 rue du Canari"
    raw_c = [r.decode() for r in hook.raw_bodies if str(named.dysfunction_id).encode() in r]
    assert raw_c and not any(p in r for r in raw_c for p in PRIVATE + ["zoelie@canari"]), \
        "free texts, the referrer and the e-mail never leave"

    # e-mails never carry the identity
    assert all(_clean(smtp.body(k)) for k in smtp.processed)

    async with api(svc) as c:
        r = await c.get(f"/alerts/{alert_c['alert_id']}/identity",
                        headers=authority_headers("mairie_hygiene"))
        assert r.status_code == 200 and r.json()["person"]["phone"] == "0611223344"
        r = await c.get(f"/alerts/{alert_a['alert_id']}/identity",
                        headers=authority_headers("mairie_hygiene"))
        assert r.status_code == 403 and _clean(r.text)
        r = await c.get(f"/alerts/{alert_b['alert_id']}/identity",
                        headers=authority_headers("defenseur_droits"))
        assert r.status_code == 403
        r = await c.get(f"/alerts/{alert_c['alert_id']}/identity",
                        headers=authority_headers("ars"))
        assert r.status_code == 404, "another authority cannot read it"
        mine = await c.get("/alerts/mine", headers=authority_headers("mairie_hygiene"))
        assert mine.status_code == 200 and _clean(mine.text)

    # every event on every topic of the service
    await eventually(lambda: count_is(svc.pool, "SELECT count(*) FROM dispatches WHERE "
                                      "state <> 'delivered'", 0), 60, what="all delivered")
    for topic, expect in [(s.topics.alerts, 9), (s.topics.alerts_outbound, 4),
                          (s.topics.dysfunctions, 3)]:
        recs = await read_topic(s.kafka_bootstrap, topic, expect=expect, timeout=60)
        assert len(recs) == expect, topic
        for r in recs:
            assert _clean(r.value.decode()), f"identity in clear on {topic}"
    # our own tables: the sealed block only, and only with consent
    for table in ("alerts", "dysfunctions", "dispatches", "attempts", "outbox"):
        dump = await svc.pool.fetchval(
            f"SELECT coalesce(string_agg(row_to_json(t)::text, ''), '') FROM {table} t")
        assert _clean(dump), table
    assert await svc.pool.fetchval(
        "SELECT sealed_identity FROM dysfunctions WHERE dysfunction_id=$1",
        no_consent.dysfunction_id) is None, "no consent: the sealed block is not even kept"
    opened = await svc.pool.fetch(
        f"SELECT actor FROM {s.keyvault_schema}.key_events WHERE action='open'")
    assert sorted(r["actor"] for r in opened) == ["alerts", "alerts-api:agent-mairie_hygiene"]

    # logs and spans
    formatter = telemetry.JsonFormatter("alerts")
    assert any(r.getMessage() == "alerts planned" for r in caplog.records), \
        "the service's log lines were captured"
    for rec in caplog.records:
        assert _clean(formatter.format(rec)) and _clean(rec.getMessage())
    finished = spans.get_finished_spans()
    assert finished, "spans were recorded"
    for sp in finished:
        assert _clean(sp.to_json())


async def test_an_erased_person_is_not_named_and_the_identity_api_says_erased(hook, make_alerts):
    svc = await make_alerts()
    vault, key_id, sealed = await _sealed_identity(svc)
    # erasure (crypto-shredding) after the report was written, before it is delivered
    assert await vault.destroy(key_id, actor="test", reason="erasure")
    await configure(svc, "mairie_hygiene", channels=["webhook"], webhook_url=hook.url,
                    webhook_secret=SECRET)
    # consent AND a rule that requires the identity: it would be sent, were the key alive
    await report(svc, [dysfunction("insalubrious_housing", consent=True, sealed=sealed)])
    await eventually(lambda: len(hook.processed) == 1, 60, what="the alert, delivered anyway")
    [body] = hook.processed.values()
    assert "person" not in body and all(_clean(r.decode()) for r in hook.raw_bodies)
    async with api(svc) as c:
        r = await c.get(f"/alerts/{body['alert_id']}/identity",
                        headers=authority_headers("mairie_hygiene"))
    assert r.status_code == 410 and r.json()["detail"] == "identity: erased"

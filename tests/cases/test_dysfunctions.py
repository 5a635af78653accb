"""Dysfunction reports leave without the person's identity (unless they consent), and no
personal data is anywhere it should not be: events, logs, spans, error bodies."""

from __future__ import annotations

import logging

import pytest

from mediation_cases.opening import case_id_for_referral
from mediation_core import telemetry
from tests.conftest import eventually

from .support import MEDIATOR_A, routed_referral

pytestmark = pytest.mark.stack

CANARIES = ["Qzcanaryfam", "Qzcanarygiv", "0699887766", "Canarybis", "1951-11-21",
            "canary-comment-qz"]


def _who() -> dict:
    return {"family_name": "Qzcanaryfam", "given_name": "Qzcanarygiv",
            "birth_date": "1951-11-21", "phone": "06 99 88 77 66",
            "address": "12 rue Canarybis", "email": None}


async def test_dysfunction_reported_without_identity_and_canaries_nowhere(
        cases_svc, client, watch, caplog, spans):
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.DEBUG, logger="mediation_cases")
    caplog.set_level(logging.DEBUG, logger="mediation_core")

    routed = await routed_referral(cases_svc, who=_who(), comment="canary-comment-qz")
    cid = str(case_id_for_referral(routed.referral.referral_id))
    await eventually(lambda: watch.events("CaseOpened"), 60)
    v = (await client.get(f"/cases/{cid}", headers=MEDIATOR_A)).json()["version"]

    base = {"category": "care_refusal", "concerned": "Cabinet dentaire de la Grand-Rue",
            "urgency": "priority", "observed_on": "2026-11-20T09:00:00+01:00"}

    # a description that names the person is refused, and the answer does not repeat it
    for text in ("Mme Qzcanaryfam s'est vu refuser un rendez-vous",
                 "Refus opposé, rappeler au 06.99.88.77.66 pour détails"):
        r = await client.post(f"/cases/{cid}/dysfunctions", headers=MEDIATOR_A,
                              json={**base, "version": v, "description": text})
        assert r.status_code == 422, r.text
        assert r.json()["field"] == "description" and r.json()["error"] == "identity_in_text"
        assert not any(c in r.text for c in CANARIES) and "99.88" not in r.text

    r = await client.post(f"/cases/{cid}/dysfunctions", headers=MEDIATOR_A, json={
        **base, "version": v,
        "description": "Refus de rendez-vous opposé à une patiente bénéficiaire de la CSS."})
    assert r.status_code == 201, r.text
    anonymous_id = r.json()["dysfunction_id"]
    v = r.json()["case"]["version"]
    r = await client.post(f"/cases/{cid}/dysfunctions", headers=MEDIATOR_A, json={
        **base, "version": v, "category": "insalubrious_housing", "urgency": "urgent",
        "concerned": "Bailleur du logement", "person_consents_to_be_named": True,
        "description": "Logement humide, moisissures, chauffage hors service depuis un mois."})
    assert r.status_code == 201, r.text
    named_id = r.json()["dysfunction_id"]

    reported = await eventually(lambda: len(watch.events("DysfunctionReported")) == 2
                                and watch.events("DysfunctionReported"), 60)
    by_id = {e["payload"]["dysfunction_id"]: e for e in reported}
    anon, named = by_id[anonymous_id], by_id[named_id]
    assert anon["_topic"] == cases_svc.settings.topics.dysfunctions
    assert anon["_key"] == anonymous_id and named["_key"] == named_id
    p = anon["payload"]
    assert p["sealed_identity"] is None and p["person_consents_to_be_named"] is False
    assert (p["category"], p["urgency"], p["case_id"], p["structure"], p["commune"]) == (
        "care_refusal", "priority", cid, "cpts-ecm", "Lasalle")
    # with consent: the sealed block travels (alerts opens it only if a rule needs it)
    q = named["payload"]
    assert q["person_consents_to_be_named"] is True
    assert q["sealed_identity"]["key_id"] == routed.referral.sealed.key_id
    assert q["sealed_identity"]["ciphertext"] == routed.referral.sealed.ciphertext

    # the timeline shows them (axis 4); the audit trail shows the identity checks and the
    # disclosure made with consent
    detail = (await client.get(f"/cases/{cid}", headers=MEDIATOR_A)).json()
    dys = [t for t in detail["timeline"] if t["kind"] == "dysfunction_reported"]
    assert [(t["axis"], t["details"]["named"]) for t in dys] == [(4, False), (4, True)]
    purposes = [a["purpose"] for a in detail["personal_data_access"]]
    assert purposes.count("dysfunction_identity_check") == 4
    assert purposes.count("dysfunction_named_disclosure") == 1

    # canaries: in no event on any topic, no log line, no span
    await eventually(lambda: len(watch.events("ReferralStatusChanged")) == 1, 60)
    everything = b"\n".join(watch.raw()).decode()
    assert watch.records and "DysfunctionReported" in everything
    for c in CANARIES:
        assert c not in everything, c
    fmt = telemetry.JsonFormatter("cases")
    assert caplog.records
    logs = "\n".join(fmt.format(rec) for rec in caplog.records)
    finished = spans.get_finished_spans()
    assert "cases dysfunction" in {s.name for s in finished}
    assert any(s.name.startswith("consume ReferralRouted") for s in finished)
    spans_text = "\n".join(s.to_json() for s in finished)
    for c in CANARIES:
        assert c not in logs, c
        assert c not in spans_text, c


async def test_dysfunction_seen_outside_a_case(cases_svc, client, watch):
    r = await client.post("/dysfunctions", headers=MEDIATOR_A, json={
        "category": "interpreting_lack", "concerned": "Urgences de l'hôpital d'Alès",
        "observed_on": "2026-11-18T10:00:00+01:00", "urgency": "normal",
        "description": "Aucun interprétariat proposé aux patients non francophones."})
    assert r.status_code == 201, r.text
    did = r.json()["dysfunction_id"]
    ev = (await eventually(lambda: watch.events("DysfunctionReported"), 60))[0]
    assert ev["_key"] == did and ev["structure"] == "cpts-ecm"
    p = ev["payload"]
    assert (p["case_id"], p["area"], p["sealed_identity"], p["category"]) == (
        None, "vallee-borgne", None, "interpreting_lack")
    r = await client.post("/dysfunctions", headers=MEDIATOR_A, json={
        "category": "no-such-category", "concerned": "x", "description": "short",
        "observed_on": "2026-11-18T10:00:00+01:00"})
    assert r.status_code == 422
    assert {p["field"] for p in r.json()["problems"]} == {"category", "concerned",
                                                           "description"}
    assert "no-such-category" not in r.text

"""Who sees what: a mediator their area, a coordinator their structure, nobody else anything;
and every opening of sealed personal data is in the case's audit trail."""

from __future__ import annotations

import pytest

from mediation_cases.opening import case_id_for_referral
from tests.conftest import eventually

from .support import (
    AREA_B,
    AUTHORITY,
    COORDINATOR,
    MEDIATOR_A,
    MEDIATOR_A2,
    MEDIATOR_B,
    OTHER_STRUCTURE_COORDINATOR,
    OTHER_STRUCTURE_MEDIATOR,
    auth,
    person,
    routed_referral,
)

pytestmark = pytest.mark.stack


async def test_scope_across_areas_and_structures(cases_svc, client, watch):
    routed = await routed_referral(cases_svc, who=person("Fabre", "Odile", "1955-12-12"))
    cid = case_id_for_referral(routed.referral.referral_id)
    await eventually(lambda: watch.events("CaseOpened"), 60)
    case = (await client.get(f"/cases/{cid}", headers=MEDIATOR_A)).json()
    v = case["version"]

    # out of scope: another area, another structure -> 404, as if the case did not exist
    for who in (MEDIATOR_B, OTHER_STRUCTURE_MEDIATOR, OTHER_STRUCTURE_COORDINATOR):
        for method, path, body in (
                ("GET", f"/cases/{cid}", None),
                ("GET", f"/cases/{cid}/identity", None),
                ("POST", f"/cases/{cid}/contacts",
                 {"version": v, "channel": "phone", "outcome": "reached"}),
                ("POST", f"/cases/{cid}/close", {"version": v, "reason": "moved_away"})):
            r = await client.request(method, path, json=body, headers=who)
            assert r.status_code == 404, (who, path, r.text)
            assert r.json()["error"] == "not_found"
        assert (await client.get("/cases", headers=who)).json() == []
    # a coordinator of another structure cannot reassign it either
    r = await client.post(f"/cases/{cid}/reassign", headers=OTHER_STRUCTURE_COORDINATOR,
                          json={"version": v, "mediator_id": "med-x"})
    assert r.status_code == 404

    # roles with no access to cases at all -> 403; no or bad token -> 401
    r = await client.get(f"/cases/{cid}", headers=AUTHORITY)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert (await client.get("/cases", headers=auth("source_system", "msp"))).status_code == 403
    assert (await client.get(f"/cases/{cid}")).status_code == 401
    bad = {"Authorization": MEDIATOR_A["Authorization"][:-4] + "0000"}
    assert (await client.get(f"/cases/{cid}", headers=bad)).status_code == 401

    # a mediator cannot open a case in another area
    r = await client.post("/cases", headers=MEDIATOR_A, json={
        "origin": "outreach", "channel": "partner_place", "area": AREA_B,
        "identity": {"family_name": "X", "given_name": "Y", "birth_date": "2000-01-01"},
        "motives": [{"code": "other"}]})
    assert r.status_code == 403 and r.json()["field"] == "area"

    # in scope: both mediators of the area and the coordinator of the structure
    for who in (MEDIATOR_A, MEDIATOR_A2, COORDINATOR):
        assert (await client.get(f"/cases/{cid}", headers=who)).status_code == 200
    assert (await client.get(f"/cases/{cid}/identity", headers=COORDINATOR)).status_code == 200
    # after the mediator of B is not allowed anything, nothing changed on the case
    after = (await client.get(f"/cases/{cid}", headers=MEDIATOR_A)).json()
    assert after["version"] == v and after["contact_attempts"] == 0


async def test_every_read_of_personal_data_is_in_the_audit_trail(cases_svc, client, watch):
    who = person("Lambert", "Nadia", "1988-08-08", phone="0677001122")
    routed = await routed_referral(cases_svc, who=who, comment="Vit dans un squat")
    cid = case_id_for_referral(routed.referral.referral_id)
    await eventually(lambda: watch.events("CaseOpened"), 60)

    detail = (await client.get(f"/cases/{cid}", headers=MEDIATOR_A)).json()
    assert detail["personal_data_access"] == []
    assert "Lambert" not in str(detail) and "0677001122" not in str(detail)

    r = await client.get(f"/cases/{cid}/identity", headers=MEDIATOR_A)
    assert r.status_code == 200
    assert r.json()["identity"]["person"]["family_name"] == "Lambert"
    assert r.json()["identity"]["comment"] == "Vit dans un squat"
    r = await client.get(f"/cases/{cid}/identity", headers=COORDINATOR)
    assert r.status_code == 200
    # refused reads open nothing and are not reads
    assert (await client.get(f"/cases/{cid}/identity", headers=MEDIATOR_B)).status_code == 404

    trail = (await client.get(f"/cases/{cid}", headers=MEDIATOR_A)).json()[
        "personal_data_access"]
    assert [(a["actor"], a["role"], a["purpose"]) for a in trail] == [
        ("med-a", "mediator", "case_identity_read"),
        ("coord-1", "coordinator", "case_identity_read")]
    assert all(a["fields"] for a in trail)
    # the key vault keeps its own record of each opening of this person's key
    key_id = routed.referral.sealed.key_id
    opens = await cases_svc.pool.fetch(
        f"SELECT actor, reason FROM {cases_svc.settings.keyvault_schema}.key_events "
        "WHERE key_id = $1 AND action = 'open' ORDER BY id", key_id)
    assert [(o["actor"], o["reason"]) for o in opens] == [
        ("cases:med-a", "case_identity_read"), ("cases:coord-1", "case_identity_read")]

    # erasure (the person's key destroyed): the identity is gone, said as such (410)
    await cases_svc.deps.keyvault.destroy(key_id, actor="test", reason="erasure request")
    r = await client.get(f"/cases/{cid}/identity", headers=MEDIATOR_A)
    assert r.status_code == 410 and r.json()["error"] == "personal_data_erased"
    trail = (await client.get(f"/cases/{cid}", headers=MEDIATOR_A)).json()[
        "personal_data_access"]
    assert len(trail) == 3  # the attempt is recorded too

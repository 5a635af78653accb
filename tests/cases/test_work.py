"""The mediator's work over HTTP: contacts, interviews, actions by HAS axis, autonomy,
closure and reopening, reassignment, and concurrent edits."""

from __future__ import annotations

import asyncio

import pytest

from tests.conftest import eventually

from .support import AREA_B, COORDINATOR, MEDIATOR_A, MEDIATOR_A2, MEDIATOR_B, person

pytestmark = pytest.mark.stack


async def open_api_case(client, who=None, headers=MEDIATOR_A, **kw) -> dict:
    body = {"origin": "permanence", "channel": "permanence",
            "identity": who or person(),
            "motives": [{"code": "care_renunciation"}], **kw}
    body["identity"] = {k: v for k, v in body["identity"].items() if v is not None}
    r = await client.post("/cases", json=body, headers=headers)
    assert r.status_code == 201, r.text
    return r.json()


async def post(client, path: str, body: dict, headers=MEDIATOR_A, expect: int = 200) -> dict:
    r = await client.post(path, json=body, headers=headers)
    assert r.status_code == expect, r.text
    return r.json()


async def test_every_action_type_is_recorded_and_visible_in_the_timeline(
        cases_svc, client, watch):
    case = await open_api_case(client)
    cid, v = case["case_id"], case["version"]
    assert case["first_contact_at"] is not None and case["origin"] == "permanence"

    actions = [
        {"kind": "information", "topic": "rights", "outcome": "given"},
        {"kind": "orientation", "target": "gp", "outcome": "accepted", "lasting_care": True},
        {"kind": "rights_procedure", "right": "css", "body": "cpam", "status": "filed"},
        {"kind": "appointment", "target": "dentist", "outcome": "booked",
         "appointment_on": "2026-12-02"},
        {"kind": "accompaniment", "target": "hospital", "outcome": "done"},
        {"kind": "interpreting", "language": "ar", "mode": "professional_phone",
         "outcome": "done"},
        {"kind": "other", "label": "digital_help", "axis": 1},
    ]
    v = (await post(client, f"/cases/{cid}/contacts",
                    {"version": v, "channel": "phone", "outcome": "no_answer"}))["case"]["version"]
    res = await post(client, f"/cases/{cid}/interviews",
                     {"version": v, "channel": "home_visit", "duration_minutes": 40,
                      "note": "Vit seule, difficultés avec les démarches en ligne."})
    v = res["case"]["version"]
    note_entry = res["entry_id"]
    v = (await post(client, f"/cases/{cid}/autonomy",
                    {"version": v, "phase": "T0", "score": 3,
                     "dimensions": {"procedures_alone": 2}}))["case"]["version"]
    for a in actions:
        v = (await post(client, f"/cases/{cid}/actions", {"version": v, **a}))["case"]["version"]
    v = (await post(client, f"/cases/{cid}/autonomy",
                    {"version": v, "phase": "T1", "score": 7}))["case"]["version"]

    detail = (await client.get(f"/cases/{cid}", headers=MEDIATOR_A)).json()
    kinds = [t["kind"] for t in detail["timeline"]]
    for k in ["case_opened", "first_contact", "contact_attempt", "interview",
              "autonomy_assessment", "information", "orientation", "rights_procedure",
              "appointment", "accompaniment", "interpreting", "other"]:
        assert k in kinds, k
    by_kind = {t["kind"]: t for t in detail["timeline"]}
    assert by_kind["rights_procedure"]["details"] == {"right": "css", "body": "cpam",
                                                      "status": "filed"}
    assert by_kind["rights_procedure"]["axis"] == 2
    assert by_kind["contact_attempt"]["axis"] == 1
    assert by_kind["other"]["axis"] == 1
    assert by_kind["interview"]["has_note"] is True
    assert "Vit seule" not in str(detail)          # the note stays sealed in the timeline
    assert (detail["autonomy_t0"], detail["autonomy_t1"]) == (3, 7)
    assert detail["version"] == v

    recorded = await eventually(lambda: len(watch.events("ActionRecorded")) == 11
                                and watch.events("ActionRecorded"), 60, what="11 actions")
    kinds_ev = sorted(e["payload"]["kind"] for e in recorded)
    assert kinds_ev == sorted(["contact_attempt", "interview", "autonomy_assessment",
                               "autonomy_assessment", "information", "orientation",
                               "rights_procedure", "appointment", "accompaniment",
                               "interpreting", "other"])
    rp = next(e["payload"] for e in recorded if e["payload"]["kind"] == "rights_procedure")
    assert (rp["right"], rp["body"], rp["status"], rp["axis"]) == ("css", "cpam", "filed", 2)
    orient = next(e["payload"] for e in recorded if e["payload"]["kind"] == "orientation")
    assert orient["lasting_care"] is True and orient["target"] == "gp"
    assert all(e["_key"] == cid for e in recorded)
    assert "Vit seule" not in str(watch.raw())

    # the note opens through the audited endpoint
    r = await client.get(f"/cases/{cid}/timeline/{note_entry}/note", headers=MEDIATOR_A)
    assert r.status_code == 200 and r.json()["note"].startswith("Vit seule")
    detail = (await client.get(f"/cases/{cid}", headers=MEDIATOR_A)).json()
    assert [(a["actor"], a["purpose"]) for a in detail["personal_data_access"]] == [
        ("med-a", "case_note_read")]

    # an action of an unknown kind names the field and the accepted values, without echo
    r = await client.post(f"/cases/{cid}/actions", headers=MEDIATOR_A,
                          json={"version": v, "kind": "telepathy-xyz"})
    assert r.status_code == 422
    body = r.json()
    assert body["error"] == "validation_failed" and body["problems"][0]["field"] == "kind"
    assert "telepathy-xyz" not in r.text
    r = await client.post(f"/cases/{cid}/actions", headers=MEDIATOR_A,
                          json={"version": v, "kind": "rights_procedure", "right": "css",
                                "body": "cpam", "status": "maybe-SECRET"})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "rights_procedure.status"
    assert "maybe-SECRET" not in r.text


async def test_closure_reopening_and_their_rules(cases_svc, client, watch):
    case = await open_api_case(client, who=person("Roux", "Anne", "1980-05-05"))
    cid, v = case["case_id"], case["version"]

    # unreachable needs N (3) recorded attempts: the opening meeting counts as one
    r = await client.post(f"/cases/{cid}/close", headers=MEDIATOR_A,
                          json={"version": v, "reason": "unreachable"})
    assert r.status_code == 422 and r.json()["field"] == "reason"
    assert r.json()["error"] == "not_enough_attempts"
    for _ in range(2):
        v = (await post(client, f"/cases/{cid}/contacts",
                        {"version": v, "channel": "phone", "outcome": "no_answer"}))["case"][
            "version"]

    res = await post(client, f"/cases/{cid}/close",
                     {"version": v, "reason": "relay_in_place", "autonomy_t1": 8})
    assert res["case"]["status"] == "closed" and res["case"]["closure_reason"] == "relay_in_place"
    v = res["case"]["version"]
    closed = await eventually(lambda: watch.events("CaseClosed"), 60)
    assert closed[0]["payload"]["reason"] == "relay_in_place"
    assert closed[0]["payload"]["reason_kind"] == "has"

    # closing again, or working on a closed case: 409 with the reason
    r = await client.post(f"/cases/{cid}/close", headers=MEDIATOR_A,
                          json={"version": v, "reason": "autonomous"})
    assert r.status_code == 409 and r.json()["error"] == "case_not_open"
    r = await client.post(f"/cases/{cid}/actions", headers=MEDIATOR_A,
                          json={"version": v, "kind": "information", "topic": "rights"})
    assert r.status_code == 409 and r.json()["field"] == "status"
    assert len((await client.get("/cases", headers=MEDIATOR_A)).json()) == 0
    assert len((await client.get("/cases?status=closed", headers=MEDIATOR_A)).json()) == 1

    res = await post(client, f"/cases/{cid}/reopen", {"version": v, "reason": "new_need"})
    assert res["case"]["status"] == "open" and res["case"]["closed_at"] is None
    reopened = await eventually(lambda: watch.events("CaseReopened"), 60)
    assert reopened[0]["_key"] == cid
    r = await client.post(f"/cases/{cid}/reopen", headers=MEDIATOR_A,
                          json={"version": res["case"]["version"]})
    assert r.status_code == 409 and r.json()["error"] == "case_not_closed"

    # the same person met again while the case is open: no second case
    r = await client.post("/cases", headers=MEDIATOR_A, json={
        "origin": "outreach", "channel": "partner_place",
        "identity": {k: v for k, v in person("Roux", "Anne", "1980-05-05").items() if v},
        "motives": [{"code": "vaccination"}]})
    assert r.status_code == 409
    assert r.json()["error"] == "person_has_open_case" and r.json()["case_id"] == cid
    assert "Roux" not in r.text


async def test_reassignment_by_the_coordinator(cases_svc, client, watch):
    case = await open_api_case(client, who=person("Garcia", "Rosa", "1975-09-09"))
    cid, v = case["case_id"], case["version"]
    body = {"version": v, "mediator_id": "med-b", "area": AREA_B, "reason": "absence"}
    r = await client.post(f"/cases/{cid}/reassign", headers=MEDIATOR_A, json=body)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"

    res = await post(client, f"/cases/{cid}/reassign", body, headers=COORDINATOR)
    assert (res["case"]["mediator_id"], res["case"]["area"]) == ("med-b", AREA_B)
    ev = (await eventually(lambda: watch.events("CaseReassigned"), 60))[0]["payload"]
    assert ev["from_mediator_id"] == "med-a" and ev["case"]["mediator_id"] == "med-b"
    assert ev["reason"] == "absence"
    # the case moved to area B: med-b sees it, med-a no longer does
    assert (await client.get(f"/cases/{cid}", headers=MEDIATOR_A)).status_code == 404
    mine = (await client.get("/cases", headers=MEDIATOR_B)).json()
    assert [c["case_id"] for c in mine] == [cid]
    detail = (await client.get(f"/cases/{cid}", headers=MEDIATOR_B)).json()
    assert detail["timeline"][-1]["kind"] == "reassigned"
    assert detail["timeline"][-1]["details"]["to_mediator_id"] == "med-b"


async def test_concurrent_edits_do_not_overwrite_each_other(cases_svc, client):
    case = await open_api_case(client, who=person("Lefebvre", "Paul", "1966-06-06"))
    cid, v = case["case_id"], case["version"]

    # no version at all
    r = await client.post(f"/cases/{cid}/contacts", headers=MEDIATOR_A,
                          json={"channel": "phone", "outcome": "no_answer"})
    assert r.status_code == 428 and r.json()["field"] == "version"

    # two mediators of the area act on the same version at the same time: one wins
    results = await asyncio.gather(
        client.post(f"/cases/{cid}/actions", headers=MEDIATOR_A,
                    json={"version": v, "kind": "information", "topic": "rights"}),
        client.post(f"/cases/{cid}/actions", headers=MEDIATOR_A2,
                    json={"version": v, "kind": "orientation", "target": "pmi"}))
    codes = sorted(r.status_code for r in results)
    assert codes == [200, 409]
    loser = next(r for r in results if r.status_code == 409).json()
    assert loser["error"] == "stale_version" and loser["field"] == "version"
    assert loser["current_version"] == v + 1
    detail = (await client.get(f"/cases/{cid}", headers=MEDIATOR_A))
    assert detail.headers["etag"] == f'"{v + 1}"'
    assert sum(t["kind"] in ("information", "orientation")
               for t in detail.json()["timeline"]) == 1

    # the If-Match header works as well as the field
    r = await client.post(f"/cases/{cid}/actions",
                          headers={**MEDIATOR_A, "If-Match": f'"{v + 1}"'},
                          json={"kind": "information", "topic": "prevention"})
    assert r.status_code == 200 and r.headers["etag"] == f'"{v + 2}"'
    r = await client.post(f"/cases/{cid}/actions", headers={**MEDIATOR_A, "If-Match": "abc"},
                          json={"kind": "information", "topic": "prevention"})
    assert r.status_code == 400 and r.json()["field"] == "If-Match"


async def test_implausible_dates_are_refused_with_the_field(cases_svc, client):
    case = await open_api_case(client, who=person("Dates", "Test", "1990-02-02"))
    cid, v = case["case_id"], case["version"]
    r = await client.post(f"/cases/{cid}/contacts", headers=MEDIATOR_A, json={
        "version": v, "channel": "phone", "outcome": "reached",
        "at": "2027-06-01T10:00:00+02:00"})
    assert r.status_code == 422 and r.json()["field"] == "at"
    assert r.json()["error"] == "in_the_future" and "2027" not in r.text
    r = await client.post(f"/cases/{cid}/contacts", headers=MEDIATOR_A, json={
        "version": v, "channel": "phone", "outcome": "reached", "at": "2026-11-20T10:00:00"})
    assert r.status_code == 422
    assert r.json()["problems"][0] == {"field": "at", "code": "timezone_aware",
                                       "message": "Input should have timezone info"}
    r = await client.post("/cases", headers=MEDIATOR_A, json={
        "origin": "outreach", "channel": "partner_place", "motives": [{"code": "find_gp"}],
        "identity": {"family_name": "Futur", "given_name": "Né", "birth_date": "2999-01-01"}})
    assert r.status_code == 422
    assert r.json()["problems"][0]["field"] == "identity.birth_date"
    assert "2999" not in r.text and "Futur" not in r.text
    # nothing was changed by the refused requests
    assert (await client.get(f"/cases/{cid}", headers=MEDIATOR_A)).json()["version"] == v

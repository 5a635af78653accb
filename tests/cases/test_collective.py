"""Collective work: counts and themes, no identities, an event for reporting."""

from __future__ import annotations

import pytest

from tests.conftest import eventually

from .support import AREA_A, COORDINATOR, MEDIATOR_A, MEDIATOR_B, OTHER_STRUCTURE_COORDINATOR

pytestmark = pytest.mark.stack


async def test_collective_actions_are_recorded_with_counts_only(cases_svc, client, watch):
    body = {"kind": "screening_action", "theme": "Octobre rose : dépistage du cancer du sein",
            "held_on": "2026-10-14T14:00:00+02:00", "place": "Salle des fêtes de Lasalle",
            "partners": ["CPAM du Gard", "CRCDC Occitanie"],
            "attendance": {"participants": 23, "professionals": 4, "new_people": 9}}
    r = await client.post("/collective-actions", headers=MEDIATOR_A, json=body)
    assert r.status_code == 201, r.text
    out = r.json()
    assert (out["structure"], out["area"], out["axis"], out["recorded_by"]) == (
        "cpts-ecm", AREA_A, 3, "med-a")
    r = await client.post("/collective-actions", headers=COORDINATOR, json={
        "kind": "awareness_session", "theme": "Accueil des bénéficiaires de l'AME",
        "held_on": "2026-11-05T12:30:00+01:00", "partners": ["MSP de Sauve"],
        "attendance": {"participants": 0, "professionals": 14}})
    assert r.status_code == 201
    partner_meeting = r.json()

    events = await eventually(lambda: len(watch.events("CollectiveActionRecorded")) == 2
                              and watch.events("CollectiveActionRecorded"), 60)
    ev = next(e for e in events if e["payload"]["kind"] == "screening_action")
    assert ev["_key"] == out["collective_action_id"]
    assert ev["_topic"] == cases_svc.settings.topics.cases
    assert ev["payload"]["attendance"] == {"participants": 23, "professionals": 4,
                                           "new_people": 9}
    assert ev["payload"]["partners"] == ["CPAM du Gard", "CRCDC Occitanie"]
    assert ev["structure"] == "cpts-ecm"

    # scope: the coordinator sees both, mediator A its own and structure-wide ones,
    # mediator B only the structure-wide one, another structure nothing
    ids = lambda r: sorted(x["collective_action_id"] for x in r.json())  # noqa: E731
    assert len((await client.get("/collective-actions", headers=COORDINATOR)).json()) == 2
    assert len((await client.get("/collective-actions", headers=MEDIATOR_A)).json()) == 2
    assert ids(await client.get("/collective-actions", headers=MEDIATOR_B)) == [
        partner_meeting["collective_action_id"]]
    assert (await client.get("/collective-actions",
                             headers=OTHER_STRUCTURE_COORDINATOR)).json() == []

    # counts only: a negative count, or a list of attendees, is refused with the field
    r = await client.post("/collective-actions", headers=MEDIATOR_A, json={
        **body, "attendance": {"participants": -1}})
    assert r.status_code == 422
    assert r.json()["problems"][0]["field"] == "attendance.participants"
    r = await client.post("/collective-actions", headers=MEDIATOR_A, json={
        **body, "attendees": ["Jeanne Secretname"]})
    assert r.status_code == 422 and r.json()["problems"][0]["field"] == "attendees"
    assert "Secretname" not in r.text

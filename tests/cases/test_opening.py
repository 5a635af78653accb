"""Routed referrals become cases: one case per person in a structure, corrections update it."""

from __future__ import annotations

import uuid

import pytest

from mediation_cases.opening import case_id_for_referral
from mediation_cases.service import build
from tests.conftest import eventually

from .conftest import TEST_CONFIG
from .support import (
    AREA_A,
    AREA_B,
    COORDINATOR,
    MEDIATOR_A,
    OTHER_STRUCTURE_COORDINATOR,
    as_one_batch,
    person,
    publish_routing,
    routed_referral,
    unroutable,
)

pytestmark = pytest.mark.stack


async def test_routed_referral_opens_a_case_and_a_second_one_for_the_same_person_attaches(
        cases_svc, client, watch):
    who = person("Bernard", "Yvette", "1949-07-01")
    first = await routed_referral(cases_svc, who=who, source_system="msp-lasalle")
    case_id = case_id_for_referral(first.referral.referral_id)

    opened = await eventually(lambda: watch.events("CaseOpened"), 60, what="CaseOpened")
    assert len(opened) == 1
    ev = opened[0]
    assert ev["_key"] == str(case_id) and ev["_topic"] == cases_svc.settings.topics.cases
    assert ev["payload"]["case"] == {"case_id": str(case_id), "structure": "cpts-ecm",
                                     "area": AREA_A, "mediator_id": "med-a"}
    assert ev["payload"]["attached_to_existing"] is False
    assert ev["payload"]["origin"] == "referral"
    assert ev["correlation_id"] == str(first.referral.referral_id)

    r = await client.get(f"/cases/{case_id}", headers=MEDIATOR_A)
    assert r.status_code == 200, r.text
    case = r.json()
    assert case["status"] == "open" and case["waiting_first_contact"] is True
    assert case["commune"] == "Lasalle" and case["referral_count"] == 1
    # first contact due 2 working days after Monday 23 Nov (Paris): end of Wednesday 25
    assert case["first_contact_due"].startswith("2026-11-25T23:00:00")
    assert [t["kind"] for t in case["timeline"]] == ["case_opened"]

    # a second referral, from another professional, for the same person (same blind index)
    second = await routed_referral(cases_svc, who=who, source_system="pharmacie-sauve",
                                   motives=[{"code": "find_gp"}], urgency="priority")
    await eventually(lambda: len(watch.events("CaseOpened")) == 2, 60, what="attach event")
    attached = watch.events("CaseOpened")[1]
    assert attached["payload"]["attached_to_existing"] is True
    assert attached["payload"]["case"]["case_id"] == str(case_id)
    assert attached["payload"]["referral_id"] == str(second.referral.referral_id)
    assert await cases_svc.pool.fetchval("SELECT count(*) FROM cases") == 1

    case = (await client.get(f"/cases/{case_id}", headers=MEDIATOR_A)).json()
    assert case["referral_count"] == 2 and case["version"] == 2
    assert {m["code"] for m in case["motives"]} == {"access_to_rights", "find_gp"}
    assert case["urgency"] == "priority"
    assert [t["kind"] for t in case["timeline"]] == ["case_opened", "referral_attached"]

    # each referrer is told 'received', keyed by its own source system
    answers = await eventually(lambda: len(watch.events("ReferralStatusChanged")) == 2
                               and watch.events("ReferralStatusChanged"), 60)
    assert sorted((a["_key"], a["payload"]["status"]) for a in answers) == [
        ("msp-lasalle", "received"), ("pharmacie-sauve", "received")]

    # an unroutable referral is the coordinator's triage, not a case; nothing dead-lettered
    await publish_routing(cases_svc, unroutable(await routed_referral(
        cases_svc, who=person("Autre", "Personne"), publish=False)))
    consumer = cases_svc.consumers[0]
    await eventually(lambda: consumer.stats.ignored == 1, 60, what="unroutable ignored")
    assert consumer.stats.dead_lettered == 0
    assert await cases_svc.pool.fetchval("SELECT count(*) FROM cases") == 1

    # another person: another case, in the caseload of the coordinator
    await routed_referral(cases_svc, who=person("Petit", "Marc", "1990-01-01"), area=AREA_B,
                          mediator="med-b")
    await eventually(lambda: len(watch.events("CaseOpened")) == 3, 60)
    load = (await client.get("/cases", headers=COORDINATOR)).json()
    assert len(load) == 2
    mine = (await client.get("/cases", headers=MEDIATOR_A)).json()
    assert [c["case_id"] for c in mine] == [str(case_id)]

    # the same person referred in another structure: that structure's own case
    await routed_referral(cases_svc, who=who, structure="qpv-marseille", area=AREA_A,
                          mediator="med-x")
    await eventually(lambda: len(watch.events("CaseOpened")) == 4, 60)
    assert watch.events("CaseOpened")[3]["payload"]["attached_to_existing"] is False
    theirs = (await client.get("/cases", headers=OTHER_STRUCTURE_COORDINATOR)).json()
    assert len(theirs) == 1 and theirs[0]["structure"] == "qpv-marseille"
    assert len((await client.get("/cases", headers=COORDINATOR)).json()) == 2


async def test_corrected_or_rerouted_referral_updates_the_case_instead_of_opening_another(
        cases_svc, client, watch):
    who = person("Moreau", "Jean", "1970-02-02")
    rid = uuid.uuid4()
    first = await routed_referral(cases_svc, who=who, referral_id=rid)
    case_id = case_id_for_referral(rid)
    await eventually(lambda: watch.events("CaseOpened"), 60)

    # the same event delivered again: no effect (inbox)
    await publish_routing(cases_svc, first)
    # revision 2, routed to another area and mediator (the commune was corrected)
    corrected = {**who, "phone": "0700000001"}
    await routed_referral(cases_svc, who=corrected, referral_id=rid, revision=2, area=AREA_B,
                          mediator="med-b", urgency="urgent", consent=False)
    await eventually(lambda: watch.events("CaseReferralUpdated"), 60, what="update event")
    reassigned = await eventually(lambda: watch.events("CaseReassigned"), 60)
    assert reassigned[0]["payload"]["from_mediator_id"] == "med-a"
    assert reassigned[0]["payload"]["case"]["mediator_id"] == "med-b"
    assert reassigned[0]["payload"]["reason"] == "rerouted"
    upd = watch.events("CaseReferralUpdated")[0]["payload"]
    assert upd["revision"] == 2 and upd["rerouted"] is True

    # a late copy of revision 1 changes nothing
    await routed_referral(cases_svc, who=who, referral_id=rid, revision=1)
    consumer = cases_svc.consumers[0]
    await eventually(lambda: consumer.stats.processed >= 3, 60)

    assert await cases_svc.pool.fetchval("SELECT count(*) FROM cases") == 1
    assert len(watch.events("CaseOpened")) == 1
    # the case left area A: its former mediator no longer sees it, the coordinator does
    assert (await client.get(f"/cases/{case_id}", headers=MEDIATOR_A)).status_code == 404
    case = (await client.get(f"/cases/{case_id}", headers=COORDINATOR)).json()
    assert (case["area"], case["mediator_id"], case["urgency"]) == (AREA_B, "med-b", "urgent")
    assert case["referrals"][0]["revision"] == 2
    assert case["referrals"][0]["consent_share_with_referrer"] is False
    # urgent now: first contact due within 1 working day (end of Tuesday 24 Nov)
    assert case["first_contact_due"].startswith("2026-11-24T23:00:00")
    assert consumer.stats.dead_lettered == 0
    # the correction reached the person's data the mediator reads
    ident = (await client.get(f"/cases/{case_id}/identity", headers=COORDINATOR)).json()
    assert ident["identity"]["person"]["phone"] == "0700000001"
    updated = [t for t in case["timeline"] if t["kind"] == "referral_updated"]
    assert updated[0]["details"]["identity"] == "updated"

    # replaying the whole topic (a new consumer group of the service) changes nothing
    s = cases_svc.settings
    replay = build(s.with_(group_id=s.group_id + "-replay"), clock=cases_svc.deps.clock,
                   config=TEST_CONFIG)
    await replay.start(http=False)
    try:
        await eventually(lambda: replay.consumers[0].stats.duplicates >= 3, 90, what="replay")
    finally:
        await replay.stop()
    assert replay.consumers[0].stats.processed == 0
    assert await cases_svc.pool.fetchval("SELECT count(*) FROM cases") == 1
    assert await cases_svc.pool.fetchval("SELECT count(*) FROM outbox") == 0


async def test_after_closure_a_new_referral_opens_a_new_case(cases_svc, client, watch):
    who = person("Vidal", "Rose", "1983-03-03")
    first = await routed_referral(cases_svc, who=who)
    first_case = str(case_id_for_referral(first.referral.referral_id))
    await eventually(lambda: watch.events("CaseOpened"), 60)

    # an interview is the first contact when none was recorded
    r = await client.post(f"/cases/{first_case}/interviews", headers=MEDIATOR_A,
                          json={"version": 1, "channel": "partner_place"})
    assert r.status_code == 200 and r.json()["case"]["first_contact_at"] is not None
    made = await eventually(lambda: watch.events("FirstContactMade"), 60)
    assert (made[0]["payload"]["channel"], made[0]["payload"]["attempts"]) == (
        "partner_place", 1)
    r = await client.post(f"/cases/{first_case}/close", headers=MEDIATOR_A,
                          json={"version": r.json()["case"]["version"], "reason": "moved_away"})
    assert r.status_code == 200

    second = await routed_referral(cases_svc, who=who, source_system="cms-sauve")
    opened = await eventually(lambda: len(watch.events("CaseOpened")) == 2
                              and watch.events("CaseOpened"), 60)
    assert opened[1]["payload"]["attached_to_existing"] is False
    assert opened[1]["payload"]["case"]["case_id"] == str(
        case_id_for_referral(second.referral.referral_id)) != first_case
    # reopening the old one now would give the person two open cases: refused
    v = (await client.get(f"/cases/{first_case}", headers=MEDIATOR_A)).json()["version"]
    r = await client.post(f"/cases/{first_case}/reopen", headers=MEDIATOR_A,
                          json={"version": v})
    assert r.status_code == 409 and r.json()["error"] == "person_has_open_case"


async def test_a_batch_of_routed_referrals_opens_attaches_and_updates_as_one_by_one(
        settings_for, clock):
    """Everything on the topic before the consumer starts (one partition), so one batch
    holds openings for new people (the deferred path), two referrals for one person and a
    referral with its correction (the one-by-one path inside the batch), an attachment to a
    case opened earlier, and a correction of that earlier referral."""
    from .conftest import TEST_CONFIG as config

    settings = settings_for("cases", partitions=1)
    svc = build(settings, clock=clock, config=config)
    await svc.start(http=False)
    await svc.wait_ready(timeout=90)
    p0 = person("Zero", "Ana", "1940-01-01")
    first = await routed_referral(svc, who=p0)
    await eventually(lambda: svc.consumers[0].stats.processed == 1, 60, what="first case")
    people = [person(f"Batch{i}", "Eve", f"195{i}-02-0{i + 1}") for i in range(6)]
    payloads = [
        await routed_referral(svc, who=p0, publish=False),                  # attaches to case 0
        await routed_referral(svc, who=people[1], publish=False),           # P1 opens...
        await routed_referral(svc, who=people[1], publish=False),           # ...and attaches
        *[await routed_referral(svc, who=people[i], publish=False) for i in (2, 3, 4)],
    ]
    r5 = await routed_referral(svc, who=people[5], publish=False)
    r5_fix = await routed_referral(svc, who=people[5], referral_id=r5.referral.referral_id,
                                   revision=2, urgency="urgent", publish=False)
    first_fix = await routed_referral(svc, who=p0, referral_id=first.referral.referral_id,
                                      revision=2, urgency="priority", publish=False)
    svc = await as_one_batch(svc, [*payloads, r5, r5_fix, first_fix], clock=clock, config=config)
    try:
        c = svc.consumers[0]
        await eventually(lambda: c.stats.processed == 9, 60, what="the batch")
        assert c.stats.dead_lettered == 0
        # the batch went the prepared way: no write broke (which would rerun it one by one)
        assert c.stats.batches == 1 and c.stats.isolated == 0
        pool = svc.pool
        assert await pool.fetchval("SELECT count(*) FROM cases") == 6
        per_person = await pool.fetch(
            "SELECT c.case_id, count(r.*) AS n FROM cases c JOIN case_referrals r USING (case_id) "
            "GROUP BY c.case_id ORDER BY n DESC, c.case_id")
        assert sorted(r["n"] for r in per_person) == [1, 1, 1, 1, 2, 2]
        revs = dict(await pool.fetch("SELECT referral_id, revision FROM case_referrals "
                                     "WHERE referral_id = ANY($1::uuid[])",
                                     [r5.referral.referral_id, first.referral.referral_id]))
        assert revs == {r5.referral.referral_id: 2, first.referral.referral_id: 2}
        urgencies = dict(await pool.fetch("SELECT case_id, urgency FROM cases WHERE case_id = "
                                          "ANY($1::uuid[])", [
                                              case_id_for_referral(r5.referral.referral_id),
                                              case_id_for_referral(first.referral.referral_id)]))
        assert urgencies == {case_id_for_referral(r5.referral.referral_id): "urgent",
                             case_id_for_referral(first.referral.referral_id): "priority"}
        # every opened case has its opening timeline entry, once
        assert await pool.fetchval(
            "SELECT count(*) FROM case_timeline WHERE kind = 'case_opened'") == 6
    finally:
        await svc.stop()

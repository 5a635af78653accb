"""First-contact deadlines in working days (Europe/Paris, French public holidays), driven by
a controllable clock: a reminder to the mediator, then an escalation to the coordinator; and
inactive cases flagged."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from datetime import UTC, datetime

import pytest

from mediation_cases import cli, deadlines
from mediation_cases.deadlines import scan_once
from mediation_cases.opening import case_id_for_referral
from mediation_cases.service import build
from mediation_core.settings import from_env
from tests.conftest import eventually

from .conftest import TEST_CONFIG
from .support import COORDINATOR, MEDIATOR_A, MEDIATOR_B, person, routed_referral

pytestmark = pytest.mark.stack


def utc(*a) -> datetime:
    return datetime(*a, tzinfo=UTC)


async def test_reminder_then_escalation_then_inactivity(cases_svc, client, watch, clock):
    # Monday 9 November 2026, 09:00 in Paris; Wednesday 11 November is a public holiday
    clock.set(utc(2026, 11, 9, 8, 0))
    waiting = await routed_referral(cases_svc, who=person("Blanc", "Hugo", "1944-04-04"))
    contacted = await routed_referral(cases_svc, who=person("Noir", "Ines", "1999-09-09"))
    a = str(case_id_for_referral(waiting.referral.referral_id))
    b = str(case_id_for_referral(contacted.referral.referral_id))
    await eventually(lambda: len(watch.events("CaseOpened")) == 2, 60)

    case_a = (await client.get(f"/cases/{a}", headers=MEDIATOR_A)).json()
    # 2 working days after Monday 9: Tuesday 10, (Wednesday 11 off), Thursday 12 -> end of
    # Thursday in Paris = 23:00 UTC
    assert case_a["first_contact_due"].startswith("2026-11-12T23:00:00")
    vb = (await client.get(f"/cases/{b}", headers=MEDIATOR_A)).json()["version"]
    r = await client.post(f"/cases/{b}/contacts", headers=MEDIATOR_A,
                          json={"version": vb, "channel": "phone", "outcome": "reached"})
    assert r.status_code == 200

    # Thursday 12, 23:30 in Paris: not yet overdue
    clock.set(utc(2026, 11, 12, 22, 30))
    assert (await scan_once(cases_svc.deps))["reminders"] == 0
    assert (await client.get("/cases?overdue=true", headers=MEDIATOR_A)).json() == []

    # Friday 13: the reminder goes to the mediator, for the waiting case only
    clock.set(utc(2026, 11, 13, 8, 0))
    overdue = await eventually(lambda: watch.events("FirstContactOverdue"), 60,
                               what="reminder")
    rem = overdue[0]["payload"]
    assert (rem["level"], rem["notify_role"], rem["notify_id"]) == ("reminder", "mediator",
                                                                    "med-a")
    assert rem["case"]["case_id"] == a and overdue[0]["_key"] == a
    assert rem["due_at"].startswith("2026-11-12T23:00:00") and rem["working_days"] == 2
    load = (await client.get("/cases?overdue=true", headers=MEDIATOR_A)).json()
    assert [c["case_id"] for c in load] == [a]
    load = (await client.get("/cases?waiting_first_contact=true", headers=COORDINATOR)).json()
    assert [c["case_id"] for c in load] == [a]
    notices = (await client.get("/notices", headers=MEDIATOR_A)).json()
    assert [(n["kind"], n["case_id"], n["notify_id"]) for n in notices] == [
        ("first_contact_reminder", a, "med-a")]
    assert (await client.get("/notices", headers=COORDINATOR)).json() == []
    assert (await client.get("/notices", headers=MEDIATOR_B)).json() == []
    summary = (await client.get("/caseload/summary", headers=COORDINATOR)).json()
    assert summary == [{"area": "vallee-borgne", "mediator_id": "med-a", "open": 2,
                        "waiting_first_contact": 1, "overdue": 1, "inactive": 0}]

    # Monday 16, 21:00 in Paris: the escalation (2 more working days) is not due yet
    clock.set(utc(2026, 11, 16, 20, 0))
    assert (await scan_once(cases_svc.deps))["escalations"] == 0
    # Tuesday 17: escalation to the coordinator
    clock.set(utc(2026, 11, 17, 8, 0))
    await eventually(lambda: len(watch.events("FirstContactOverdue")) == 2, 60,
                     what="escalation")
    esc = watch.events("FirstContactOverdue")[1]["payload"]
    assert (esc["level"], esc["notify_role"], esc["notify_id"]) == ("escalation",
                                                                    "coordinator", None)
    assert esc["case"]["case_id"] == a
    escalations = (await client.get("/notices", headers=COORDINATOR)).json()
    assert [(n["kind"], n["case_id"], n["notify_role"]) for n in escalations] == [
        ("first_contact_escalation", a, "coordinator")]
    r = await client.post(f"/notices/{escalations[0]['notice_id']}/ack", headers=MEDIATOR_B)
    assert r.status_code == 404
    r = await client.post(f"/notices/{escalations[0]['notice_id']}/ack", headers=COORDINATOR)
    assert r.status_code == 200 and r.json()["resolved_by"] == "coord-1"
    assert (await client.get("/notices", headers=COORDINATOR)).json() == []
    # once each: further scans send nothing more
    assert await scan_once(cases_svc.deps) == {"reminders": 0, "escalations": 0, "inactive": 0}
    kinds = [t["kind"] for t in (await client.get(f"/cases/{a}", headers=MEDIATOR_A)).json()[
        "timeline"]]
    assert kinds == ["case_opened", "first_contact_overdue_reminder",
                     "first_contact_overdue_escalation"]

    # 31 days later with no activity: both open cases are flagged, once
    clock.set(utc(2026, 12, 10, 9, 0))
    flagged = await eventually(lambda: len(watch.events("CaseInactivityFlagged")) == 2
                               and watch.events("CaseInactivityFlagged"), 60)
    assert sorted(f["_key"] for f in flagged) == sorted([a, b])
    assert len((await client.get("/cases?inactive=true", headers=MEDIATOR_A)).json()) == 2
    # new work on b: it is active again
    vb = (await client.get(f"/cases/{b}", headers=MEDIATOR_A)).json()["version"]
    r = await client.post(f"/cases/{b}/interviews", headers=MEDIATOR_A,
                          json={"version": vb, "channel": "permanence"})
    assert r.status_code == 200 and r.json()["case"]["inactive"] is False
    load = (await client.get("/cases?inactive=true", headers=MEDIATOR_A)).json()
    assert [c["case_id"] for c in load] == [a]
    # the mediator's open notices: a's reminder and inactivity; b's was resolved by the work
    open_notices = (await client.get("/notices", headers=MEDIATOR_A)).json()
    assert sorted((n["kind"], n["case_id"]) for n in open_notices) == sorted([
        ("first_contact_reminder", a), ("inactivity", a)])
    # and a first contact on a resolves its reminder
    va = (await client.get(f"/cases/{a}", headers=MEDIATOR_A)).json()["version"]
    r = await client.post(f"/cases/{a}/contacts", headers=MEDIATOR_A,
                          json={"version": va, "channel": "home_visit", "outcome": "reached"})
    assert r.status_code == 200
    assert (await client.get("/notices", headers=MEDIATOR_A)).json() == []
    resolved = (await client.get("/notices?include_resolved=true",
                                 headers=MEDIATOR_A)).json()
    assert {n["resolved_by"] for n in resolved} == {"system:first_contact", "system:activity"}
    assert len(watch.events("FirstContactOverdue")) == 2


async def test_the_watcher_survives_a_failed_scan_and_ends_when_the_service_stops(caplog):
    """Not started, the service has no database: every scan fails. The watcher logs it and
    waits for the next round (an hour here), and leaves that wait as soon as the service
    says it is stopping, by itself (not cancelled)."""
    caplog.set_level(logging.WARNING, logger="mediation_cases.deadlines")
    svc = build(from_env("cases"), config=dataclasses.replace(TEST_CONFIG, scan_interval=3600))
    task = asyncio.create_task(deadlines.watcher(svc.deps)(svc))
    await eventually(lambda: any(r.getMessage() == "deadline scan failed"
                                 for r in caplog.records), 60, what="a failed scan logged")
    assert not task.done()
    svc.stopping.set()
    await asyncio.wait_for(task, 60)
    assert not task.cancelled() and task.result() is None
    assert [r.getMessage() for r in caplog.records].count("deadline scan failed") == 1


async def test_the_scan_command_works_beside_the_running_service(cases_svc, watch, clock):
    """``mediation cases-scan`` scans with a pool of its own; the running service publishes
    what it wrote to the outbox."""
    clock.set(utc(2026, 1, 5, 8, 0))   # the service lives in January: nothing due for it
    routed = await routed_referral(cases_svc, who=person("Scan", "Ligne", "1962-06-06"))
    cid = str(case_id_for_referral(routed.referral.referral_id))
    await eventually(lambda: watch.events("CaseOpened"), 60)

    counts = await cli.scan(cases_svc.settings, TEST_CONFIG, clock=lambda: utc(2026, 3, 2, 8, 0))
    assert counts == {"reminders": 1, "escalations": 1, "inactive": 1}
    overdue = await eventually(lambda: len(watch.events("FirstContactOverdue")) == 2
                               and watch.events("FirstContactOverdue"), 60)
    assert [(e["_key"], e["payload"]["level"]) for e in overdue] == [
        (cid, "reminder"), (cid, "escalation")]
    flagged = await eventually(lambda: watch.events("CaseInactivityFlagged"), 60)
    assert flagged[0]["_key"] == cid
    # once: the next scan finds nothing left to send
    assert await cli.scan(cases_svc.settings, TEST_CONFIG,
                          clock=lambda: utc(2026, 3, 3, 8, 0)) == {
        "reminders": 0, "escalations": 0, "inactive": 0}

"""Closed-loop feedback to referrers: coarse statuses only, as far as consent allows."""

from __future__ import annotations

import pytest

from mediation_cases.opening import case_id_for_referral
from tests.conftest import eventually

from .support import MEDIATOR_A, person, routed_referral

pytestmark = pytest.mark.stack


async def _do(client, cid: str, path: str, body: dict) -> None:
    v = (await client.get(f"/cases/{cid}", headers=MEDIATOR_A)).json()["version"]
    r = await client.post(f"/cases/{cid}{path}", headers=MEDIATOR_A, json={"version": v, **body})
    assert r.status_code == 200, r.text


async def test_referrer_feedback_respects_consent(cases_svc, client, watch):
    shared = await routed_referral(cases_svc, who=person("Simon", "Eva", "1977-07-07"),
                                   source_system="msp-lasalle", consent=True)
    private = await routed_referral(cases_svc, who=person("Henry", "Leo", "1966-01-01"),
                                    source_system="pharmacie-sauve", consent=False)
    a = str(case_id_for_referral(shared.referral.referral_id))
    b = str(case_id_for_referral(private.referral.referral_id))
    await eventually(lambda: len(watch.events("CaseOpened")) == 2, 60)

    for cid in (a, b):
        await _do(client, cid, "/contacts", {"channel": "phone", "outcome": "reached"})
        await _do(client, cid, "/actions", {"kind": "rights_procedure", "right": "puma",
                                            "body": "cpam", "status": "opened"})
    await _do(client, a, "/close", {"reason": "relay_in_place"})
    await _do(client, b, "/close", {"reason": "need_met_no_wish"})
    await _do(client, a, "/reopen", {"reason": "new_need"})
    await eventually(lambda: len(watch.events("CaseReopened")) == 1, 60)

    def answers(source: str) -> list[tuple]:
        return [(e["payload"]["status"], e["payload"]["outcome"])
                for e in watch.events("ReferralStatusChanged") if e["_key"] == source]

    await eventually(lambda: len(answers("msp-lasalle")) == 4, 60, what="consented feedback")
    assert answers("msp-lasalle") == [("received", None), ("in_progress", None),
                                      ("closed", "completed"), ("in_progress", None)]
    # without consent: that the form arrived, nothing about the person's path
    assert answers("pharmacie-sauve") == [("received", None)]

    # a new referral for someone already followed: received, and in progress (with consent)
    await routed_referral(cases_svc, who=person("Simon", "Eva", "1977-07-07"),
                          source_system="cms-sauve", consent=True)
    await eventually(lambda: len(answers("cms-sauve")) == 2, 60, what="attached feedback")
    assert answers("cms-sauve") == [("received", None), ("in_progress", None)]

    ev = next(e for e in watch.events("ReferralStatusChanged") if e["_key"] == "msp-lasalle")
    assert ev["_topic"] == cases_svc.settings.topics.referrals_answers
    assert set(ev["payload"]) == {"referral_id", "source_system", "source_reference", "status",
                                  "outcome", "changed_at"}
    assert ev["payload"]["source_reference"] == shared.referral.source_reference
    assert ev["correlation_id"] == str(shared.referral.referral_id)
    detail = (await client.get(f"/cases/{b}", headers=MEDIATOR_A)).json()
    assert detail["referrals"][0]["last_feedback"] == "received"

"""A fixed batch of referrals of every kind through the five services, each in its own
process, on the real broker and database: the expected events come out, exactly."""

from __future__ import annotations

import copy
import uuid
from collections import Counter

import httpx
import orjson
import pytest

from mediation_core.auth import issue_token
from mediation_core.demo import envelope_for
from mediation_schemas.envelope import encode
from tests.conftest import eventually
from tests.helpers import produce, read_topic

pytestmark = pytest.mark.stack

CANARY_NAME = "Zoéline"
CANARY_FAMILY = "CANARYDUPONT"


def form(ref: str, commune: str, postcode: str | None, *, family: str, given: str = "Marie",
         birth: str = "1961-04-12", source: str = "msp-lasalle", consent: bool = True,
         motive: dict | None = None) -> dict:
    return {
        "source_system": source, "source_reference": ref,
        "referrer": {"name": "Dr Alice Référente", "profession": "gp",
                     "structure_name": "MSP de Lasalle", "structure_kind": "msp"},
        "person": {"family_name": family, "given_name": given, "birth_date": birth,
                   "address": "3 rue des Écoles", "commune": commune, "postcode": postcode,
                   "phone": "06 12 34 56 78", "consent_contact": consent,
                   "consent_share_with_referrer": True},
        "motives": [motive or {"code": "access_to_rights", "right": "css"}],
        "meeting_modes": ["phone"],
    }


def batch() -> tuple[list[dict], dict]:
    routed = [
        form("r1", "Lasalle", "30460", family="MARTIN"),
        form("r2", "ST JEAN DU GARD", "30270", family="ROUX"),
        form("r3", "Quissac (30260)", None, family="FABRE"),
        form("r4", "sauve", "30610", family="MOREL", motive={"code": "care_interruption"}),
        form("r5", "Saint-Hippolyte-du-Fort", "30170", family=CANARY_FAMILY, given=CANARY_NAME),
    ]
    second_referral = form("p9", "Lasalle", "30460", family="MARTIN", source="pharma-sauve")
    duplicate = copy.deepcopy(routed[0])
    invalid = [form("x1", "Lasalle", "30460", family="BLANC", consent=False),
               form("x2", "Sauve", "30610", family="GIRARD", birth="31/02/1990")]
    outside = [form("o1", "Nîmes", "30000", family="BONNET"),
               form("o2", "Montpellier", "34000", family="MERCIER")]
    forms = [*routed, second_referral, duplicate, *invalid, *outside]
    expected = {"accepted": 8, "rejected": 2, "routed": 6, "unroutable": 2,
                "new_cases": 5, "attached": 1}
    return forms, expected


def _events(records) -> list[dict]:
    return [orjson.loads(r.value) for r in records]


async def test_a_batch_of_every_kind_gives_the_expected_outcomes(system):
    forms, want = batch()
    await produce(system.kafka_bootstrap, system.topics.referrals_received,
                  [(f"{f['source_system']}:{f['source_reference']}".encode(),
                    encode(envelope_for(f))) for f in forms])

    async def counted(topic: str) -> Counter:
        return Counter(e["type"] for e in _events(await read_topic(
            system.kafka_bootstrap, topic, idle=1.5, timeout=20)))

    async def intake_done():
        c = await counted(system.topics.referrals_intake)
        return c if c["ReferralAccepted"] + c["ReferralRejected"] >= want["accepted"] + want["rejected"] else None
    c = await eventually(intake_done, timeout=120, what="intake answered every form")
    assert c["ReferralAccepted"] == want["accepted"] and c["ReferralRejected"] == want["rejected"]

    async def routing_done():
        c = await counted(system.topics.routing_decisions)
        return c if c["ReferralRouted"] + c["ReferralUnroutable"] >= want["accepted"] else None
    c = await eventually(routing_done, timeout=120, what="routing decided every referral")
    assert c["ReferralRouted"] == want["routed"] and c["ReferralUnroutable"] == want["unroutable"]

    async def cases_done():
        evs = [e for e in _events(await read_topic(system.kafka_bootstrap, system.topics.cases,
                                                   idle=1.5, timeout=20))
               if e["type"] == "CaseOpened"]
        return evs if len(evs) >= want["routed"] else None
    opened = await eventually(cases_done, timeout=120, what="a case for every routed referral")
    assert len(opened) == want["routed"]
    attached = [e for e in opened if e["payload"]["attached_to_existing"]]
    assert len(attached) == want["attached"]
    assert len({e["payload"]["case"]["case_id"] for e in opened}) == want["new_cases"]

    # the mediator of the area works the case through the HTTP API
    case = next(e["payload"]["case"] for e in opened if not e["payload"]["attached_to_existing"])
    token = issue_token(sub=case["mediator_id"], role="mediator", structure=case["structure"],
                        area=case["area"])
    async with httpx.AsyncClient(base_url=system.url("cases"),
                                 headers={"Authorization": f"Bearer {token}"}) as http:
        r = await http.get("/cases")
        assert r.status_code == 200
        r = await http.get(f"/cases/{case['case_id']}")
        assert r.status_code == 200, r.text
        version = r.json()["version"]
        r = await http.post(f"/cases/{case['case_id']}/dysfunctions", headers={"If-Match": f'"{version}"'},
                            json={"category": "care_refusal", "urgency": "urgent",
                                  "concerned": "un cabinet dentaire de la commune",
                                  "description": "Refus de rendez-vous opposé aux bénéficiaires de la CSS.",
                                  "observed_on": "2026-11-20T10:00:00+01:00",
                                  "person_consents_to_be_named": False})
        assert r.status_code in (200, 201, 202), r.text

    async def alert_created():
        evs = _events(await read_topic(system.kafka_bootstrap, system.topics.dysfunctions,
                                       idle=1.0, timeout=15))
        return evs or None
    dys = await eventually(alert_created, timeout=60, what="the dysfunction event")
    assert dys[0]["payload"]["category"] == "care_refusal"

    async def alerts_rows():
        n = await system.count("alerts", "alerts")
        return n if n >= 2 else None  # care refusal -> Défenseur des droits + CPAM conciliator
    assert await eventually(alerts_rows, timeout=60, what="alerts for the authorities") == 2

    # no identity in clear on any topic after intake
    for topic in [system.topics.referrals_intake, system.topics.routing_decisions,
                  system.topics.cases, system.topics.dysfunctions, system.topics.alerts,
                  system.topics.referrals_answers]:
        for rec in await read_topic(system.kafka_bootstrap, topic, idle=1.0, timeout=10):
            assert CANARY_FAMILY.encode() not in (rec.value or b"")
            assert CANARY_NAME.encode() not in (rec.value or b"")

    # reporting saw the referrals and the cases
    async def reporting_caught_up():
        n = await system.count("reporting", "cases")
        return n if n >= want["new_cases"] else None
    assert await eventually(reporting_caught_up, timeout=60, what="reporting read models") == want["new_cases"]

    # the coordinator's triage queue holds the referrals from outside the territory
    assert await system.count("routing", "triage") == want["unroutable"]
    # indicator values: referrals received by outcome, motive distribution of the CPTS
    async def reporting_referrals():
        acc = await system.count("reporting", "referrals", "accepted_at IS NOT NULL")
        rej = await system.count("reporting", "referrals", "rejected_at IS NOT NULL")
        return (acc, rej) if acc + rej >= want["accepted"] + want["rejected"] else None
    assert await eventually(reporting_referrals, timeout=60, what="reporting saw every form") == (
        want["accepted"], want["rejected"])
    rows = await system.fetch(
        f"SELECT motif, mentions FROM {system.schema('reporting')}.v_motifs "
        "WHERE type_periode = 'annee' AND niveau = 'structure' AND structure = 'cpts-ecm'")
    mentions = {r["motif"]: r["mentions"] for r in rows}
    assert mentions.get("access_to_rights") == 5 and mentions.get("care_interruption") == 1, mentions
    assert uuid.UUID(case["case_id"])

"""Intake on the real broker and database: Kafka and HTTP in, accepted/rejected out."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import orjson
import pytest

from mediation_core.auth import issue_token
from mediation_core.sealing import KeyDestroyed
from mediation_intake.intake import referral_id
from mediation_intake.service import build
from tests.conftest import eventually
from tests.helpers import produce, read_topic
from tests.intake.forms import GP, HOSPITAL, envelope, form, key

pytestmark = pytest.mark.stack


async def send(svc, *payloads, version: int = 1) -> None:
    await produce(svc.settings.kafka_bootstrap, svc.settings.topics.referrals_received,
                  [(key(p), envelope(p, version=version)) for p in payloads])


async def settled(svc, handled: int) -> None:
    """Every message handled and every resulting event published."""
    c = svc.consumers[0]
    await eventually(lambda: c.stats.processed + c.stats.dead_lettered >= handled, timeout=60,
                     what=f"{handled} messages handled")
    await eventually(lambda: svc.pool.fetchval("SELECT count(*) = 0 FROM outbox"), timeout=60,
                     what="outbox drained")


async def topic(svc, name: str, expect: int) -> list[dict]:
    recs = await read_topic(svc.settings.kafka_bootstrap, name, expect=expect, timeout=60)
    return [{"key": r.key.decode() if r.key else None, **orjson.loads(r.value)} for r in recs]


def client(svc) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app), base_url="http://intake")


def bearer(sub: str, role: str = "source_system") -> dict:
    return {"Authorization": f"Bearer {issue_token(sub=sub, role=role)}"}


async def test_valid_form_is_accepted_sealed_and_opens_with_the_vault(intake):
    f = form(GP)
    f["person"].update(family_name=" rouvière", phone="04 66 85 55 12", birth_date="02/06/1948")
    await send(intake, f)
    await settled(intake, 1)
    [ev] = await topic(intake, intake.settings.topics.referrals_intake, 1)
    rid = str(referral_id("msp-lasalle", f["source_reference"]))
    assert ev["type"] == "ReferralAccepted" and ev["key"] == rid
    core = ev["payload"]["referral"]
    assert core["referral_id"] == rid and core["revision"] == 1
    assert ev["payload"]["is_correction"] is False
    assert (core["commune"], core["postcode"]) == ("Soudorgues", "30460")
    assert [m["code"] for m in core["motives"]] == ["complex_care_path", "care_interruption",
                                                    "access_to_rights"]
    assert core["motives"][2]["right"] == "css"
    assert core["urgency"] == "priority" and core["meeting_modes"] == ["home_visit", "phone"]
    assert core["referrer_profession"] == "gp" and core["referrer_structure_kind"] == "msp"
    assert core["consent_share_with_referrer"] is True and len(core["person_ref"]) == 32
    raw = orjson.dumps(ev)
    for clear in (b"ROUVI", b"Rouvi", b"Marcel", b"1948-06-02", b"+33466855512", b"Mas de la Coste",
                  b"cardiologie", b"Claire Fabre"):
        assert clear not in raw, "identity in clear in ReferralAccepted"
    opened = await intake.intake.vault.open(core["sealed"], actor="test", purpose="check")
    assert opened["person"]["family_name"] == "ROUVIÈRE"
    assert opened["person"]["phone"] == "+33466855512"
    assert opened["person"]["birth_date"] == "1948-06-02"
    assert opened["comment"].startswith("Vit seul")
    assert await topic(intake, intake.settings.topics.referrals_answers, 0) == []


async def test_each_class_of_error_is_answered_with_precise_reasons(intake):
    t = intake.settings.topics
    no_consent = form(GP)
    no_consent["person"]["consent_contact"] = False
    bad_values = form(HOSPITAL)
    bad_values["person"].update(phone="12 34", birth_date="31/02/1990", postcode="301")
    future = form(GP)
    future["person"]["birth_date"] = "2099-01-01"
    missing = form(GP)
    del missing["person"]
    del missing["motives"]
    qualifiers = form(GP, motives=[{"code": "access_to_rights"}, {"code": "other"}])
    unknown = form(GP, urgency="demain", colour="bleu")
    oversize = form(GP, comment="x" * 70_000)
    anonymous = {"nothing": "useful"}
    cases = [no_consent, bad_values, future, missing, qualifiers, unknown, oversize, anonymous]
    await send(intake, *cases)
    await settled(intake, len(cases))
    rejected = await topic(intake, t.referrals_intake, len(cases))
    answers = await topic(intake, t.referrals_answers, len(cases))
    assert len(rejected) == len(answers) == len(cases)
    assert all(e["type"] == "ReferralRejected" for e in rejected + answers)

    def reasons(f):
        ref = f.get("source_reference")
        [ev] = [e for e in answers if e["payload"]["source_reference"] == ref]
        assert ev["key"] == (f.get("source_system") or "unknown"), "answers keyed by sender"
        assert all(p["message"] for p in ev["payload"]["problems"])
        return {p["field"]: p["code"] for p in ev["payload"]["problems"]}

    assert reasons(no_consent) == {"person.consent_contact": "no_consent_to_contact"}
    assert reasons(bad_values) == {"person.phone": "invalid_phone",
                                   "person.birth_date": "invalid_date",
                                   "person.postcode": "invalid_postcode"}
    assert reasons(future) == {"person.birth_date": "birth_date_in_future"}
    assert reasons(missing) == {"person": "missing", "motives": "missing"}
    assert reasons(qualifiers) == {"motives[0].right": "missing_right",
                                   "motives[1].text": "missing_text"}
    assert reasons(unknown) == {"urgency": "unknown_code", "colour": "unknown_field"}
    assert reasons(oversize) == {"(payload)": "payload_too_large"}
    assert reasons(anonymous)["source_system"] == "missing"
    # on the intake topic, keyed by the referral id (or the sender's reference)
    by_ref = {e["payload"]["source_reference"]: e for e in rejected}
    assert by_ref[no_consent["source_reference"]]["key"] == str(
        referral_id("msp-lasalle", no_consent["source_reference"]))
    rows = await intake.pool.fetch("SELECT codes FROM rejections")
    assert len(rows) == len(cases)


async def test_duplicate_is_accepted_once_and_a_correction_updates(intake):
    t = intake.settings.topics
    f = form(HOSPITAL)
    corrected = orjson.loads(orjson.dumps(f))
    corrected["person"]["phone"] = "07 51 23 45 99"
    corrected["urgency"] = "urgent"
    await send(intake, f, f)               # the same form twice (two event ids)
    await settled(intake, 2)
    await send(intake, corrected)
    await settled(intake, 3)
    events = await topic(intake, t.referrals_intake, 2)
    assert len(events) == 2, "the duplicate produced no event"
    first, second = (e["payload"] for e in events)
    assert first["referral"]["referral_id"] == second["referral"]["referral_id"]
    assert (first["referral"]["revision"], first["is_correction"]) == (1, False)
    assert (second["referral"]["revision"], second["is_correction"]) == (2, True)
    assert second["referral"]["urgency"] == "urgent"
    assert second["referral"]["received_at"] == first["referral"]["received_at"]
    assert second["referral"]["person_ref"] == first["referral"]["person_ref"]
    opened = await intake.intake.vault.open(second["referral"]["sealed"], actor="t", purpose="t")
    assert opened["person"]["phone"] == "+33751234599"
    row = await intake.pool.fetchrow("SELECT revision, duplicates FROM referrals")
    assert (row["revision"], row["duplicates"]) == (2, 1)


async def test_http_path_equals_kafka_path(intake):
    t = intake.settings.topics
    f = form(GP)
    await send(intake, f)
    await settled(intake, 1)
    async with client(intake) as http:
        # the same form by HTTP: the same referral, recognised as a duplicate
        r = await http.post("/referrals", json=f, headers=bearer("msp-lasalle"))
        assert r.status_code == 202, r.text
        assert r.json() == {"referral_id": str(referral_id("msp-lasalle", f["source_reference"])),
                            "revision": 1, "status": "duplicate"}
        # the same invalid form both ways: the same problems
        bad_k = form(GP)
        bad_k["person"].update(phone="0", consent_contact=False)
        bad_h = orjson.loads(orjson.dumps(bad_k))
        bad_h["source_reference"] = bad_k["source_reference"] + "-h"
        await send(intake, bad_k)
        r = await http.post("/referrals", json=bad_h, headers=bearer("msp-lasalle"))
        assert r.status_code == 422
        http_problems = r.json()["problems"]
        # a new form by HTTP is accepted like one from Kafka
        g = form(GP)
        r = await http.post("/referrals", content=orjson.dumps(g), headers=bearer("msp-lasalle"))
        assert r.status_code == 202 and r.json()["status"] == "accepted"
        # auth, size and sender checks
        assert (await http.post("/referrals", json=g)).status_code == 401
        assert (await http.post("/referrals", json=g,
                                headers=bearer("m-1", "mediator"))).status_code == 403
        other = form(GP)  # says it is from msp-lasalle, token says another system
        r = await http.post("/referrals", json=other, headers=bearer("ch-ales-service-social"))
        assert r.status_code == 422
        assert r.json()["problems"][0]["code"] == "source_system_mismatch"
        big = await http.post("/referrals", content=b"{" + b" " * 70_000 + b"}",
                              headers=bearer("big-sender"))
        assert big.status_code == 413 and big.json()["problems"][0]["code"] == "payload_too_large"
        notjson = await http.post("/referrals", content=b"{oops", headers=bearer("json-sender"))
        assert notjson.status_code == 422
        assert notjson.json()["problems"][0]["code"] == "bad_json"
    await settled(intake, 2)
    events = await topic(intake, t.referrals_intake, 6)
    accepted = [e for e in events if e["type"] == "ReferralAccepted"]
    assert len(accepted) == 2, "HTTP duplicate made no event; new HTTP form one"
    assert len(events) == 6, "2 accepted, 4 rejected (Kafka, HTTP, sender mismatch, not JSON)"
    k, h = (next(e for e in events if e["type"] == "ReferralRejected"
                 and e["payload"]["source_reference"] == ref)
            for ref in (bad_k["source_reference"], bad_h["source_reference"]))
    assert k["payload"]["problems"] == h["payload"]["problems"] == http_problems
    a_k, a_h = (next(e["payload"]["referral"] for e in accepted
                     if e["payload"]["referral"]["source_reference"] == ref)
                for ref in (f["source_reference"], g["source_reference"]))
    same = {"commune", "postcode", "motives", "urgency", "meeting_modes", "person_ref",
            "language", "interpreter_needed", "consent_share_with_referrer",
            "referrer_profession", "referrer_structure_kind", "revision", "source_system"}
    assert {x: a_k[x] for x in same} == {x: a_h[x] for x in same}


async def test_a_flooding_source_is_throttled_and_others_still_get_in(intake):
    async with client(intake) as http:
        codes = []
        for _ in range(5):
            r = await http.post("/referrals", json=form(GP), headers=bearer("msp-lasalle"))
            codes.append(r.status_code)
        assert codes[:3] == [202, 202, 202] and codes[3:] == [429, 429]
        r = await http.post("/referrals", json=form(GP), headers=bearer("msp-lasalle"))
        assert r.status_code == 429 and int(r.headers["Retry-After"]) >= 1
        assert r.json()["problems"][0]["code"] == "rate_limited"
        ok = await http.post("/referrals", json=form(HOSPITAL),
                             headers=bearer("ch-ales-service-social"))
        assert ok.status_code == 202, "another source is not starved"
        # the same new form twice at once: one accepted, one duplicate, one event
        same = form(GP, source_system="twin-sender")
        r1, r2 = await asyncio.gather(*(http.post("/referrals", json=same,
                                                  headers=bearer("twin-sender"))
                                        for _ in range(2)))
        assert sorted([r1.json()["status"], r2.json()["status"]]) == ["accepted", "duplicate"]
    await eventually(lambda: intake.pool.fetchval("SELECT count(*) = 0 FROM outbox"), timeout=60,
                     what="outbox drained")
    events = await topic(intake, intake.settings.topics.referrals_intake, 5)
    assert len(events) == 5 and all(e["type"] == "ReferralAccepted" for e in events)


async def test_erase_destroys_the_key_and_the_sealed_block_no_longer_opens(
        intake, monkeypatch):
    f = form(HOSPITAL)
    again = form(HOSPITAL)  # the same person referred again, another form
    await send(intake, f, again)
    await settled(intake, 2)
    events = await topic(intake, intake.settings.topics.referrals_intake, 2)
    blocks = [e["payload"]["referral"]["sealed"] for e in events]
    refs = {e["payload"]["referral"]["person_ref"] for e in events}
    assert len(refs) == 1, "the same person referred twice is recognisable"
    vault = intake.intake.vault
    assert (await vault.open(blocks[0], actor="t", purpose="t"))["person"]["given_name"] == "Ioana"
    rid = events[0]["payload"]["referral"]["referral_id"]
    s = intake.settings
    monkeypatch.setenv("MEDIATION_INTAKE_SCHEMA", s.schema)
    monkeypatch.setenv("MEDIATION_KEYVAULT_SCHEMA", s.keyvault_schema)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", s.kafka_bootstrap)
    monkeypatch.setenv("DATABASE_URL", s.database_url)
    from mediation_core.cli import main

    rc = await asyncio.to_thread(main, ["erase", "--referral-id", rid, "--actor", "dpo-test"])
    assert rc == 0
    vault._cache.clear()  # another process's view: no cached key
    for b in blocks:
        with pytest.raises(KeyDestroyed):
            await vault.open(b, actor="t", purpose="t")
    rec = await intake.pool.fetchrow("SELECT * FROM erasures")
    assert rec["actor"] == "dpo-test" and rec["reason"] == "right_to_erasure"
    assert rec["referral_id"] == uuid.UUID(rid) and len(rec["key_ids"]) == 1
    assert await intake.pool.fetchval(
        "SELECT count(*) FROM referrals WHERE sealed IS NOT NULL") == 0
    destroyed = await intake.pool.fetchval(
        f"SELECT count(*) FROM {s.keyvault_schema}.key_events WHERE action = 'destroy'")
    assert destroyed == 1
    rc = await asyncio.to_thread(main, ["erase", "--referral-id", str(uuid.uuid4())])
    assert rc == 1, "an unknown referral is reported, not silently ignored"


def _person(f: dict, family: str) -> dict:
    f["person"]["family_name"] = family
    return f


async def test_one_batch_takes_forms_as_one_by_one(settings_for):
    """Everything on the topic before the consumer starts (one partition: one batch): new
    people, a known person referred again, an invalid form, two forms for one new person
    and a duplicate followed by two corrections of an earlier form. The prepared way (rows,
    keys and validation for the whole batch) and the one-by-one way for what the batch
    shares give what one by one gives."""
    svc = build(settings_for("intake", partitions=1))
    await svc.start(http=False)
    await svc.wait_ready()
    old, known = _person(form(HOSPITAL), "Ancien"), _person(form(GP), "Connu")
    await send(svc, old, known)
    await settled(svc, 2)
    await svc.stop()
    fix = orjson.loads(orjson.dumps(old))
    fix["urgency"] = "urgent"
    fix2 = orjson.loads(orjson.dumps(fix))
    fix2["person"]["phone"] = "07 51 23 45 99"
    invalid = _person(form(GP), "Refus")
    invalid["person"]["consent_contact"] = False
    batch = [*[_person(form(GP), f"Nouveau{c}") for c in "ABC"],
             old, fix, fix2,                                # duplicate, then two corrections
             _person(form(HOSPITAL), "Connu") | {"person": known["person"]},  # known person
             invalid, _person(form(GP), "Jumeau"), _person(form(HOSPITAL), "Jumeau")]
    batch[-1]["person"] = batch[-2]["person"]                    # one new person, twice
    await send(svc, *batch)

    svc = build(svc.settings)
    await svc.start(http=False)
    try:
        c = svc.consumers[0]
        await settled(svc, 10)
        assert (c.stats.processed, c.stats.dead_lettered) == (10, 0)
        assert c.stats.batches == 1 and c.stats.isolated == 0, "the batch went the prepared way"
        rows = {r["source_reference"]: r for r in await svc.pool.fetch(
            "SELECT source_reference, revision, duplicates, person_ref FROM referrals")}
        assert len(rows) == 8  # the invalid form is a rejection, the correction a revision
        assert (rows[old["source_reference"]]["revision"],
                rows[old["source_reference"]]["duplicates"]) == (3, 1)
        assert rows[batch[6]["source_reference"]]["person_ref"] == \
            rows[known["source_reference"]]["person_ref"]
        assert rows[batch[-1]["source_reference"]]["person_ref"] == \
            rows[batch[-2]["source_reference"]]["person_ref"]
        assert await svc.pool.fetchval("SELECT count(*) FROM rejections") == 1
        keys = await svc.pool.fetchval(
            f"SELECT count(*) FROM {svc.settings.keyvault_schema}.person_keys")
        assert keys == 6  # Ancien, Connu, NouveauA/B/C, Jumeau (Refus was rejected)
        events = await topic(svc, svc.settings.topics.referrals_intake, 2 + 9)
        accepted = [e for e in events if e["type"] == "ReferralAccepted"]
        assert len(accepted) == 2 + 8
        assert sorted(e["payload"]["referral"]["revision"] for e in accepted
                      if e["payload"]["referral"]["source_reference"] == old["source_reference"]
                      ) == [1, 2, 3]
        for e in accepted:  # every sealed block opens with the key it names
            opened = await svc.intake.vault.open(e["payload"]["referral"]["sealed"],
                                                 actor="t", purpose="t")
            assert opened["person"]["family_name"]
    finally:
        await svc.stop()

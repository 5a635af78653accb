"""The routing service on the real broker and database."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import uuid
from datetime import UTC, date, datetime

import httpx
import orjson
import pytest

from mediation_core.auth import issue_token
from mediation_routing import territory as terr
from mediation_routing.service import build
from mediation_schemas.cases import CaseOpened, CaseRef, FirstContactMade
from mediation_schemas.common import MotiveItem, SealedBlock
from mediation_schemas.envelope import encode, new_envelope
from mediation_schemas.referrals import ReferralAccepted, ReferralCore
from mediation_schemas.territory import TerritoryChanged
from mediation_schemas.vocab import Motive
from tests.conftest import eventually
from tests.helpers import produce, read_topic, values

pytestmark = pytest.mark.stack

SJ, SH = "saint-jean-du-gard-lasalle", "saint-hippolyte-quissac-sauve"
M1, M2 = "cpts-ecm-med-01", "cpts-ecm-med-02"
CANARY = "Zphirine-CANARY-7731"


@pytest.fixture
async def routing(settings_for):
    svc = build(settings_for("routing"))
    await svc.start(http=False)
    await svc.wait_ready(timeout=90)
    yield svc
    await svc.stop()


@pytest.fixture
async def client(routing):
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=routing.app),
                                 base_url="http://routing") as c:
        yield c


def _auth(role="coordinator", structure="cpts-ecm", sub="coord-1"):
    return {"Authorization": f"Bearer {issue_token(sub=sub, role=role, structure=structure)}"}


def core(commune, postcode=None, *, rid=None, revision=1, on=date(2026, 3, 10)) -> ReferralCore:
    return ReferralCore(
        referral_id=rid or uuid.uuid4(), revision=revision, source_system="msp-sauve",
        source_reference=f"F-{uuid.uuid4().hex[:8]}", received_at=datetime(2026, 3, 10, 9, tzinfo=UTC),
        referral_date=on, person_ref="bi:" + uuid.uuid4().hex,
        sealed=SealedBlock(key_id="k1", nonce="bm9uY2U=", ciphertext="c2VhbGVk"),
        commune=commune, postcode=postcode, motives=[MotiveItem(code=Motive.access_to_rights)],
        consent_share_with_referrer=True)


async def send(svc, ref: ReferralCore, *, structure="cpts-ecm", correction=False):
    env = new_envelope(ReferralAccepted(referral=ref, is_correction=correction), producer="intake",
                       correlation_id=f"corr-{ref.referral_id}", structure=structure)
    await produce(svc.settings.kafka_bootstrap, svc.settings.topics.referrals_intake,
                  [(str(ref.referral_id).encode(), encode(env))])
    return env


async def decisions(svc, expect: int) -> list:
    recs = await read_topic(svc.settings.kafka_bootstrap, svc.settings.topics.routing_decisions,
                            expect=expect, timeout=60)
    return recs


def by_referral(recs) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for r in recs:
        v = orjson.loads(r.value)
        assert r.key.decode() == v["payload"]["referral"]["referral_id"], "keyed by referral id"
        out.setdefault(r.key.decode(), []).append(v)
    return out


async def test_routed_unroutable_triage_by_hand_and_corrections(routing, client, caplog, spans,
                                                                json_logs):
    caplog.set_level(logging.DEBUG)  # our own code at every level (the test's producer is aiokafka)
    r1 = core("St Jean du Gard", "30270")
    r2 = core("Quissac 46320")
    r3 = core("Marseille")
    r5 = core(f"Sauve, chez {CANARY}")
    env1 = await send(routing, r1)
    await send(routing, r2)
    await send(routing, r3, structure=None)
    await send(routing, r5)
    ev = by_referral(await decisions(routing, 4))
    assert len(ev) == 4

    routed = ev[str(r1.referral_id)][0]
    assert routed["type"] == "ReferralRouted" and routed["structure"] == "cpts-ecm"
    assert routed["correlation_id"] == env1.correlation_id
    assert routed["causation_id"] == str(env1.event_id)
    p = routed["payload"]
    assert (p["structure"], p["area"], p["mediator_id"]) == ("cpts-ecm", SJ, M1)
    assert p["place"] == {"kind": "commune", "code": "30269", "name": "Saint-Jean-du-Gard",
                          "department": "30"}
    assert p["decision"]["rule"] == "exact_name+postcode"
    assert p["decision"]["territory_version"] == 1 and p["decision"]["score"] == 100.0
    assert p["decision"]["manual"] is False and p["decision"]["assignment_reason"] == "area_mediator"

    out = ev[str(r2.referral_id)][0]
    assert out["type"] == "ReferralUnroutable"
    q = out["payload"]
    assert q["reason_code"] == "outside_territory" and q["structure"] == "cpts-ecm"
    assert q["candidates"][0]["place"]["department"] == "46" and q["reason"]
    assert ev[str(r3.referral_id)][0]["payload"]["reason_detail"] == "city_needs_neighbourhood"
    assert ev[str(r5.referral_id)][0]["payload"]["area"] == SH

    # the triage queue: each coordinator sees their structure's entries
    res = await client.get("/triage", headers=_auth())
    assert res.status_code == 200
    ids = {i["referral_id"] for i in res.json()["items"]}
    assert str(r2.referral_id) in ids and str(r3.referral_id) not in ids
    res = await client.get("/triage", headers=_auth(structure="sept-marseille"))
    ids_sept = {i["referral_id"] for i in res.json()["items"]}
    assert str(r3.referral_id) in ids_sept and str(r2.referral_id) not in ids_sept
    assert (await client.get("/triage")).status_code == 401
    assert (await client.get("/triage", headers=_auth(role="mediator"))).status_code == 403

    # resolution by hand
    other = await client.post(f"/triage/{r2.referral_id}/resolve", json={"area": SH},
                              headers=_auth(structure="sept-marseille"))
    assert other.status_code == 404
    bad = await client.post(f"/triage/{r2.referral_id}/resolve", json={"area": "nowhere"},
                            headers=_auth())
    assert bad.status_code == 422 and bad.json()["detail"]["field"] == "area"
    ok = await client.post(f"/triage/{r2.referral_id}/resolve", json={"area": SH}, headers=_auth())
    assert ok.status_code == 200, ok.text
    assert ok.json()["mediator_id"] == M2
    again = await client.post(f"/triage/{r2.referral_id}/resolve", json={"area": SH},
                              headers=_auth())
    assert again.status_code == 409
    res = await client.get("/triage", headers=_auth())
    assert str(r2.referral_id) not in {i["referral_id"] for i in res.json()["items"]}

    # corrections: same place -> nothing emitted; another place -> re-emitted; stale -> ignored
    await send(routing, r1.model_copy(update={"revision": 2}), correction=True)
    await send(routing, r1.model_copy(update={"revision": 3, "commune": "Sauve", "postcode": None}),
               correction=True)
    await send(routing, r1.model_copy(update={"revision": 2, "commune": "Cros"}), correction=True)
    await eventually(lambda: routing.consumers[0].stats.processed >= 7, timeout=60,
                     what="the three corrections processed")
    ev = by_referral(await decisions(routing, 6))
    manual = ev[str(r2.referral_id)][-1]
    assert manual["type"] == "ReferralRouted" and manual["payload"]["decision"]["manual"] is True
    assert manual["payload"]["decision"]["rule"] == "manual"
    assert manual["payload"]["area"] == SH and manual["correlation_id"] == f"corr-{r2.referral_id}"
    r1_events = ev[str(r1.referral_id)]
    assert len(r1_events) == 2, "revision 2 (same place) and the stale revision emit nothing"
    corr = r1_events[1]["payload"]
    assert corr["area"] == SH and corr["decision"]["trigger"] == "correction"
    assert corr["referral"]["revision"] == 3
    row = await routing.pool.fetchrow("SELECT revision, area FROM referrals WHERE referral_id = $1",
                                      r1.referral_id)
    assert (row["revision"], row["area"]) == (3, SH)

    # what was written about the place never reaches the logs or the coordinator's reason
    logged = "\n".join(r.getMessage() + str(getattr(r, "fields", "")) for r in caplog.records
                       if not r.name.startswith("aiokafka"))
    assert CANARY not in logged
    assert "referral routed" in logged
    written = json_logs.getvalue()  # the JSON lines as the service writes them, tracebacks too
    assert CANARY not in written and "referral routed" in written
    finished = spans.get_finished_spans()
    assert any(sp.name.startswith("consume ReferralAccepted") for sp in finished)
    for sp in finished:
        blob = orjson.dumps({"n": sp.name, "a": dict(sp.attributes or {}),
                             "e": [dict(ev_.attributes or {}) for ev_ in sp.events]},
                            default=str).decode()
        assert CANARY not in blob
    for entries in ev.values():
        for e in entries:
            assert CANARY not in (e["payload"].get("reason") or "")
            assert CANARY not in orjson.dumps(e["payload"].get("candidates", [])).decode()


async def test_territory_change_reroutes_open_referrals_only(routing, client):
    t = routing.settings.topics
    outside = core("Anduze")                             # unroutable, open in triage
    moved = core("Colognac")                             # routed, not taken
    taken = core("Lasalle")                              # routed, first contact made
    before = core("Colognac", on=date(2026, 1, 15))      # dated before the new version
    for r in (outside, moved, taken, before):
        await send(routing, r)
    ev = by_referral(await decisions(routing, 4))
    assert ev[str(outside.referral_id)][0]["type"] == "ReferralUnroutable"
    assert ev[str(moved.referral_id)][0]["payload"]["area"] == SJ

    case_id = uuid.uuid4()
    ref = CaseRef(case_id=case_id, structure="cpts-ecm", area=SJ, mediator_id=M1)
    now = datetime(2026, 3, 11, 10, tzinfo=UTC)
    opened = new_envelope(CaseOpened(case=ref, origin="referral", referral_id=taken.referral_id,
                                     opened_at=now), producer="cases", correlation_id="c")
    contact = new_envelope(FirstContactMade(case=ref, channel="phone", contacted_at=now,
                                            attempts=1), producer="cases", correlation_id="c")
    await produce(routing.settings.kafka_bootstrap, t.cases,
                  [(str(case_id).encode(), encode(opened)), (str(case_id).encode(), encode(contact))])
    await eventually(lambda: routing.pool.fetchval(
        "SELECT taken FROM referrals WHERE referral_id = $1", taken.referral_id), timeout=60,
        what="first contact recorded")

    # a new version: Anduze joins, Colognac and Lasalle move to the other sub-territory
    res = await client.get("/territory/cpts-ecm", headers=_auth())
    assert res.status_code == 200 and res.json()["version"] == 1
    doc = res.json()["territory"]
    for p in doc["places"]:
        if p["name"] in ("Colognac", "Lasalle"):
            p["area"] = SH
    ref_anduze = next(r for r in terr.reference_communes() if r.name == "Anduze")
    doc["places"].append({"kind": "commune", "code": ref_anduze.insee, "name": "Anduze",
                          "department": "30", "postcodes": ["30140"], "area": SH})
    malformed = {**doc, "places": [{**doc["places"][0], "numbers": [CANARY, 5]}, *doc["places"][1:]]}
    res = await client.post("/territory/cpts-ecm/versions", headers=_auth(), json={
        "effective_from": "2026-03-01", "territory": malformed})
    assert res.status_code == 422 and res.json()["detail"]["field"] == "places[0].numbers"
    assert CANARY not in res.text
    pub = await client.post("/territory/cpts-ecm/versions", headers=_auth(), json={
        "effective_from": "2026-03-01", "territory": doc, "reason": "extension du territoire"})
    assert pub.status_code == 202, pub.text
    assert pub.json()["territory_version"] == 2
    assert (await client.post("/territory/cpts-ecm/versions", headers=_auth(structure="sept-marseille"),
                              json={"effective_from": "2026-03-01", "territory": doc})).status_code == 403

    recs = await decisions(routing, 6)
    ev = by_referral(recs)
    assert len(recs) == 6, "only the two open referrals dated after the change are re-emitted"
    a = ev[str(outside.referral_id)][-1]
    assert a["type"] == "ReferralRouted"
    assert (a["payload"]["area"], a["payload"]["mediator_id"]) == (SH, M2)
    assert a["payload"]["place"]["name"] == "Anduze"
    assert a["payload"]["decision"]["territory_version"] == 2
    assert a["payload"]["decision"]["trigger"] == "territory_change"
    m = ev[str(moved.referral_id)][-1]["payload"]
    assert (m["area"], m["mediator_id"], m["decision"]["territory_version"]) == (SH, M2, 2)
    assert len(ev[str(taken.referral_id)]) == 1 and len(ev[str(before.referral_id)]) == 1
    status = await routing.pool.fetchval("SELECT status FROM triage WHERE referral_id = $1",
                                         outside.referral_id)
    assert status == "rerouted"
    assert await routing.pool.fetchval(
        "SELECT area FROM referrals WHERE referral_id = $1", taken.referral_id) == SJ

    # the coordinators' command reads the same territory from the database, same code path
    env = {**os.environ, "MEDIATION_ROUTING_SCHEMA": routing.settings.schema,
           "KAFKA_BOOTSTRAP_SERVERS": routing.settings.kafka_bootstrap,
           "DATABASE_URL": routing.settings.database_url}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "mediation_core.cli", "route", "Anduze", "--date", "2026-03-20",
        "--json", env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    stdout, _ = await asyncio.wait_for(proc.communicate(), 60)
    obj = json.loads(stdout)
    assert obj["territory_source"] == "database" and obj["territory_version"] == 2
    assert (obj["status"], obj["area"], obj["place"]) == ("routed", SH, "Anduze")

    # a territory version that does not hold together is dead-lettered with the field named
    broken = terr.to_document(terr.packaged_versions()[0])
    broken["mediators"][0]["area"] = "nowhere"
    bad = new_envelope(TerritoryChanged(structure="cpts-ecm", territory_version=3,
                                        effective_from=date(2026, 4, 1), territory=broken),
                       producer="test", correlation_id="t", structure="cpts-ecm")
    await produce(routing.settings.kafka_bootstrap, t.territory_changes, [(b"cpts-ecm", encode(bad))])
    dlq = values(await read_topic(routing.settings.kafka_bootstrap,
                                  t.dead_letters("routing.decisions"), expect=1, timeout=60))
    assert dlq[0]["reason_code"] == "invalid_territory"
    assert "mediators[0].area" in dlq[0]["reason"]
    assert await routing.pool.fetchval("SELECT max(version) FROM territory_versions") == 2
    # version numbers handed out for publication: above the stored ones, never twice
    async with routing.pool.acquire() as conn:
        allocate = routing.routing_store.allocate_version
        assert [await allocate(conn, "cpts-ecm"), await allocate(conn, "cpts-ecm")] == [3, 4]


async def test_leave_windows_fall_back_then_reach_the_coordinator(routing, client):
    doc = (await client.get("/territory/cpts-ecm", headers=_auth())).json()["territory"]
    for m in doc["mediators"]:
        m["leaves"] = ([{"from": "2026-03-01", "to": "2026-03-31"}] if m["id"] == M1 else
                       [{"from": "2026-03-20", "to": "2026-03-31"}])
    pub = await client.post("/territory/cpts-ecm/versions", headers=_auth(), json={
        "effective_from": "2026-02-01", "territory": doc, "reason": "congés de printemps"})
    assert pub.status_code == 202
    await eventually(lambda: routing.pool.fetchval(
        "SELECT max(version) = 2 FROM territory_versions WHERE structure = 'cpts-ecm'"),
        timeout=60, what="version 2 applied")
    covered = core("Lasalle", on=date(2026, 3, 10))   # M1 away, M2 present
    nobody = core("Lasalle", on=date(2026, 3, 25))    # both away
    await send(routing, covered)
    await send(routing, nobody)
    ev = by_referral(await decisions(routing, 2))
    a = ev[str(covered.referral_id)][0]["payload"]
    assert (a["area"], a["mediator_id"]) == (SJ, M2)
    assert a["decision"]["assignment_reason"] == "mediator_absent"
    assert a["decision"]["assigned_by"] == "structure_fallback"
    assert a["decision"]["territory_version"] == 2
    b = ev[str(nobody.referral_id)][0]
    assert b["type"] == "ReferralUnroutable"
    assert (b["payload"]["reason_code"], b["payload"]["reason_detail"]) == ("no_mediator",
                                                                            "mediator_absent")
    assert (b["payload"]["structure"], b["payload"]["area"]) == ("cpts-ecm", SJ)
    items = (await client.get("/triage", headers=_auth())).json()["items"]
    entry = next(i for i in items if i["referral_id"] == str(nobody.referral_id))
    assert entry["reason_code"] == "no_mediator" and entry["area"] == SJ
    # the coordinator decides by hand, naming the mediator
    ok = await client.post(f"/triage/{nobody.referral_id}/resolve", headers=_auth(),
                           json={"area": SJ, "mediator_id": M1, "place_code": "30140"})
    assert ok.status_code == 200, ok.text
    assert ok.json()["place"]["name"] == "Lasalle" and ok.json()["decision"]["manual"] is True
    # corrected to a date when M1 is back: the automatic decision is the manual one again
    # (same structure, area, mediator, place), so nothing is re-emitted
    await send(routing, nobody.model_copy(update={"revision": 2,
                                                  "referral_date": date(2026, 4, 2)}),
               correction=True)
    await eventually(lambda: routing.pool.fetchval(
        "SELECT (SELECT revision FROM referrals WHERE referral_id = $1) = 2 "
        "AND NOT EXISTS (SELECT 1 FROM outbox)", nobody.referral_id),
        timeout=60, what="the correction stored and the outbox drained")
    ev = by_referral(await decisions(routing, 3))
    assert [e["payload"]["decision"]["trigger"] for e in ev[str(nobody.referral_id)][1:]] == ["manual"]


async def test_one_batch_routes_as_one_by_one_loads_included(settings_for):
    """45 referrals for Saint-Jean's area (its mediator takes 40) and a correction of the
    first one moving it to Sauve, all on the topic before the consumer starts (one
    partition: one batch). The loads move with each referral of the batch: 40 go to the
    area's mediator and the other 5 to the structure's other one, as one by one; then the
    correction moves the first one to Sauve's mediator too."""
    settings = settings_for("routing", partitions=1)
    svc = build(settings)
    await svc.start(http=False)
    await svc.wait_ready(timeout=90)
    await svc.stop()
    refs = [core("Saint-Jean-du-Gard", "30270") for _ in range(45)]
    for r in refs:
        await send(svc, r)
    fix = core("Sauve", "30610", rid=refs[0].referral_id, revision=2)
    await send(svc, fix, correction=True)

    svc = build(settings)
    await svc.start(http=False)
    try:
        c = next(c for c in svc.consumers if c.name.endswith("decisions"))
        await eventually(lambda: c.stats.processed == 46, 60, what="the batch")
        assert c.stats.dead_lettered == 0 and c.stats.isolated == 0 and c.stats.batches == 1
        rows = await svc.pool.fetch("SELECT referral_id, revision, area, mediator_id FROM referrals")
        assert len(rows) == 45
        by_id = {r["referral_id"]: r for r in rows}
        assert (by_id[fix.referral_id]["revision"], by_id[fix.referral_id]["area"]) == (2, SH)
        mediators = sorted(r["mediator_id"] for r in rows)
        assert mediators.count(M1) == 39 and mediators.count(M2) == 6
        ev = by_referral(await decisions(svc, 46))
        assert len(ev) == 45 and len(ev[str(fix.referral_id)]) == 2
    finally:
        await svc.stop()

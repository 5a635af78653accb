"""No identity in clear anywhere after intake: events on every topic, logs, spans, dead
letters, intake's own tables. Canary personal values are planted and searched for."""

from __future__ import annotations

import orjson
import pytest

from tests.conftest import eventually
from tests.helpers import read_topic
from tests.intake.forms import canary_form, canary_values
from tests.intake.test_service import bearer, client, send, settled

pytestmark = pytest.mark.stack


def assert_clean(blob: bytes, where: str) -> None:
    for v in canary_values():
        assert v not in blob, f"canary personal value found in {where}"


async def test_canary_personal_values_never_leave_in_clear(intake, spans, json_logs):
    s = intake.settings
    t = s.topics
    valid = canary_form()
    correction = orjson.loads(orjson.dumps(valid))
    correction["comment"] += " (corrigé)"
    invalid = canary_form()
    invalid["person"].update(family_name="Canarynom 2", phone="06 98 76 54 32 11",
                             birth_date="Canarynom", consent_contact=False)
    oversize = canary_form()
    oversize["comment"] = "CANARY-COMMENT " * 6000
    future_version = canary_form()
    await send(intake, valid, invalid, oversize)
    await send(intake, future_version, version=2)
    await settled(intake, 4)
    await send(intake, correction)
    await settled(intake, 5)
    async with client(intake) as http:
        r1 = await http.post("/referrals", json=canary_form(source_system="ch-ales-service-social"),
                             headers=bearer("ch-ales-service-social"))
        r2 = await http.post("/referrals", json=invalid, headers=bearer("ch-ales-service-social"))
    assert (r1.status_code, r2.status_code) == (202, 422)
    assert_clean(r2.content, "an HTTP error response")
    await eventually(lambda: intake.pool.fetchval("SELECT count(*) = 0 FROM outbox"), timeout=60,
                     what="outbox drained")

    # 3 accepted (valid, its correction, HTTP) + 3 rejected (invalid, oversize, HTTP invalid)
    intake_events = await read_topic(s.kafka_bootstrap, t.referrals_intake, expect=6, timeout=60)
    answers = await read_topic(s.kafka_bootstrap, t.referrals_answers, expect=3, timeout=60)
    dead = await read_topic(s.kafka_bootstrap, t.dead_letters("intake.received"), expect=1,
                            timeout=60)
    kinds = sorted(orjson.loads(r.value)["type"] for r in intake_events)
    assert kinds == ["ReferralAccepted"] * 3 + ["ReferralRejected"] * 3
    assert len(answers) == 3 and len(dead) == 1
    assert orjson.loads(dead[0].value)["reason_code"] == "unknown_version"
    codes = {p["code"] for r in answers for p in orjson.loads(r.value)["payload"]["problems"]}
    assert {"payload_too_large", "no_consent_to_contact", "invalid_phone"} <= codes
    for rec in intake_events + answers + dead:
        assert_clean(rec.value, f"an event on {rec.topic}")
        assert_clean(rec.key or b"", f"a key on {rec.topic}")
        assert_clean(b"".join(v for _, v in rec.headers or []), f"headers on {rec.topic}")

    logs = json_logs.getvalue()
    assert "referral accepted" in logs and "referral rejected" in logs, "the test sees the logs"
    assert_clean(logs.encode(), "the logs")
    finished = spans.get_finished_spans()
    assert any(sp.name == "intake take referral" for sp in finished)
    assert any(sp.name == "POST /referrals" for sp in finished)
    for sp in finished:
        assert_clean(sp.to_json().encode(), f"span {sp.name}")
    for table in ("referrals", "rejections"):
        rows = await intake.pool.fetch(f"SELECT * FROM {table}")
        assert rows
        assert_clean(repr([dict(r) for r in rows]).encode(), f"table {table}")

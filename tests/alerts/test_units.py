"""Plain-code rules of the alerts service: no broker, no database."""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from mediation_alerts import content
from mediation_alerts.clock import OffsetClock
from mediation_alerts.deadlines import PARIS, ack_due, add_working_days, parse_spec
from mediation_alerts.directory import (
    COORDINATOR,
    Authority,
    ConfigError,
    Rule,
    default_rules,
    escalation_sequence,
    resolve,
    validate_authority,
    validate_rule,
)
from mediation_alerts.links import BadLink, make_token, read_token
from mediation_alerts.policy import CircuitBreaker, backoff_delay
from mediation_alerts.verifier import sign, verify_webhook

# ------------------------------------------------------------------ rules


@pytest.mark.parametrize("category,expected", [
    ("care_refusal", ("defenseur_droits", "cpam_conciliateur")),
    ("insalubrious_housing", ("mairie_hygiene", "ars")),
    ("rights_blockage", ("cpam",)),
    ("health_risk", ("ars_alerte",)),
    ("interpreting_lack", (COORDINATOR,)),
    ("other", (COORDINATOR,)),
])
def test_default_rules_send_each_category_to_its_authorities(category, expected):
    rule = resolve(default_rules(), category=category, urgency="normal", commune="Sauve")
    assert rule.authorities == expected


def test_structure_rule_wins_and_the_most_specific_rule_wins():
    own_general = Rule("own-housing", "insalubrious_housing", ("mairie_hygiene",),
                       structure_specific=True)
    own_urgent_in_sauve = Rule("own-sauve-urgent", "insalubrious_housing", ("ars_alerte",),
                               urgencies=("urgent",), communes=("Sauve",), structure_specific=True)
    rules = [own_general, own_urgent_in_sauve, *default_rules()]
    assert resolve(rules, category="insalubrious_housing", urgency="urgent",
                   commune="sauve").rule_id == "own-sauve-urgent"
    assert resolve(rules, category="insalubrious_housing", urgency="normal",
                   commune="Sauve").rule_id == "own-housing"
    assert resolve(default_rules(), category="insalubrious_housing", urgency="urgent",
                   commune=None).rule_id == "default-housing"


def test_no_matching_rule_goes_to_the_coordinator():
    assert resolve([], category="health_risk", urgency="urgent", commune=None).authorities == (
        COORDINATOR,)


def test_escalation_goes_to_coordinator_then_next_authorities():
    rule = resolve(default_rules(), category="care_refusal", urgency="normal", commune=None)
    assert escalation_sequence(rule, "defenseur_droits") == [COORDINATOR, "ars"]
    assert escalation_sequence(Rule("r", "other", (COORDINATOR,)), COORDINATOR) == []


def test_config_validation_names_the_field_without_echoing_values():
    with pytest.raises(ConfigError, match="channels") as err:
        validate_authority(Authority("x", "X", channels=("pigeon",)))
    assert "pigeon" not in str(err.value)
    with pytest.raises(ConfigError, match=r"ack\.urgent") as err:
        validate_authority(Authority("x", "X", ack={"urgent": "soon"}))
    assert "soon" not in str(err.value)
    with pytest.raises(ConfigError, match="category") as err:
        validate_rule(Rule("r", "noise", ("ars",)))
    assert "noise" not in str(err.value)
    with pytest.raises(ConfigError, match="webhook_url") as err:
        validate_authority(Authority("x", "X", channels=("webhook",),
                                     webhook_url="ftp://secret-host.test/h"))
    assert "secret-host" not in str(err.value)
    assert Authority("x", "X", channels=("webhook", "email", "kafka"),
                     webhook_url="https://a.test/h").usable_channels() == ["kafka"]


# ------------------------------------------------------------------ deadlines


def test_working_days_skip_weekends_and_french_holidays():
    # Thursday 6 May 2027 is Ascension; Monday 17 May is Whit Monday
    wed = datetime(2027, 5, 5, 10, 0, tzinfo=PARIS)
    assert add_working_days(wed, 1).date().isoformat() == "2027-05-07"
    fri = datetime(2027, 5, 14, 10, 0, tzinfo=PARIS)
    assert add_working_days(fri, 1).date().isoformat() == "2027-05-18"
    assert add_working_days(fri, 1).hour == 10
    # from a Saturday, 1 working day -> Tuesday (Monday counts as the start)
    sat = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    assert add_working_days(sat, 1).astimezone(PARIS).date().isoformat() == "2026-12-01"
    # hours are round the clock, and the result keeps UTC
    start = datetime(2026, 11, 28, 9, 0, tzinfo=UTC)
    assert ack_due(start, "4h") == start + timedelta(hours=4)
    assert ack_due(start, "2d").tzinfo == UTC
    with pytest.raises(ValueError):
        parse_spec("two days")


# ------------------------------------------------------------------ backoff, breaker


def test_full_jitter_backoff_is_bounded_and_grows():
    assert backoff_delay(1, 1.0, 60, rand=lambda: 1.0) == 1.0
    assert backoff_delay(4, 1.0, 60, rand=lambda: 1.0) == 8.0
    assert backoff_delay(20, 1.0, 60, rand=lambda: 1.0) == 60
    assert backoff_delay(5, 1.0, 60, rand=lambda: 0.0) == 0.0
    samples = [backoff_delay(3, 1.0, 60) for _ in range(200)]
    assert all(0 <= s <= 4 for s in samples) and len(set(samples)) > 100


def test_circuit_breaker_opens_half_opens_and_closes():
    clock = OffsetClock()
    b = CircuitBreaker(threshold=3, cooldown=30, clock=clock)
    k = "https://a.test:443/h"
    for _ in range(3):
        assert b.allow(k) is None
        b.failure(k)
    assert b.state(k) == "open" and b.allow(k) is not None
    assert b.allow("https://other.test:443/h") is None, "per endpoint"
    clock.advance(seconds=31)
    assert b.allow(k) is None, "one probe when half-open"
    assert b.allow(k) is not None, "only one probe at a time"
    b.failure(k)
    assert b.state(k) == "open", "a failed probe opens again"
    clock.advance(seconds=31)
    assert b.allow(k) is None
    b.success(k)
    assert b.state(k) == "closed" and b.allow(k) is None


# ------------------------------------------------------------------ verifier


def _signed(secret: str, body: dict, ts: int | None = None, key: str | None = None):
    raw = json.dumps(body).encode()
    ts = int(time.time()) if ts is None else ts
    return {"X-Mediation-Timestamp": str(ts), "X-Mediation-Signature": sign(secret, ts, raw),
            "Idempotency-Key": key or body["message_id"]}, raw


def test_verifier_accepts_a_good_webhook_and_flags_a_duplicate():
    mid = str(uuid.uuid4())
    h, raw = _signed("k" * 20, {"message_id": mid, "category": "care_refusal"})
    ok = verify_webhook(secret="k" * 20, headers=h, body=raw)
    assert ok.ok and ok.idempotency_key == mid and not ok.duplicate
    again = verify_webhook(secret="k" * 20, headers=h, body=raw, seen={mid})
    assert again.ok and again.duplicate


def test_verifier_refuses_wrong_signature_tampering_stale_and_bad_keys():
    mid = str(uuid.uuid4())
    h, raw = _signed("k" * 20, {"message_id": mid})
    assert verify_webhook(secret="other" * 5, headers=h, body=raw).reason == "bad_signature"
    assert verify_webhook(secret="k" * 20, headers=h,
                          body=raw.replace(mid.encode(), str(uuid.uuid4()).encode())
                          ).reason == "bad_signature"
    old_h, old_raw = _signed("k" * 20, {"message_id": mid}, ts=int(time.time()) - 3600)
    assert verify_webhook(secret="k" * 20, headers=old_h,
                          body=old_raw).reason == "timestamp_outside_tolerance"
    other_key = {**h, "Idempotency-Key": str(uuid.uuid4())}
    assert verify_webhook(secret="k" * 20, headers=other_key,
                          body=raw).reason == "idempotency_key_mismatch"
    no_key = {k: v for k, v in h.items() if k != "Idempotency-Key"}
    assert verify_webhook(secret="k" * 20, headers=no_key, body=raw).reason == "missing_idempotency_key"
    assert verify_webhook(secret="k" * 20, headers={}, body=raw).reason == "missing_signature_headers"
    # rotation: any of several signatures may match
    rot = {**h, "X-Mediation-Signature": "v1=00," + h["X-Mediation-Signature"]}
    assert verify_webhook(secret="k" * 20, headers=rot, body=raw).ok


# ------------------------------------------------------------------ links, content


def test_ack_link_token_roundtrip_tamper_and_expiry():
    key = b"x" * 32
    aid = uuid.uuid4()
    now = datetime.now(UTC)
    tok = make_token(key, aid, now + timedelta(days=1))
    assert read_token(key, tok, now) == aid
    with pytest.raises(BadLink, match="bad_link_signature"):
        read_token(b"y" * 32, tok, now)
    with pytest.raises(BadLink, match="link_expired"):
        read_token(key, tok, now + timedelta(days=2))
    with pytest.raises(BadLink):
        read_token(key, "garbage", now)


def test_identity_needs_consent_and_rule_and_a_sealed_block():
    assert content.identity_allowed(consented=True, rule_requires=True, sealed_present=True)
    assert not content.identity_allowed(consented=False, rule_requires=True, sealed_present=True)
    assert not content.identity_allowed(consented=True, rule_requires=False, sealed_present=True)
    assert not content.identity_allowed(consented=True, rule_requires=True, sealed_present=False)
    assert content.minimal_identity({"family_name": "A", "free_text": "x", "phone": ""}) == {
        "family_name": "A"}
    sealed_by_intake = {"person": {"family_name": "A", "email": "a@x", "phone": "06"},
                        "referrer": {"name": "Dr B"}, "comment": "notes"}
    assert content.minimal_identity(sealed_by_intake) == {"family_name": "A", "phone": "06"}


def test_french_email_has_the_minimal_content():
    now = datetime(2026, 11, 23, 9, 30, tzinfo=UTC)
    body = content.alert_body(
        message_id="m", kind="alert",
        alert={"alert_id": uuid.uuid4(), "authority_id": "cpam"},
        dysfunction={"dysfunction_id": uuid.uuid4(), "structure": "cpts-ecm",
                     "category": "rights_blockage", "urgency": "urgent", "commune": "Sauve",
                     "concerned": "CPAM du Gard", "description": "Dossier CSS bloqué 4 mois.",
                     "observed_on": now, "reported_at": now},
        authority_name="CPAM", ack_due_at=now + timedelta(hours=4), ack_url="https://x/ack/t")
    subject, text = content.render_email(body)
    assert subject == "[Signalement URGENTE] Blocage dans le traitement des droits – Sauve"
    for part in ("Catégorie : Blocage dans le traitement des droits", "Lieu : Sauve",
                 "CPAM du Gard", "23/11/2026 10:30", "Dossier CSS bloqué 4 mois.",
                 "https://x/ack/t", "avant le 23/11/2026 14:30"):
        assert part in text

"""Plain rules of the read models."""

from __future__ import annotations

import uuid

from mediation_reporting import rules
from mediation_schemas.common import MotiveItem
from mediation_schemas.vocab import HealthRight, Motive


def test_one_form_is_one_referral_however_it_is_seen():
    rid, ev1, ev2 = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    assert rules.referral_key(rid, "s", "r", "c", ev1) == str(rid)
    assert rules.referral_key(None, "s", "r", "c", ev1) == rules.referral_key(None, "s", "r", "x", ev2)
    assert rules.referral_key(None, None, None, "c", ev1) == rules.referral_key(None, None, None, "c", ev2)
    assert rules.referral_key(None, None, None, "", ev1) != rules.referral_key(None, None, None, "", ev2)


def test_motive_codes_once_each_in_order():
    items = [MotiveItem(code=Motive.access_to_rights, right=HealthRight.puma),
             MotiveItem(code=Motive.care_interruption),
             MotiveItem(code=Motive.access_to_rights, right=HealthRight.css)]
    assert rules.motive_codes(items) == ["access_to_rights", "care_interruption"]


def test_rights_procedure_states_are_ordered():
    assert rules.status_rank(None) < rules.status_rank("started") < rules.status_rank("filed") \
        < rules.status_rank("opened") == rules.status_rank("refused")


def test_new_event_types_are_matched_by_shape():
    """Types added later by other services: a case ref makes a case notice, an alert ref
    fills the alert, anything else is counted (never dropped)."""
    from mediation_reporting import projection
    from mediation_reporting.service import handler_for
    from mediation_schemas.alerts import AlertRef
    from mediation_schemas.cases import CaseRef
    from mediation_schemas.envelope import Payload

    class SomethingAboutACase(Payload):
        event_type = "SomethingAboutACase"
        case: CaseRef

    class SomethingAboutAnAlert(Payload):
        event_type = "SomethingAboutAnAlert"
        alert: AlertRef

    class SomethingElse(Payload):
        event_type = "SomethingElse"
        n: int

    assert handler_for(SomethingAboutACase) is projection.case_notice
    assert handler_for(SomethingAboutAnAlert).__name__ == "alert_other"
    assert handler_for(SomethingElse) is projection.unprojected
    assert set(projection.HANDLERS) >= {"CaseOpened", "CollectiveActionRecorded", "AlertEscalated"}

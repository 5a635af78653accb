"""Domain rules, without broker or database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mediation_cases import calendar, rules
from mediation_cases.rules import KnownReferral, RuleViolation, decide_opening
from mediation_schemas.vocab import ClosureReason


def test_working_days_skip_weekends_and_french_public_holidays():
    assert calendar.is_working_day(date(2026, 11, 10))
    assert not calendar.is_working_day(date(2026, 11, 11))      # Armistice
    assert not calendar.is_working_day(date(2026, 11, 14))      # Saturday
    assert calendar.add_working_days(date(2026, 11, 10), 1) == date(2026, 11, 12)
    # Friday 24 Dec 2027 + 1: Christmas on Saturday, next working day is Monday 27
    assert calendar.add_working_days(date(2027, 12, 24), 1) == date(2027, 12, 27)
    # Easter Monday 2026 is 6 April; Ascension Thursday 14 May
    assert calendar.add_working_days(date(2026, 4, 3), 1) == date(2026, 4, 7)
    assert calendar.add_working_days(date(2026, 5, 13), 1) == date(2026, 5, 15)


def test_deadline_ends_at_paris_midnight_across_dst():
    # opened on Friday 23 Oct 2026 at 18:00 Paris (summer time); 3 working days: Mon 26,
    # Tue 27, Wed 28 -> ends Thursday 29 00:00 Paris = Wed 28 23:00 UTC (winter time)
    start = datetime(2026, 10, 23, 16, 0, tzinfo=UTC)
    assert calendar.deadline(start, 3) == datetime(2026, 10, 28, 23, 0, tzinfo=UTC)
    # a late-evening UTC time that is already the next day in Paris
    late = datetime(2026, 11, 9, 23, 30, tzinfo=UTC)           # Tue 10 Nov 00:30 Paris
    assert calendar.deadline(late, 1) == datetime(2026, 11, 12, 23, 0, tzinfo=UTC)
    # opened on Saturday: counting starts on Monday
    sat = datetime(2026, 11, 14, 10, 0, tzinfo=UTC)
    assert calendar.deadline(sat, 1) == datetime(2026, 11, 16, 23, 0, tzinfo=UTC)


@given(st.dates(min_value=date(2024, 1, 1), max_value=date(2030, 12, 31)),
       st.integers(min_value=1, max_value=15))
def test_deadline_counts_exactly_n_working_days(d, n):
    start = datetime(d.year, d.month, d.day, 12, 0, tzinfo=calendar.PARIS)
    due = calendar.deadline(start, n).astimezone(calendar.PARIS)
    assert (due.hour, due.minute) == (0, 0)
    last_day = (due - timedelta(minutes=1)).date()
    assert calendar.is_working_day(last_day)
    assert calendar.working_days_between(start, due - timedelta(minutes=1)) == n


def known(**kw) -> KnownReferral:
    base = dict(case_id="c1", revision=1, structure="s", area="a", mediator_id="m",
                is_primary=True, case_open=True)
    return KnownReferral(**{**base, **kw})


def test_opening_decisions():
    args = dict(revision=1, structure="s", area="a", mediator_id="m")
    assert decide_opening(known=None, open_case_for_person=None, **args).action == "open"
    d = decide_opening(known=None, open_case_for_person="c9", **args)
    assert (d.action, d.case_id) == ("attach", "c9")
    # the same referral again, same routing: nothing
    assert decide_opening(known=known(), open_case_for_person=None, **args).action == "ignore"
    # an older revision arriving late: nothing
    assert decide_opening(known=known(revision=3), open_case_for_person=None,
                          **{**args, "revision": 2}).action == "ignore"
    # a correction: update, never a second case
    d = decide_opening(known=known(), open_case_for_person=None, **{**args, "revision": 2})
    assert (d.action, d.reroute) == ("update", False)
    # a new routing: update and reassign
    d = decide_opening(known=known(), open_case_for_person=None,
                       **{**args, "mediator_id": "m2"})
    assert (d.action, d.reroute, d.case_id) == ("update", True, "c1")
    # a re-routed referral that only joined someone's case does not move that case
    d = decide_opening(known=known(is_primary=False), open_case_for_person=None,
                       **{**args, "area": "b"})
    assert (d.action, d.reroute) == ("update", False)


def test_closure_rules():
    ok = dict(status="open", contact_attempts=3, first_contact=True, min_attempts=3)
    rules.check_closure(reason=ClosureReason.unreachable, **ok)
    with pytest.raises(RuleViolation) as e:
        rules.check_closure(reason=ClosureReason.unreachable, **{**ok, "contact_attempts": 2})
    assert (e.value.code, e.value.field, e.value.status) == ("not_enough_attempts", "reason", 422)
    with pytest.raises(RuleViolation) as e:
        rules.check_closure(reason=ClosureReason.autonomous, **{**ok, "first_contact": False})
    assert e.value.code == "no_first_contact"
    rules.check_closure(reason=ClosureReason.moved_away, **{**ok, "first_contact": False})
    with pytest.raises(RuleViolation) as e:
        rules.check_closure(reason=ClosureReason.deceased, **{**ok, "status": "closed"})
    assert e.value.status == 409
    assert {rules.reason_kind(r) for r in ClosureReason} == {"has", "practical"}
    assert rules.reason_kind(ClosureReason.relay_in_place) == "has"
    assert rules.reason_kind(ClosureReason.unreachable) == "practical"


def test_version_check():
    rules.check_version(expected=4, current=4)
    with pytest.raises(RuleViolation) as e:
        rules.check_version(expected=3, current=4)
    assert (e.value.status, e.value.extra["current_version"]) == (409, 4)
    with pytest.raises(RuleViolation) as e:
        rules.check_version(expected=None, current=4)
    assert e.value.status == 428


def test_feedback_rule_and_coarse_outcomes():
    assert rules.feedback_allowed("received", False)
    assert not rules.feedback_allowed("in_progress", False)
    assert not rules.feedback_allowed("closed", False)
    assert rules.feedback_allowed("closed", True)
    assert {rules.coarse_outcome(r) for r in ClosureReason} == {"completed", "ended",
                                                                  "not_reached"}
    # the referrer is never told that the person died or stopped adhering
    assert rules.coarse_outcome(ClosureReason.deceased) == "ended"
    assert rules.coarse_outcome(ClosureReason.no_adherence) == "ended"


def test_identity_detection_in_free_text_names_fields_not_values():
    ident = {"person": {"family_name": "Dupont-Aïssa", "given_name": "Léa",
                        "birth_date": "1980-02-03", "phone": "+33 6 12 34 56 78"}}
    assert rules.identity_fields_in("Mme DUPONT AISSA a été refusée", ident) == ["family_name"]
    assert rules.identity_fields_in("née le 03/02/1980", ident) == ["birth_date"]
    assert rules.identity_fields_in("tél 06 12 34 56 78", ident) == ["phone"]
    assert rules.identity_fields_in("Refus de soins au cabinet du Dr Martin", ident) == []
    # a short given name inside another word does not count
    assert rules.identity_fields_in("Léandre est le nom du cabinet", ident) == []


def test_axes():
    assert rules.axis_for("contact_attempt") == 1
    assert rules.axis_for("rights_procedure") == 2
    assert rules.axis_for("other", 4) == 4
    assert rules.COLLECTIVE_AXIS["workshop"] == 3


def test_cli_prints_a_deadline(capsys):
    from mediation_core.cli import main

    assert main(["cases-deadline", "2026-11-10T10:00", "2"]) == 0
    out = capsys.readouterr().out
    assert '"due_paris": "2026-11-14T00:00:00+01:00"' in out   # Wed 11 Nov is a holiday


def test_inactivity_is_n_times_24_hours_whatever_the_clock_change():
    # 30 days before Monday 2 Nov 2026 crosses the end of summer time (25 Oct): the cutoff
    # that the caseload, the summary and the scan all use is still 720 hours earlier
    now = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
    cutoff = rules.inactivity_cutoff(now, 30)
    assert cutoff == now - timedelta(hours=720)
    assert rules.is_inactive(cutoff, now, 30)
    assert not rules.is_inactive(cutoff + timedelta(seconds=1), now, 30)

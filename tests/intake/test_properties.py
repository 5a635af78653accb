"""Property tests: random and malformed payloads never crash validation, never vanish."""

from __future__ import annotations

import copy
from datetime import date

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediation_intake.validation import Invalid, Valid, validate
from mediation_schemas.received import ReferralReceived
from tests.intake.forms import GP, HOSPITAL, form

TODAY = date(2026, 11, 23)
MARK = "ZQXJ"

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=30),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner,
                                                                max_size=4),
    max_leaves=20,
)
marked_text = st.text(max_size=20).map(lambda s: f"{MARK}{s}")
PATHS = [
    ("source_system",), ("source_reference",), ("referral_date",), ("urgency",),
    ("meeting_modes",), ("motives",), ("availability",), ("comment",), ("referrer",),
    ("person",), ("referrer", "name"), ("referrer", "phone"), ("referrer", "rpps"),
    ("referrer", "profession"), ("person", "family_name"), ("person", "given_name"),
    ("person", "birth_date"), ("person", "phone"), ("person", "email"), ("person", "postcode"),
    ("person", "commune"), ("person", "language"), ("person", "consent_contact"),
    ("person", "sex"), ("person", "address"),
]


def check(out) -> None:
    assert isinstance(out, Valid | Invalid)
    if isinstance(out, Invalid):
        assert out.problems, "a rejection always carries reasons"
        for p in out.problems:
            assert p.field and p.code and p.message
    else:
        # what is accepted is a well-formed contract instance
        ReferralReceived.model_validate(out.referral.model_dump(mode="json"))
        assert out.referral.person.consent_contact is True
        assert out.referral.person.birth_date <= TODAY


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values)
def test_any_json_value_is_accepted_or_rejected_with_reasons(raw):
    check(validate(raw, today=TODAY))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(example=st.sampled_from([GP, HOSPITAL]),
       mutations=st.lists(st.tuples(st.sampled_from(PATHS),
                                    st.one_of(json_values, marked_text, st.just(None),
                                              st.just("__delete__"))),
                          min_size=1, max_size=5))
def test_mutated_forms_never_crash_and_never_echo_values(example, mutations):
    f = copy.deepcopy(form(example))
    for path, value in mutations:
        target = f
        for k in path[:-1]:
            target = target.get(k) if isinstance(target, dict) else None
        if not isinstance(target, dict):
            continue
        if value == "__delete__":
            target.pop(path[-1], None)
        else:
            target[path[-1]] = value
    out = validate(f, today=TODAY)
    check(out)
    if isinstance(out, Invalid):
        assert MARK not in repr(out.problems), "a problem quoted a value sent"

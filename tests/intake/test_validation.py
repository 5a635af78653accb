"""The validation module on its own: normalisation, every problem, French reasons, no echo."""

from __future__ import annotations

from datetime import date

import pytest

from mediation_intake import normalise as n
from mediation_intake.validation import Invalid, NotJson, Valid, validate
from tests.intake.forms import CANARY, GP, HOSPITAL, canary_form, form

TODAY = date(2026, 11, 23)


def problems(raw, **kw) -> dict[str, str]:
    out = validate(raw, today=TODAY, **kw)
    assert isinstance(out, Invalid), "expected a rejection"
    assert out.problems, "a rejection always has reasons"
    return {p.field: p.code for p in out.problems}


@pytest.mark.parametrize("raw,e164", [
    ("06 12 34 56 78", "+33612345678"),
    ("06.12.34.56.78", "+33612345678"),
    ("0612345678", "+33612345678"),
    ("+33 6 12 34 56 78", "+33612345678"),
    ("+33 (0)6 12 34 56 78", "+33612345678"),
    ("0033 612 345 678", "+33612345678"),
    ("04-66-85-01-01", "+33466850101"),
    ("0262 12 34 56", "+262262123456"),      # La Réunion
    ("0696 12 34 56", "+596696123456"),      # Martinique mobile
    ("+40 721 234 567", "+40721234567"),     # a Romanian number stays international
])
def test_french_phone_numbers_are_normalised_to_e164(raw, e164):
    assert n.phone(raw) == e164


@pytest.mark.parametrize("raw", ["12", "06 12 34 56", "0012", "+33 0 12", "06-12-AB-56-78",
                                 "00 12 34 56 78", "+33 6 12 34 56 78 90"])
def test_unfixable_phones_are_refused(raw):
    with pytest.raises(n.Unfixable) as e:
        n.phone(raw)
    assert e.value.code == "invalid_phone"


@pytest.mark.parametrize("raw,expected", [
    ("1985-03-12", date(1985, 3, 12)),
    ("12/03/1985", date(1985, 3, 12)),
    ("2/3/1985", date(1985, 3, 2)),
    ("12-03-1985", date(1985, 3, 12)),
    ("12.03.1985", date(1985, 3, 12)),
    ("12/03/85", date(1985, 3, 12)),
    ("1/2/05", date(2005, 2, 1)),
    ("1er mars 1950", date(1950, 3, 1)),
    ("14 Août 1991", date(1991, 8, 14)),
])
def test_dates_written_the_french_way_are_read(raw, expected):
    assert n.parse_date(raw, today=TODAY) == expected


def test_names_spacing_and_case_are_normalised():
    assert n.family_name("  dupont   de la  fontaine ") == "DUPONT DE LA FONTAINE"
    assert n.given_name("jean - PIERRE") == "Jean-Pierre"
    assert n.given_name("marie  claire") == "Marie Claire"
    assert n.family_name("d’Artagnan") == "D'ARTAGNAN"
    assert n.family_name("بن علي") == "بن علي"  # any script, combining marks kept
    assert n.given_name("ngọc  ánh") == "Ngọc Ánh"
    for bad in ("Dup0nt", "Dupont!", "--", "Jean--Pierre"):
        with pytest.raises(n.Unfixable):
            n.family_name(bad)


def test_one_person_written_two_ways_gets_the_same_blind_index():
    from mediation_core.sealing import blind_index

    a, b = form(GP), form(GP, source_system="ch-ales-service-social")
    a["person"].update(family_name="Rouvière", given_name="Jean Pierre", birth_date="02/06/48")
    b["person"].update(family_name=" ROUVIERE ", given_name="jean-pierre", birth_date="1948-06-02")
    key = b"k" * 32
    refs = set()
    for f in (a, b):
        p = validate(f, today=TODAY).referral.person
        refs.add(blind_index(key, p.family_name, p.given_name, p.birth_date))
    assert len(refs) == 1
    c = form(GP)
    c["person"].update(family_name="Rouvière", given_name="Jean Pierre", birth_date="03/06/1948")
    p = validate(c, today=TODAY).referral.person
    assert blind_index(key, p.family_name, p.given_name, p.birth_date) not in refs


def test_both_published_examples_are_accepted():
    for ex in (GP, HOSPITAL):
        assert isinstance(validate(form(ex), today=TODAY), Valid)


def test_a_loosely_written_form_is_normalised():
    f = form(GP)
    f["person"].update(family_name=" rouvière ", given_name="marcel  andré",
                       birth_date="02/06/48", phone="04.66.85.55.12", postcode="30 460",
                       language="Français", interpreter_needed="non", sex="H")
    f["referrer"]["profession"] = "Médecin généraliste"
    f["urgency"] = "Prioritaire"
    f["meeting_modes"] = ["Visite à domicile", "téléphone"]
    f["motives"] = ["complex_care_path", {"code": "access_to_rights", "right": "CMU-C"}]
    out = validate(f, today=TODAY)
    assert isinstance(out, Valid), out
    r = out.referral
    assert (r.person.family_name, r.person.given_name) == ("ROUVIÈRE", "Marcel André")
    assert r.person.birth_date == date(1948, 6, 2)
    assert r.person.phone == "+33466855512" and r.person.postcode == "30460"
    assert r.person.language == "fr" and r.person.interpreter_needed is False
    assert r.person.sex.value == "male" and r.referrer.profession.value == "gp"
    assert [m.value for m in r.meeting_modes] == ["home_visit", "phone"]
    assert r.motives[1].right.value == "css"


def test_no_consent_to_be_contacted_is_rejected_with_that_reason():
    f = form(GP)
    f["person"]["consent_contact"] = False
    assert problems(f) == {"person.consent_contact": "no_consent_to_contact"}
    f["person"]["consent_contact"] = "non"
    assert problems(f) == {"person.consent_contact": "no_consent_to_contact"}
    del f["person"]["consent_contact"]
    assert problems(f) == {"person.consent_contact": "missing"}


@pytest.mark.parametrize("birth,code", [
    ("2030-01-01", "birth_date_in_future"),
    ("1850-01-01", "birth_date_implausible"),
    ("31/02/1990", "invalid_date"),
    ("hier", "invalid_date"),
    (19850312, "invalid_date"),
])
def test_impossible_birth_dates_are_rejected(birth, code):
    f = form(GP)
    f["person"]["birth_date"] = birth
    assert problems(f) == {"person.birth_date": code}


def test_every_problem_is_reported_not_just_the_first():
    f = form(HOSPITAL)
    del f["referrer"]["name"]
    f["person"].update(phone="12", email="pas-un-courriel", postcode="3017",
                       family_name="R2D2", consent_contact=False, favourite_colour="bleu")
    f["motives"] = [{"code": "access_to_rights"}, {"code": "cancer_screening"},
                    {"code": "other"}, {"code": "astrology"}]
    f["urgency"] = "très urgent"
    f["referral_date"] = "2031-01-01"
    got = problems(f)
    assert got == {
        "referrer.name": "missing",
        "person.phone": "invalid_phone",
        "person.email": "invalid_email",
        "person.postcode": "invalid_postcode",
        "person.family_name": "invalid_characters",
        "person.consent_contact": "no_consent_to_contact",
        "person.favourite_colour": "unknown_field",
        "motives[0].right": "missing_right",
        "motives[1].screening": "missing_screening",
        "motives[2].text": "missing_text",
        "motives[3].code": "unknown_code",
        "urgency": "unknown_code",
        "referral_date": "referral_date_in_future",
    }


def test_contact_rules_follow_the_meeting_modes():
    f = form(GP)
    f["person"].pop("phone")
    f["person"].pop("address")
    f["meeting_modes"] = ["phone", "home_visit"]
    assert problems(f) == {"person.phone": "no_contact_means", "person.address": "address_required"}
    f["person"]["email"] = "m.rouviere@exemple.fr"
    assert problems(f) == {"person.phone": "phone_required", "person.address": "address_required"}
    del f["person"]["email"]
    f["meeting_modes"] = []
    assert problems(f) == {"person.phone": "no_contact_means"}


def test_garbage_is_rejected_with_a_reason():
    assert problems(["not", "an", "object"]) == {"(payload)": "not_an_object"}
    assert problems(NotJson()) == {"(payload)": "bad_json"}
    assert problems({}) == {"source_system": "missing", "source_reference": "missing",
                            "referrer": "missing", "person": "missing", "motives": "missing"}
    got = problems({"source_system": "a b", "source_reference": 12, "person": "x", "motives": []})
    assert got["source_system"] == "invalid_format" and got["person"] == "wrong_type"
    assert got["motives"] == "too_few" and got["source_reference"] == "wrong_type"


def test_oversize_payload_is_rejected_as_too_large():
    f = form(GP)
    assert problems(f, size=70_000) == {"(payload)": "payload_too_large"}
    out = validate(f, today=TODAY, size=70_000)
    assert out.source_system == "msp-lasalle" and out.source_reference == f["source_reference"]


def test_messages_are_french_and_never_echo_the_values_sent():
    f = canary_form()
    f["person"].update(phone="CANARY-PHONE", email="CANARY@@", birth_date="CANARY-DATE",
                       family_name="CANARY 123")
    f["comment"] = "x" * 5000
    out = validate(f, today=TODAY)
    assert isinstance(out, Invalid)
    text = repr(out)
    assert "CANARY" not in text.upper()  # no value quoted, the bad e-mail included
    for v in CANARY.values():
        assert v not in text
    assert all(p.message and p.message[0].islower() for p in out.problems)
    assert {p.code for p in out.problems} >= {"invalid_phone", "invalid_email", "invalid_date",
                                               "invalid_characters", "too_long"}


def test_qualifiers_that_do_not_apply_are_dropped_and_repeats_removed():
    f = form(GP)
    f["motives"] = [{"code": "find_gp", "right": "css", "screening": "breast"},
                    {"code": "find_gp", "right": "ame"},
                    {"code": "care_interruption", "text": "suivi arrêté"},
                    {"code": "access_to_rights", "right": "puma", "screening": "cervix"}]
    f["meeting_modes"] = ["phone", "téléphone", "home_visit"]
    f["availability"] = [{"day": "lundi", "period": "matin"}, {"day": "monday",
                                                                "period": "morning"}]
    out = validate(f, today=TODAY)
    assert isinstance(out, Valid), out
    r = out.referral
    assert [(m.code.value, m.right, m.screening, m.text) for m in r.motives] == [
        ("find_gp", None, None, None),
        ("care_interruption", None, None, "suivi arrêté"),  # a précision stays on any motive
        ("access_to_rights", "puma", None, None)]
    assert [m.value for m in r.meeting_modes] == ["phone", "home_visit"]
    assert len(r.availability) == 1


def test_source_metric_label_cardinality_is_bounded(monkeypatch):
    from mediation_intake import intake

    monkeypatch.setattr(intake, "_source_labels", set())
    labels = [intake.source_label(f"sender-{i}") for i in range(intake.MAX_SOURCE_LABELS + 50)]
    assert len(set(labels)) == intake.MAX_SOURCE_LABELS + 1
    assert labels[-1] == "other" and intake.source_label("sender-0") == "sender-0"

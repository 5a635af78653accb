"""Assignment fallbacks, territory versions in force by date, the CLI (pure, no stack)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mediation_routing import territory as terr
from mediation_routing.assign import assign
from mediation_routing.decide import cli_view, decide

VERSIONS = terr.packaged_versions()
CPTS = next(v for v in VERSIONS if v.structure == "cpts-ecm")
SJ, SH = "saint-jean-du-gard-lasalle", "saint-hippolyte-quissac-sauve"
M1, M2 = "cpts-ecm-med-01", "cpts-ecm-med-02"
D = date(2026, 3, 10)


def _with(doc_edit, version=2, effective=date(2026, 1, 1)):
    doc = terr.to_document(CPTS)
    doc_edit(doc)
    return terr.from_document(doc, version=version, effective_from=effective)


def _leave(mid, start, end):
    def edit(doc):
        for m in doc["mediators"]:
            if m["id"] == mid:
                m["leaves"].append({"from": start, "to": end})
    return edit


def test_area_mediator_by_default():
    a = assign(CPTS, SJ, D, {})
    assert (a.mediator_id, a.reason, a.assigned_by) == (M1, "area_mediator", "area")


def test_leave_window_at_the_referral_date_falls_back_to_another_mediator():
    sv = _with(_leave(M1, "2026-03-01", "2026-03-15"))
    a = assign(sv, SJ, D, {})
    assert (a.mediator_id, a.reason, a.assigned_by) == (M2, "mediator_absent", "structure_fallback")
    assert assign(sv, SJ, date(2026, 3, 16), {}).mediator_id == M1  # back the day after
    assert assign(sv, SJ, date(2026, 3, 15), {}).mediator_id == M2  # last day inclusive


def test_over_capacity_falls_back_then_nobody_goes_to_the_coordinator():
    a = assign(CPTS, SJ, D, {M1: 40})
    assert (a.mediator_id, a.reason) == (M2, "over_capacity")
    a = assign(CPTS, SJ, D, {M1: 40, M2: 40})
    assert (a.mediator_id, a.reason, a.assigned_by) == (None, "over_capacity", "none")
    sv = _with(lambda d: [_leave(M1, "2026-01-01", "2026-12-31")(d),
                          _leave(M2, "2026-03-01", "2026-03-31")(d)])
    assert assign(sv, SJ, D, {}).mediator_id is None
    assert assign(sv, SJ, D, {}).reason == "mediator_absent"


def test_decision_without_mediator_is_unroutable_no_mediator():
    sv = _with(lambda d: [_leave(M1, "2026-01-01", "2026-12-31")(d),
                          _leave(M2, "2026-01-01", "2026-12-31")(d)])
    hist = terr.TerritoryHistory(VERSIONS + [sv])
    d = decide("Lasalle", None, D, hist, {})
    assert not d.routed and d.reason_code == "no_mediator" and d.area == SJ
    assert d.structure == "cpts-ecm" and d.territory_version == 2
    d_before = decide("Lasalle", None, date(2025, 12, 31), hist, {})
    assert d_before.routed and d_before.territory_version == 1 and d_before.mediator_id == M1


def test_versions_in_force_follow_the_referral_date():
    def move_colognac(doc):
        for p in doc["places"]:
            if p["name"] == "Colognac":
                p["area"] = SH
    v2 = _with(move_colognac, version=2, effective=date(2026, 6, 1))
    hist = terr.TerritoryHistory(VERSIONS + [v2])
    early = decide("Colognac", None, date(2026, 5, 31), hist, {})
    late = decide("Colognac", None, date(2026, 6, 1), hist, {})
    assert (early.area, early.territory_version, early.mediator_id) == (SJ, 1, M1)
    assert (late.area, late.territory_version, late.mediator_id) == (SH, 2, M2)


def test_invalid_territory_documents_are_refused_with_the_field():
    doc = terr.to_document(CPTS)
    doc["places"][0]["area"] = "nowhere"
    with pytest.raises(terr.TerritoryError, match=r"places\[0\]\.area"):
        terr.from_document(doc, version=2, effective_from=D)
    doc = terr.to_document(CPTS)
    doc["mediators"][0]["leaves"] = [{"from": "2026-03-10", "to": "2026-03-01"}]
    with pytest.raises(terr.TerritoryError, match="leaves"):
        terr.from_document(doc, version=2, effective_from=D)



@pytest.mark.parametrize("edit,field", [
    (lambda d: d["places"][0].update(postcodes="30140"), r"places\[0\]\.postcodes"),
    (lambda d: d["places"][0].update(aliases=[3]), r"places\[0\]\.aliases"),
    (lambda d: d["places"][0].update(numbers=["a", "b"]), r"places\[0\]\.numbers"),
    (lambda d: d["places"][0].update(numbers=[9, 1]), r"places\[0\]\.numbers"),
    (lambda d: d["places"][0].update(numbers=5), r"places\[0\]\.numbers"),
    (lambda d: d["mediators"][0].update(capacity=True), r"mediators\[0\]\.capacity"),
    (lambda d: d.update(places="Sauve"), r"territory\.places"),
    (lambda d: d.update(coordinators="coord-1"), r"territory\.coordinators"),
])
def test_badly_shaped_fields_are_refused_not_misread(edit, field):
    """A string where a list is expected is not read letter by letter; nothing raises
    anything but a TerritoryError naming the field (a 422, or a dead letter, not a 500)."""
    doc = terr.to_document(CPTS)
    edit(doc)
    with pytest.raises(terr.TerritoryError, match=field):
        terr.from_document(doc, version=2, effective_from=D)


def test_document_round_trip_is_stable():
    doc = terr.to_document(CPTS)
    again = terr.to_document(terr.from_document(doc, version=1, effective_from=CPTS.effective_from))
    assert again == doc


def test_cli_view_shape():
    hist = terr.TerritoryHistory(VERSIONS)
    v = cli_view(decide("Sauve (30610)", None, D, hist, {}))
    assert {k: v[k] for k in ("status", "structure", "area", "mediator", "place")} == {
        "status": "routed", "structure": "cpts-ecm", "area": SH, "mediator": M2, "place": "Sauve"}
    v = cli_view(decide("30140", None, D, hist, {}))
    assert v["status"] == "ambiguous" and v["mediator"] is None and len(v["candidates"]) > 2


def test_cli_command_prints_one_json_object():
    out = subprocess.run(
        [sys.executable, "-m", "mediation_core.cli", "route", "St Jean du Gard", "--postcode",
         "30270", "--date", "2026-03-10", "--packaged", "--json"],
        capture_output=True, text=True, timeout=60, check=True)
    obj = json.loads(out.stdout)
    assert obj["status"] == "routed" and obj["area"] == SJ and obj["mediator"] == M1
    assert obj["place"] == "Saint-Jean-du-Gard" and obj["territory_source"] == "packaged"
    assert obj["candidates"] == [] and obj["territory_version"] == 1
    out = subprocess.run(
        [sys.executable, "-m", "mediation_core.cli", "route", "Quissac 46320", "--packaged",
         "--json"], capture_output=True, text=True, timeout=60, check=True)
    obj = json.loads(out.stdout)
    assert obj["status"] == "outside" and obj["mediator"] is None
    assert obj["candidates"][0]["department"] == "46" and obj["reason"]


def test_reference_table_is_consistent():
    refs = terr.reference_communes()
    codes = [r.insee for r in refs]
    assert len(codes) == len(set(codes)), "INSEE codes are unique"
    for r in refs:
        assert len(r.insee) == 5 and r.department and r.postcodes
        assert all(len(pc) == 5 and pc.isdigit() for pc in r.postcodes)
        assert r.insee[:2].upper() == r.department.upper() or r.department in ("2A", "2B")
    in_territory = {r.insee for r in refs if r.role == "territory"}
    assert in_territory == {p.code for p in CPTS.places}


@settings(max_examples=200, deadline=None)
@given(text=st.one_of(st.none(), st.text(max_size=60)),
       on=st.dates(min_value=date(1990, 1, 1), max_value=date(2100, 1, 1)),
       loads=st.dictionaries(st.sampled_from([M1, M2, "x"]), st.integers(0, 100)))
def test_decide_never_crashes(text, on, loads):
    hist = terr.TerritoryHistory(VERSIONS)
    d = decide(text, None, on, hist, loads)
    assert d.routed == bool(d.mediator_id)
    assert d.routed or d.reason_code in ("outside_territory", "ambiguous", "unknown_place",
                                         "no_mediator")
    assert cli_view(d)["status"] in ("routed", "ambiguous", "outside", "unknown")

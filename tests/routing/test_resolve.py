"""Place resolution on the packaged territory: spellings, variants, traps, properties."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mediation_routing import territory as terr
from mediation_routing.resolve import Gazetteer, gazetteer_for, resolve

VERSIONS = terr.packaged_versions()
GAZ = gazetteer_for(VERSIONS)
CPTS = next(v for v in VERSIONS if v.structure == "cpts-ecm")
SJ, SH = "saint-jean-du-gard-lasalle", "saint-hippolyte-quissac-sauve"


def _area(text, postcode=None, ctx=None):
    r = resolve(text, postcode, GAZ, context_structure=ctx)
    assert r.status == "routed", (text, postcode, r.status, r.detail,
                                  [p.name for p, _ in r.candidates])
    return r.area


def _not_routed(text, postcode=None, ctx=None):
    r = resolve(text, postcode, GAZ, context_structure=ctx)
    assert r.status != "routed", (text, postcode, r.rule, r.place_ref())
    return r


def _strip_accents(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


# ------------------------------------------------------------------ the territory file

def test_packaged_territory_applies_the_domain_fixes():
    by_name = {p.name: p for p in CPTS.places}
    assert len(CPTS.places) == 45
    assert "Carnas" in by_name and "Carnes" in by_name["Carnas"].source_spellings
    assert by_name["Thoiras"].area == by_name["Corbès"].area == SJ
    assert "Thoiras-Corbès" in by_name["Thoiras"].source_spellings
    durfort = by_name["Durfort-et-Saint-Martin-de-Sossenac"]
    assert set(durfort.source_spellings) == {"Durfort", "Saint-Martin-de-Sossenac"}
    assert durfort.area == SH
    assert by_name["Bassurels"].department == "48" and by_name["Bassurels"].postcodes == ("48400",)
    assert sum(p.area == SJ for p in CPTS.places) == 17
    assert sum(p.area == SH for p in CPTS.places) == 28


@pytest.mark.parametrize("row", terr.source_rows("cpts-ecm-communes.csv"), ids=lambda r: r["commune_as_written_in_source"])
def test_every_spelling_of_the_territory_file_routes_to_its_area(row):
    written = row["commune_as_written_in_source"]
    assert _area(written) == row["sub_territory"]
    assert _area(written, ctx="cpts-ecm") == row["sub_territory"]
    r = resolve(written, None, GAZ)
    assert r.structure == row["structure"]
    assert r.places and all(p.structure == "cpts-ecm" for p in r.places)


@pytest.mark.parametrize("place", CPTS.places, ids=lambda p: p.name)
def test_every_official_name_routes_with_and_without_its_postcode(place):
    assert _area(place.name) == place.area
    for pc in place.postcodes:
        assert _area(place.name, pc) == place.area
        assert _area(f"{place.name} ({pc})") == place.area
        assert _area(f"{pc} {place.name}") == place.area
    assert resolve(place.name, None, GAZ).place_ref()["code"] == place.code


def _variants(name: str) -> list[str]:
    v = {name, name.upper(), name.lower(), _strip_accents(name), _strip_accents(name).upper(),
         name.replace("-", " "), name.replace("-", " ").lower(), name.replace("'", "’"),
         f"  {name}  ", f"{name}, Gard" if not name == "Bassurels" else f"{name}, Lozère",
         f"commune de {name}", f"{name}, France"}
    for full, short in (("Saint-", "St-"), ("Saint-", "St "), ("Sainte-", "Ste-"),
                        ("Sainte-", "Ste "), ("-lès-", " les "), ("-lès-", "-lez-")):
        if full in name:
            v.add(name.replace(full, short))
    for art in ("Les ", "La ", "L'"):
        if name.startswith(art):
            v.add(name[len(art):])
            v.add(name.replace(art, art.strip().upper() + (" " if art != "L'" else ""), 1))
    return sorted(v)


@pytest.mark.parametrize("place", CPTS.places, ids=lambda p: p.name)
def test_generated_variants_route_to_the_right_area(place):
    for text in _variants(place.name):
        assert _area(text) == place.area, text


REAL_WORLD = [
    ("ST JEAN DU GARD", None, SJ), ("st-jean-du-gard 30270", None, SJ),
    ("Saint Jean du Gard (30270)", None, SJ), ("saint-jean-du-gard", "30270", SJ),
    ("St Hippolyte du Fort", None, SH), ("ST HIPPOLYTE DU FORT 30170", None, SH),
    ("St-Hippolyte", "30170", SH), ("Saint Hippolyte (30170)", None, SH),
    ("St Hipolyte du Fort", None, SH), ("Saint-Hyppolite-du-Fort", None, SH),
    ("Lestrechure", None, SJ), ("L Estrechure", None, SJ), ("l'estréchure", None, SJ),
    ("L’ESTRECHURE 30124", None, SJ), ("Plantiers", None, SJ), ("LES PLANTIERS", None, SJ),
    ("Quisac", None, SH), ("QUISSAC 30260", None, SH), ("Quissac (Gard)", None, SH),
    ("Lasale", None, SJ), ("La Salle", "30460", SJ), ("Lassalle 30460", None, SJ),
    ("Monoblett", None, SH), ("Conquayrac", None, SH), ("Thorias", None, SJ),
    ("Qusisac", None, SH), ("Coolgnac", None, SJ), ("MONBOLET", None, SH), ("Sauve 30610", None, SH),
    ("SAUVE", None, SH), ("Vic le Fesq", None, SH), ("Vic-le-Fesq (30260)", None, SH),
    ("Brouzet les Quissac", None, SH), ("Brouzet lez Quissac", None, SH),
    ("Cannes et Clairan", None, SH), ("Cannes & Clairan", None, SH), ("Cannes", "30260", SH),
    ("Orthoux Sérignac Quilhan", None, SH), ("Orthoux", None, SH), ("Quilhan", None, SH),
    ("Logrian Florian", None, SH), ("Logrian", None, SH),
    ("Durfort et St Martin de Sossenac", None, SH), ("Durfort 30170", None, SH),
    ("St Martin de Sossenac", None, SH), ("Carnes", None, SH), ("Carnas 30260", None, SH),
    ("Thoiras Corbes", None, SJ), ("Thoiras", "30140", SJ), ("Corbès", None, SJ),
    ("Le Mas Soubeyran", None, SJ), ("Mas Soubeyran, Mialet", None, SJ),
    ("Ste Croix de Caderle", None, SJ), ("Ste-Croix-de-Caderle", "30460", SJ),
    ("St Felix de Palieres", None, SJ), ("St André de Valborgne", None, SJ),
    ("St Bonnet de Salendrinque", None, SJ), ("Saint-Roman-de-Codieres", None, SH),
    ("St Theodorit", None, SH), ("St Nazaire des Gardies", None, SH),
    ("La Cadière et Cambo", None, SH), ("Cadiere et Cambo", None, SH),
    ("St Jean de Crieulon", None, SH), ("Bassurels (48)", None, SJ), ("Bassurels 48400", None, SJ),
    ("30270", None, SJ), ("Quissac Gard", None, SH), ("Sauve - Gard", None, SH),
    ("Mialet - Le Mas Soubeyran", None, SJ), ("Le Mas Soubeyran - Mialet (30140)", None, SJ),
    ("Durfort-et-St-Martin", None, SH), ("Orthoux-Sérignac", None, SH),
    ("SAINT - JEAN - DU - GARD", None, SJ), ("St Jean du Gard - 30270", None, SJ),
    # urban structures: neighbourhoods and street ranges, not communes
    ("Belsunce, Marseille", None, "mrs-centre-nord"), ("Frais Vallon 13013", None, "mrs-quartiers-nord"),
    ("Marseille 13e, Frais Vallon", None, "mrs-quartiers-nord"),
    ("La Castellane", "13016", "mrs-quartiers-nord"),
    ("45 bd National 13003 Marseille", None, "mrs-centre-nord"),
    ("312 boulevard National, 13003 Marseille", None, "mrs-quartiers-nord"),
    ("Les Izards, Toulouse", None, "tls-izards"), ("Arnaud-Bernard 31000", None, "tls-arnaud-bernard"),
]


@pytest.mark.parametrize("text,postcode,area", REAL_WORLD)
def test_real_world_variants(text, postcode, area):
    assert _area(text, postcode) == area


TRAPS = [
    # same-name communes in other departments, written with their postcode or department
    ("Quissac 46320", None), ("Quissac (46)", None), ("Quissac, Lot", None), ("Quissac", "46320"),
    ("Cros 63810", None), ("Cros (63)", None), ("Vabres 15100", None), ("Mialet 24450", None),
    ("Mialet (Dordogne)", None), ("Saumane 04150", None), ("Peyrolles 11190", None),
    ("Pompignan 82170", None), ("Pompignan (82)", None), ("Durfort 81540", None),
    ("Durfort (09)", None), ("Bassurels (30)", None), ("Saint-Hippolyte 66510", None),
    # the same name points elsewhere, or a hamlet name that is also a commune
    ("Cannes", None), ("Sérignac", None), ("La Salle", None), ("St Hippolyte", None),
    ("Saint-Jean", None), ("St Jean", None), ("Saint-Nazaire", None), ("Bassens", None),
    # names a letter away from a territory commune
    ("Vabre", None), ("Carnac", None), ("Lioux", None), ("Crespin", None), ("Corbas", None),
    ("Pompignac", None), ("Crots", None), ("Montmirail", None), ("Cologne", None),
    ("Sardent", None), ("Thoiry", None), ("La Sauve", None), ("Sauveterre", None),
    ("Gros", None), ("Sauva", None), ("Liouk", None),
    # neighbouring communes just outside
    ("Anduze", None), ("Anduze 30140", None), ("Sommières", None), ("Lédignan", None),
    ("Saint-Jean-du-Pin", None), ("Générargues", None), ("Sumène", None), ("Ganges", None),
    ("Le Vigan", None), ("Florac", None), ("Saint-Christol-lès-Alès", None), ("Alès", None),
    ("Brouzet-lès-Alès", None), ("Saint-Hippolyte-de-Caton", None), ("Lézan", None),
    ("Saint-Clément", None), ("Saint-Bonnet-du-Gard", None), ("Anduz", None),
    # postcode contradicting the name
    ("Quissac", "30170"), ("Saint-Jean-du-Gard", "30140"), ("Lasalle 30170", None),
    ("Sauve (30260)", None), ("Colognac", "30610"),
    # two candidates in different areas, incomplete names
    ("St Jean", "30"), ("Saint-Jean-du", None), ("Brouzet", None), ("Saint-Bonnet-de", None),
    ("Cannes-et", None), ("Lasalle Lozère", None), ("Quissac Lot", None),
    # postcode alone shared by several communes
    ("30140", None), ("30460", None), ("30170", None), ("30260", None), ("30610", None),
    (None, "30440"), ("48400", None), ("13003", None),
    # cities served by neighbourhood only
    ("Marseille", None), ("Marseille 13003", None), ("Toulouse", None), ("Avignon", None),
    # nothing usable
    ("", None), (None, None), ("???", None), ("chez sa fille", None), ("SDF", None),
]


@pytest.mark.parametrize("text,postcode", TRAPS)
def test_traps_are_never_routed(text, postcode):
    r = _not_routed(text, postcode)
    assert r.reason_code in ("outside_territory", "ambiguous", "unknown_place")


def test_homonym_routes_only_in_its_own_structure_context():
    assert _area("Quissac", ctx="cpts-ecm") == SH
    r = _not_routed("Quissac", ctx="case-sante-toulouse")
    assert r.detail == "homonyms"
    assert {p.department for p, _ in r.candidates} == {"30", "46"}
    routed = resolve("Pompignan", None, GAZ)
    assert [p.code for p in routed.homonyms] == ["82142"]


def test_ambiguity_reasons_and_candidates():
    r = resolve("Quissac", "30170", GAZ)
    assert (r.status, r.detail) == ("ambiguous", "postcode_mismatch")
    names = [p.name for p, _ in r.candidates]
    assert "Quissac" in names and "Saint-Hippolyte-du-Fort" in names
    r = resolve("30140", None, GAZ)
    assert r.detail == "postcode_shared"
    assert {"Mialet", "Anduze"} <= {p.name for p, _ in r.candidates}
    r = resolve("St Jean", None, GAZ)
    assert r.status != "routed"
    r = resolve("Saint-Jean-de", None, GAZ)
    assert r.detail == "incomplete_name"
    assert {"Saint-Jean-du-Gard", "Saint-Jean-de-Crieulon"} & {p.name for p, _ in r.candidates}
    r = resolve("Sauve, Anduze", None, GAZ)
    assert (r.status, r.detail) == ("ambiguous", "segments_disagree")
    r = resolve("Quissac 46320", None, GAZ)
    assert r.status == "outside" and r.candidates[0][0].department == "46"


def test_a_place_removed_from_the_territory_becomes_outside():
    doc = terr.to_document(CPTS)
    doc["places"] = [p for p in doc["places"] if p["name"] != "Sauve"]
    v2 = terr.from_document(doc, version=2, effective_from=CPTS.effective_from)
    g = Gazetteer([v2] + [v for v in VERSIONS if v.structure != "cpts-ecm"])
    assert resolve("Sauve", None, g).status == "outside"
    assert resolve("Sauve", None, GAZ).status == "routed"


# ------------------------------------------------------------------ properties

@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.one_of(st.none(), st.text(max_size=120)),
       postcode=st.one_of(st.none(), st.text(max_size=12), st.from_regex(r"[0-9]{5}", fullmatch=True)),
       ctx=st.sampled_from([None, "cpts-ecm", "sept-marseille", "nowhere"]))
def test_resolution_never_crashes_and_is_deterministic(text, postcode, ctx):
    a = resolve(text, postcode, GAZ, context_structure=ctx)
    b = resolve(text, postcode, GAZ, context_structure=ctx)
    assert a.status in ("routed", "ambiguous", "outside", "unknown")
    assert a.rule != "error"
    assert (a.status, a.rule, a.place_ref(), a.detail, [p.code for p, _ in a.candidates]) == \
           (b.status, b.rule, b.place_ref(), b.detail, [p.code for p, _ in b.candidates])
    if a.status == "routed":
        assert a.structure and a.area and not a.candidates


_NAMES = st.sampled_from([p.name for p in CPTS.places])
_CASE = st.sampled_from([str.upper, str.lower, str.title, lambda s: s])


@settings(max_examples=300, deadline=None)
@given(name=_NAMES, case=_CASE, accents=st.booleans(), sep=st.sampled_from(["-", " ", " - "]),
       noise=st.sampled_from(["", " ", ", Gard", ", France", " (Gard)"]))
def test_spelling_noise_does_not_change_the_area(name, case, accents, sep, noise):
    place = next(p for p in CPTS.places if p.name == name)
    text = case(name.replace("-", sep))
    if accents:
        text = _strip_accents(text)
    if place.department == "48" and "Gard" in noise:
        noise = ""
    assert _area(text + noise) == place.area


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="abcdefghijklmnopqrstuvwxyz -'", min_size=1, max_size=30))
def test_random_words_route_only_close_to_a_served_name(text):
    """A routed random string is always within the fuzzy threshold of a served name."""
    from rapidfuzz import fuzz

    from mediation_routing.normalize import loose_keys, strict_key
    r = resolve(text, None, GAZ)
    if r.status == "routed":
        keys = loose_keys(strict_key(text))
        names = [n for p in r.places for n in (p.name, *p.aliases, *p.hamlets, *p.source_spellings)]
        best = max(fuzz.ratio(k, lk) for k in keys for n in names for lk in loose_keys(n))
        assert best >= 88 or any(strict_key(n).startswith(strict_key(text)) for n in names)


def test_a_large_mixed_set_never_routes_a_trap_or_to_a_wrong_area():
    from bench.routing import mixed_set

    routed = 0
    items = mixed_set(4000, seed=3)
    for text, area in items:
        r = resolve(text, None, GAZ)
        if area is None:
            assert r.status != "routed", text
        elif r.status == "routed":
            routed += 1
            assert r.area == area, text
    assert routed > 0.9 * sum(a is not None for _, a in items)

"""Place resolution: from a place as people write it to one official place, or to triage.

Pure module (no broker, no database). ``resolve(text, postcode, gazetteer)`` never raises
on any input and is deterministic (same inputs, same gazetteer -> same answer).

Tiers, the first that finds anything decides (the lower ones only add candidates):

1. ``exact``: the strict key (case, accents, hyphens/spaces, ’/', St/Ste, lès/lez) equals
   an official name, an alias, a former commune / hamlet, or the structure's own spelling.
2. ``normalised``: a loose key (no spaces, leading article dropped or glued) is equal.
3. ``prefix``: the name is the beginning of official names ("St Hippolyte"): routed only
   when a postcode or department picks exactly one of them, otherwise triage.
4. ``fuzzy``: rapidfuzz ``fuzz.ratio`` (normalised Indel similarity, 0-100) on the loose
   keys. Thresholds (see FUZZY_* below): the best place must score >= 88 and lead every
   place of another area -- and every place outside the territory -- by >= 6 points; with
   a postcode (or department) that the place has, >= 82 is enough. 88 admits one missing
   or extra letter, or two neighbouring letters swapped (scored as one edit), from 4
   letters up ("Quisac", "Sauv", "Monoblett", "Thorias") and one wrong letter only in
   names of 9 letters or more ("Conquayrac"): a wrong letter in a short name
   often *is* another commune (Vabre, Carnac, Lioux, Crespin, Corbas...), and those
   real neighbours sit in the reference table so that they win at tier 1.

Then the safety rules (when in doubt, triage, never guess):

- a postcode or department that none of the name's places has -> ``ambiguous``
  (postcode_mismatch / department_mismatch), candidates listed;
- the name of a served commune that also names communes elsewhere (homonyms) routes
  only if nothing points elsewhere: no postcode/department, a match on the official
  name or the structure's own spelling (not on a hamlet), and the referral's structure,
  when known, is the one that serves the commune -- otherwise ``ambiguous``;
- candidates in two areas -> ``ambiguous``; a postcode alone shared by several places ->
  ``ambiguous``; a city served by neighbourhood (Marseille, Toulouse) without a
  neighbourhood -> ``ambiguous``; only places outside -> ``outside``; nothing -> ``unknown``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache

from rapidfuzz import fuzz, process

from .normalize import LINKING, Parsed, loose_keys_from_tokens, parse, street_key, strict_key
from .territory import Place, RefCommune, StructureVersion, reference_communes

FUZZY_ACCEPT = 88.0
FUZZY_ACCEPT_CONFIRMED = 82.0
FUZZY_MARGIN = 6.0
FUZZY_FLOOR = 75.0        # below this a place is not even offered as a candidate
FUZZY_MIN_LEN = 4
MAX_CANDIDATES = 12

ROUTED, AMBIGUOUS, OUTSIDE, UNKNOWN = "routed", "ambiguous", "outside", "unknown"
_STRONG_VIA = {"official", "alias", "source"}
_MISMATCH = ("postcode_mismatch", "department_mismatch")


@dataclass(frozen=True)
class Match:
    place: Place
    via: str       # official | alias | source | hamlet
    score: float = 100.0


@dataclass
class Resolution:
    status: str
    rule: str
    places: tuple[Place, ...] = ()          # the place (or same-area group) routed to
    candidates: list[tuple[Place, float]] = field(default_factory=list)
    score: float | None = None
    detail: str = ""                        # finer reason code
    homonyms: tuple[Place, ...] = ()        # same-name places elsewhere, when routed anyway

    @property
    def structure(self) -> str | None:
        return self.places[0].structure if self.places else None

    @property
    def area(self) -> str | None:
        return self.places[0].area if self.places else None

    @property
    def reason_code(self) -> str:
        return {OUTSIDE: "outside_territory", AMBIGUOUS: "ambiguous",
                UNKNOWN: "unknown_place"}.get(self.status, "")

    def place_ref(self) -> dict[str, str] | None:
        if not self.places:
            return None
        if len(self.places) == 1:
            return self.places[0].ref()
        ps = sorted(self.places, key=lambda p: p.code)
        return {"kind": f"{ps[0].kind}_group", "code": ",".join(p.code for p in ps),
                "name": " / ".join(p.name for p in ps)}


# --------------------------------------------------------------------------- gazetteer

class Gazetteer:
    """Index of the places in force (served territories) and the reference communes."""

    def __init__(self, versions: Iterable[StructureVersion],
                 reference: Iterable[RefCommune] | None = None) -> None:
        self.places: list[Place] = []
        self.strict: dict[str, list[Match]] = {}
        self.loose: dict[str, list[Match]] = {}
        self.by_postcode: dict[str, list[Place]] = {}
        self.streets: dict[str, list[Place]] = {}
        self.cities: dict[str, list[Place]] = {}     # INSEE code of a city -> its served places
        inside_codes = set()
        for sv in versions:
            for p in sv.places:
                inside_codes.add(p.code)
                self._add(p)
                if p.city:
                    self.cities.setdefault(p.city, []).append(p)
        for r in reference if reference is not None else reference_communes():
            if r.insee in inside_codes:
                continue
            self._add(Place(kind="commune", code=r.insee, name=r.name, department=r.department,
                            postcodes=r.postcodes, structure=None, area=None, aliases=r.aliases,
                            hamlets=r.hamlets, role="outside" if r.role == "territory" else r.role))
        self._fuzzy_keys = sorted(k for k in self.loose if len(k) >= FUZZY_MIN_LEN)
        self._fuzzy_matches = [self.loose[k] for k in self._fuzzy_keys]
        self.by_code = {p.code: p for p in self.places}

    def _add(self, p: Place) -> None:
        self.places.append(p)
        if p.kind == "street":
            if p.street:
                self.streets.setdefault(street_key(p.street), []).append(p)
        else:
            names = [(p.name, "official")] + [(a, "alias") for a in p.aliases]
            names += [(s, "source") for s in p.source_spellings]
            names += [(h, "hamlet") for h in p.hamlets]
            for text, via in names:
                sk = strict_key(text)
                if not sk:
                    continue
                _put(self.strict, sk, Match(p, via))
                for lk in loose_keys_from_tokens(sk.split()):
                    _put(self.loose, lk, Match(p, via))
        for pc in p.postcodes:
            self.by_postcode.setdefault(pc, []).append(p)

    def fuzzy(self, key: str) -> list[tuple[Match, float]]:
        hits = process.extract(key, self._fuzzy_keys, scorer=fuzz.ratio, limit=25,
                               score_cutoff=FUZZY_FLOOR)
        out = []
        for k, score, idx in hits:
            if _transposed(key, k):  # one swap of neighbouring letters counts as one edit
                score = max(score, 100.0 * (1 - 1 / (len(key) + len(k))))
            for m in self._fuzzy_matches[idx]:
                out.append((m, float(score)))
        return out


def _transposed(a: str, b: str) -> bool:
    if len(a) != len(b) or a == b:
        return False
    diff = [i for i in range(len(a)) if a[i] != b[i]]
    return len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] \
        and a[diff[1]] == b[diff[0]]


def _put(d: dict[str, list[Match]], key: str, m: Match) -> None:
    lst = d.setdefault(key, [])
    if not any(x.place.code == m.place.code and x.via == m.via for x in lst):
        lst.append(m)


@lru_cache(maxsize=1)
def _reference() -> tuple[RefCommune, ...]:
    return tuple(reference_communes())


_GAZ_CACHE: dict[tuple, Gazetteer] = {}


def gazetteer_for(versions: Iterable[StructureVersion]) -> Gazetteer:
    """A gazetteer per set of versions in force (cached; versions are immutable)."""
    vs = tuple(versions)
    key = tuple((v.structure, v.version, v.fingerprint) for v in vs)
    g = _GAZ_CACHE.get(key)
    if g is None:
        if len(_GAZ_CACHE) > 32:
            _GAZ_CACHE.clear()
        g = _GAZ_CACHE[key] = Gazetteer(vs, _reference())
    return g


# --------------------------------------------------------------------------- resolution

def resolve(text: str | None, postcode: str | None, gaz: Gazetteer, *,
            context_structure: str | None = None) -> Resolution:
    """Resolve a written place. Never raises; deterministic."""
    try:
        parsed = parse(text, postcode)
        res = _resolve(parsed, gaz, context_structure)
        if res.status not in (ROUTED, OUTSIDE) and parsed.alt is not None:
            alt = _resolve(parsed.alt, gaz, context_structure)  # "Sauve Gard": a department
            if alt.status in (ROUTED, OUTSIDE) or (res.status == UNKNOWN and alt.status != UNKNOWN):
                return alt
        return res
    except Exception:  # a bug must not lose a referral: it goes to a person instead
        return Resolution(UNKNOWN, "error", detail="resolution_error")


def _resolve(pq: Parsed, gaz: Gazetteer, ctx: str | None) -> Resolution:
    if pq.street and pq.postcodes:
        r = _by_street(pq, gaz)
        if r is not None:
            return r
    if not pq.name:
        return _by_postcode_only(pq, gaz)
    groups = [g for g in (pq.segments, pq.subparts) if len(g) >= 2]
    if not groups:
        return _by_name(pq.name, pq, gaz, ctx)
    whole = _by_name(pq.name, pq, gaz, ctx, max_tier=2)
    if whole.status in (ROUTED, OUTSIDE):
        return whole
    for group in groups:  # "Le Mas Soubeyran, Mialet"; "Mialet - Le Mas Soubeyran"
        combined = _combine([_by_name(s, pq, gaz, ctx) for s in group])
        if combined.status != UNKNOWN:
            return combined
    return _by_name(pq.name, pq, gaz, ctx)


def _consistent(p: Place, pq: Parsed) -> bool:
    if pq.postcodes and not pq.postcodes <= set(p.postcodes):
        return False
    if pq.departments and (p.department or "").upper() not in pq.departments:
        return False
    return True


def _hinted(pq: Parsed) -> bool:
    return bool(pq.postcodes or pq.departments)


def _distinct(ms: Iterable[Match]) -> dict[str, Match]:
    best: dict[str, Match] = {}
    order = {"official": 0, "source": 1, "alias": 2, "hamlet": 3}
    for m in ms:
        cur = best.get(m.place.code)
        if cur is None or (m.score, -order[m.via]) > (cur.score, -order[cur.via]):
            best[m.place.code] = m
    return best


def _cands(ms: Iterable[Match | Place], extra: Iterable[Place] = ()) -> list[tuple[Place, float]]:
    out: dict[str, tuple[Place, float]] = {}
    for m in ms:
        p, s = (m.place, m.score) if isinstance(m, Match) else (m, 0.0)
        if p.code not in out or out[p.code][1] < s:
            out[p.code] = (p, s)
    for p in extra:
        out.setdefault(p.code, (p, 0.0))
    ranked = sorted(out.values(), key=lambda t: (-t[1], not t[0].inside, t[0].name, t[0].code))
    return ranked[:MAX_CANDIDATES]


def _by_name(name: str, pq: Parsed, gaz: Gazetteer, ctx: str | None,
             max_tier: int = 4) -> Resolution:
    """Tiers in order; a tier whose places all contradict the postcode/department lets the
    next (normalised, prefix) tiers try with that hint, and wins if none routes."""
    toks = name.split()
    mismatch: Resolution | None = None
    exact = gaz.strict.get(name)
    if exact:
        r = _decide(exact, "exact", pq, gaz, ctx)
        if r.detail not in _MISMATCH:
            return r
        mismatch = r
    loose = [m for k in loose_keys_from_tokens(toks) for m in gaz.loose.get(k, [])]
    if loose and max_tier >= 2:
        r = _decide(loose, "normalised", pq, gaz, ctx, homonym_ok=False)
        if r.status == ROUTED or (mismatch is None and r.detail not in _MISMATCH):
            return r
        mismatch = mismatch or r
    if max_tier < 3:
        return mismatch or Resolution(UNKNOWN, "no_match", detail="unknown_place")
    pre = [m for k, ms in gaz.strict.items() if k.startswith(name + " ") for m in ms]
    if pre:
        r = _decide_prefix(pre, pq, gaz, name)
        if mismatch is None or r.status == ROUTED:
            return r
    if mismatch is not None:
        return mismatch
    keys = loose_keys_from_tokens(toks)
    if keys and len(keys[0]) >= FUZZY_MIN_LEN and max_tier >= 4:
        return _decide_fuzzy(keys, pq, gaz, ctx)
    return Resolution(UNKNOWN, "no_match", detail="unknown_place")


def _decide(matches: list[Match], rule: str, pq: Parsed, gaz: Gazetteer, ctx: str | None,
            *, homonym_ok: bool = True) -> Resolution:
    best = _distinct(matches)
    ms = list(best.values())
    if _hinted(pq):
        kept = [m for m in ms if _consistent(m.place, pq)]
        if not kept:
            extra = [p for pc in sorted(pq.postcodes) for p in gaz.by_postcode.get(pc, [])]
            return Resolution(AMBIGUOUS, rule, candidates=_cands(ms, extra),
                              detail="postcode_mismatch" if pq.postcodes else "department_mismatch")
        ms = kept
    inside = [m for m in ms if m.place.inside]
    outside = [m for m in ms if not m.place.inside]
    cities = [m.place for m in outside if m.place.role == "city" and m.place.code in gaz.cities]
    if not inside and cities:
        served = [p for c in cities for p in gaz.cities[c.code]
                  if not pq.postcodes or pq.postcodes <= set(p.postcodes)]
        return Resolution(AMBIGUOUS, rule, candidates=_cands(served or gaz.cities[cities[0].code]),
                          detail="city_needs_neighbourhood")
    if not inside:
        return Resolution(OUTSIDE, rule, candidates=_cands(ms), score=100.0,
                          detail="outside_territory")
    homonyms: tuple[Place, ...] = ()
    if outside:
        one_place = len({m.place.code for m in inside}) == 1
        p0 = inside[0]
        tolerated = (homonym_ok and not _hinted(pq) and one_place and p0.place.kind == "commune"
                     and p0.via in _STRONG_VIA
                     and all(m.place.department != p0.place.department for m in outside)
                     and (ctx is None or ctx == p0.place.structure))
        if not tolerated:
            return Resolution(AMBIGUOUS, rule, candidates=_cands(ms), detail="homonyms")
        homonyms = tuple(sorted((m.place for m in outside), key=lambda p: p.code))
    areas = {(m.place.structure, m.place.area) for m in inside}
    if len(areas) > 1:
        return Resolution(AMBIGUOUS, rule, candidates=_cands(ms), detail="several_areas")
    places = tuple(sorted((m.place for m in inside), key=lambda p: p.code))
    vias = {m.via for m in inside}
    sub = "hamlet" if vias == {"hamlet"} else ("source_spelling" if "source" in vias and
                                               "official" not in vias else rule)
    if rule == "exact" and sub == "exact":
        sub = "exact_name"
    if _hinted(pq):
        sub += "+postcode" if pq.postcodes else "+department"
    return Resolution(ROUTED, sub, places=places, candidates=[], score=100.0,
                      homonyms=homonyms)


def _decide_prefix(matches: list[Match], pq: Parsed, gaz: Gazetteer, name: str) -> Resolution:
    ms = list(_distinct(matches).values())
    if _hinted(pq):
        kept = [m for m in ms if _consistent(m.place, pq)]
        places = {m.place.code: m.place for m in kept}
        if len(places) == 1 and kept[0].place.inside:
            return Resolution(ROUTED, "prefix+postcode" if pq.postcodes else "prefix+department",
                              places=(kept[0].place,), score=90.0)
        if kept:
            ms = kept
    elif len(ms) == 1 and ms[0].place.inside and _specific_prefix(name):
        # "Durfort-et-St-Martin": the start of one name only, and specific enough that an
        # unlisted commune elsewhere is unlikely to share it (not "Saint-Bonnet-de")
        return Resolution(ROUTED, "prefix", places=(ms[0].place,), score=90.0)
    return Resolution(AMBIGUOUS, "prefix", candidates=_cands(ms), detail="incomplete_name")


def _specific_prefix(name: str) -> bool:
    toks = name.split()
    distinctive = [t for t in toks if t not in LINKING and len(t) > 1]
    return len(distinctive) >= 2 and toks[-1] not in LINKING and len(name) >= 12


def _decide_fuzzy(keys: tuple[str, ...], pq: Parsed, gaz: Gazetteer,
                  ctx: str | None) -> Resolution:
    scored: dict[str, Match] = {}
    for k in keys:
        for m, s in gaz.fuzzy(k):
            cur = scored.get(m.place.code)
            if cur is None or s > cur.score:
                scored[m.place.code] = Match(m.place, m.via, s)
    if not scored:
        return Resolution(UNKNOWN, "fuzzy", detail="unknown_place")
    ranked = sorted(scored.values(), key=lambda m: (-m.score, not m.place.inside, m.place.code))
    pool = ranked
    threshold = FUZZY_ACCEPT
    if _hinted(pq):
        pool = [m for m in ranked if _consistent(m.place, pq)]
        threshold = FUZZY_ACCEPT_CONFIRMED
        if not pool:
            return Resolution(AMBIGUOUS, "fuzzy", candidates=_cands(ranked),
                              detail="postcode_mismatch" if pq.postcodes else "department_mismatch")
    best = pool[0]
    rivals = [m for m in ranked if m.place.code != best.place.code and
              (not best.place.inside or not m.place.inside or
               (m.place.structure, m.place.area) != (best.place.structure, best.place.area))]
    if _hinted(pq):
        rivals = [m for m in rivals if _consistent(m.place, pq)]
    elif best.place.inside and best.place.kind == "commune" and (ctx in (None, best.place.structure)):
        # same-name communes elsewhere: the same tolerance as for an exact name
        own = set(_loose_names(best.place))
        rivals = [m for m in rivals if m.place.inside or m.place.department == best.place.department
                  or not (own & set(_loose_names(m.place)))]
    margin_ok = not rivals or best.score - rivals[0].score >= FUZZY_MARGIN
    if best.score >= threshold and margin_ok:
        if best.place.inside:
            rule = "fuzzy" + ("+postcode" if pq.postcodes else "+department" if pq.departments else "")
            return Resolution(ROUTED, rule, places=(best.place,), score=round(best.score, 1))
        return Resolution(OUTSIDE, "fuzzy", candidates=_cands(pool), score=round(best.score, 1),
                          detail="outside_territory")
    return Resolution(AMBIGUOUS, "fuzzy", candidates=_cands(ranked), score=round(best.score, 1),
                      detail="uncertain_spelling")


def _loose_names(p: Place) -> list[str]:
    out: list[str] = []
    for text in (p.name, *p.aliases, *p.source_spellings):
        out += loose_keys_from_tokens(strict_key(text).split())
    return out


def _by_postcode_only(pq: Parsed, gaz: Gazetteer) -> Resolution:
    if not pq.postcodes:
        return Resolution(UNKNOWN, "no_input", detail="no_place_given")
    sets = [set(p.code for p in gaz.by_postcode.get(pc, [])) for pc in sorted(pq.postcodes)]
    codes = set.intersection(*sets) if sets else set()
    places = sorted((gaz.by_code[c] for c in codes), key=lambda p: p.code)
    if not places:
        return Resolution(UNKNOWN, "postcode_only", detail="unknown_postcode")
    if len(places) == 1 and places[0].inside and places[0].kind == "commune":
        return Resolution(ROUTED, "postcode_only", places=(places[0],), score=80.0)
    if all(not p.inside for p in places) and not any(p.code in gaz.cities for p in places):
        return Resolution(OUTSIDE, "postcode_only", candidates=_cands(places),
                          detail="outside_territory")
    return Resolution(AMBIGUOUS, "postcode_only", candidates=_cands(places),
                      detail="postcode_shared")


def _by_street(pq: Parsed, gaz: Gazetteer) -> Resolution | None:
    assert pq.street is not None
    ranges = [p for p in gaz.streets.get(pq.street, []) if _consistent(p, pq)]
    if not ranges:
        return None
    if pq.street_number is not None:
        hit = [p for p in ranges if p.numbers and p.numbers[0] <= pq.street_number <= p.numbers[1]]
        if len(hit) == 1:
            return Resolution(ROUTED, "street_range+postcode", places=(hit[0],), score=100.0)
    if len({(p.structure, p.area) for p in ranges}) == 1 and pq.street_number is None:
        return Resolution(ROUTED, "street+postcode", places=(ranges[0],), score=95.0)
    return Resolution(AMBIGUOUS, "street", candidates=_cands(ranges), detail="street_number_needed")


_SPECIFIC = {"street": 0, "neighbourhood": 1, "commune": 2}


def _combine(parts: list[Resolution]) -> Resolution:
    known = [r for r in parts if r.status != UNKNOWN]
    if not known:
        return parts[0]
    routed = [r for r in known if r.status == ROUTED]
    if routed:
        areas = {(r.structure, r.area) for r in routed}
        others = [r for r in known if r.status != ROUTED]
        codes = {p.code for r in routed for p in r.places}
        contradicted = any(not ({p.code for p, _ in r.candidates} & codes) or r.status == OUTSIDE
                           for r in others)
        if len(areas) == 1 and not contradicted:
            best = min(routed, key=lambda r: (min(_SPECIFIC.get(p.kind, 3) for p in r.places),
                                              r.rule != "exact_name"))
            return Resolution(ROUTED, best.rule + "+segments", places=best.places,
                              score=best.score, homonyms=best.homonyms)
        cands = [c for r in known for c in (r.candidates or [(p, r.score or 0.0) for p in r.places])]
        return Resolution(AMBIGUOUS, "segments", candidates=_cands([p for p, _ in cands]),
                          detail="segments_disagree")
    first = next((r for r in known if r.status == AMBIGUOUS), known[0])
    cands = [c for r in known for c in r.candidates]
    return Resolution(first.status, first.rule + "+segments",
                      candidates=_cands([p for p, _ in cands]), detail=first.detail)


# French explanations per reason detail, followed by the candidates when there are any
_DETAIL_FR = {
    "postcode_mismatch": "Le code postal ne correspond pas à la commune indiquée.",
    "department_mismatch": "Le département ne correspond pas à la commune indiquée.",
    "homonyms": ("Ce nom désigne plusieurs communes (ou un hameau et une commune) ; "
                 "rien ne permet de choisir."),
    "several_areas": "Le lieu correspond à plusieurs sous-territoires.",
    "postcode_shared": "Code postal seul, partagé par plusieurs communes.",
    "city_needs_neighbourhood": "Ville desservie par quartier : le quartier ou l'adresse manque.",
    "incomplete_name": "Nom incomplet, plusieurs communes possibles.",
    "uncertain_spelling": "Orthographe trop éloignée pour choisir sans risque.",
    "segments_disagree": "Les éléments du lieu désignent des endroits différents.",
    "street_number_needed": "La rue est partagée entre secteurs : le numéro manque.",
    "outside_territory": "Lieu hors du territoire des structures desservies.",
    # unknown places: never any candidate
    "no_place_given": "Aucune commune ni code postal indiqué.",
    "unknown_postcode": "Code postal inconnu du référentiel.",
    "resolution_error": "Erreur lors de la reconnaissance du lieu : à orienter à la main.",
}


def describe(res: Resolution) -> str:
    """A French explanation for the coordinator (official names only, never the raw text)."""
    if res.status == ROUTED:
        return "Lieu reconnu."
    names = ", ".join(f"{p.name} ({p.department or '?'})" for p, _ in res.candidates[:6])
    extra = f" Candidats : {names}." if names else ""
    return _DETAIL_FR.get(res.detail, "Lieu non reconnu.") + extra

"""Text normalisation for place names (pure functions, no I/O).

Two keys per name:

- the *strict key*: accents, case, punctuation and ’/' differences removed, words kept
  apart, abbreviations expanded (St -> saint, Ste -> sainte, lez/lès -> les, & -> et).
  "St Jean du Gard", "SAINT-JEAN-DU-GARD" and "Saint Jean-du-Gard" share one strict key.
- the *loose keys*: the strict key glued without spaces, with and without a leading
  article ("Les Plantiers" -> "lesplantiers" and "plantiers"; "L'Estréchure" ->
  "lestrechure" and "estrechure"). They catch "Lestrechure", "Plantiers", "Lasalle"
  written "La Salle" -- which is also the name of two other communes: the resolver
  treats loose matches as weaker than exact ones for that reason.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass, field

ARTICLES = ("le", "la", "les", "l")
_ABBREV = {
    "st": "saint", "ste": "sainte", "sts": "saints", "stes": "saintes",
    "lez": "les", "mt": "mont",
}
_STREET_TYPES = {
    "rue": "rue", "r": "rue", "bd": "boulevard", "bld": "boulevard", "blvd": "boulevard",
    "boulevard": "boulevard", "av": "avenue", "ave": "avenue", "avenue": "avenue",
    "chemin": "chemin", "impasse": "impasse", "imp": "impasse", "place": "place",
    "pl": "place", "allee": "allee", "allees": "allees", "route": "route", "rte": "route",
    "traverse": "traverse", "trav": "traverse", "cours": "cours", "quai": "quai",
    "square": "square", "montee": "montee", "passage": "passage",
}
_NOISE_SEGMENTS = {"france", "cedex", "fr"}
_PREFIX_NOISE = (("commune", "de"), ("ville", "de"), ("village", "de"), ("mairie", "de"),
                 ("hameau", "de"), ("hameau", "du"), ("lieu", "dit"), ("lieudit",))

# Metropolitan departments (code -> official name), for hints like "Quissac, Lot".
DEPARTMENTS = {
    "01": "Ain", "02": "Aisne", "03": "Allier", "04": "Alpes-de-Haute-Provence",
    "05": "Hautes-Alpes", "06": "Alpes-Maritimes", "07": "Ardèche", "08": "Ardennes",
    "09": "Ariège", "10": "Aube", "11": "Aude", "12": "Aveyron", "13": "Bouches-du-Rhône",
    "14": "Calvados", "15": "Cantal", "16": "Charente", "17": "Charente-Maritime",
    "18": "Cher", "19": "Corrèze", "2A": "Corse-du-Sud", "2B": "Haute-Corse",
    "21": "Côte-d'Or", "22": "Côtes-d'Armor", "23": "Creuse", "24": "Dordogne",
    "25": "Doubs", "26": "Drôme", "27": "Eure", "28": "Eure-et-Loir", "29": "Finistère",
    "30": "Gard", "31": "Haute-Garonne", "32": "Gers", "33": "Gironde", "34": "Hérault",
    "35": "Ille-et-Vilaine", "36": "Indre", "37": "Indre-et-Loire", "38": "Isère",
    "39": "Jura", "40": "Landes", "41": "Loir-et-Cher", "42": "Loire", "43": "Haute-Loire",
    "44": "Loire-Atlantique", "45": "Loiret", "46": "Lot", "47": "Lot-et-Garonne",
    "48": "Lozère", "49": "Maine-et-Loire", "50": "Manche", "51": "Marne",
    "52": "Haute-Marne", "53": "Mayenne", "54": "Meurthe-et-Moselle", "55": "Meuse",
    "56": "Morbihan", "57": "Moselle", "58": "Nièvre", "59": "Nord", "60": "Oise",
    "61": "Orne", "62": "Pas-de-Calais", "63": "Puy-de-Dôme", "64": "Pyrénées-Atlantiques",
    "65": "Hautes-Pyrénées", "66": "Pyrénées-Orientales", "67": "Bas-Rhin", "68": "Haut-Rhin",
    "69": "Rhône", "70": "Haute-Saône", "71": "Saône-et-Loire", "72": "Sarthe",
    "73": "Savoie", "74": "Haute-Savoie", "75": "Paris", "76": "Seine-Maritime",
    "77": "Seine-et-Marne", "78": "Yvelines", "79": "Deux-Sèvres", "80": "Somme",
    "81": "Tarn", "82": "Tarn-et-Garonne", "83": "Var", "84": "Vaucluse", "85": "Vendée",
    "86": "Vienne", "87": "Haute-Vienne", "88": "Vosges", "89": "Yonne",
    "90": "Territoire de Belfort", "91": "Essonne", "92": "Hauts-de-Seine",
    "93": "Seine-Saint-Denis", "94": "Val-de-Marne", "95": "Val-d'Oise",
}


def fold(text: str) -> str:
    """Lower case, no accents, typographic quotes and ligatures made plain."""
    t = text.replace("œ", "oe").replace("Œ", "OE").replace("æ", "ae").replace("Æ", "AE")
    t = unicodedata.normalize("NFKD", t)
    t = "".join(c for c in t if not unicodedata.combining(c))
    t = t.replace("’", "'").replace("‘", "'").replace("`", "'").replace("´", "'")
    t = t.replace("&", " et ")
    return t.casefold()


_WORD = re.compile(r"[a-z0-9]+")


def tokens(text: str) -> list[str]:
    """Words of a folded text, abbreviations expanded."""
    return [_ABBREV.get(w, w) for w in _WORD.findall(fold(text))]


def strict_key(text: str) -> str:
    return " ".join(tokens(text))


def loose_keys_from_tokens(toks: list[str]) -> tuple[str, ...]:
    if not toks:
        return ()
    glued = "".join(toks)
    if len(toks) > 1 and toks[0] in ARTICLES:
        return (glued, "".join(toks[1:]))
    return (glued,)


def loose_keys(text: str) -> tuple[str, ...]:
    return loose_keys_from_tokens(tokens(text))


DEPT_BY_NAME = {strict_key(v): k for k, v in DEPARTMENTS.items()}
DEPT_BY_NAME.update({"lozere": "48", "herault": "34", "ardeche": "07"})


@dataclass
class Parsed:
    """What the written place says once hints are taken out of it."""

    name: str = ""                                  # strict key of the name part (all segments)
    segments: list[str] = field(default_factory=list)  # strict keys of each name segment
    postcodes: set[str] = field(default_factory=set)
    departments: set[str] = field(default_factory=set)
    street: str | None = None                       # strict key "boulevard national"
    street_number: int | None = None
    alt: Parsed | None = None   # the same with a trailing department name read as a hint
    subparts: list[str] = field(default_factory=list)  # segments split again on " - "


_POSTCODE = re.compile(r"(?<![0-9])((?:[0-8][0-9]|9[0-5]|2a|2b)) ?([0-9]{3})(?![0-9])")
_DEPT_PAREN = re.compile(r"\(\s*([0-9]{2}|2a|2b)\s*\)")
_ARRONDISSEMENT = re.compile(r"(?<![0-9])([0-9]{1,2}) ?(?:e|eme|er|ieme|em)\b(?: ?arr\w*)?")
_STREET = re.compile(r"^(?:([0-9]{1,4}) ?(?:bis|ter|b|t)? )?([a-z]+) (.+)$")


def parse(text: str | None, postcode: str | None = None) -> Parsed:
    """Split a written place into name segments and hints (postcodes, departments, street)."""
    out = Parsed()
    if postcode:
        digits = re.sub(r"\s", "", fold(postcode))
        if re.fullmatch(r"[0-9]{5}", digits):
            out.postcodes.add(digits)
        elif re.fullmatch(r"[0-9]{2}|2a|2b", digits):
            out.departments.add(digits.upper())
    raw = fold(text or "")[:300]
    for m in _DEPT_PAREN.finditer(raw):
        out.departments.add(m.group(1).upper())
    raw = _DEPT_PAREN.sub(" , ", raw)
    for m in _POSTCODE.finditer(raw):
        out.postcodes.add((m.group(1) + m.group(2)).upper())
    raw = _POSTCODE.sub(" , ", raw)
    if "marseille" in raw:
        arr = _ARRONDISSEMENT.search(raw)
        if arr and 1 <= int(arr.group(1)) <= 16:
            out.postcodes.add(f"130{int(arr.group(1)):02d}")
            raw = raw[:arr.start()] + " " + raw[arr.end():]
    segments: list[str] = []
    for seg in re.split(r"[,;/()\[\]\n|]+", raw):
        toks = [_ABBREV.get(w, w) for w in _WORD.findall(seg)]
        if not toks:
            continue
        key = " ".join(toks)
        if key in _NOISE_SEGMENTS or all(t in _NOISE_SEGMENTS for t in toks):
            continue
        if key in DEPT_BY_NAME:
            out.departments.add(DEPT_BY_NAME[key])
            continue
        if len(toks) == 1 and re.fullmatch(r"[0-9]{2}|2a|2b", toks[0]):
            out.departments.add(toks[0].upper())
            continue
        toks = [t for t in toks if t not in _NOISE_SEGMENTS]
        for noise in _PREFIX_NOISE:
            if len(toks) > len(noise) and tuple(toks[:len(noise)]) == noise:
                toks = toks[len(noise):]
        if len(toks) > 1 and re.fullmatch(r"[0-9]{2}", toks[-1]) and toks[-1] != "00":
            out.departments.add(toks[-1])
            toks = toks[:-1]
        sm = _STREET.match(" ".join(toks))
        if sm and sm.group(2) in _STREET_TYPES and out.street is None:
            out.street = f"{_STREET_TYPES[sm.group(2)]} {sm.group(3)}"
            out.street_number = int(sm.group(1)) if sm.group(1) else None
            if sm.group(1):
                continue  # a numbered address line is not a place name
        toks = [t for t in toks if not t.isdigit()]
        if toks:
            segments.append(" ".join(toks))
            subs = [" ".join(_ABBREV.get(w, w) for w in _WORD.findall(x) if not w.isdigit())
                    for x in re.split(r"\s+-\s*|\s*-\s+", seg)]
            subs = [x for x in subs if x]
            out.subparts += subs if len(subs) > 1 else [" ".join(toks)]
    out.segments = segments
    out.name = " ".join(segments)
    if segments:
        alt = _trailing_department(segments[-1])
        if alt is not None:
            name, dept = alt
            out.alt = Parsed(name="", segments=[*segments[:-1], name],
                             postcodes=set(out.postcodes), departments={*out.departments, dept},
                             street=out.street, street_number=out.street_number,
                             subparts=[*out.subparts[:-1], name])
            out.alt.name = " ".join(out.alt.segments)
    return out


LINKING = {"le", "la", "les", "l", "de", "du", "des", "d", "et", "en", "sur", "sous", "aux",
           "au", "saint", "sainte", "saints", "saintes"}


def _trailing_department(seg: str) -> tuple[str, str] | None:
    """"sauve gard" -> ("sauve", "30"); never "saint jean du gard" (a linking word before)."""
    toks = seg.split()
    for n in (3, 2, 1):
        if len(toks) > n and " ".join(toks[-n:]) in DEPT_BY_NAME and toks[-n - 1] not in LINKING:
            return " ".join(toks[:-n]), DEPT_BY_NAME[" ".join(toks[-n:])]
    return None


def street_key(text: str) -> str:
    toks = tokens(text)
    if toks and toks[0] in _STREET_TYPES:
        toks[0] = _STREET_TYPES[toks[0]]
    return " ".join(toks)

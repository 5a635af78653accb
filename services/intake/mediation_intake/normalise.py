"""Normalisers for what French referral forms write in many ways. Pure functions.

Each returns the canonical value, or raises :class:`Unfixable` with a rule code and a
French message that never quotes the value.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from datetime import date


class Unfixable(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = message


# --------------------------------------------------------------------------- text

def squash(s: str) -> str:
    """Trim and collapse every run of whitespace (incl. non-breaking) to one space."""
    return " ".join(s.split())


def fold(s: str) -> str:
    """Lower case, no accents, single spaces: for matching codes and French synonyms."""
    s = unicodedata.normalize("NFKD", s)
    s = "".join(c for c in s if not unicodedata.combining(c))
    return " ".join(s.lower().replace("’", "'").split())


_NAME_SEPARATORS = " '-"


def _name_ok(s: str) -> bool:
    """Letters (any script, with their combining marks), single separators between words."""
    prev_sep = True
    for ch in s:
        cat = unicodedata.category(ch)
        if ch in _NAME_SEPARATORS:
            if prev_sep:
                return False
            prev_sep = True
        elif cat.startswith("L") or (cat.startswith("M") and not prev_sep):
            prev_sep = False
        else:
            return False
    return not prev_sep


def _name_common(s: str, what: str) -> str:
    s = unicodedata.normalize("NFC", s).replace("’", "'").replace("‘", "'")
    s = squash(s)
    s = re.sub(r"\s*-\s*", "-", s)
    s = re.sub(r"\s*'\s*", "'", s)
    if not s:
        raise Unfixable("empty", f"{what} vide")
    if not _name_ok(s):
        raise Unfixable("invalid_characters",
                        f"{what} : seules les lettres, espaces, traits d'union et apostrophes "
                        "sont acceptés (pas de chiffres ni de symboles)")
    return s


def family_name(s: str) -> str:
    """'  dupont   de la  fontaine' -> 'DUPONT DE LA FONTAINE'."""
    return _name_common(s, "nom de famille").upper()


def given_name(s: str) -> str:
    """'jean - PIERRE' -> 'Jean-Pierre'; 'marie  claire' -> 'Marie Claire'."""
    s = _name_common(s, "prénom")
    return re.sub(r"[^ '\-]+", lambda m: m.group(0)[:1].upper() + m.group(0)[1:].lower(), s)


# --------------------------------------------------------------------------- phones

# French overseas departments: national 0XYZ... numbers whose E.164 country code is not 33.
_OVERSEAS = {
    "262": "262", "692": "262", "693": "262",   # La Réunion
    "269": "262", "639": "262",                 # Mayotte
    "590": "590", "690": "590", "691": "590",   # Guadeloupe, Saint-Barthélemy, Saint-Martin
    "594": "594", "694": "594",                 # Guyane
    "596": "596", "696": "596", "697": "596",   # Martinique
}
_PHONE_CHARS = re.compile(r"^\+?[\d\s.\-/()]+$")
_PHONE_MSG = ("numéro de téléphone non reconnu : numéro français à 10 chiffres (06 12 34 56 78), "
              "+33 suivi de 9 chiffres, ou numéro international commençant par +")


def phone(s: str) -> str:
    """A phone number in E.164: '06 12 34 56 78', '+33 (0)6.12.34.56.78', '0033 6...'."""
    t = s.strip().replace("(0)", "")
    if not t or not _PHONE_CHARS.match(t):
        raise Unfixable("invalid_phone", _PHONE_MSG)
    plus = t.startswith("+")
    digits = re.sub(r"\D", "", t)
    if not plus and digits.startswith("00"):
        plus, digits = True, digits[2:]
    if plus:
        if digits.startswith("33"):
            national = digits[2:]
            if national.startswith("0"):
                national = national[1:]
            if len(national) == 9 and national[0] != "0":
                return "+33" + national
            raise Unfixable("invalid_phone", _PHONE_MSG)
        if 9 <= len(digits) <= 15 and digits[0] != "0":
            return "+" + digits
        raise Unfixable("invalid_phone", _PHONE_MSG)
    if len(digits) == 10 and digits[0] == "0" and digits[1] != "0":
        national = digits[1:]
        cc = _OVERSEAS.get(national[:3], "33")
        return f"+{cc}{national}"
    raise Unfixable("invalid_phone", _PHONE_MSG)


# --------------------------------------------------------------------------- dates

_MONTHS = {
    "janvier": 1, "janv": 1, "jan": 1, "fevrier": 2, "fevr": 2, "fev": 2, "mars": 3,
    "avril": 4, "avr": 4, "mai": 5, "juin": 6, "juillet": 7, "juil": 7, "aout": 8,
    "septembre": 9, "sept": 9, "sep": 9, "octobre": 10, "oct": 10, "novembre": 11, "nov": 11,
    "decembre": 12, "dec": 12,
}
_DATE_MSG = "date non reconnue : AAAA-MM-JJ ou JJ/MM/AAAA attendu"
_ISO = re.compile(r"^(\d{4})-(\d{1,2})-(\d{1,2})(?:[T ][\d:.]+(?:Z|[+-]\d{2}:?\d{2})?)?$")
_FR = re.compile(r"^(\d{1,2})\s*[/.\-]\s*(\d{1,2})\s*[/.\-]\s*(\d{4}|\d{2})$")
_FR_WORDS = re.compile(r"^(\d{1,2})(?:er)?\s+([a-z]+)\.?\s+(\d{4})$")


def parse_date(value: object, *, today: date, past: bool = True) -> date:
    """ISO or French writing of a date. A two-digit year is read as the most recent past
    year for past dates (birth dates), as 20YY otherwise."""
    if isinstance(value, date):
        return value
    if not isinstance(value, str):
        raise Unfixable("invalid_date", _DATE_MSG)
    s = fold(value)
    y = m = d = None
    if mt := _ISO.match(s):
        y, m, d = int(mt.group(1)), int(mt.group(2)), int(mt.group(3))
    elif mt := _FR.match(s):
        d, m = int(mt.group(1)), int(mt.group(2))
        yy = mt.group(3)
        y = int(yy)
        if len(yy) == 2:
            y = 2000 + y
            if past and y > today.year:
                y -= 100
    elif mt := _FR_WORDS.match(s):
        month = _MONTHS.get(mt.group(2))
        if month is None:
            raise Unfixable("invalid_date", _DATE_MSG)
        d, m, y = int(mt.group(1)), month, int(mt.group(3))
    else:
        raise Unfixable("invalid_date", _DATE_MSG)
    try:
        return date(y, m, d)
    except ValueError:
        raise Unfixable("invalid_date", "date inexistante (jour ou mois hors limites)") from None


# --------------------------------------------------------------------------- other fields

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}"
                    r"[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}[A-Za-z0-9])?)+$")


def email(s: str) -> str:
    t = s.strip()
    if len(t) > 254 or not _EMAIL.match(t):
        raise Unfixable("invalid_email", "adresse électronique non reconnue (forme nom@domaine.fr)")
    local, domain = t.rsplit("@", 1)
    return f"{local}@{domain.lower()}"


def postcode(s: str) -> str:
    t = re.sub(r"\s", "", s)
    if not re.fullmatch(r"\d{5}", t):
        raise Unfixable("invalid_postcode", "code postal à 5 chiffres attendu (ex. 30170)")
    return t


def digits_only(s: str) -> str:
    return re.sub(r"[\s.\-]", "", s).upper()


_LANGUAGES = {
    "francais": "fr", "french": "fr", "arabe": "ar", "arabic": "ar", "anglais": "en",
    "english": "en", "espagnol": "es", "portugais": "pt", "roumain": "ro", "russe": "ru",
    "ukrainien": "uk", "turc": "tr", "italien": "it", "allemand": "de", "chinois": "zh",
    "mandarin": "zh", "vietnamien": "vi", "tamoul": "ta", "albanais": "sq", "georgien": "ka",
    "armenien": "hy", "bulgare": "bg", "serbe": "sr", "tchetchene": "ce", "pachto": "ps",
    "pashto": "ps", "dari": "prs", "persan": "fa", "farsi": "fa", "bengali": "bn",
    "ourdou": "ur", "soninke": "snk", "wolof": "wo", "bambara": "bm", "peul": "ff",
    "lingala": "ln", "swahili": "sw", "tigrinya": "ti", "amharique": "am", "somali": "so",
    "kurde": "ku", "polonais": "pl", "berbere": "ber", "tamazight": "ber", "kabyle": "kab",
    "comorien": "swb", "romani": "rom", "langue des signes": "fsl", "lsf": "fsl",
}


def language(s: str) -> str:
    f = fold(s)
    if f in _LANGUAGES:
        return _LANGUAGES[f]
    if re.fullmatch(r"[a-z]{2,3}", f):
        return f
    raise Unfixable("invalid_language", "langue : code ISO 639 attendu (ex. fr, ar, ro) "
                    "ou nom de langue en français")


_TRUE = {"true", "oui", "o", "yes", "y", "1", "vrai", "x"}
_FALSE = {"false", "non", "n", "no", "0", "faux"}


def boolean(value: object) -> bool | object:
    """French yes/no words to booleans; anything else is returned as is (the model decides)."""
    if isinstance(value, str):
        f = fold(value)
        if f in _TRUE:
            return True
        if f in _FALSE:
            return False
    return value


# French (and loose) writings of the contract's codes, folded.
SYNONYMS: dict[str, dict[str, str]] = {
    "sex": {"f": "female", "femme": "female", "feminin": "female", "w": "female",
            "m": "male", "h": "male", "homme": "male", "masculin": "male",
            "autre": "other", "x": "other", "non precise": "other", "nsp": "other"},
    "meeting_mode": {"domicile": "home_visit", "visite a domicile": "home_visit",
                     "vad": "home_visit", "home": "home_visit", "telephone": "phone",
                     "tel": "phone", "par telephone": "phone", "appel": "phone"},
    "urgency": {"normale": "normal", "non urgent": "normal", "prioritaire": "priority",
                "urgente": "urgent", "urgence": "urgent"},
    "day": {"lundi": "monday", "mardi": "tuesday", "mercredi": "wednesday", "jeudi": "thursday",
            "vendredi": "friday", "samedi": "saturday", "dimanche": "sunday"},
    "period": {"matin": "morning", "apres-midi": "afternoon", "apres midi": "afternoon",
               "aprem": "afternoon", "soir": "evening", "soiree": "evening",
               "journee": "any", "toute la journee": "any", "indifferent": "any"},
    "profession": {"medecin generaliste": "gp", "medecin traitant": "gp", "mg": "gp",
                   "generaliste": "gp", "medecin specialiste": "specialist",
                   "infirmier": "nurse", "infirmiere": "nurse", "ide": "nurse", "idel": "nurse",
                   "pharmacien": "pharmacist", "pharmacienne": "pharmacist",
                   "sage-femme": "midwife", "sage femme": "midwife",
                   "kine": "physiotherapist", "kinesitherapeute": "physiotherapist",
                   "dentiste": "dentist", "psychologue": "psychologist",
                   "assistant social": "social_worker", "assistante sociale": "social_worker",
                   "travailleur social": "social_worker"},
    "structure_kind": {"cabinet": "private_practice", "cabinet liberal": "private_practice",
                       "maison de sante": "msp", "centre de sante": "health_centre",
                       "pharmacie": "pharmacy", "officine": "pharmacy", "hopital": "hospital",
                       "ch": "hospital", "chu": "hospital", "clinique": "hospital",
                       "mairie": "town_hall", "ccas": "town_hall"},
    "right": {"cmu": "css", "cmu-c": "css", "cmuc": "css", "acs": "css",
              "complementaire": "complementary", "mutuelle": "complementary"},
    "screening": {"sein": "breast", "col": "cervix", "col de l'uterus": "cervix",
                  "col de l uterus": "cervix", "cervical": "cervix", "colon": "colorectal",
                  "colo-rectal": "colorectal"},
}


def code(value: object, kind: str) -> object:
    """Fold a code written loosely ('Home visit', 'Visite à domicile') to the contract's."""
    if not isinstance(value, str):
        return value
    return _code(value, kind)


@functools.lru_cache(maxsize=4096)
def _code(value: str, kind: str) -> object:
    """Codes recur from form to form (and are never personal data): cached."""
    f = fold(value)
    syn = SYNONYMS.get(kind, {})
    if f in syn:
        return syn[f]
    return f.replace(" ", "_").replace("-", "_") if f else value

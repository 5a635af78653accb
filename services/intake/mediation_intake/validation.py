"""Validation of a referral form as received: pure, no I/O.

:func:`validate` takes the payload dict exactly as it arrived (possibly garbage) and returns
either :class:`Valid` (the normalised :class:`ReferralReceived`) or :class:`Invalid` with
*every* problem found, each as (field path, rule code, French message). Messages name the
field, the rule and what is accepted; they never quote the value sent.

Order of work: normalise the fields French forms write in many ways (phones, dates, names,
postcodes, yes/no, French words for codes), recording what cannot be fixed; validate the
result against the contract; then the business rules (consent to be contacted, plausible
birth date, motive qualifiers, a way to reach the person).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from pydantic import ValidationError

from mediation_schemas.common import Problem
from mediation_schemas.received import ID_PATTERN, ReferralReceived
from mediation_schemas.vocab import MeetingMode, Motive

from . import normalise as n

MAX_PAYLOAD_BYTES = 64 * 1024
MAX_PROBLEMS = 50
MAX_AGE_YEARS = 120
_ID = re.compile(ID_PATTERN)  # the contract's rule for source_system/source_reference
_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


class NotJson:
    """Stands for a body that was not JSON at all (HTTP path)."""


@dataclass(frozen=True)
class Valid:
    referral: ReferralReceived


@dataclass(frozen=True)
class Invalid:
    problems: list[Problem]
    source_system: str | None = None
    source_reference: str | None = None


@dataclass
class _Collector:
    problems: list[Problem] = field(default_factory=list)
    reported: set[str] = field(default_factory=set)

    def add(self, path: str, code: str, message: str) -> None:
        self.problems.append(Problem(field=path, code=code, message=message))
        self.reported.add(path)

    def covers(self, path: str) -> bool:
        return any(path == p or path.startswith(p + ".") or path.startswith(p + "[")
                   for p in self.reported)


def safe_ids(raw: Any) -> tuple[str | None, str | None]:
    """source_system and source_reference if present and well-formed (used to key answers)."""
    if not isinstance(raw, dict):
        return None, None
    out = []
    for k in ("source_system", "source_reference"):
        v = raw.get(k)
        out.append(v.strip() if isinstance(v, str) and _ID.match(v.strip()) else None)
    return out[0], out[1]


def too_large(max_bytes: int) -> Problem:
    """The answer to a form over the size limit (Kafka record or HTTP body)."""
    return Problem(field="(payload)", code="payload_too_large",
                   message=f"fiche trop volumineuse : {max_bytes} octets au plus")


def validate(raw: Any, *, today: date, size: int | None = None,
             max_bytes: int = MAX_PAYLOAD_BYTES) -> Valid | Invalid:
    """Validate and normalise one form. Never raises on any input."""
    src, ref = safe_ids(raw)
    if size is not None and size > max_bytes:
        return Invalid([too_large(max_bytes)], src, ref)
    if isinstance(raw, NotJson):
        return Invalid([Problem(field="(payload)", code="bad_json",
                                message="le corps n'est pas du JSON valide (UTF-8)")])
    if not isinstance(raw, dict):
        return Invalid([Problem(field="(payload)", code="not_an_object",
                                message="la fiche doit être un objet JSON")])
    c = _Collector()
    data = _prenormalise(raw, c, today)
    model: ReferralReceived | None = None
    try:
        model = ReferralReceived.model_validate(data)
    except ValidationError as err:
        for e in err.errors(include_url=False, include_input=False):
            path = _path(e["loc"])
            if c.covers(path):
                continue
            code, msg = _french(e, path)
            c.add(path, code, msg)
    except Exception:  # defensive: a payload must never crash intake
        c.add("(payload)", "invalid", "fiche illisible")
    _business_rules(data, c, today)
    if c.problems or model is None:
        if not c.problems:
            c.add("(payload)", "invalid", "fiche illisible")
        problems = c.problems
        if len(problems) > MAX_PROBLEMS:
            problems = problems[:MAX_PROBLEMS - 1] + [Problem(
                field="(payload)", code="too_many_problems",
                message=f"plus de {MAX_PROBLEMS} problèmes : seuls les premiers sont listés")]
        return Invalid(problems, src, ref)
    return Valid(_tidy(model))


# --------------------------------------------------------------------------- normalising

def _prenormalise(raw: dict, c: _Collector, today: date) -> dict:
    d = dict(raw)
    for k in ("source_system", "source_reference"):
        if isinstance(d.get(k), str):
            d[k] = d[k].strip()
    _fix(d, "referral_date", "referral_date", c,
         lambda v: n.parse_date(v, today=today, past=False), strings_only=False)
    if isinstance(d.get("referrer"), dict):
        r = d["referrer"] = dict(d["referrer"])
        _text(r, "name")
        _text(r, "structure_name")
        _fix(r, "phone", "referrer.phone", c, n.phone)
        _fix(r, "email", "referrer.email", c, n.email)
        for k in ("rpps", "finess"):
            if isinstance(r.get(k), str):
                r[k] = n.digits_only(r[k]) or None
        _code(r, "profession", "profession")
        _code(r, "structure_kind", "structure_kind")
    if isinstance(d.get("person"), dict):
        p = d["person"] = dict(d["person"])
        _fix(p, "family_name", "person.family_name", c, n.family_name, empty_is_none=False)
        _fix(p, "given_name", "person.given_name", c, n.given_name, empty_is_none=False)
        _fix(p, "birth_date", "person.birth_date", c,
             lambda v: n.parse_date(v, today=today, past=True), strings_only=False,
             empty_is_none=False)
        _code(p, "sex", "sex")
        _text(p, "address")
        _text(p, "commune", empty_is_none=False)
        _fix(p, "postcode", "person.postcode", c, n.postcode)
        _fix(p, "phone", "person.phone", c, n.phone)
        _fix(p, "email", "person.email", c, n.email)
        _fix(p, "language", "person.language", c, n.language)
        for k in ("interpreter_needed", "consent_contact", "consent_share_with_referrer"):
            if k in p:
                p[k] = n.boolean(p[k])
    motives = d.get("motives")
    if isinstance(motives, str | dict):
        motives = [motives]
    if isinstance(motives, list):
        out = []
        for m in motives:
            if isinstance(m, str):
                m = {"code": m}
            if isinstance(m, dict):
                m = dict(m)
                _code(m, "code", "motive")
                _code(m, "right", "right")
                _code(m, "screening", "screening")
                _text(m, "text")
            out.append(m)
        d["motives"] = out
    _code(d, "urgency", "urgency")
    modes = d.get("meeting_modes")
    if isinstance(modes, str):
        modes = [modes]
    if isinstance(modes, list):
        d["meeting_modes"] = [n.code(x, "meeting_mode") for x in modes]
    if isinstance(d.get("availability"), list):
        slots = []
        for s in d["availability"]:
            if isinstance(s, dict):
                s = dict(s)
                _code(s, "day", "day")
                _code(s, "period", "period")
            slots.append(s)
        d["availability"] = slots
    for k in ("comment", "availability_note"):
        _text(d, k)
    return d


def _fix(obj: dict, key: str, path: str, c: _Collector, fn, *, strings_only: bool = True,
         empty_is_none: bool = True) -> None:
    if key not in obj or obj[key] is None:
        return
    v = obj[key]
    if isinstance(v, str) and not v.strip() and empty_is_none:
        obj[key] = None
        return
    if strings_only and not isinstance(v, str):
        return  # the model reports the wrong type
    try:
        obj[key] = fn(v)
    except n.Unfixable as err:
        c.add(path, err.code, err.message)
        obj[key] = None
    except Exception:
        c.add(path, "invalid", "valeur illisible")
        obj[key] = None


def _text(obj: dict, key: str, *, empty_is_none: bool = True) -> None:
    v = obj.get(key)
    if isinstance(v, str):
        v = n.squash(v)
        obj[key] = v if v or not empty_is_none else None


def _code(obj: dict, key: str, kind: str) -> None:
    v = obj.get(key)
    if isinstance(v, str):
        obj[key] = None if not v.strip() else n.code(v, kind)


# --------------------------------------------------------------------------- business rules

def _business_rules(d: dict, c: _Collector, today: date) -> None:
    p = d.get("person") if isinstance(d.get("person"), dict) else None
    if p is not None:
        if p.get("consent_contact") is False:
            c.add("person.consent_contact", "no_consent_to_contact",
                  "la personne n'a pas donné son accord pour être contactée : la médiation ne "
                  "peut pas prendre la fiche (recueillir l'accord puis renvoyer la fiche)")
        bd = p.get("birth_date")
        if isinstance(bd, date) and not c.covers("person.birth_date"):
            if bd > today:
                c.add("person.birth_date", "birth_date_in_future",
                      "date de naissance dans le futur")
            elif bd < _years_before(today, MAX_AGE_YEARS):
                c.add("person.birth_date", "birth_date_implausible",
                      f"date de naissance invraisemblable (plus de {MAX_AGE_YEARS} ans)")
        contact = [p.get(k) for k in ("phone", "email", "address")]
        reachable = any(isinstance(v, str) and v for v in contact)
        failed = any(c.covers(f"person.{k}") for k in ("phone", "email", "address"))
        if not reachable and not failed:
            c.add("person.phone", "no_contact_means",
                  "aucun moyen de joindre la personne : téléphone, courriel ou adresse requis")
        modes = d.get("meeting_modes") if isinstance(d.get("meeting_modes"), list) else []
        if MeetingMode.phone.value in modes and not p.get("phone") and not c.covers("person.phone"):
            c.add("person.phone", "phone_required",
                  "rencontre par téléphone demandée : numéro de téléphone de la personne requis")
        if (MeetingMode.home_visit.value in modes and not p.get("address")
                and not c.covers("person.address")):
            c.add("person.address", "address_required",
                  "visite à domicile demandée : adresse de la personne requise")
    rd = d.get("referral_date")
    if isinstance(rd, date) and rd > today + timedelta(days=1):
        c.add("referral_date", "referral_date_in_future", "date de la fiche dans le futur")
    motives = d.get("motives") if isinstance(d.get("motives"), list) else []
    for i, m in enumerate(motives):
        if not isinstance(m, dict):
            continue
        path = f"motives[{i}]"
        if m.get("code") == Motive.access_to_rights.value and not m.get("right"):
            c.add(f"{path}.right", "missing_right",
                  "accès aux droits : préciser le droit concerné (puma, css, ame, "
                  "complementary, mdph, other)")
        if m.get("code") == Motive.cancer_screening.value and not m.get("screening"):
            c.add(f"{path}.screening", "missing_screening",
                  "dépistage organisé : préciser le dépistage (breast, cervix, colorectal)")
        if m.get("code") == Motive.other.value and not (isinstance(m.get("text"), str)
                                                        and m.get("text")):
            c.add(f"{path}.text", "missing_text", "motif « autre » : préciser le motif en texte")


def _years_before(d: date, years: int) -> date:
    try:
        return d.replace(year=d.year - years)
    except ValueError:  # 29 February
        return d.replace(year=d.year - years, day=28)


def _tidy(m: ReferralReceived) -> ReferralReceived:
    """Drop qualifiers that don't apply (a free text stays on any motive), duplicate
    motives, meeting modes and availability slots."""
    motives, seen = [], set()
    for mo in m.motives:
        mo = mo.model_copy(update={
            "right": mo.right if mo.code == Motive.access_to_rights else None,
            "screening": mo.screening if mo.code == Motive.cancer_screening else None,
        })
        k = (mo.code, mo.right, mo.screening, mo.text)
        if k not in seen:
            seen.add(k)
            motives.append(mo)
    modes = list(dict.fromkeys(m.meeting_modes))
    slots = list(dict.fromkeys(m.availability))
    return m.model_copy(update={"motives": motives, "meeting_modes": modes, "availability": slots})


# --------------------------------------------------------------------------- messages

def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            s = str(part)
            s = s if _KEY.match(s) else "<clé invalide>"
            out = f"{out}.{s}" if out else s
    return out or "(payload)"


_FIELD_RULES = {
    "source_system": "identifiant du système émetteur : 1 à 120 caractères parmi lettres, "
                     "chiffres et . _ : / -",
    "source_reference": "référence de la fiche : 1 à 120 caractères parmi lettres, chiffres "
                        "et . _ : / - (un identifiant, jamais un nom)",
    "referrer.rpps": "numéro RPPS : 11 chiffres",
    "referrer.finess": "numéro FINESS : 9 caractères (ex. 300012345)",
    "person.postcode": "code postal à 5 chiffres attendu (ex. 30170)",
    "person.language": "langue : code ISO 639 attendu (ex. fr, ar, ro)",
}


def _french(e: dict, path: str) -> tuple[str, str]:
    t = e["type"]
    ctx = e.get("ctx") or {}
    if t == "missing":
        return "missing", "champ obligatoire absent"
    if t == "extra_forbidden":
        return "unknown_field", "champ inconnu du contrat ReferralReceived v1"
    if t == "string_pattern_mismatch":
        return "invalid_format", _FIELD_RULES.get(path, "format non reconnu")
    if t == "string_too_short":
        return "empty", "champ vide"
    if t == "string_too_long":
        return "too_long", f"texte trop long : {ctx.get('max_length', '?')} caractères au plus"
    if t == "string_type":
        return "wrong_type", "texte attendu"
    if t == "enum":
        expected = str(ctx.get("expected", ""))
        return "unknown_code", f"valeur non reconnue ; valeurs acceptées : {expected}"
    if t in ("bool_parsing", "bool_type"):
        return "wrong_type", "booléen attendu (true/false, oui/non)"
    if t.startswith("date") or t.startswith("datetime"):
        return "invalid_date", "date non reconnue : AAAA-MM-JJ ou JJ/MM/AAAA attendu"
    if t in ("list_type",):
        return "wrong_type", "liste attendue"
    if t in ("model_type", "dict_type", "model_attributes_type"):
        return "wrong_type", "objet attendu"
    if t == "too_short":
        return "too_few", f"au moins {ctx.get('min_length', 1)} élément(s) attendu(s)"
    if t == "too_long":
        return "too_many", f"au plus {ctx.get('max_length', '?')} éléments"
    return "invalid", f"valeur invalide (règle {t})"

"""The territory model: structures -> areas -> places -> mediators, versioned and dated.

A *structure version* is a full, self-contained snapshot of one structure's territory
(its areas, places, mediators with leave windows and capacity, coordinators), with a
version number (1, 2, ... per structure) and the date from which it is in force. A
referral is routed by the versions in force at its date; every decision records the
version that made it. The packaged data (``data/``) is version 1 of each structure;
later versions arrive as ``TerritoryChanged`` events and are stored in the routing schema.

Places are communes (INSEE code, department, postcodes, aliases, hamlets, the seed's own
spellings) for rural structures, and neighbourhoods or street ranges for urban ones.
Pure module: no broker, no database.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from dataclasses import dataclass, field
from datetime import date
from functools import cached_property
from importlib import resources
from typing import Any

from .normalize import strict_key

DATA = "mediation_routing.data"


class TerritoryError(ValueError):
    """A territory document that cannot be used. Messages name fields, never values."""


@dataclass(frozen=True)
class Place:
    kind: str                      # commune | neighbourhood | street
    code: str                      # INSEE code, or neighbourhood / street-range id
    name: str                      # official name
    department: str | None
    postcodes: tuple[str, ...]
    structure: str | None = None   # None: outside every served territory
    area: str | None = None
    aliases: tuple[str, ...] = ()
    hamlets: tuple[str, ...] = ()
    source_spellings: tuple[str, ...] = ()  # how the structure's own documents write it
    role: str = "territory"        # territory | neighbour | trap_homonym | city
    street: str | None = None
    numbers: tuple[int, int] | None = None
    city: str | None = None        # for neighbourhoods/streets: INSEE code of the city

    @property
    def inside(self) -> bool:
        return self.structure is not None

    def ref(self) -> dict[str, str]:
        return {"kind": self.kind, "code": self.code, "name": self.name}


@dataclass(frozen=True)
class Leave:
    start: date
    end: date  # inclusive

    def covers(self, d: date) -> bool:
        return self.start <= d <= self.end


@dataclass(frozen=True)
class Mediator:
    id: str
    area: str
    capacity: int | None = None
    leaves: tuple[Leave, ...] = ()

    def absent_on(self, d: date) -> bool:
        return any(lv.covers(d) for lv in self.leaves)


@dataclass(frozen=True)
class Area:
    id: str
    name: str


@dataclass(frozen=True)
class StructureVersion:
    structure: str
    version: int
    effective_from: date
    name: str
    kind: str
    areas: tuple[Area, ...]
    places: tuple[Place, ...]
    mediators: tuple[Mediator, ...]
    coordinators: tuple[str, ...]
    city: str | None = None
    document: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @cached_property
    def fingerprint(self) -> str:
        """Content hash: two versions with the same number but other content differ."""
        blob = json.dumps(to_document(self), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(f"{self.effective_from}|{blob}".encode()).hexdigest()[:16]

    @cached_property
    def area_ids(self) -> set[str]:
        return {a.id for a in self.areas}

    def area(self, area_id: str) -> Area | None:
        return next((a for a in self.areas if a.id == area_id), None)

    def mediators_of(self, area_id: str) -> list[Mediator]:
        return sorted((m for m in self.mediators if m.area == area_id), key=lambda m: m.id)

    def place(self, code: str) -> Place | None:
        return next((p for p in self.places if p.code == code), None)


# --------------------------------------------------------------------------- documents

def _req(d: dict, key: str, where: str) -> Any:
    if not isinstance(d, dict) or key not in d or d[key] in (None, ""):
        raise TerritoryError(f"{where}.{key}: required")
    return d[key]


def _list(d: dict, key: str, where: str) -> list:
    v = d.get(key)
    if v is None:
        return []
    if not isinstance(v, list):
        raise TerritoryError(f"{where}.{key}: expected a list")
    return v


def _texts(d: dict, key: str, where: str) -> tuple[str, ...]:
    v = _list(d, key, where)
    if not all(isinstance(x, str) and x.strip() for x in v):
        raise TerritoryError(f"{where}.{key}: expected a list of non-empty strings")
    return tuple(v)


def _int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _numbers(p: dict, where: str) -> tuple[int, int] | None:
    nums = _list(p, "numbers", where)
    if not nums:
        return None
    if len(nums) != 2 or not all(_int(n) for n in nums) or nums[0] > nums[1]:
        raise TerritoryError(f"{where}.numbers: expected [first, last], two integers in order")
    return nums[0], nums[1]


def _date(v: Any, where: str) -> date:
    try:
        return v if isinstance(v, date) else date.fromisoformat(str(v))
    except ValueError:
        raise TerritoryError(f"{where}: expected a date YYYY-MM-DD") from None


def from_document(doc: dict[str, Any], *, version: int, effective_from: date) -> StructureVersion:
    """Validate and build a structure version from its JSON document."""
    if not isinstance(doc, dict):
        raise TerritoryError("territory: expected an object")
    structure = str(_req(doc, "structure", "territory"))
    areas = tuple(Area(id=str(_req(a, "id", f"areas[{i}]")), name=str(a.get("name") or a["id"]))
                  for i, a in enumerate(_list(doc, "areas", "territory")))
    if not areas:
        raise TerritoryError("territory.areas: at least one area is required")
    area_ids = {a.id for a in areas}
    if len(area_ids) != len(areas):
        raise TerritoryError("territory.areas: area ids must be unique")
    places = []
    seen = set()
    for i, p in enumerate(_list(doc, "places", "territory")):
        where = f"places[{i}]"
        area = str(_req(p, "area", where))
        if area not in area_ids:
            raise TerritoryError(f"{where}.area: not one of the structure's areas")
        code = str(_req(p, "code", where))
        if code in seen:
            raise TerritoryError(f"{where}.code: duplicate place code")
        seen.add(code)
        places.append(Place(
            kind=str(p.get("kind") or "commune"), code=code, name=str(_req(p, "name", where)),
            department=p.get("department") or doc.get("department"),
            postcodes=_texts(p, "postcodes", where), structure=structure, area=area,
            aliases=_texts(p, "aliases", where), hamlets=_texts(p, "hamlets", where),
            source_spellings=_texts(p, "source_spellings", where), role="territory",
            street=p.get("street"), numbers=_numbers(p, where),
            city=p.get("city") or doc.get("city"),
        ))
    mediators = []
    for i, m in enumerate(_list(doc, "mediators", "territory")):
        where = f"mediators[{i}]"
        area = str(_req(m, "area", where))
        if area not in area_ids:
            raise TerritoryError(f"{where}.area: not one of the structure's areas")
        cap = m.get("capacity")
        if cap is not None and (not _int(cap) or cap < 0):
            raise TerritoryError(f"{where}.capacity: expected a non-negative integer")
        leaves = []
        for j, lv in enumerate(_list(m, "leaves", where)):
            s = _date(_req(lv, "from", f"{where}.leaves[{j}]"), f"{where}.leaves[{j}].from")
            e = _date(_req(lv, "to", f"{where}.leaves[{j}]"), f"{where}.leaves[{j}].to")
            if e < s:
                raise TerritoryError(f"{where}.leaves[{j}]: 'to' is before 'from'")
            leaves.append(Leave(s, e))
        mediators.append(Mediator(id=str(_req(m, "id", where)), area=area, capacity=cap,
                                  leaves=tuple(leaves)))
    if len({m.id for m in mediators}) != len(mediators):
        raise TerritoryError("territory.mediators: mediator ids must be unique")
    return StructureVersion(
        structure=structure, version=version, effective_from=effective_from,
        name=str(doc.get("name") or structure), kind=str(doc.get("kind") or "rural"),
        areas=areas, places=tuple(places), mediators=tuple(mediators),
        coordinators=_texts(doc, "coordinators", "territory"), city=doc.get("city"), document=doc,
    )


def to_document(sv: StructureVersion) -> dict[str, Any]:
    return {
        "structure": sv.structure, "name": sv.name, "kind": sv.kind, "city": sv.city,
        "department": sv.document.get("department"),
        "areas": [{"id": a.id, "name": a.name} for a in sv.areas],
        "places": [{k: v for k, v in {
            "kind": p.kind, "code": p.code, "name": p.name, "department": p.department,
            "postcodes": list(p.postcodes), "area": p.area, "aliases": list(p.aliases),
            "hamlets": list(p.hamlets), "source_spellings": list(p.source_spellings),
            "street": p.street, "numbers": list(p.numbers) if p.numbers else None,
            "city": p.city}.items() if v not in (None, [], "")} for p in sv.places],
        "mediators": [{"id": m.id, "area": m.area, "capacity": m.capacity,
                       "leaves": [{"from": lv.start.isoformat(), "to": lv.end.isoformat()}
                                  for lv in m.leaves]} for m in sv.mediators],
        "coordinators": list(sv.coordinators),
    }


# --------------------------------------------------------------------------- packaged data

def _read(name: str) -> str:
    return resources.files(DATA).joinpath(name).read_text(encoding="utf-8")


@dataclass(frozen=True)
class RefCommune:
    insee: str
    name: str
    department: str
    postcodes: tuple[str, ...]
    aliases: tuple[str, ...]
    hamlets: tuple[str, ...]
    role: str


def reference_communes() -> list[RefCommune]:
    """The reference table of official communes (see the file's header on provenance)."""
    lines = [ln for ln in _read("communes_reference.csv").splitlines()
             if ln.strip() and not ln.startswith("#")]
    out = []
    for row in csv.DictReader(io.StringIO("\n".join(lines))):
        split = lambda v: tuple(x.strip() for x in (v or "").split("|") if x.strip())  # noqa: E731
        out.append(RefCommune(
            insee=row["insee"].strip(), name=row["name"].strip(),
            department=row["department"].strip(),
            postcodes=tuple((row["postcodes"] or "").split()),
            aliases=split(row["aliases"]), hamlets=split(row["hamlets"]), role=row["role"].strip()))
    return out


def source_rows(csv_name: str) -> list[dict[str, str]]:
    """The structure's commune list as its source wrote it (structure, sub_territory, name)."""
    return list(csv.DictReader(io.StringIO(_read(csv_name))))


def _packaged_document(cfg: dict[str, Any], refs: dict[str, RefCommune]) -> dict[str, Any]:
    doc = {k: v for k, v in cfg.items() if k not in ("communes_csv", "spelling_fixes")}
    if not cfg.get("communes_csv"):
        return doc
    fixes: dict[str, list[str]] = cfg.get("spelling_fixes") or {}
    by_key: dict[str, list[RefCommune]] = {}
    for r in refs.values():
        by_key.setdefault(strict_key(r.name), []).append(r)
    places: dict[str, dict[str, Any]] = {}
    for row in source_rows(cfg["communes_csv"]):
        if row["structure"] != cfg["structure"]:
            raise TerritoryError("communes csv: row of another structure")
        written = row["commune_as_written_in_source"].strip()
        codes = fixes.get(written)
        if codes is None:
            found = [r for r in by_key.get(strict_key(written), []) if r.role == "territory"]
            if len(found) != 1:
                raise TerritoryError(f"communes csv: a spelling has {len(found)} reference "
                                     "matches; add it to spelling_fixes")
            codes = [found[0].insee]
        for code in codes:
            r = refs[code]
            p = places.setdefault(code, {
                "kind": "commune", "code": r.insee, "name": r.name, "department": r.department,
                "postcodes": list(r.postcodes), "area": row["sub_territory"],
                "aliases": list(r.aliases), "hamlets": list(r.hamlets), "source_spellings": []})
            if p["area"] != row["sub_territory"]:
                raise TerritoryError("communes csv: one commune listed in two sub-territories")
            if strict_key(written) != strict_key(r.name):
                p["source_spellings"].append(written)
    doc["places"] = sorted(places.values(), key=lambda p: p["code"]) + list(cfg.get("places") or [])
    return doc


def packaged_versions() -> list[StructureVersion]:
    """Version 1 of every configured structure, from the data shipped with the package."""
    cfg = json.loads(_read("structures.json"))
    refs = {r.insee: r for r in reference_communes()}
    eff = date.fromisoformat(cfg["effective_from"])
    return [from_document(_packaged_document(s, refs), version=1, effective_from=eff)
            for s in cfg["structures"]]


# --------------------------------------------------------------------------- history

class TerritoryHistory:
    """Every known version of every structure; answers "what is in force on date D"."""

    def __init__(self, versions: list[StructureVersion] | None = None) -> None:
        self._by_structure: dict[str, list[StructureVersion]] = {}
        for v in versions or []:
            self.add(v)

    def add(self, sv: StructureVersion) -> None:
        lst = self._by_structure.setdefault(sv.structure, [])
        lst[:] = [v for v in lst if v.version != sv.version] + [sv]
        lst.sort(key=lambda v: v.version)

    def discard(self, structure: str, version: int) -> None:
        lst = self._by_structure.get(structure, [])
        lst[:] = [v for v in lst if v.version != version]
        if not lst:
            self._by_structure.pop(structure, None)

    def known(self) -> set[tuple[str, int]]:
        return {(s, v.version) for s, lst in self._by_structure.items() for v in lst}

    def structures(self) -> list[str]:
        return sorted(self._by_structure)

    def in_force(self, on: date) -> tuple[StructureVersion, ...]:
        """For each structure, the highest version whose effective date is on or before ``on``."""
        out = []
        for s in sorted(self._by_structure):
            ok = [v for v in self._by_structure[s] if v.effective_from <= on]
            if ok:
                out.append(max(ok, key=lambda v: v.version))
        return tuple(out)

    def structure_in_force(self, structure: str, on: date) -> StructureVersion | None:
        return next((v for v in self.in_force(on) if v.structure == structure), None)

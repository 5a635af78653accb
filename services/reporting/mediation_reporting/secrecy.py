"""Statistical secrecy: primary and secondary masking of published count tables.

Primary: a count ``n`` with ``0 < n < threshold`` is masked (zero is published: an empty
cell identifies nobody). Secondary: cells are tied by *additive constraints* that a reader
can see — a total and its parts (sectors of a structure, months of a quarter, quarters of
a year, categories of an "all categories" row, received = accepted + rejected). If a
constraint has exactly one masked cell, that cell is its total minus the visible parts;
so the smallest other cell of the constraint is masked too (a positive one first), and
this repeats until no constraint has exactly one masked cell. Rates, means and medians
follow the masking of the counts they are computed from.

Pure functions: no database. ``publish.py`` feeds them the rows of the raw views.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

Cell = tuple[int, str]  # (row index, column)


@dataclass(frozen=True)
class TableSpec:
    counts: Sequence[str]
    # non-count column -> counts it is computed from (masked if any of them is)
    derived: dict[str, Sequence[str]] = field(default_factory=dict)
    # (total column, part columns) equalities within a row
    column_sums: Sequence[tuple[str, Sequence[str]]] = ()
    # (category column, value of its total row)
    category: tuple[str, str] | None = None


def quarter_of(month: str) -> str:
    year, m = month.split("-")
    return f"{year}-T{(int(m) - 1) // 3 + 1}"


def _row_key(r: dict, spec: TableSpec) -> tuple:
    cat = r.get(spec.category[0]) if spec.category else None
    return (r.get("type_periode"), r.get("periode"), r.get("niveau"), r.get("structure"),
            r.get("secteur"), cat)


def _parents(r: dict, spec: TableSpec) -> list[tuple[str, tuple]]:
    """Keys of the rows this row is a part of, one per hierarchy."""
    tp, per, niveau, structure, secteur, cat = _row_key(r, spec)
    out: list[tuple[str, tuple]] = []
    if niveau == "secteur":
        out.append(("geo", (tp, per, "structure", structure, None, cat)))
    if tp == "mois" and per:
        out.append(("time", ("trimestre", quarter_of(per), niveau, structure, secteur, cat)))
    elif tp == "trimestre" and per:
        out.append(("time", ("annee", per.split("-")[0], niveau, structure, secteur, cat)))
    if spec.category and cat != spec.category[1]:
        out.append(("cat", (tp, per, niveau, structure, secteur, spec.category[1])))
    return out


def constraints(rows: Sequence[dict], spec: TableSpec) -> list[list[Cell]]:
    """Every additive constraint between the cells of ``rows`` (total first)."""
    index = {_row_key(r, spec): i for i, r in enumerate(rows)}
    children: dict[tuple[str, tuple], list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        for kind, pkey in _parents(r, spec):
            if pkey in index:
                children[(kind, pkey)].append(i)
    groups: list[list[Cell]] = []
    for (_kind, pkey), kids in sorted(children.items(), key=lambda kv: str(kv[0])):
        parent = index[pkey]
        for col in spec.counts:
            groups.append([(parent, col)] + [(k, col) for k in kids])
    for i, _r in enumerate(rows):
        for total, parts in spec.column_sums:
            groups.append([(i, total)] + [(i, p) for p in parts])
    return groups


@dataclass(frozen=True)
class Link:
    """Two published cells known to be equal (e.g. accepted referrals in one view and
    referrals with a motive in another): (view, column, {column: value} selecting the row)
    for each side; rows are matched on period and geography."""

    a: tuple[str, str, dict]
    b: tuple[str, str, dict]


def _geo_key(r: dict) -> tuple:
    return (r.get("type_periode"), r.get("periode"), r.get("niveau"), r.get("structure"),
            r.get("secteur"))


def _link_groups(tables: dict[str, Sequence[dict]], links: Sequence[Link]) -> list[list]:
    groups = []
    for link in links:
        (ta, ca, fa), (tb, cb, fb) = link.a, link.b
        if ta not in tables or tb not in tables:
            continue
        side_b = {_geo_key(r): i for i, r in enumerate(tables[tb])
                  if all(r.get(k) == v for k, v in fb.items())}
        for i, r in enumerate(tables[ta]):
            if all(r.get(k) == v for k, v in fa.items()) and _geo_key(r) in side_b:
                groups.append([(ta, i, ca), (tb, side_b[_geo_key(r)], cb)])
    return groups


def mask_many(tables: dict[str, tuple[Sequence[dict], TableSpec]], threshold: int,
              links: Sequence[Link] = ()) -> dict[str, set[Cell]]:
    """Masked cells of several published tables at once: each table's own constraints
    plus the cross-table equalities of ``links`` (so no view gives away another's cell)."""
    def value(c: tuple[str, int, str]) -> int:
        return int(tables[c[0]][0][c[1]].get(c[2]) or 0)

    masked: set[tuple[str, int, str]] = set()
    groups: list[list[tuple[str, int, str]]] = []
    for name, (rows, spec) in tables.items():
        masked |= {(name, i, col) for i, r in enumerate(rows) for col in spec.counts
                   if r.get(col) is not None and 0 < int(r[col]) < threshold}
        groups += [[(name, i, col) for i, col in g] for g in constraints(rows, spec)]
    groups += _link_groups({n: rows for n, (rows, _s) in tables.items()}, links)
    changed = True
    while changed:
        changed = False
        for g in groups:
            hidden = [c for c in g if c in masked]
            if len(hidden) != 1:
                continue
            visible = [c for c in g if c not in masked]
            if not visible:
                continue
            # the smallest other cell, preferring a positive one (masking a zero protects little)
            pick = min(visible, key=lambda c: (value(c) == 0, value(c), c))
            masked.add(pick)
            changed = True
    out: dict[str, set[Cell]] = {name: set() for name in tables}
    for name, i, col in masked:
        out[name].add((i, col))
    return out


def mask(rows: Sequence[dict], spec: TableSpec, threshold: int) -> set[Cell]:
    """The set of cells to mask (primary then secondary, to a fixpoint)."""
    return mask_many({"t": (rows, spec)}, threshold)["t"]


def apply(rows: Sequence[dict], spec: TableSpec, threshold: int,
          cells: set[Cell] | None = None) -> list[dict]:
    """Copies of ``rows`` with masked cells set to None and ``cellules_masquees`` listed."""
    if cells is None:
        cells = mask(rows, spec, threshold)
    by_row: dict[int, set[str]] = defaultdict(set)
    for i, col in cells:
        by_row[i].add(col)
    out = []
    for i, r in enumerate(rows):
        hidden = set(by_row.get(i, set()))
        for col, basis in spec.derived.items():
            if any(b in hidden for b in basis) or any(
                    r.get(b) is not None and 0 < int(r[b]) < threshold for b in basis):
                hidden.add(col)
        new = dict(r)
        for col in hidden:
            new[col] = None
        new["cellules_masquees"] = sorted(hidden)
        out.append(new)
    return out


def apply_many(tables: dict[str, tuple[Sequence[dict], TableSpec]], threshold: int,
               links: Sequence[Link] = ()) -> dict[str, list[dict]]:
    cells = mask_many(tables, threshold, links)
    return {name: apply(rows, spec, threshold, cells[name])
            for name, (rows, spec) in tables.items()}


def revealing_links(published: dict[str, Sequence[dict]], links: Sequence[Link]) -> list[list]:
    """Cross-table equalities with exactly one masked side (would reveal it)."""
    return [g for g in _link_groups(published, links)
            if sum(1 for t, i, c in g if published[t][i].get(c) is None) == 1]


def single_masked_constraints(rows: Sequence[dict], spec: TableSpec) -> list[list[Cell]]:
    """Constraints of published ``rows`` (masked = None) with exactly one masked cell:
    each would let a reader recompute that cell. Used by tests and as a publish guard."""
    bad = []
    for g in constraints(rows, spec):
        if sum(1 for i, col in g if rows[i].get(col) is None) == 1:
            bad.append(g)
    return bad

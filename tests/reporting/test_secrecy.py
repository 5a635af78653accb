"""Statistical secrecy, without the stack: primary and secondary masking hold under an
attacker who recomputes cells from every published total (iterated to a fixpoint)."""

from __future__ import annotations

import itertools

from hypothesis import given, settings
from hypothesis import strategies as st

from mediation_reporting.secrecy import (
    Link,
    TableSpec,
    apply,
    apply_many,
    quarter_of,
    revealing_links,
)

SPEC = TableSpec(counts=["n"], derived={"rate": ["n"]})
CAT_SPEC = TableSpec(counts=["total", "ok", "ko"], column_sums=[("total", ["ok", "ko"])],
                     category=("cat", "(all)"))


def table(base: dict[tuple[str, int, str], tuple[int, int]], with_cat: bool) -> list[dict]:
    """Rows at every level from finest counts base[(sector, month, cat)] = (ok, ko)."""
    sectors = sorted({k[0] for k in base})
    cats = sorted({k[2] for k in base})
    periods = ([("mois", f"2026-{m:02d}", [m]) for m in range(1, 13)]
               + [("trimestre", f"2026-T{q}", list(range(3 * q - 2, 3 * q + 1))) for q in range(1, 5)]
               + [("annee", "2026", list(range(1, 13)))])
    rows = []
    geo = [("structure", None, sectors)] + [("secteur", s, [s]) for s in sectors]
    cat_levels = ([("(all)", cats)] + [(c, [c]) for c in cats]) if with_cat else [(None, cats)]
    for (tp, per, months), (niveau, sect, ss), (cat, cs) in itertools.product(periods, geo, cat_levels):
        ok = sum(base.get((s, m, c), (0, 0))[0] for s in ss for m in months for c in cs)
        ko = sum(base.get((s, m, c), (0, 0))[1] for s in ss for m in months for c in cs)
        if ok + ko == 0:
            continue  # absent rows are zeros, as in the views
        r = {"type_periode": tp, "periode": per, "niveau": niveau, "structure": "S",
             "secteur": sect}
        if with_cat:
            r.update(cat=cat, total=ok + ko, ok=ok, ko=ko)
        else:
            r.update(n=ok + ko, rate=round(100 * ok / (ok + ko), 1))
        rows.append(r)
    return rows


def relations(rows: list[dict], spec: TableSpec) -> list[tuple[tuple, list[tuple]]]:
    """What a reader knows, written independently of the masking code: each total and the
    cells that add up to it (sectors of a structure, months of a quarter, quarters of a
    year, categories of the "all" row, and column sums within a row)."""
    cat_col, cat_total = spec.category or (None, None)
    out = []
    for i, r in enumerate(rows):
        same = {k: r.get(k) for k in ("type_periode", "periode", "niveau", "structure", "secteur")}
        if cat_col:
            same[cat_col] = r.get(cat_col)
        kid_sets = []
        if r.get("niveau") == "structure":
            kid_sets.append([j for j, x in enumerate(rows) if x.get("niveau") == "secteur"
                             and all(x.get(k) == v for k, v in same.items() if k not in ("niveau", "secteur"))])
        if r.get("type_periode") in ("trimestre", "annee"):
            if r["type_periode"] == "trimestre":
                year, q = r["periode"].split("-T")
                subs = {f"{year}-{m:02d}" for m in range(3 * int(q) - 2, 3 * int(q) + 1)}
                sub_type = "mois"
            else:
                subs = {f"{r['periode']}-T{q}" for q in range(1, 5)}
                sub_type = "trimestre"
            kid_sets.append([j for j, x in enumerate(rows) if x.get("type_periode") == sub_type
                             and x.get("periode") in subs
                             and all(x.get(k) == v for k, v in same.items() if k not in ("type_periode", "periode"))])
        if cat_col and r.get(cat_col) == cat_total:
            kid_sets.append([j for j, x in enumerate(rows) if x.get(cat_col) != cat_total
                             and all(x.get(k) == v for k, v in same.items() if k != cat_col)])
        for kids in kid_sets:
            if kids:
                for col in spec.counts:
                    out.append(((i, col), [(j, col) for j in kids]))
        for total, parts in spec.column_sums:
            out.append(((i, total), [(i, p) for p in parts]))
    return out


def attack(published: list[dict], spec: TableSpec) -> dict:
    """Recover masked cells: any relation with one unknown gives it; repeat to a fixpoint."""
    known = {(i, c): r[c] for i, r in enumerate(published) for c in spec.counts if r[c] is not None}
    recovered = {}
    rels = relations(published, spec)
    progress = True
    while progress:
        progress = False
        for total, parts in rels:
            unknown = [c for c in [total, *parts] if c not in known]
            if len(unknown) == 1:
                u = unknown[0]
                if u == total:
                    v = sum(known[p] for p in parts)
                else:
                    v = known[total] - sum(known[p] for p in parts if p != u)
                known[u] = recovered[u] = v
                progress = True
    return recovered


def test_quarter_labels():
    assert quarter_of("2026-01") == "2026-T1" and quarter_of("2026-12") == "2026-T4"


def test_a_small_sector_masks_its_sibling_and_the_rate():
    rows = [
        {"type_periode": "annee", "periode": "2026", "niveau": "structure", "structure": "S", "secteur": None, "n": 53, "rate": 50.0},
        {"type_periode": "annee", "periode": "2026", "niveau": "secteur", "structure": "S", "secteur": "A", "n": 3, "rate": 33.3},
        {"type_periode": "annee", "periode": "2026", "niveau": "secteur", "structure": "S", "secteur": "B", "n": 20, "rate": 40.0},
        {"type_periode": "annee", "periode": "2026", "niveau": "secteur", "structure": "S", "secteur": "C", "n": 30, "rate": 60.0},
    ]
    out = apply(rows, SPEC, threshold=11)
    assert [r["n"] for r in out] == [53, None, None, 30], "3 is masked, and 20 (next smallest) with it"
    assert out[1]["rate"] is None and out[2]["rate"] is None and out[3]["rate"] == 60.0
    assert out[1]["cellules_masquees"] == ["n", "rate"]
    assert attack(out, SPEC) == {}


def test_single_child_masks_the_parent_chain():
    rows = [
        {"type_periode": "annee", "periode": "2026", "niveau": "structure", "structure": "S", "secteur": None, "n": 4, "rate": 1.0},
        {"type_periode": "annee", "periode": "2026", "niveau": "secteur", "structure": "S", "secteur": "A", "n": 4, "rate": 1.0},
    ]
    out = apply(rows, SPEC, threshold=11)
    assert [r["n"] for r in out] == [None, None]


def test_zero_is_published_and_threshold_is_configurable():
    rows = [{"type_periode": "annee", "periode": "2026", "niveau": "structure", "structure": "S",
             "secteur": None, "n": 0, "rate": None},
            {"type_periode": "annee", "periode": "2025", "niveau": "structure", "structure": "S",
             "secteur": None, "n": 5, "rate": 1.0}]
    assert [r["n"] for r in apply(rows, SPEC, threshold=11)] == [0, None]
    assert [r["n"] for r in apply(rows, SPEC, threshold=5)] == [0, 5]


def test_naive_masking_would_leak_and_the_attack_proves_it():
    """The attack is real: with primary masking only, it recovers the small cell."""
    rows = table({("A", 1, "x"): (2, 1), ("B", 1, "x"): (30, 10)}, with_cat=False)
    naive = [dict(r, n=None if 0 < r["n"] < 11 else r["n"]) for r in rows]
    assert attack(naive, SPEC), "primary masking alone lets totals give the cell away"
    assert attack(apply(rows, SPEC, 11), SPEC) == {}


cells = st.dictionaries(
    st.tuples(st.sampled_from(["A", "B", "C"]), st.integers(1, 12), st.sampled_from(["x", "y", "z"])),
    st.tuples(st.integers(0, 25), st.integers(0, 12)), min_size=1, max_size=25)


@settings(max_examples=60, deadline=None)
@given(cells, st.booleans(), st.integers(2, 15))
def test_no_masked_cell_can_be_recomputed(base, with_cat, threshold):
    rows = table(base, with_cat)
    spec = CAT_SPEC if with_cat else SPEC
    out = apply(rows, spec, threshold)
    for r, o in zip(rows, out, strict=True):
        for c in spec.counts:
            if 0 < r[c] < threshold:
                assert o[c] is None, "every small count is masked"
            if o[c] is not None:
                assert o[c] == r[c], "published values are exact"
    assert attack(out, spec) == {}, "no masked cell is recoverable from published totals"


def test_a_cell_equal_to_another_views_cell_is_masked_with_it():
    """Accepted referrals (orientations view) equal referrals with a motive (motives view):
    masking one side alone would let the other view give it away."""
    key = {"type_periode": "annee", "periode": "2026", "niveau": "structure", "structure": "S", "secteur": None}
    ori_spec = TableSpec(counts=["recues", "acceptees", "refusees"],
                         column_sums=[("recues", ["acceptees", "refusees"])],
                         category=("source", "(toutes sources)"))
    mot_spec = TableSpec(counts=["orientations"], category=("motif", "(tous motifs)"))
    ori = [dict(key, source="(toutes sources)", recues=48, acceptees=40, refusees=8),
           dict(key, source="msp", recues=48, acceptees=40, refusees=8)]
    mot = [dict(key, motif="(tous motifs)", orientations=40),
           dict(key, motif="a", orientations=20), dict(key, motif="b", orientations=20)]
    link = Link(("ori", "acceptees", {"source": "(toutes sources)"}),
                ("mot", "orientations", {"motif": "(tous motifs)"}))
    alone = apply(ori, ori_spec, 11)
    assert alone[0]["acceptees"] is None and mot[0]["orientations"] == 40, \
        "without the link, the motives view would show the masked 40"
    out = apply_many({"ori": (ori, ori_spec), "mot": (mot, mot_spec)}, 11, [link])
    assert out["mot"][0]["orientations"] is None
    assert revealing_links(out, [link]) == []
    assert attack(out["mot"], mot_spec) == {} and attack(out["ori"], ori_spec) == {}

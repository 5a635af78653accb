"""Computes the published (masked) indicator tables from the raw views.

The read models are maintained per event; the published tables are a statistical
release: recomputed from the (small) aggregated views when new events were applied since
the last release (background task) or on demand (``mediation reports publish``, exports
and the yearly report publish first). Only structure and sector levels are published.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg

from . import catalog, setup
from .secrecy import Link, TableSpec, apply_many, revealing_links, single_masked_constraints

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 11

# what each published view masks; its raw source view is catalog.PUBLISHED[name]
_MASKING: dict[str, TableSpec] = {
    "pub_activite": TableSpec(counts=[
        "personnes_rencontrees", "dossiers_ouverts", "premiers_contacts", "tentatives_contact",
        "entretiens", "informations", "orientations", "rendez_vous", "accompagnements_physiques",
        "demarches_droits", "interpretariats", "seances_information", "actions_collectives",
        "participants_actions_collectives", "outils_professionnels", "reunions_partenaires"]),
    "pub_orientations": TableSpec(
        counts=["recues", "acceptees", "refusees", "routees", "non_routables"],
        column_sums=[("recues", ["acceptees", "refusees"])],
        category=("source", "(toutes sources)")),
    "pub_motifs": TableSpec(
        counts=["mentions", "orientations"],
        derived={"part_mentions_pct": ["mentions"], "part_orientations_pct": ["orientations"]},
        category=("motif", "(tous motifs)")),
    "pub_resultats": TableSpec(
        counts=["demarches_droits_deposees", "droits_ouverts", "personnes_droits_ouverts",
                "orientations_evaluees", "orientations_soins_durables",
                "personnes_evaluees_t0_t1", "personnes_autonomie_en_progres"],
        derived={"part_soins_durables_pct": ["orientations_evaluees", "orientations_soins_durables"],
                 "score_autonomie_t0_moyen": ["personnes_evaluees_t0_t1"],
                 "score_autonomie_t1_moyen": ["personnes_evaluees_t0_t1"]}),
    "pub_file_active": TableSpec(
        counts=["dossiers_actifs", "personnes_suivies", "sans_premier_contact",
                "urgents_ou_prioritaires"],
        derived={"anciennete_mediane_jours": ["dossiers_actifs"]}),
    "pub_file_active_periode": TableSpec(
        counts=["dossiers_actifs", "personnes_file_active"]),
    "pub_delais": TableSpec(
        counts=["dossiers", "avec_premier_contact", "premiers_contacts_hors_delai", "clotures"],
        derived={"jours_orientation_premier_contact_median": ["avec_premier_contact"],
                 "jours_orientation_premier_contact_p90": ["avec_premier_contact"],
                 "jours_premier_contact_cloture_median": ["clotures"],
                 "jours_premier_contact_cloture_p90": ["clotures"],
                 "jours_orientation_cloture_median": ["clotures"],
                 "jours_orientation_cloture_p90": ["clotures"]}),
    "pub_motifs_cloture": TableSpec(
        counts=["clotures"], category=("motif_cloture", "(tous motifs)")),
    "pub_dysfonctionnements": TableSpec(
        counts=["signalements", "urgents", "transmis", "avec_reponse", "escalades_sans_reponse"],
        derived={"heures_reponse_mediane": ["avec_reponse"], "heures_reponse_p90": ["avec_reponse"]},
        category=("categorie", "(toutes catégories)")),
}

SPECS: dict[str, tuple[str, TableSpec]] = {
    name: (catalog.PUBLISHED[name], spec) for name, spec in _MASKING.items()}


# cells of two published views that are equal by construction (every accepted referral
# has at least one motive), so they are masked together
LINKS = [
    Link(("pub_orientations", "acceptees", {"source": "(toutes sources)"}),
         ("pub_motifs", "orientations", {"motif": "(tous motifs)"})),
]


def _sort_key(r: dict) -> tuple:
    return tuple("" if v is None else str(v) for v in r.values())


async def events_applied(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT coalesce(sum(events), 0) FROM freshness"))


async def publish(pool: asyncpg.Pool, threshold: int = DEFAULT_THRESHOLD,
                  now: datetime | None = None) -> dict[str, int]:
    """Recompute every published table in one transaction. Returns masked cells per table."""
    now = now or datetime.now(UTC)
    async with pool.acquire() as conn:
        # one release at a time per schema (several instances may run the loop); the lock is
        # taken before the transaction so the release's snapshot is taken after the wait
        await conn.execute("SELECT pg_advisory_lock(hashtext(current_schema() || '.publish'))")
        try:
            async with conn.transaction(isolation="repeatable_read"):
                result = await _release(conn, threshold, now)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(hashtext(current_schema() || '.publish'))")
    log.info("indicators published", extra={"fields": {"tables": len(result),
                                                        "masked_cells": sum(result.values())}})
    return result


async def _release(conn: asyncpg.Connection, threshold: int, now: datetime) -> dict[str, int]:
    result: dict[str, int] = {}
    seen = await events_applied(conn)
    raw: dict[str, tuple[list[str], list[dict]]] = {}
    for name, (view, _spec) in SPECS.items():
        cols = await setup.columns(conn, view)
        where = " WHERE niveau <> 'mediateur'" if "niveau" in cols else ""
        rows = [dict(r) for r in await conn.fetch(f"SELECT * FROM {view}{where}")]
        rows.sort(key=_sort_key)
        raw[name] = (cols, rows)
    masked_all = apply_many({n: (raw[n][1], SPECS[n][1]) for n in SPECS}, threshold, LINKS)
    leaks = revealing_links(masked_all, LINKS)
    for name, (_view, spec) in SPECS.items():
        leaks += single_masked_constraints(masked_all[name], spec)
    if leaks:  # the algorithm guarantees none; refuse to publish if it ever did
        raise RuntimeError(f"{len(leaks)} constraints would reveal a masked cell")
    for name in SPECS:
        cols, _rows = raw[name]
        masked = masked_all[name]
        for r in masked:
            r["publie_le"] = now
        await conn.execute(f"DELETE FROM {name}_data")
        out_cols = cols + ["cellules_masquees", "publie_le"]
        await conn.copy_records_to_table(
            f"{name}_data", records=[tuple(r[c] for c in out_cols) for r in masked],
            columns=out_cols)
        n = sum(len(r["cellules_masquees"]) for r in masked)
        result[name] = n
        await conn.execute(
            "INSERT INTO publications (name, published_at, events_seen, threshold, masked_cells) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (name) DO UPDATE SET "
            "published_at = EXCLUDED.published_at, events_seen = EXCLUDED.events_seen, "
            "threshold = EXCLUDED.threshold, masked_cells = EXCLUDED.masked_cells",
            name, now, seen, threshold, n)
    return result


async def publish_if_stale(pool: asyncpg.Pool, threshold: int = DEFAULT_THRESHOLD) -> bool:
    async with pool.acquire() as conn:
        seen = await events_applied(conn)
        last = await conn.fetchval("SELECT min(events_seen) FROM publications")
        count = await conn.fetchval("SELECT count(*) FROM publications")
    if count == len(SPECS) and last == seen:
        return False
    await publish(pool, threshold)
    return True

"""Reporting on the real broker and database: a scripted year gives hand-computed
indicators; duplicates, reordering and a full replay change nothing; published views hold
statistical secrecy against a reader who recomputes cells from totals; roles, exports and
the yearly report."""

from __future__ import annotations

import base64
import logging
import re
import uuid
import zlib
from decimal import Decimal

import asyncpg
import httpx
import pypdfium2 as pdfium
import pytest
from openpyxl import load_workbook

from mediation_core import telemetry
from mediation_core.auth import issue_token
from mediation_reporting import catalog, exports, publish, report, setup
from mediation_reporting.replay import ReplayRefused, replay
from mediation_reporting.secrecy import revealing_links
from mediation_reporting.service import build, update_freshness_gauge
from mediation_schemas.envelope import encode, new_envelope
from mediation_schemas.topics import Topics
from tests.conftest import eventually
from tests.helpers import produce
from tests.reporting import scenario
from tests.reporting.test_secrecy import attack

pytestmark = pytest.mark.stack

VOLATILE = {"calculee_le", "anciennete_mediane_jours", "derniere_application", "retard_secondes"}


@pytest.fixture
async def services(settings_for, stack_urls):
    running = []
    schemas = []

    async def start(settings):
        svc = build(settings, publish_every=0)
        await svc.start(http=False)
        await svc.wait_ready()
        running.append(svc)
        if settings.schema not in schemas:
            schemas.append(settings.schema)
        return svc

    async def stop(svc):
        await svc.stop()
        running.remove(svc)

    start.stop = stop  # type: ignore[attr-defined]
    yield start
    for svc in list(running):
        await svc.stop()
    conn = await asyncpg.connect(stack_urls.database_url)
    try:
        for s in schemas:
            for row in await conn.fetch("SELECT nspname FROM pg_namespace WHERE nspname LIKE $1", s + "%"):
                await conn.execute(f"DROP SCHEMA {row['nspname']} CASCADE")
            await setup.drop_roles(conn, s)
    finally:
        await conn.close()


async def send(settings, items, *, fresh_ids: bool = False) -> None:
    by_topic: dict[str, list] = {}
    for topic, key, env in items:
        if fresh_ids:
            env = env.model_copy(update={"event_id": uuid.uuid4()})
        by_topic.setdefault(getattr(settings.topics, topic), []).append((key.encode(), encode(env)))
    for topic, recs in by_topic.items():
        await produce(settings.kafka_bootstrap, topic, recs)


async def settle(svc, n: int) -> None:
    c = svc.consumers[0]
    await eventually(lambda: c.stats.processed + c.stats.duplicates + c.stats.dead_lettered >= n,
                     timeout=60, what=f"{n} events consumed")
    assert c.stats.dead_lettered == 0


async def started_with_the_year(services, settings):
    """A running service that has consumed the scripted year once."""
    svc = await services(settings)
    story = scenario.build()
    await send(settings, story.items)
    await settle(svc, len(story.items))
    return svc, story


async def one(pool, sql: str, *args) -> dict:
    rows = await pool.fetch(sql, *args)
    assert len(rows) == 1, (sql, args, rows)
    return dict(rows[0])


YEAR = "type_periode = 'annee' AND periode = '2026'"


async def dump(pool) -> dict[str, list[tuple]]:
    out = {}
    for view in sorted(catalog.VIEWS):
        rows = await pool.fetch(f"SELECT * FROM {view}")
        out[view] = sorted(tuple(str(v) for k, v in r.items() if k not in VOLATILE) for r in rows)
    return out


async def check_hand_computed(pool) -> None:
    S = scenario.S
    a = await one(pool, f"SELECT * FROM v_activite WHERE {YEAR} AND niveau = 'structure'")
    expected = {
        "personnes_rencontrees": 4,   # p1, p2 (C2 and C6), p3, p4; C5 never reached
        "dossiers_ouverts": 6, "premiers_contacts": 5, "tentatives_contact": 1,
        "entretiens": 5, "informations": 1, "orientations": 2, "rendez_vous": 0,
        "accompagnements_physiques": 2, "demarches_droits": 2, "interpretariats": 0,
        "seances_information": 1, "actions_collectives": 2,
        "participants_actions_collectives": 20, "outils_professionnels": 1,
        "reunions_partenaires": 1,
    }
    assert {k: a[k] for k in expected} == expected
    kinds = {x["type_action"]: x["actions"] for x in await pool.fetch(
        f"SELECT * FROM v_actions_par_type WHERE {YEAR}")}
    assert kinds["accompaniment"] == 3, "the one where the person was absent is still an action"
    vb = await one(pool, f"SELECT * FROM v_activite WHERE {YEAR} AND niveau = 'secteur' AND secteur = 'vb'")
    assert (vb["entretiens"], vb["personnes_rencontrees"], vb["reunions_partenaires"]) == (3, 3, 1)
    m2 = await one(pool, f"SELECT * FROM v_activite WHERE {YEAR} AND niveau = 'mediateur' AND mediateur = 'm2'")
    assert (m2["entretiens"], m2["dossiers_ouverts"]) == (2, 3)
    march = await one(pool, "SELECT * FROM v_activite WHERE periode = '2026-03' AND niveau = 'structure'")
    assert (march["entretiens"], march["dossiers_ouverts"]) == (4, 5)

    o = await one(pool, f"SELECT * FROM v_orientations WHERE {YEAR} AND niveau = 'structure' AND source = '(toutes sources)'")
    assert (o["recues"], o["acceptees"], o["refusees"], o["routees"], o["non_routables"]) == (8, 6, 2, 5, 1)
    msp = await one(pool, f"SELECT * FROM v_orientations WHERE {YEAR} AND niveau = 'structure' AND source = 'msp'")
    assert msp["acceptees"] == 3

    mot = {r["motif"]: (r["mentions"], r["part_mentions_pct"]) for r in await pool.fetch(
        f"SELECT * FROM v_motifs WHERE {YEAR} AND niveau = 'structure'")}
    assert mot == {"(tous motifs)": (6, Decimal("100.0")), "complex_care_path": (3, Decimal("50.0")),
                   "access_to_rights": (2, Decimal("33.3")), "care_renunciation": (1, Decimal("16.7"))}, \
        "R2's correction replaced its motives"

    r = await one(pool, f"SELECT * FROM v_resultats WHERE {YEAR} AND niveau = 'structure'")
    assert (r["droits_ouverts"], r["personnes_droits_ouverts"], r["demarches_droits_deposees"]) == (2, 2, 0)
    assert (r["orientations_evaluees"], r["orientations_soins_durables"], r["part_soins_durables_pct"]) == (2, 1, Decimal("50.0"))
    assert (r["personnes_evaluees_t0_t1"], r["personnes_autonomie_en_progres"]) == (2, 1)
    assert (r["score_autonomie_t0_moyen"], r["score_autonomie_t1_moyen"]) == (Decimal("4.0"), Decimal("5.5"))

    fa = await one(pool, "SELECT * FROM v_file_active WHERE niveau = 'structure'")
    assert (fa["dossiers_actifs"], fa["personnes_suivies"], fa["sans_premier_contact"]) == (4, 3, 1)
    fa_sh = await one(pool, "SELECT * FROM v_file_active WHERE niveau = 'secteur' AND secteur = 'sh'")
    assert fa_sh["dossiers_actifs"] == 3
    fap = await one(pool, "SELECT * FROM v_file_active_periode WHERE periode = '2026-T1' AND niveau = 'structure'")
    assert fap["dossiers_actifs"] == 5 and fap["personnes_file_active"] == 5

    d = await one(pool, f"SELECT * FROM v_delais WHERE {YEAR} AND niveau = 'structure'")
    # first contact delays (days) 2, 4, 1, 10, 0; closed now: C1 (58 / 60 days), C3 (20 / 21)
    assert (d["dossiers"], d["avec_premier_contact"], d["premiers_contacts_hors_delai"], d["clotures"]) == (6, 5, 1, 2)
    assert (d["jours_orientation_premier_contact_median"], d["jours_orientation_premier_contact_p90"]) == (Decimal("2.0"), Decimal("7.6"))
    assert (d["jours_premier_contact_cloture_median"], d["jours_premier_contact_cloture_p90"]) == (Decimal("39.0"), Decimal("54.2"))
    assert (d["jours_orientation_cloture_median"], d["jours_orientation_cloture_p90"]) == (Decimal("40.5"), Decimal("56.1"))

    clo = {x["motif_cloture"]: x["clotures"] for x in await pool.fetch(
        f"SELECT * FROM v_motifs_cloture WHERE {YEAR} AND niveau = 'structure'")}
    assert clo == {"(tous motifs)": 3, "autonomous": 2, "relay_in_place": 1}

    dys = {(x["categorie"], x["autorite"], x["statut"]): (x["signalements"], x["heures_reponse_mediane"])
           for x in await pool.fetch(f"SELECT * FROM v_dysfonctionnements WHERE {YEAR}")}
    assert dys == {("care_refusal", "ars", "acquitte"): (1, Decimal("25.0")),
                   ("care_refusal", "defenseur", "echec_envoi"): (1, None),
                   ("insalubrious_housing", "mairie", "escalade"): (1, None),
                   ("rights_blockage", "(aucune)", "non_transmis"): (1, None)}
    dc = await one(pool, f"SELECT * FROM v_dysfonctionnements_categorie WHERE {YEAR} AND niveau = 'structure' AND categorie = '(toutes catégories)'")
    assert (dc["signalements"], dc["transmis"], dc["avec_reponse"], dc["escalades_sans_reponse"]) == (3, 2, 1, 1)
    assert dc["structure"] == S

    fr = await one(pool, "SELECT * FROM v_fraicheur WHERE source = '(toutes sources)'")
    assert fr["evenement_le_plus_recent"] == scenario.t(5, 12)


async def test_scripted_year_duplicates_reordering_and_replay(settings_for, services, pg, caplog, spans):
    caplog.set_level(logging.INFO)
    settings = settings_for("reporting")
    svc, story = await started_with_the_year(services, settings)
    await check_hand_computed(svc.pool)
    before = await dump(svc.pool)

    # the freshness gauge: newest applied event vs an injected clock
    lag = await update_freshness_gauge(svc, lambda: scenario.t(5, 12) + (scenario.t(3, 2, 9) - scenario.t(3, 2, 8)))
    assert lag == 3600.0
    from prometheus_client import generate_latest
    assert (f'mediation_reporting_freshness_lag_seconds{{schema="{settings.schema}"}} 3600.0'
            in generate_latest().decode())

    # the published release is recomputed only when events were applied since the last one
    assert await publish.publish_if_stale(svc.pool, 11) is True
    assert await publish.publish_if_stale(svc.pool, 11) is False

    # the same events again (inbox) and the same facts under new event ids (upserts)
    await send(settings, story.items)
    await send(settings, story.items, fresh_ids=True)
    await settle(svc, 3 * len(story.items))
    assert svc.consumers[0].stats.duplicates >= len(story.items)
    await check_hand_computed(svc.pool)
    after = await dump(svc.pool)
    fresh = after.pop("v_fraicheur"), before.pop("v_fraicheur")
    assert after == before, "duplicates changed no indicator"

    # the same story told in another order on other topics gives the same indicators
    other = settings_for("reporting", schema=settings.schema + "_b",
                         topics=Topics(prefix=settings.topics.prefix + "b."),
                         group_id=settings.group_id + ".b")
    svc_b = await services(other)
    rev = list(reversed(story.items))
    await send(other, rev[::2] + rev[1::2])
    await settle(svc_b, len(story.items))
    reordered = await dump(svc_b.pool)
    reordered.pop("v_fraicheur")
    assert reordered == before, "order of arrival changed an indicator"

    # replay refuses while the service runs, then rebuilds identical numbers
    with pytest.raises(ReplayRefused):
        await replay(settings)
    await services.stop(svc)
    indexes = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = $1 ORDER BY 1"
    indexes_before = [tuple(r) for r in await pg.fetch(indexes, settings.schema)]
    assert {"cases_opened", "case_actions_kind"} <= {name for name, _ in indexes_before}
    res = await replay(settings, threshold=3)
    assert res.records == 3 * len(story.items) and res.processed == 2 * len(story.items)
    assert [tuple(r) for r in await pg.fetch(indexes, settings.schema)] == indexes_before, \
        "the indexes the replay dropped for the feed are all built again"
    rebuilt_pool = await asyncpg.create_pool(settings.database_url, min_size=1, max_size=2,
                                             server_settings={"search_path": settings.schema})
    try:
        rebuilt = await dump(rebuilt_pool)
        fr_rebuilt = rebuilt.pop("v_fraicheur")
        assert rebuilt == before, "replay gives the same numbers"
        assert fr_rebuilt == fresh[0]
        assert await rebuilt_pool.fetchval("SELECT count(*) FROM pub_activite") > 0
    finally:
        await rebuilt_pool.close()

    # the restarted service goes on after the replayed end (nothing applied twice)
    svc2 = await services(settings)
    late = new_envelope(scenario.cs.CaseClosed(case=story.case("C2", "vb", "m1"),
                                               reason=scenario.ClosureReason.need_met_no_wish,
                                               closed_at=scenario.t(6, 1)),
                        producer="test", correlation_id="late", structure=scenario.S)
    await send(settings, [("cases", str(scenario.uid("C2", "s")), late)])
    await settle(svc2, 1)
    assert svc2.consumers[0].stats.processed == 1, "only the new event was consumed"
    fa = await one(svc2.pool, "SELECT * FROM v_file_active WHERE niveau = 'structure'")
    assert fa["dossiers_actifs"] == 3

    # reporting keeps no identity: the canary of a dysfunction's description is nowhere
    tables = await svc2.pool.fetch(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = $1", settings.schema)
    for t in tables:
        text = str(await svc2.pool.fetch(f"SELECT * FROM {t['table_name']}"))
        assert "CANARY" not in text and "Cabinet X" not in text, t["table_name"]
    # ... nor in a log line with its fields, nor in a span (caplog.text alone shows no fields)
    formatter = telemetry.JsonFormatter("reporting")
    lines = [formatter.format(r) for r in caplog.records]
    assert any("read models rebuilt" in x for x in lines), "the service's logs were captured"
    assert not [x for x in lines if "CANARY" in x]
    finished = spans.get_finished_spans()
    assert finished, "spans were recorded"
    assert not [sp.name for sp in finished if "CANARY" in sp.to_json()]


def pdf_streams(data: bytes) -> list[bytes]:
    """The decoded content streams of a reportlab PDF (ASCII85 + Flate), read from the bytes."""
    out = []
    for m in re.finditer(rb"<<([^<>]*)>>\s*stream\r?\n(.*?)\s*endstream", data, re.S):
        head, raw = m.group(1), m.group(2)
        if b"/ASCII85Decode" in head:
            raw = base64.a85decode(raw.strip().removesuffix(b"~>"), adobe=False)
        if b"/FlateDecode" in head:
            raw = zlib.decompress(raw)
        out.append(raw)
    return out


async def test_roles_masking_exports_and_yearly_report(settings_for, services, pg, tmp_path):
    settings = settings_for("reporting")
    svc, _story = await started_with_the_year(services, settings)
    threshold = 3
    masked = await publish.publish(svc.pool, threshold)
    assert masked["pub_activite"] > 0
    coord, public = setup.role_names(settings.schema)
    schema = settings.schema

    async def as_role(role: str, sql: str):
        async with pg.transaction():
            await pg.execute(f"SET LOCAL ROLE {role}")
            await pg.execute(f"SET LOCAL search_path = {schema}")
            return await pg.fetch(sql)

    # roles: public reads published views only; coordinator reads views, not tables
    assert await as_role(public, "SELECT * FROM pub_activite")
    for rel in ["v_activite", "cases", "pub_activite_data", "referrals"]:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_role(public, f"SELECT * FROM {rel}")
    assert await as_role(coord, "SELECT * FROM v_activite")
    for rel in ["cases", "case_actions", "pub_activite_data"]:
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await as_role(coord, f"SELECT * FROM {rel}")
    assert not await as_role(public, "SELECT * FROM pub_activite WHERE niveau = 'mediateur'")

    # every raw and published view and column carries a French comment
    undocumented = await pg.fetch(
        "SELECT c.relname, a.attname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 "
        "WHERE n.nspname = $1 AND c.relkind = 'v' AND (c.relname LIKE 'v\\_%' OR c.relname LIKE 'pub\\_%') "
        "AND col_description(c.oid, a.attnum) IS NULL", schema)
    assert not undocumented

    # masking, read as the public: small counts hidden, nothing recoverable from totals
    vb_raw = await one(svc.pool, f"SELECT * FROM v_activite WHERE {YEAR} AND niveau = 'secteur' AND secteur = 'sh'")
    assert vb_raw["entretiens"] == 2
    for name, (_view, spec) in publish.SPECS.items():
        rows = [dict(r) for r in await as_role(public, f"SELECT * FROM {name}")]
        raw = {}
        for r in [dict(x) for x in await svc.pool.fetch(f"SELECT * FROM {_view}")]:
            raw[tuple(str(r.get(k)) for k in ("type_periode", "periode", "niveau", "secteur",
                                              spec.category[0] if spec.category else "niveau"))] = r
        for r in rows:
            k = tuple(str(r.get(k)) for k in ("type_periode", "periode", "niveau", "secteur",
                                               spec.category[0] if spec.category else "niveau"))
            for col in spec.counts:
                src = raw[k][col]
                if 0 < src < threshold:
                    assert r[col] is None and col in r["cellules_masquees"], (name, k, col)
                elif r[col] is not None:
                    assert r[col] == src
        assert attack(rows, spec) == {}, f"{name}: a masked cell can be recomputed"
    published = {name: [dict(r) for r in await as_role(public, f"SELECT * FROM {name}")]
                 for name in publish.SPECS}
    assert revealing_links(published, publish.LINKS) == [], "no view gives away another's masked cell"
    acc = await as_role(public, f"SELECT acceptees FROM pub_orientations WHERE {YEAR} AND niveau = 'structure' AND source = '(toutes sources)'")
    mot = await as_role(public, f"SELECT orientations FROM pub_motifs WHERE {YEAR} AND niveau = 'structure' AND motif = '(tous motifs)'")
    assert acc[0]["acceptees"] is None and mot[0]["orientations"] is None, \
        "8 received - 2 rejected: accepted is masked, and so is its twin in the motives view"
    sh = await as_role(public, f"SELECT * FROM pub_activite WHERE {YEAR} AND niveau = 'secteur' AND secteur = 'sh'")
    vb = await as_role(public, f"SELECT * FROM pub_activite WHERE {YEAR} AND niveau = 'secteur' AND secteur = 'vb'")
    tot = await as_role(public, f"SELECT * FROM pub_activite WHERE {YEAR} AND niveau = 'structure'")
    assert sh[0]["entretiens"] is None, "2 < 3: primary masking"
    assert tot[0]["entretiens"] == 5 and vb[0]["entretiens"] is None, \
        "secondary: 5 - vb would give sh, so vb is masked too"

    # exports, read as the public role
    conn = await svc.pool.acquire()
    out = await exports.export(conn, "pub_motifs", "csv", tmp_path / "motifs.csv",
                               structure=scenario.S, role=public)
    text = out.read_text(encoding="utf-8-sig")
    assert text.splitlines()[0].startswith("type_periode,periode,niveau,structure")
    assert ",s," in text or text.rstrip().endswith(",s"), "masked cells show as s"
    out = await exports.export(conn, "pub_activite", "xlsx", tmp_path / "activite.xlsx", role=public)
    wb = load_workbook(out)
    assert wb.sheetnames == ["pub_activite", "Définitions"]
    assert wb["pub_activite"].max_row > 1
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await exports.export(conn, "v_activite", "csv", tmp_path / "x.csv", role=public)
    await svc.pool.release(conn)

    # HTTP: coordinators read their structure's raw views; other roles published ones only
    transport = httpx.ASGITransport(app=svc.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://r") as http:
        def auth(role, structure=scenario.S):
            return {"Authorization": "Bearer " + issue_token(sub="u", role=role, structure=structure)}
        r = await http.get("/reports/views/v_activite", headers=auth("coordinator"))
        assert r.status_code == 200 and r.json()["rows"]
        r = await http.get("/reports/views/v_activite", headers=auth("coordinator", "other"))
        assert r.status_code == 200 and r.json()["rows"] == []
        assert (await http.get("/reports/views/v_activite", headers=auth("authority"))).status_code == 403
        assert (await http.get("/reports/views/pub_motifs", headers=auth("authority"))).status_code == 200
        assert (await http.get("/reports/views/cases", headers=auth("admin"))).status_code == 404
        assert (await http.get("/reports/views/pub_motifs")).status_code == 401
        fr = await http.get("/reports/freshness", headers=auth("coordinator"))
        assert fr.status_code == 200 and any(x["source"] == "cases" for x in fr.json())

    # the yearly report, in French, as HTML and PDF with charts
    async with svc.pool.acquire() as conn:
        html, pdf = await report.yearly(conn, scenario.S, 2026, tmp_path / "rapport", threshold)
    page = html.read_text(encoding="utf-8")
    assert "Rapport d'activité 2026" in page and page.count("<svg") == 3
    assert "Indicateurs de processus" in page and "Motifs d'orientation" in page
    data = pdf.read_bytes()
    assert data.startswith(b"%PDF-") and data.rstrip().endswith(b"%%EOF")
    count = re.search(rb"/Count (\d+) /Kids", data)
    assert count and int(count.group(1)) >= 2
    assert len(re.findall(rb"/Type /Page\b(?!s)", data)) == int(count.group(1))
    streams = b"".join(pdf_streams(data))
    assert b"Activit" in streams and b"Motifs d" in streams, "chart titles are drawn"
    assert streams.count(b".168627 .423529 .690196 rg") >= 2, "bars are filled in the chart colour"
    assert streams.count(b" re B*") >= 2, "bars are drawn as rectangles"


BAR_COLOURS = {"blue": (0x2B, 0x6C, 0xB0), "orange": (0xDD, 0x6B, 0x20)}


def chart_areas(pdf, titles: list[str], width: int = 460, height: int = 220) -> dict[str, list]:
    """Render every page of the PDF with PDFium (1 px per point) and, for each occurrence of
    each chart title, return the pixels and the text of the area a chart drawn under that
    title occupies (report.bar_chart: a width x height drawing, title 15 pt from its top)."""
    found: dict[str, list] = {t: [] for t in titles}
    doc = pdfium.PdfDocument(str(pdf))
    for page in doc:
        image = page.render(scale=1).to_pil().convert("RGB")
        text = page.get_textpage()
        page_h = page.get_height()
        for title in titles:
            search = text.search(title, match_case=True)
            while (hit := search.get_next()) is not None:
                first, count = hit
                left, _b, _r, top = text.get_charbox(first)
                right = text.get_charbox(first + count - 1)[2]
                mid = (left + right) / 2
                box = (mid - width / 2, top - height + 5, mid + width / 2, top + 5)  # PDF units, y up
                crop = image.crop((round(box[0]), round(page_h - box[3]),
                                   round(box[2]), round(page_h - box[1])))
                found[title].append((crop, text.get_text_bounded(*box)))
    return found


def coloured(image, rgb: tuple[int, int, int], tolerance: int = 12) -> int:
    """Pixels of ``image`` within ``tolerance`` of the colour ``rgb`` (bar fills)."""
    return sum(1 for px in image.getdata() if all(abs(a - b) <= tolerance for a, b in zip(px, rgb, strict=True)))


async def test_yearly_report_pdf_opens_and_shows_its_charts(settings_for, services, tmp_path):
    """The yearly PDF opens in PDFium, and rendered to pixels each chart is there: bars in
    the chart colours where the chart is drawn, its French labels as text, nothing of the
    kind elsewhere."""
    settings = settings_for("reporting")
    svc, _story = await started_with_the_year(services, settings)
    await publish.publish(svc.pool, 1)  # nothing masked: the scripted year has small counts
    async with svc.pool.acquire() as conn:
        _html, pdf = await report.yearly(conn, scenario.S, 2026, tmp_path, 1)
        motives = [r["motif_libelle"] for r in await conn.fetch(
            "SELECT motif_libelle FROM pub_motifs WHERE structure = $1 AND type_periode = 'annee' "
            "AND periode = '2026' AND niveau = 'structure' AND motif <> '(tous motifs)'", scenario.S)]
        closures = [r["motif_cloture_libelle"] for r in await conn.fetch(
            "SELECT motif_cloture_libelle FROM pub_motifs_cloture WHERE structure = $1 AND "
            "type_periode = 'annee' AND periode = '2026' AND niveau = 'structure' "
            "AND motif_cloture <> '(tous motifs)'", scenario.S)]
    assert motives and closures, "the scripted year has motives and closures to chart"

    doc = pdfium.PdfDocument(str(pdf))
    assert len(doc) >= 2
    first = doc[0].render(scale=1).to_pil().convert("RGB")
    assert "Rapport d'activité 2026" in doc[0].get_textpage().get_text_range()
    # control: the title block of page one is text only, no bar colour
    head = first.crop((0, 0, first.width, 200))
    assert not any(coloured(head, c) for c in BAR_COLOURS.values())

    monthly, motive_chart, closure_chart = ("Activité mensuelle", "Motifs d'orientation (% des mentions)",
                                            "Motifs de fin d'accompagnement")
    areas = chart_areas(pdf, [monthly, motive_chart, closure_chart])
    for title, occurrences in areas.items():
        assert occurrences, f"chart title {title!r} is on a page"
        # the closures chart shares its title with a section heading: one of them is the chart
        best = max(occurrences, key=lambda o: coloured(o[0], BAR_COLOURS["blue"]))
        image, text = best
        assert coloured(image, BAR_COLOURS["blue"]) >= 150, f"{title}: bars drawn in the chart colour"
        assert len(set(image.getdata())) > 20, f"{title}: the chart area is not blank"
        if title == monthly:
            assert coloured(image, BAR_COLOURS["orange"]) >= 50, "second series (interviews) drawn"
            for label in ["janv.", "févr.", "mars", "août", "déc.", "Personnes rencontrées", "Entretiens"]:
                assert label in text, f"{label!r} on the monthly chart"
        elif title == motive_chart:
            for label in motives:
                assert label in text, f"motive {label!r} labels a bar"
        else:
            for label in closures:
                assert label in text, f"closure reason {label!r} labels a bar"
    assert "Pas de données publiables" not in "".join(t for occ in areas.values() for _i, t in occ)


async def test_views_doc_is_in_sync(stack_urls):
    """VIEWS.md documents every column of every view as the migrations create them."""
    from pathlib import Path

    from mediation_reporting.setup import view_columns_from_scratch

    cols = await view_columns_from_scratch(stack_urls.database_url)
    assert set(cols) == set(catalog.VIEWS) | set(catalog.PUBLISHED)
    doc = Path(__file__).parents[2] / "services" / "reporting" / "VIEWS.md"
    assert doc.read_text(encoding="utf-8") == catalog.markdown(cols), \
        "run: mediation reports doc"

"""The yearly activity report for funders (ARS, CPAM under the ACI), in French, as HTML
and PDF, with charts drawn by reportlab.graphics (pure Python, no system libraries).

It reads only the published (masked) views: a funder is outside the team, so small
counts show as « s » (secret statistique).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import asyncpg
from jinja2 import Environment, FileSystemLoader, select_autoescape
from reportlab.graphics import renderSVG
from reportlab.graphics.charts.barcharts import HorizontalBarChart, VerticalBarChart
from reportlab.graphics.shapes import Drawing, Rect, String
from reportlab.lib import colors

from . import catalog
from .exports import SECRET

TEMPLATES = Path(__file__).parent / "templates"
# kinds of referring structure as senders usually code them; other codes show as sent
REFERRERS = {
    "msp": "Maison de santé pluriprofessionnelle",
    "cpts": "CPTS",
    "hospital": "Établissement de santé",
    "cpam": "CPAM",
    "caf": "CAF",
    "ccas": "CCAS",
    "pharmacy": "Pharmacie",
    "association": "Association",
    "gp": "Médecin généraliste",
    "social_services": "Service social",
    "pmi": "PMI",
}
MONTHS = ["janv.", "févr.", "mars", "avr.", "mai", "juin", "juil.", "août", "sept.", "oct.",
          "nov.", "déc."]


@dataclass
class Table:
    title: str
    headers: list[str]
    rows: list[list[str]]
    note: str = ""


@dataclass
class Chart:
    title: str
    drawing: Drawing
    svg: str = ""


@dataclass
class Report:
    structure: str
    year: int
    generated_at: datetime
    key_figures: list[tuple[str, str]] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    charts: list[Chart] = field(default_factory=list)
    threshold: int = 11
    freshness: str = ""


def fmt(v, masked: bool = False) -> str:
    if masked:
        return SECRET
    if v is None:
        return "–"
    if isinstance(v, Decimal | float):
        return f"{float(v):,.1f}".replace(",", " ").replace(".", ",")
    if isinstance(v, int):
        return f"{v:,}".replace(",", " ")
    return str(v)


def val(row: dict | None, col: str) -> str:
    if row is None:
        return "0"
    return fmt(row.get(col), col in (row.get("cellules_masquees") or []))


def num(row: dict | None, col: str) -> float | None:
    if row is None:
        return 0.0
    v = row.get(col)
    return None if v is None else float(v)


async def _rows(conn, view: str, where: str, *args) -> list[dict]:
    return [dict(r) for r in await conn.fetch(f"SELECT * FROM {view} WHERE {where}", *args)]


def bar_chart(title: str, labels: list[str], series: list[list[float | None]],
              names: list[str], horizontal: bool = False, width: int = 460,
              height: int = 220) -> Chart:
    d = Drawing(width, height)
    chart = HorizontalBarChart() if horizontal else VerticalBarChart()
    left = 170 if horizontal else 40
    chart.x, chart.y = left, 40
    chart.width, chart.height = width - left - 20, height - 80
    # a category whose values are all masked (None) is drawn empty and labelled « s »
    labels = [f"{lab} ({SECRET})" if series and all(s[i] is None for s in series if s) else lab
              for i, lab in enumerate(labels)]
    data = [[0 if v is None else v for v in s] for s in series if s]
    empty = not labels or not data or not any(v for s in data for v in s)
    if not labels or not data:
        labels, data = [""], [[0]]
    chart.data = data
    chart.categoryAxis.categoryNames = labels
    if empty:
        chart.valueAxis.valueMax = 1
    chart.categoryAxis.labels.fontSize = 7
    chart.valueAxis.labels.fontSize = 7
    chart.valueAxis.valueMin = 0
    if not horizontal and len(labels) > 6:
        chart.categoryAxis.labels.angle = 30
        chart.categoryAxis.labels.boxAnchor = "ne"
    palette = [colors.HexColor("#2b6cb0"), colors.HexColor("#dd6b20"), colors.HexColor("#38a169")]
    for i in range(len(chart.data)):
        chart.bars[i].fillColor = palette[i % len(palette)]
    d.add(chart)
    if empty:  # over the plot area, after the axes (not across them)
        d.add(String(chart.x + chart.width / 2, chart.y + chart.height / 2 - 3,
                     "Pas de données publiables (absentes ou masquées)", fontSize=9,
                     textAnchor="middle", fillColor=colors.grey))
    d.add(String(width / 2, height - 15, title, fontSize=10, textAnchor="middle",
                 fontName="Helvetica-Bold"))
    for i, n in enumerate(names if len(names) > 1 else []):
        x = left + 120 * i
        d.add(Rect(x, 6, 8, 8, fillColor=palette[i % len(palette)], strokeColor=None))
        d.add(String(x + 12, 7, n, fontSize=7))
    svg = renderSVG.drawToString(d)
    svg = re.sub(r"^<\?xml[^>]*>\s*", "", svg)
    svg = re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)
    return Chart(title, d, svg)


async def build_report(conn: asyncpg.Connection, structure: str, year: int,
                       threshold: int = 11) -> Report:
    y = str(year)
    rep = Report(structure=structure, year=year, generated_at=datetime.now(UTC),
                 threshold=threshold)
    struct_year = "structure = $1 AND type_periode = 'annee' AND periode = $2"

    act = await _rows(conn, "pub_activite", struct_year + " AND niveau = 'structure'", structure, y)
    a = act[0] if act else None
    fa = await _rows(conn, "pub_file_active_periode", struct_year + " AND niveau = 'structure'", structure, y)
    res = await _rows(conn, "pub_resultats", struct_year + " AND niveau = 'structure'", structure, y)
    r = res[0] if res else None
    rep.key_figures = [
        ("Personnes en file active sur l'année", val(fa[0] if fa else None, "personnes_file_active")),
        ("Personnes rencontrées", val(a, "personnes_rencontrees")),
        ("Dossiers ouverts", val(a, "dossiers_ouverts")),
        ("Entretiens individuels", val(a, "entretiens")),
        ("Accompagnements physiques", val(a, "accompagnements_physiques")),
        ("Droits ouverts", val(r, "droits_ouverts")),
        ("Actions collectives (participants)",
         f"{val(a, 'actions_collectives')} ({val(a, 'participants_actions_collectives')})"),
    ]

    # process indicators, by sector
    proc_cols = ["personnes_rencontrees", "entretiens", "informations", "seances_information",
                 "orientations", "accompagnements_physiques", "demarches_droits",
                 "outils_professionnels", "reunions_partenaires", "actions_collectives",
                 "participants_actions_collectives"]
    sect = await _rows(conn, "pub_activite", struct_year + " AND niveau = 'secteur'", structure, y)
    sect.sort(key=lambda x: x["secteur"] or "")
    headers = ["Indicateur", *[s["secteur"] for s in sect], "Total structure"]
    rows = [[catalog.column_label("v_activite", c).split(" (")[0],
             *[val(s, c) for s in sect], val(a, c)] for c in proc_cols]
    rep.tables.append(Table("Indicateurs de processus", headers, rows))

    # monthly activity chart
    months = await _rows(conn, "pub_activite",
                         "structure = $1 AND type_periode = 'mois' AND periode LIKE $2 AND niveau = 'structure'",
                         structure, f"{y}-%")
    by_month = {m["periode"]: m for m in months}
    labels = MONTHS
    keys = [f"{y}-{i:02d}" for i in range(1, 13)]
    rep.charts.append(bar_chart(
        "Activité mensuelle", labels,
        [[num(by_month.get(k), "personnes_rencontrees") for k in keys],
         [num(by_month.get(k), "entretiens") for k in keys]],
        ["Personnes rencontrées", "Entretiens"]))

    # referrals by source
    ori = await _rows(conn, "pub_orientations", struct_year + " AND niveau = 'structure'", structure, y)
    ori.sort(key=lambda x: (x["source"] != "(toutes sources)", x["source"]))
    rep.tables.append(Table("Fiches d'orientation par type d'orientateur",
                            ["Source", "Reçues", "Acceptées", "Refusées"],
                            [[REFERRERS.get(o["source"], o["source"]), val(o, "recues"),
                              val(o, "acceptees"), val(o, "refusees")] for o in ori],
                            note="Les fiches refusées à l'accueil dont la structure n'est pas "
                                 "identifiable sont comptées sous «\u00a0(non attribuée)\u00a0»."))

    # motives
    mot = await _rows(conn, "pub_motifs", struct_year + " AND niveau = 'structure'", structure, y)
    mot = [m for m in mot if m["motif"] != "(tous motifs)"]
    mot.sort(key=lambda m: -(num(m, "part_mentions_pct") or 0))
    rep.tables.append(Table("Motifs d'orientation",
                            ["Motif", "Mentions", "Part des mentions (%)"],
                            [[m["motif_libelle"], val(m, "mentions"), val(m, "part_mentions_pct")]
                             for m in mot],
                            note="Repère, hors de ces données (bilan d'une CPTS après un an)\u00a0: "
                                 "parcours complexe 38\u00a0%, accès aux droits 33\u00a0%, rupture de "
                                 "soins 16\u00a0%, renoncement 14\u00a0%."))
    rep.charts.append(bar_chart("Motifs d'orientation (% des mentions)",
                                [m["motif_libelle"] for m in mot][::-1],
                                [[num(m, "part_mentions_pct") for m in mot][::-1]],
                                ["%"], horizontal=True))

    # results
    rep.tables.append(Table("Indicateurs de résultat", ["Indicateur", "Valeur"], [
        ["Démarches d'ouverture de droits déposées", val(r, "demarches_droits_deposees")],
        ["Droits ouverts", val(r, "droits_ouverts")],
        ["Personnes ayant obtenu une ouverture de droits", val(r, "personnes_droits_ouverts")],
        ["Orientations ayant abouti à une prise en charge durable",
         f"{val(r, 'orientations_soins_durables')} / {val(r, 'orientations_evaluees')}"],
        ["Personnes auto-évaluées à T0 et T1", val(r, "personnes_evaluees_t0_t1")],
        ["dont autonomie en progrès", val(r, "personnes_autonomie_en_progres")],
        ["Score moyen d'autonomie T0 → T1",
         f"{val(r, 'score_autonomie_t0_moyen')} → {val(r, 'score_autonomie_t1_moyen')}"],
    ]))

    # delays
    dl = await _rows(conn, "pub_delais", struct_year + " AND niveau = 'structure'", structure, y)
    d = dl[0] if dl else None
    rep.tables.append(Table("Délais (jours)", ["Étape", "Médiane", "90e centile"], [
        ["Réception de la fiche → premier contact",
         val(d, "jours_orientation_premier_contact_median"), val(d, "jours_orientation_premier_contact_p90")],
        ["Premier contact → clôture",
         val(d, "jours_premier_contact_cloture_median"), val(d, "jours_premier_contact_cloture_p90")],
        ["Réception de la fiche → clôture",
         val(d, "jours_orientation_cloture_median"), val(d, "jours_orientation_cloture_p90")],
    ]))

    # closures
    clo = await _rows(conn, "pub_motifs_cloture", struct_year + " AND niveau = 'structure'", structure, y)
    clo.sort(key=lambda c: (c["motif_cloture"] == "(tous motifs)", -(num(c, "clotures") or 0)))
    rep.tables.append(Table("Motifs de fin d'accompagnement", ["Motif", "Clôtures"],
                            [[c["motif_cloture_libelle"], val(c, "clotures")] for c in clo]))
    clo_parts = [c for c in clo if c["motif_cloture"] != "(tous motifs)"]
    rep.charts.append(bar_chart("Motifs de fin d'accompagnement",
                                [c["motif_cloture_libelle"] for c in clo_parts][::-1],
                                [[num(c, "clotures") for c in clo_parts][::-1]], ["Clôtures"],
                                horizontal=True))

    # dysfunctions
    dy = await _rows(conn, "pub_dysfonctionnements", struct_year + " AND niveau = 'structure'", structure, y)
    dy.sort(key=lambda c: (c["categorie"] == "(toutes catégories)", c["categorie"]))
    rep.tables.append(Table("Dysfonctionnements signalés aux autorités",
                            ["Catégorie", "Signalements", "Transmis", "Avec réponse",
                             "Délai médian de réponse (h)"],
                            [[x["categorie_libelle"], val(x, "signalements"), val(x, "transmis"),
                              val(x, "avec_reponse"), val(x, "heures_reponse_mediane")] for x in dy]))
    fr = await conn.fetchrow("SELECT * FROM pub_fraicheur WHERE source = '(toutes sources)'")
    if fr and fr["evenement_le_plus_recent"]:
        rep.freshness = fr["evenement_le_plus_recent"].strftime("%d/%m/%Y %H:%M UTC")
    for t in rep.tables:  # say so rather than print a header alone
        if not t.rows:
            t.rows = [["Aucune donnée publiée pour l'année", *[""] * (len(t.headers) - 1)]]
    return rep


def render_html(rep: Report) -> str:
    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html"]))
    return env.get_template("yearly.html").render(rep=rep, secret=SECRET)


def render_pdf(rep: Report, path: Path) -> None:
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import cm
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, TableStyle
    from reportlab.platypus import Table as RLTable

    styles = getSampleStyleSheet()
    doc = SimpleDocTemplate(str(path), pagesize=A4, title=f"Rapport d'activité {rep.year} — {rep.structure}",
                            author="Service de médiation en santé", leftMargin=2 * cm,
                            rightMargin=2 * cm, topMargin=2 * cm, bottomMargin=2 * cm)
    story = [Paragraph(f"Rapport d'activité {rep.year}", styles["Title"]),
             Paragraph(f"Médiation en santé — {rep.structure}", styles["Heading2"]),
             Paragraph(f"Établi le {rep.generated_at.strftime('%d/%m/%Y')} à partir des indicateurs "
                       f"publiés (données jusqu'au {rep.freshness or '–'}). Secret statistique : les "
                       f"effectifs inférieurs à {rep.threshold} sont masqués («\u00a0{SECRET}\u00a0»), ainsi que "
                       "les cellules qui permettraient de les retrouver.", styles["Normal"]),
             Spacer(1, 12)]

    def table(headers, rows):
        t = RLTable([headers, *rows], repeatRows=1)
        t.setStyle(TableStyle([
            ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8), ("FONT", (0, 1), (-1, -1), "Helvetica", 8),
            ("GRID", (0, 0), (-1, -1), 0.25, colors.grey),
            ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e2e8f0")),
            ("ALIGN", (1, 1), (-1, -1), "RIGHT")]))
        return t

    story += [Paragraph("Chiffres clés", styles["Heading2"]),
              table(["Indicateur", "Valeur"], [list(k) for k in rep.key_figures]), Spacer(1, 12)]
    charts = {c.title: c for c in rep.charts}
    after = {"Indicateurs de processus": "Activité mensuelle",
             "Motifs d'orientation": "Motifs d'orientation (% des mentions)",
             "Motifs de fin d'accompagnement": "Motifs de fin d'accompagnement"}
    for t in rep.tables:
        story += [Paragraph(t.title, styles["Heading2"]), table(t.headers, t.rows)]
        if t.note:
            story.append(Paragraph(t.note, styles["Italic"]))
        if t.title in after and after[t.title] in charts:
            story += [Spacer(1, 8), charts[after[t.title]].drawing]
        story.append(Spacer(1, 12))
    doc.build(story)


async def yearly(conn: asyncpg.Connection, structure: str, year: int, out_dir: Path,
                 threshold: int = 11) -> tuple[Path, Path]:
    rep = await build_report(conn, structure, year, threshold)
    safe = re.sub(r"[^A-Za-z0-9_-]+", "-", structure)
    html = out_dir / f"rapport-activite-{safe}-{year}.html"
    pdf = out_dir / f"rapport-activite-{safe}-{year}.pdf"

    def write() -> None:
        out_dir.mkdir(parents=True, exist_ok=True)
        html.write_text(render_html(rep), encoding="utf-8")
        render_pdf(rep, pdf)

    await asyncio.to_thread(write)
    return html, pdf

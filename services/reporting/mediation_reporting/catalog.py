"""French labels of every indicator view and column, and of the codes they show.

One source for the database comments (COMMENT ON VIEW/COLUMN, set at start), for
``VIEWS.md`` (``python -m mediation_reporting.catalog > services/reporting/VIEWS.md``),
for the headers of CSV/XLSX exports and for the yearly report.
"""

from __future__ import annotations

import sys

COMMON = {
    "type_periode": "Type de période : mois, trimestre ou annee (calendrier Europe/Paris)",
    "periode": "Période : AAAA-MM (mois), AAAA-Tn (trimestre), AAAA (année)",
    "niveau": "Niveau géographique de la ligne : structure (total), secteur, ou mediateur",
    "structure": "Structure porteuse (ex. CPTS) ; « (non attribuée) » si inconnue",
    "secteur": "Secteur (sous-territoire) ; vide sur les lignes de niveau structure",
    "mediateur": "Identifiant du ou de la médiateur·rice ; vide sur les lignes de niveau structure et secteur",
}

PUB_EXTRA = {
    "cellules_masquees": "Colonnes de la ligne masquées au titre du secret statistique (valeur vide)",
    "publie_le": "Date et heure (UTC) du calcul de cette publication",
}

VIEWS: dict[str, tuple[str, dict[str, str]]] = {
    "v_activite": (
        "Indicateurs de processus (annexe 6 du guide) par période et par structure, secteur, médiateur",
        {
            "personnes_rencontrees": "Personnes rencontrées (distinctes) : premier contact, entretien ou autre action avec la personne, ou rencontre en aller-vers/permanence",
            "dossiers_ouverts": "Dossiers d'accompagnement ouverts dans la période",
            "premiers_contacts": "Premiers contacts établis",
            "tentatives_contact": "Tentatives de contact enregistrées",
            "entretiens": "Entretiens individuels",
            "informations": "Informations individuelles données (droits, prévention, offre de soins)",
            "orientations": "Orientations vers un professionnel ou une structure",
            "rendez_vous": "Rendez-vous pris (consultations)",
            "accompagnements_physiques": "Accompagnements physiques réalisés (consultation, guichet ; hors annulés ou personne absente)",
            "demarches_droits": "Démarches d'accès aux droits (PUMa, CSS, AME, complémentaire...)",
            "interpretariats": "Interprétariats réalisés",
            "seances_information": "Séances d'information / de sensibilisation (collectives)",
            "actions_collectives": "Actions collectives de promotion de la santé (ateliers, prévention, dépistage, vaccination, groupes, sensibilisation)",
            "participants_actions_collectives": "Participants aux actions collectives (public)",
            "outils_professionnels": "Outils réalisés pour les professionnels",
            "reunions_partenaires": "Réunions avec des partenaires",
        },
    ),
    "v_actions_par_type": (
        "Toutes les actions par type (y compris les types nouveaux), par période et structure",
        {
            "type_action": "Type d'action (code) ; « collectif:… » pour les actions collectives",
            "actions": "Nombre d'actions",
            "participants": "Participants (actions collectives)",
            "professionnels": "Professionnels présents (actions collectives)",
        },
    ),
    "v_orientations": (
        "Fiches d'orientation reçues, acceptées, refusées, par source, par période et structure, secteur, médiateur",
        {
            "source": "Type de structure orientatrice (msp, hôpital, cpam...) ; « (toutes sources) » pour le total",
            "recues": "Fiches reçues (acceptées + refusées), comptées une fois même corrigées",
            "acceptees": "Fiches acceptées par l'accueil",
            "refusees": "Fiches refusées (formulaire incomplet ou invalide)",
            "routees": "Fiches acceptées attribuées à un secteur et un·e médiateur·rice",
            "non_routables": "Fiches acceptées en attente d'attribution par la coordination",
        },
    ),
    "v_orientations_par_systeme": (
        "Fiches d'orientation par système émetteur et période",
        {
            "systeme_source": "Identifiant du système qui a envoyé la fiche",
            "recues": "Fiches reçues",
            "acceptees": "Fiches acceptées",
            "refusees": "Fiches refusées",
        },
    ),
    "v_motifs": (
        "Répartition des motifs d'orientation (fiches acceptées), comparable au bilan de la CPTS (38/33/16/14 %)",
        {
            "motif": "Motif (code) ; « (tous motifs) » pour le total",
            "motif_libelle": "Motif en clair",
            "mentions": "Nombre de mentions du motif (une fiche peut citer plusieurs motifs)",
            "orientations": "Nombre de fiches citant ce motif",
            "part_mentions_pct": "Part du motif parmi toutes les mentions, en % (total = 100)",
            "part_orientations_pct": "Part des fiches citant ce motif, en %",
        },
    ),
    "v_resultats": (
        "Indicateurs de résultat : droits ouverts (T0→T1), autonomie (T0→T1), soins durables",
        {
            "demarches_droits_deposees": "Démarches d'ouverture de droits déposées",
            "droits_ouverts": "Droits ouverts (démarches abouties) dans la période",
            "personnes_droits_ouverts": "Personnes ayant obtenu au moins une ouverture de droits",
            "orientations_evaluees": "Orientations dont l'issue est connue",
            "orientations_soins_durables": "Orientations ayant abouti à une prise en charge durable",
            "part_soins_durables_pct": "Part des orientations évaluées ayant abouti à une prise en charge durable, en %",
            "personnes_evaluees_t0_t1": "Personnes avec une auto-évaluation d'autonomie à T0 et à T1 (comptées à la date de T1)",
            "personnes_autonomie_en_progres": "Personnes dont le score d'autonomie T1 dépasse celui de T0",
            "score_autonomie_t0_moyen": "Score moyen d'autonomie à T0 (0 à 10)",
            "score_autonomie_t1_moyen": "Score moyen d'autonomie à T1 (0 à 10)",
        },
    ),
    "v_file_active": (
        "File active actuelle : dossiers ouverts à l'instant de la requête, par structure, secteur, médiateur",
        {
            "dossiers_actifs": "Dossiers ouverts (non clôturés, ou rouverts)",
            "personnes_suivies": "Personnes distinctes suivies",
            "sans_premier_contact": "Dossiers ouverts sans premier contact",
            "urgents_ou_prioritaires": "Dossiers ouverts urgents ou prioritaires",
            "anciennete_mediane_jours": "Ancienneté médiane des dossiers ouverts, en jours",
            "calculee_le": "Instant du calcul",
        },
    ),
    "v_file_active_periode": (
        "File active de la période : dossiers et personnes suivis à un moment de la période",
        {
            "dossiers_actifs": "Dossiers ouverts à un moment de la période",
            "personnes_file_active": "Personnes distinctes suivies dans la période (file active)",
        },
    ),
    "v_delais": (
        "Délais orientation → premier contact → clôture (médiane et 90e centile, en jours), par période de début du dossier",
        {
            "dossiers": "Dossiers dont le début (réception de la fiche, sinon ouverture) tombe dans la période",
            "avec_premier_contact": "Dossiers avec un premier contact",
            "jours_orientation_premier_contact_median": "Délai médian entre réception de la fiche et premier contact (jours)",
            "jours_orientation_premier_contact_p90": "Délai au 90e centile entre réception et premier contact (jours)",
            "premiers_contacts_hors_delai": "Dossiers ayant dépassé le délai de premier contact (relance ou escalade)",
            "clotures": "Dossiers clôturés (dernière clôture)",
            "jours_premier_contact_cloture_median": "Durée médiane entre premier contact et clôture (jours)",
            "jours_premier_contact_cloture_p90": "Durée au 90e centile entre premier contact et clôture (jours)",
            "jours_orientation_cloture_median": "Durée médiane entre réception de la fiche et clôture (jours)",
            "jours_orientation_cloture_p90": "Durée au 90e centile entre réception de la fiche et clôture (jours)",
        },
    ),
    "v_motifs_cloture": (
        "Motifs de fin d'accompagnement (référentiel HAS et motifs pratiques), par période de clôture",
        {
            "motif_cloture": "Motif de clôture (code) ; « (tous motifs) » pour le total",
            "motif_cloture_libelle": "Motif de clôture en clair",
            "clotures": "Clôtures (un dossier clos, rouvert puis clos compte deux clôtures)",
        },
    ),
    "v_dysfonctionnements": (
        "Dysfonctionnements signalés par catégorie, autorité destinataire et statut, avec délais de réponse",
        {
            "categorie": "Catégorie de dysfonctionnement (code)",
            "categorie_libelle": "Catégorie en clair",
            "autorite": "Autorité destinataire (ARS, CPAM, mairie, Défenseur des droits...) ; « (aucune) » si non transmis",
            "statut": "Statut de l'alerte : non_transmis, en_cours, transmis, echec_envoi, escalade, acquitte",
            "signalements": "Signalements distincts",
            "alertes": "Alertes (un signalement peut aller à plusieurs autorités)",
            "heures_transmission_mediane": "Délai médian signalement → première transmission (heures)",
            "heures_reponse_mediane": "Délai médian signalement → accusé de réception de l'autorité (heures)",
            "heures_reponse_p90": "Délai au 90e centile signalement → accusé de réception (heures)",
        },
    ),
    "v_dysfonctionnements_categorie": (
        "Dysfonctionnements par catégorie et secteur (vue publiable), avec délais de réponse",
        {
            "categorie": "Catégorie (code) ; « (toutes catégories) » pour le total",
            "categorie_libelle": "Catégorie en clair",
            "signalements": "Signalements",
            "urgents": "Signalements urgents",
            "transmis": "Signalements transmis à au moins une autorité",
            "avec_reponse": "Signalements ayant reçu un accusé de réception d'une autorité",
            "escalades_sans_reponse": "Signalements escaladés sans réponse",
            "heures_reponse_mediane": "Délai médian signalement → première réponse (heures)",
            "heures_reponse_p90": "Délai au 90e centile signalement → première réponse (heures)",
        },
    ),
    "v_fraicheur": (
        "Fraîcheur des indicateurs : événement le plus récent appliqué, par flux, et retard sur l'heure actuelle",
        {
            "source": "Flux d'événements (référence du topic) ; « (toutes sources) » pour l'ensemble",
            "evenement_le_plus_recent": "Date (UTC) de l'événement le plus récent appliqué",
            "derniere_application": "Date (UTC) de la dernière mise à jour des tables",
            "evenements_appliques": "Nombre d'événements appliqués",
            "retard_secondes": "Retard : maintenant moins l'événement le plus récent appliqué, en secondes",
        },
    ),
}

# published (masked) views: pub_<x> is the masked copy of its raw view
PUBLISHED = {
    "pub_activite": "v_activite",
    "pub_orientations": "v_orientations",
    "pub_motifs": "v_motifs",
    "pub_resultats": "v_resultats",
    "pub_file_active": "v_file_active",
    "pub_file_active_periode": "v_file_active_periode",
    "pub_delais": "v_delais",
    "pub_motifs_cloture": "v_motifs_cloture",
    "pub_dysfonctionnements": "v_dysfonctionnements_categorie",
    "pub_fraicheur": "v_fraicheur",
}

LABELS: dict[str, dict[str, str]] = {
    "motif": {
        "complex_care_path": "Parcours de soins complexe",
        "access_to_rights": "Accès aux droits",
        "care_interruption": "Rupture de soins",
        "care_renunciation": "Renoncement aux soins",
        "find_gp": "Recherche de médecin traitant",
        "cancer_screening": "Dépistage organisé des cancers",
        "vaccination": "Rattrapage vaccinal",
        "mental_health": "Santé mentale",
        "other": "Autre",
    },
    "motif_cloture": {
        "autonomous": "Personne autonome",
        "barriers_lifted": "Freins levés",
        "relay_in_place": "Relais en place (droit commun)",
        "need_met_no_wish": "Besoin satisfait, ne souhaite pas poursuivre",
        "no_adherence": "N'adhère plus",
        "moved_away": "A déménagé",
        "unreachable": "Injoignable",
        "deceased": "Décès",
    },
    "categorie_dysfonctionnement": {
        "care_refusal": "Refus de soins / discrimination",
        "insalubrious_housing": "Logement insalubre ou dangereux",
        "rights_blockage": "Blocage dans l'ouverture des droits",
        "interpreting_lack": "Absence d'interprétariat",
        "health_risk": "Risque pour la santé",
        "other": "Autre",
    },
}


def view_doc(view: str) -> tuple[str, dict[str, str]]:
    """Title and column labels of a raw (v_*) or published (pub_*) view, in column order
    unknown: callers iterate the real columns and look labels up here."""
    if view in PUBLISHED:
        title, cols = VIEWS[PUBLISHED[view]]
        return (f"{title} — version publiable, petits effectifs masqués (secret statistique)",
                {**COMMON, **cols, **PUB_EXTRA})
    title, cols = VIEWS[view]
    return title, {**COMMON, **cols}


def column_label(view: str, column: str) -> str:
    return view_doc(view)[1].get(column, column)


def markdown(columns: dict[str, list[str]]) -> str:
    """VIEWS.md from the real column lists of the views (``columns`` by view name)."""
    out = ["# Vues d'indicateurs du service reporting", "",
           "Généré par `python -m mediation_reporting.catalog` depuis `catalog.py` "
           "(les mêmes libellés sont posés en base par COMMENT ON VIEW/COLUMN au démarrage).", "",
           "- Vues brutes `v_*` : rôle coordination (`<schéma>_coordinator`) uniquement.",
           "- Vues publiables `pub_*` : rôle public (`<schéma>_public`) ; niveaux structure et "
           "secteur seulement ; effectifs de 1 à seuil-1 (seuil 11 par défaut, "
           "`MEDIATION_REPORTING_SECRECY_THRESHOLD`) masqués, avec masquage secondaire "
           "(dans chaque groupe ligne/colonne dont un total est publié — secteurs d'une "
           "structure, mois d'un trimestre, trimestres d'une année, catégories d'un total, "
           "reçues = acceptées + refusées — une cellule masquée seule entraîne le masquage de "
           "la plus petite autre cellule, jusqu'à ce qu'aucun groupe n'ait une seule cellule "
           "masquée). Les cellules égales d'une vue à l'autre (fiches acceptées de `pub_orientations` "
           "= fiches avec motif de `pub_motifs`) sont masquées ensemble. Les moyennes, médianes "
           "et parts suivent le masquage de leur effectif.",
           "- Aucun rôle ne lit les tables.",
           "- Périodes : calendrier Europe/Paris. Les lignes absentes valent zéro.", ""]
    for view in sorted(columns, key=lambda v: (not v.startswith("v_"), v)):
        title, labels = view_doc(view)
        out += [f"## `{view}`", "", title, ""]
        if view in PUBLISHED:
            out += [f"Copie masquée de `{PUBLISHED[view]}`.", ""]
        out += ["| colonne | libellé |", "|---|---|"]
        for c in columns[view]:
            out.append(f"| `{c}` | {labels.get(c, '')} |")
        out.append("")
    out += ["## Libellés des codes", ""]
    for dom, codes in LABELS.items():
        out += [f"### {dom}", ""] + [f"- `{k}` : {v}" for k, v in codes.items()] + [""]
    return "\n".join(out)


def main() -> None:  # pragma: no cover - doc generator
    import asyncio

    from .setup import view_columns_from_scratch

    sys.stdout.write(markdown(asyncio.run(view_columns_from_scratch())))


if __name__ == "__main__":  # pragma: no cover
    main()

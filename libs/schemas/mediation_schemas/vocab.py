"""Controlled vocabularies shared by several services (codes in English, meaning in French).

Codes are stable machine values; labels for people are in French and live with the
service that shows them (reports, messages).
"""

from __future__ import annotations

from enum import StrEnum


class Motive(StrEnum):
    """Why the person is referred (*motif d'orientation*)."""

    complex_care_path = "complex_care_path"      # parcours de soins complexe
    access_to_rights = "access_to_rights"        # accès aux droits (with `right`)
    care_interruption = "care_interruption"      # rupture de soins
    care_renunciation = "care_renunciation"      # renoncement aux soins
    find_gp = "find_gp"                          # recherche de médecin traitant
    cancer_screening = "cancer_screening"        # dépistage organisé des cancers (with `screening`)
    vaccination = "vaccination"                  # rattrapage vaccinal
    mental_health = "mental_health"              # santé mentale
    other = "other"                              # autre (with free text, sealed)


class HealthRight(StrEnum):
    """The right concerned by an access-to-rights motive or a rights procedure."""

    puma = "puma"                  # Protection universelle maladie
    css = "css"                    # Complémentaire santé solidaire (ex-CMU-C/ACS)
    ame = "ame"                    # Aide médicale de l'État (undocumented migrants)
    complementary = "complementary"  # mutuelle / complémentaire santé privée
    mdph = "mdph"                  # droits liés au handicap (Maison départementale des personnes handicapées)
    other = "other"


class Screening(StrEnum):
    """Organised cancer screening programmes (*dépistage organisé*)."""

    breast = "breast"
    cervix = "cervix"
    colorectal = "colorectal"


class Urgency(StrEnum):
    normal = "normal"
    priority = "priority"   # à traiter rapidement
    urgent = "urgent"       # situation d'urgence sociale ou sanitaire


class MeetingMode(StrEnum):
    """How the person prefers to meet the mediator."""

    permanence = "permanence"   # scheduled drop-in session
    home_visit = "home_visit"   # visite à domicile
    phone = "phone"


class CaseOrigin(StrEnum):
    referral = "referral"       # fiche d'orientation from a professional
    outreach = "outreach"       # aller vers: met in the street, in the field
    permanence = "permanence"   # met at a drop-in session
    self_referral = "self_referral"


class DysfunctionCategory(StrEnum):
    """Dysfunctions of the care system and health risks (veille, HAS axis 4)."""

    care_refusal = "care_refusal"            # refus de soins / discrimination
    insalubrious_housing = "insalubrious_housing"  # logement insalubre ou dangereux
    rights_blockage = "rights_blockage"      # blocage dans le traitement des droits
    interpreting_lack = "interpreting_lack"  # absence d'interprétariat
    health_risk = "health_risk"              # risque pour la santé (signal sanitaire)
    other = "other"


class ClosureReason(StrEnum):
    """HAS reasons for ending mediation, plus practical ones."""

    autonomous = "autonomous"                # la personne est autonome
    barriers_lifted = "barriers_lifted"      # les freins ont été levés
    relay_in_place = "relay_in_place"        # relais en place (droit commun)
    need_met_no_wish = "need_met_no_wish"    # besoin satisfait, ne souhaite pas poursuivre
    no_adherence = "no_adherence"            # n'adhère plus
    moved_away = "moved_away"                # a déménagé
    unreachable = "unreachable"              # injoignable après N tentatives
    deceased = "deceased"                    # décédée

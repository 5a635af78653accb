"""The public contract outside systems write: a referral form (*fiche d'orientation*).

A professional's system (a GP's software, an MSP's tool, a hospital social service,
CPAM, an association...) sends one ``ReferralReceived`` per form, on the topic
``<prefix>referrals.received`` (key ``source_system:source_reference``) or through intake's
HTTP endpoint ``POST /referrals``. Intake validates it, normalises what can be normalised
(French phone numbers, spacing and case of names, dates written the French way), seals
identity and contact data, and answers with ``ReferralAccepted`` or ``ReferralRejected``
(every problem as field path, rule code and French message) on ``referrals.answers``,
keyed by the source system.

The types below are the canonical form (ISO dates, E.164 phones, 5-digit postcodes).
Intake also accepts the usual French writings (``12/03/1985``, ``06 12 34 56 78``,
``+33 (0)6...``, ``30 170``) and normalises them; anything else is rejected with reasons.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import Field

from .common import Strict
from .envelope import Payload, register
from .vocab import HealthRight, MeetingMode, Motive, Screening, Urgency

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,119}$"


class Profession(StrEnum):
    """Profession or role of the referring professional (*profession du prescripteur*)."""

    gp = "gp"                            # médecin généraliste (often the médecin traitant)
    specialist = "specialist"            # médecin spécialiste
    nurse = "nurse"                      # infirmier·ère (IDEL, IPA, infirmier·ère Asalée)
    pharmacist = "pharmacist"            # pharmacien·ne
    midwife = "midwife"                  # sage-femme
    physiotherapist = "physiotherapist"  # masseur-kinésithérapeute
    dentist = "dentist"                  # chirurgien-dentiste
    psychologist = "psychologist"        # psychologue
    social_worker = "social_worker"      # assistant·e de service social, conseiller·ère ESF
    care_coordinator = "care_coordinator"  # coordinateur·rice de parcours (CPTS, DAC)
    insurance_advisor = "insurance_advisor"  # conseiller·ère CPAM / mission accompagnement santé
    association_worker = "association_worker"  # intervenant·e associatif·ve, bénévole
    municipal_staff = "municipal_staff"  # agent de mairie / CCAS
    other = "other"


class StructureKind(StrEnum):
    """Kind of structure the referrer works in (*type de structure*)."""

    private_practice = "private_practice"  # cabinet libéral
    msp = "msp"                            # maison de santé pluriprofessionnelle
    health_centre = "health_centre"        # centre de santé (e.g. centre de santé communautaire)
    cpts = "cpts"                          # communauté professionnelle territoriale de santé
    pharmacy = "pharmacy"                  # officine
    hospital = "hospital"                  # hôpital, clinique (incl. service social hospitalier, PASS)
    cms = "cms"                            # centre médico-social (département)
    cpam = "cpam"                          # caisse primaire d'assurance maladie
    association = "association"
    town_hall = "town_hall"                # mairie, CCAS
    other = "other"


class Sex(StrEnum):
    """Sex as written on the form (*sexe*), optional."""

    female = "female"   # F, femme
    male = "male"       # M/H, homme
    other = "other"     # autre / non précisé


class Weekday(StrEnum):
    monday = "monday"        # lundi
    tuesday = "tuesday"      # mardi
    wednesday = "wednesday"  # mercredi
    thursday = "thursday"    # jeudi
    friday = "friday"        # vendredi
    saturday = "saturday"    # samedi
    sunday = "sunday"        # dimanche


class DayPeriod(StrEnum):
    morning = "morning"      # matin
    afternoon = "afternoon"  # après-midi
    evening = "evening"      # fin de journée / soir
    any = "any"              # toute la journée


class ReferrerReceived(Strict):
    """Who refers (*le professionnel prescripteur / orienteur*)."""

    name: str = Field(min_length=1, max_length=200,
                      description="Full name of the referring professional (*nom et prénom du "
                      "professionnel*). Sealed by intake.")
    profession: Profession = Field(description="Profession or role (*profession / fonction*).")
    structure_name: str = Field(min_length=1, max_length=200,
                                description="Name of the structure (*nom de la structure*), e.g. "
                                "'MSP de Lasalle'. Sealed by intake (it may contain a name).")
    structure_kind: StructureKind = Field(description="Kind of structure (*type de structure*).")
    phone: str | None = Field(default=None, max_length=40,
                              description="Professional phone (*téléphone*), E.164 (+33...); "
                              "usual French writings are accepted and normalised.")
    email: str | None = Field(default=None, max_length=254,
                              description="Professional e-mail (*courriel*), ideally a secure "
                              "health messaging address (MSSanté).")
    rpps: str | None = Field(default=None, pattern=r"^\d{11}$",
                             description="RPPS number (*Répertoire partagé des professionnels de "
                             "santé*, 11 digits) of the professional, if any.")
    finess: str | None = Field(default=None, pattern=r"^(\d{2}|2A|2B)\d{7}$",
                               description="FINESS number (*Fichier national des établissements "
                               "sanitaires et sociaux*, 9 characters) of the structure, if any.")


class PersonReceived(Strict):
    """Who is referred (*la personne orientée*). Everything here is personal data."""

    family_name: str = Field(min_length=1, max_length=100,
                             description="Family name (*nom de famille / nom de naissance*). "
                             "Normalised to upper case with single spaces.")
    given_name: str = Field(min_length=1, max_length=100,
                            description="Given name(s) (*prénom(s)*). Normalised to "
                            "capitalised words with single spaces.")
    birth_date: date = Field(description="Birth date (*date de naissance*), ISO 8601 "
                             "(YYYY-MM-DD); JJ/MM/AAAA and J/M/AA are accepted.")
    sex: Sex | None = Field(default=None, description="Sex (*sexe*), optional.")
    address: str | None = Field(default=None, max_length=300,
                                description="Street address (*adresse*: numéro, voie, lieu-dit).")
    commune: str = Field(min_length=1, max_length=100,
                         description="Commune of residence (*commune de résidence*) as the sender "
                         "writes it; routing resolves it against the territory.")
    postcode: str | None = Field(default=None, pattern=r"^\d{5}$",
                                 description="Postcode (*code postal*), 5 digits.")
    phone: str | None = Field(default=None, max_length=40,
                              description="Phone (*téléphone*), E.164 (+33...); usual French "
                              "writings (06 12 34 56 78, +33 6..., 0033 6...) are accepted.")
    email: str | None = Field(default=None, max_length=254, description="E-mail (*courriel*).")
    language: str = Field(default="fr", pattern=r"^[a-z]{2,3}$",
                          description="Language spoken (*langue parlée*), ISO 639 code "
                          "(fr, ar, ro, ...); a few French names (arabe, roumain...) are accepted.")
    interpreter_needed: bool = Field(default=False,
                                     description="An interpreter is needed (*besoin d'interprétariat*).")
    consent_contact: bool = Field(description="The person agrees to be contacted by the mediator "
                                  "(*accord pour être contacté·e*). Required and must be true.")
    consent_share_with_referrer: bool = Field(
        default=False,
        description="The person agrees that the referrer is told what became of the referral "
        "(*accord pour le retour d'information au professionnel*).")


class MotiveReceived(Strict):
    """One reason for the referral (*motif d'orientation*)."""

    code: Motive = Field(description="Motive code (*motif*).")
    right: HealthRight | None = Field(
        default=None, description="Right concerned (*droit concerné*: PUMa, CSS, AME, "
        "complémentaire, MDPH...); required when code is access_to_rights.")
    screening: Screening | None = Field(
        default=None, description="Screening programme (*dépistage organisé*: sein, col de "
        "l'utérus, colorectal); required when code is cancer_screening.")
    text: str | None = Field(default=None, max_length=1000,
                             description="Free text (*précisions*); required when code is other. "
                             "Sealed by intake.")


class AvailabilitySlot(Strict):
    """When the person can usually be reached or met (*disponibilités*)."""

    day: Weekday = Field(description="Day of the week (*jour*).")
    period: DayPeriod = Field(default=DayPeriod.any, description="Part of the day (*moment*).")


@register
class ReferralReceived(Payload):
    """A referral form (*fiche d'orientation*) sent by a professional's system."""

    event_type = "ReferralReceived"
    version = 1

    source_system: str = Field(
        pattern=ID_PATTERN,
        description="Id of the sending system (*système émetteur*), as registered with the "
        "programme; answers come back keyed by it.")
    source_reference: str = Field(
        pattern=ID_PATTERN,
        description="The sender's own reference for this form (*référence de la fiche*). The same "
        "(source_system, source_reference) sent again is a duplicate, or a correction if its "
        "content changed. An opaque id: never a name.")
    referral_date: date | None = Field(
        default=None, description="Date the form was filled in (*date de la fiche*); defaults to "
        "the date it was received.")
    referrer: ReferrerReceived = Field(description="Who refers (*prescripteur*).")
    person: PersonReceived = Field(description="Who is referred (*personne orientée*).")
    motives: list[MotiveReceived] = Field(min_length=1, max_length=12,
                                          description="Why (*motifs d'orientation*), at least one.")
    urgency: Urgency = Field(default=Urgency.normal, description="How urgent (*degré d'urgence*).")
    meeting_modes: list[MeetingMode] = Field(
        default_factory=list, max_length=3,
        description="Preferred ways to meet (*modalités de rencontre souhaitées*: permanence, "
        "visite à domicile, téléphone).")
    availability: list[AvailabilitySlot] = Field(
        default_factory=list, max_length=21,
        description="When the person is available (*disponibilités*). Sealed by intake.")
    availability_note: str | None = Field(
        default=None, max_length=500,
        description="Free text about availability (*précisions sur les disponibilités*). Sealed.")
    comment: str | None = Field(
        default=None, max_length=4000,
        description="Free-text comment of the referrer (*commentaire / observations*). Sealed.")

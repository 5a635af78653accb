"""The public contract for outside systems: JSON Schema of ReferralReceived and examples.

``mediation schemas`` (mediation_core.contracts.export_all) calls :func:`export`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mediation_schemas.received import ReferralReceived

SCHEMA_FILE = "referral-received.schema.json"

# Two realistic forms (fictitious people): a GP of an MSP in the Vallée Borgne, and the
# social service of a hospital for a person who speaks Romanian and has no GP.
EXAMPLES: dict[str, dict[str, Any]] = {
    "referral-received-msp-gp.json": {
        "source_system": "msp-lasalle",
        "source_reference": "FO-2026-000142",
        "referral_date": "2026-11-20",
        "referrer": {
            "name": "Dr Claire Fabre",
            "profession": "gp",
            "structure_name": "Maison de santé pluriprofessionnelle de Lasalle",
            "structure_kind": "msp",
            "phone": "+33466850101",
            "email": "claire.fabre@msp-lasalle.mssante.fr",
            "rpps": "10101234567",
        },
        "person": {
            "family_name": "ROUVIÈRE",
            "given_name": "Marcel",
            "birth_date": "1948-06-02",
            "sex": "male",
            "address": "Mas de la Coste, route de Saint-Bonnet",
            "commune": "Soudorgues",
            "postcode": "30460",
            "phone": "+33466855512",
            "language": "fr",
            "interpreter_needed": False,
            "consent_contact": True,
            "consent_share_with_referrer": True,
        },
        "motives": [
            {"code": "complex_care_path"},
            {"code": "care_interruption"},
            {"code": "access_to_rights", "right": "css"},
        ],
        "urgency": "priority",
        "meeting_modes": ["home_visit", "phone"],
        "availability": [{"day": "tuesday", "period": "morning"},
                         {"day": "thursday", "period": "morning"}],
        "comment": "Vit seul, ne conduit plus depuis l'été ; a arrêté son suivi de cardiologie "
                   "à Alès faute de transport. Complémentaire santé à renouveler.",
    },
    "referral-received-hospital-social-service.json": {
        "source_system": "ch-ales-service-social",
        "source_reference": "SSH/2026/11/0387",
        "referrer": {
            "name": "Sophie Meunier",
            "profession": "social_worker",
            "structure_name": "Centre hospitalier d'Alès, service social",
            "structure_kind": "hospital",
            "phone": "+33466785000",
            "finess": "300000015",
        },
        "person": {
            "family_name": "POPESCU",
            "given_name": "Ioana",
            "birth_date": "1991-09-14",
            "sex": "female",
            "address": "12 rue du Pont",
            "commune": "Saint-Hippolyte-du-Fort",
            "postcode": "30170",
            "phone": "+33751234567",
            "language": "ro",
            "interpreter_needed": True,
            "consent_contact": True,
            "consent_share_with_referrer": False,
        },
        "motives": [
            {"code": "find_gp"},
            {"code": "access_to_rights", "right": "puma"},
            {"code": "cancer_screening", "screening": "cervix"},
            {"code": "other", "text": "Enfants (6 et 9 ans) sans carnet de vaccination à jour."},
        ],
        "urgency": "normal",
        "meeting_modes": ["permanence"],
        "availability": [{"day": "monday", "period": "afternoon"},
                         {"day": "wednesday", "period": "any"}],
        "availability_note": "Travaille le matin en saison (vendanges).",
    },
}


def schema() -> dict[str, Any]:
    s = ReferralReceived.model_json_schema()
    s["title"] = "ReferralReceived v1 (fiche d'orientation)"
    s["$id"] = "https://mediation.example/contracts/referral-received.schema.json"
    s["x-event-type"] = ReferralReceived.event_type
    s["x-event-version"] = ReferralReceived.version
    s["examples"] = [EXAMPLES[k] for k in sorted(EXAMPLES)]
    return s


def _write(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    return path


def export(out_dir: str | Path) -> list[Path]:
    """Write the JSON Schema and the example payloads; returns the paths written."""
    out = Path(out_dir)
    written = [_write(out / SCHEMA_FILE, schema())]
    for name, payload in sorted(EXAMPLES.items()):
        ReferralReceived.model_validate(payload)  # an example that doesn't validate is a bug
        written.append(_write(out / "examples" / name, payload))
    return written

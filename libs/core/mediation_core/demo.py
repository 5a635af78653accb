"""Demo data for ``make run``: realistic synthetic referrals, written the way real senders
write them, and (when the cases API answers) simulated mediator activity.

Referrals: motives in the seed's proportions (complex care path 38 %, access to rights 33 %,
care interruption 16 %, renunciation 14 %, plus screening and vaccination), communes of the
CPTS territory written in messy ways, some invalid, some duplicates, some out of territory.
Everything is synthetic: names come from a small list of invented combinations.
"""

from __future__ import annotations

import asyncio
import random
import unicodedata
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import orjson

from mediation_schemas.envelope import Envelope, encode
from mediation_schemas.topics import topics_from_env

from . import telemetry

TERRITORY_CSV = Path(__file__).resolve().parents[3] / "services" / "routing" / "mediation_routing" / "data"

# (commune, postcode) of the territory, as official names; the demo writes them badly.
COMMUNES = [
    ("Saint-Jean-du-Gard", "30270"), ("Lasalle", "30460"), ("Colognac", "30460"),
    ("L'Estréchure", "30124"), ("Saint-André-de-Valborgne", "30940"), ("Les Plantiers", "30122"),
    ("Sauve", "30610"), ("Quissac", "30260"), ("Saint-Hippolyte-du-Fort", "30170"),
    ("Durfort-et-Saint-Martin-de-Sossenac", "30170"), ("Monoblet", "30170"),
    ("Conqueyrac", "30170"), ("Sardan", "30260"), ("Carnas", "30260"), ("Corconne", "30260"),
    ("Thoiras", "30140"), ("Corbès", "30140"), ("Mialet", "30140"), ("Soudorgues", "30460"),
]
OUTSIDE = [("Nîmes", "30000"), ("Alès", "30100"), ("Montpellier", "34000"), ("Anduze", "30140")]
MOTIVES = [("complex_care_path", 38), ("access_to_rights", 33), ("care_interruption", 16),
           ("care_renunciation", 14), ("cancer_screening", 4), ("vaccination", 3), ("find_gp", 4)]
RIGHTS = ["puma", "css", "ame", "complementary", "mdph"]
FAMILY = ["MARTIN", "BERNARD", "ROUX", "FABRE", "MOREL", "GIRARD", "BONNET", "MERCIER",
          "BOYER", "BLANC", "GUERIN", "MULLER", "HADDAD", "POPESCU", "DIALLO", "NGUYEN"]
GIVEN = ["Marie", "Jean", "Fatima", "Ioana", "Paul", "Aïcha", "Louise", "Ahmed", "Rose", "Léo"]
SOURCES = [("msp-lasalle", "msp", "gp"), ("pharma-sauve", "pharmacy", "pharmacist"),
           ("ch-ales-ss", "hospital", "social_worker"), ("cpam-gard", "cpam", "insurance_advisor"),
           ("cabinet-idel-sjdg", "private_practice", "nurse")]


def _strip_accents(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def messy(name: str, postcode: str, rnd: random.Random) -> tuple[str, str | None]:
    """One realistic way a sender writes a commune (and maybe its postcode)."""
    v = name
    roll = rnd.random()
    if roll < 0.15:
        v = v.upper()
    elif roll < 0.3:
        v = _strip_accents(v).lower()
    if "Saint-" in v and rnd.random() < 0.5:
        v = v.replace("Saint-", "St ").replace("-", " ")
    if rnd.random() < 0.15:
        v = f"{v} ({postcode})"
        return v, None
    if rnd.random() < 0.08 and len(v) > 6:  # one-letter typo
        i = rnd.randrange(2, len(v) - 2)
        v = v[:i] + v[i + 1] + v[i] + v[i + 2:]
    return v, (postcode if rnd.random() < 0.7 else None)


def referral(rnd: random.Random, today: date) -> dict:
    source, kind, profession = rnd.choice(SOURCES)
    out = rnd.random() < 0.04
    commune, pc = rnd.choice(OUTSIDE if out else COMMUNES)
    commune_written, postcode = messy(commune, pc, rnd)
    code = rnd.choices([m for m, _ in MOTIVES], weights=[w for _, w in MOTIVES])[0]
    motive: dict = {"code": code}
    if code == "access_to_rights":
        motive["right"] = rnd.choice(RIGHTS)
    if code == "cancer_screening":
        motive["screening"] = rnd.choice(["breast", "cervix", "colorectal"])
    birth = today - timedelta(days=rnd.randint(18 * 365, 85 * 365))
    return {
        "source_system": source,
        "source_reference": f"{source}-{uuid.UUID(int=rnd.getrandbits(128)).hex[:12]}",
        "referral_date": today.isoformat(),
        "referrer": {"name": "Dr Demo Référent", "profession": profession,
                     "structure_name": f"Structure {source}", "structure_kind": kind,
                     "phone": "04 66 00 00 00"},
        "person": {
            "family_name": rnd.choice(FAMILY), "given_name": rnd.choice(GIVEN),
            "birth_date": birth.strftime("%d/%m/%Y") if rnd.random() < 0.5 else birth.isoformat(),
            "address": f"{rnd.randint(1, 40)} {rnd.choice(['rue des Écoles', 'chemin du Moulin', 'place de la Mairie', 'lieu-dit Le Mas'])}",
            "commune": commune_written, "postcode": postcode,
            "phone": f"06 {rnd.randint(10, 99)} {rnd.randint(10, 99)} {rnd.randint(10, 99)} {rnd.randint(10, 99)}",
            "language": rnd.choice(["fr"] * 8 + ["ar", "ro"]),
            "interpreter_needed": rnd.random() < 0.1,
            "consent_contact": True,
            "consent_share_with_referrer": rnd.random() < 0.7,
        },
        "motives": [motive],
        "urgency": rnd.choices(["normal", "priority", "urgent"], weights=[80, 15, 5])[0],
        "meeting_modes": [rnd.choice(["permanence", "home_visit", "phone"])],
    }


def spoil(form: dict, rnd: random.Random) -> dict:
    """Make a form invalid in one of the ways senders do."""
    f = orjson.loads(orjson.dumps(form))
    kind = rnd.randrange(4)
    if kind == 0:
        f["person"]["consent_contact"] = False
    elif kind == 1:
        f["person"]["birth_date"] = "31/02/1990"
    elif kind == 2:
        f["person"]["phone"] = "12"
    else:
        f["motives"] = []
    return f


def envelope_for(form: dict) -> Envelope:
    return Envelope(event_id=uuid.uuid4(), type="ReferralReceived", version=1,
                    occurred_at=datetime.now(UTC), producer=form["source_system"],
                    correlation_id=form["source_reference"], structure=None, payload=form)


def forms(n: int, seed: int, today: date | None = None) -> list[dict]:
    """n forms: ~5 % invalid, ~5 % exact duplicates, ~4 % outside the territory."""
    rnd = random.Random(seed)
    today = today or date.today()
    out: list[dict] = []
    for _ in range(n):
        r = rnd.random()
        if out and r < 0.05:
            out.append(rnd.choice(out))
        elif r < 0.10:
            out.append(spoil(referral(rnd, today), rnd))
        else:
            out.append(referral(rnd, today))
    return out


async def publish_forms(bootstrap: str, items: list[dict], rate: float | None = None) -> None:
    from aiokafka import AIOKafkaProducer

    topic = topics_from_env().referrals_received
    p = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True, linger_ms=5)
    await p.start()
    tracer = telemetry.tracer("mediation.demo")
    try:
        futs = []
        for i, form in enumerate(items):
            with tracer.start_as_current_span("referral sent by source system"):
                headers = [(k, v.encode()) for k, v in telemetry.inject_headers().items()]
                futs.append(await p.send(
                    topic, key=f"{form['source_system']}:{form['source_reference']}".encode(),
                    value=encode(envelope_for(form)), headers=headers))
            if rate:
                await asyncio.sleep(1.0 / rate)
            if len(futs) >= 500:
                await asyncio.gather(*futs)
                futs.clear()
            if i and i % 200 == 0:
                print(f"demo: {i} referrals sent", flush=True)
        await asyncio.gather(*futs)
    finally:
        await p.stop()


def run_demo(env: dict[str, str], duration: float = 60.0, rate: float = 20.0) -> None:
    """Publish referrals for ``duration`` seconds, then simulate mediator activity."""
    import os

    os.environ.update({k: v for k, v in env.items() if k.startswith(("MEDIATION_", "KAFKA_", "DATABASE_"))})
    import time

    n = max(int(duration * rate), 50)
    seed = int(env.get("MEDIATION_DEMO_SEED") or time.time())
    items = forms(n, seed=seed)
    print(f"demo: publishing {n} referrals at {rate:.0f}/s (MEDIATION_DEMO_SEED={seed})", flush=True)
    asyncio.run(publish_forms(env["KAFKA_BOOTSTRAP_SERVERS"], items, rate=rate))
    from . import demo_activity

    asyncio.run(demo_activity.simulate(env, seed=seed))

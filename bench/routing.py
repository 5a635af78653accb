"""Routing: place resolutions per second on a large mixed set, next to a plain dict lookup
of exact official names measured in the same run; the share each one routes correctly and
the number of traps each one routes; and accepted referrals routed end to end by the
service (consume -> decide -> state + outbox -> relay) next to the core messaging hop's
bare baseline (raw consume -> insert -> produce) on the same broker and database."""

from __future__ import annotations

import asyncio
import random
import time
import unicodedata
import uuid
from datetime import UTC, date, datetime

import asyncpg

from bench._baseline import bare_hop, fill, service_rate
from mediation_core.settings import from_env
from mediation_routing import territory as terr
from mediation_routing.decide import decide
from mediation_routing.resolve import gazetteer_for, resolve
from mediation_schemas.common import MotiveItem, SealedBlock
from mediation_schemas.envelope import encode, new_envelope
from mediation_schemas.referrals import ReferralAccepted, ReferralCore
from mediation_schemas.topics import Topics
from mediation_schemas.vocab import Motive

TRAPS = ["Quissac 46320", "Cros (63)", "Vabre", "Carnac", "Lioux", "Crespin", "Anduze",
         "Sommières", "Saint-Jean-du-Pin", "La Salle", "Cannes", "Sérignac", "St Hippolyte",
         "Saint-Nazaire", "Pompignan 82170", "Mialet 24450", "Quissac 30170", "30140", "30460",
         "Marseille", "Toulouse", "Montmirail", "Brouzet", "Corbas", "Ganges"]


def _strip(s: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", s) if not unicodedata.combining(c))


def _typo(rng: random.Random, s: str) -> str:
    i = rng.randrange(1, max(2, len(s) - 1))
    return s[:i] + s[i + 1:]  # one missing letter


def mixed_set(n: int, seed: int = 7) -> list[tuple[str, str | None]]:
    """(text, expected area or None for a trap)."""
    rng = random.Random(seed)
    places = [p for v in terr.packaged_versions() for p in v.places if p.kind != "street"]
    out: list[tuple[str, str | None]] = []
    while len(out) < n:
        k = rng.random()
        if k < 0.15:
            out.append((rng.choice(TRAPS), None))
            continue
        p = rng.choice(places)
        name = p.name
        form = rng.randrange(8)
        if form == 0:
            text = name
        elif form == 1:
            text = name.upper()
        elif form == 2:
            text = _strip(name).lower().replace("-", " ")
        elif form == 3:
            text = name.replace("Saint-", "St ").replace("Sainte-", "Ste ")
        elif form == 4 and p.postcodes:
            text = f"{name} ({p.postcodes[0]})"
        elif form == 5 and len(name) >= 7:
            text = _typo(rng, name)
        elif form == 6 and p.source_spellings:
            text = rng.choice(p.source_spellings)
        else:
            text = f"{p.postcodes[0]} {name}" if p.postcodes else name
        out.append((text, p.area))
    return out


def _rate(fn, items, min_seconds: float = 1.0) -> float:
    done, t0 = 0, time.perf_counter()
    while True:
        for text in items:
            fn(text)
        done += len(items)
        el = time.perf_counter() - t0
        if el >= min_seconds:
            return done / el


def pure_rows(scale: float) -> list[dict]:
    n = max(500, int(20000 * scale))
    items = mixed_set(n)
    versions = terr.packaged_versions()
    gaz = gazetteer_for(versions)
    exact: dict[str, str] = {}
    for v in versions:
        for p in v.places:
            exact[p.name] = p.area or ""
    texts = [t for t, _ in items]
    ours = _rate(lambda t: resolve(t, None, gaz), texts)
    base = _rate(lambda t: exact.get(t), texts)
    hist = terr.TerritoryHistory(versions)
    on = date(2026, 3, 10)
    decisions = _rate(lambda t: decide(t, None, on, hist, {}), texts[: max(500, n // 4)])

    def score(route) -> tuple[float, int, int]:
        good = traps = valid = wrong = 0
        for text, area in items:
            got = route(text)
            if area is None:
                traps += got is not None
            else:
                valid += 1
                good += got == area
                wrong += got is not None and got != area
        return 100.0 * good / valid, traps, wrong

    def ours_route(t):
        r = resolve(t, None, gaz)
        return r.area if r.status == "routed" else None

    acc, traps, wrong = score(ours_route)
    bacc, btraps, bwrong = score(lambda t: exact.get(t))
    return [
        {"name": f"place resolutions, mixed set of {n} (variants, typos, traps)", "value": ours,
         "unit": "resolutions/s", "baseline": base, "ratio": ours / base,
         "note": "baseline: dict lookup of exact official names on the same set, same run"},
        {"name": "routing decisions (resolution + mediator assignment)", "value": decisions,
         "unit": "decisions/s", "baseline": base, "ratio": decisions / base,
         "note": "same baseline; includes the versions in force at the referral date"},
        {"name": "valid variants routed to the right area", "value": acc, "unit": "%",
         "baseline": bacc, "ratio": acc / bacc if bacc else None,
         "note": "baseline: exact-name dict lookup routes only names written exactly"},
        {"name": "valid variants routed to a wrong area (must be 0)", "value": float(wrong),
         "unit": "referrals", "baseline": float(bwrong), "ratio": None,
         "note": "the rest of the valid variants go to triage (e.g. a typo that is also a commune)"},
        {"name": "traps routed (must be 0)", "value": float(traps), "unit": "referrals",
         "baseline": float(btraps), "ratio": None,
         "note": "same-name communes elsewhere, neighbours, names a letter away, shared postcodes"},
    ]


def _core(text: str) -> ReferralCore:
    return ReferralCore(
        referral_id=uuid.uuid4(), revision=1, source_system="bench", source_reference="b",
        received_at=datetime(2026, 3, 10, tzinfo=UTC), referral_date=date(2026, 3, 10),
        person_ref="bi:bench", sealed=SealedBlock(key_id="k", nonce="bg==", ciphertext="Yw=="),
        commune=text, motives=[MotiveItem(code=Motive.access_to_rights)],
        consent_share_with_referrer=False)


async def service_rows(urls, scale: float) -> list[dict]:
    from mediation_routing.service import build

    n = max(200, int(3000 * scale))
    prefix = f"benchr{uuid.uuid4().hex[:6]}."
    topics = Topics(prefix=prefix)
    values = []
    for text, _ in mixed_set(n, seed=11):
        ref = _core(text)
        env = new_envelope(ReferralAccepted(referral=ref), producer="bench",
                           correlation_id=str(ref.referral_id), structure="cpts-ecm")
        values.append((str(ref.referral_id).encode(), encode(env)))
    await fill(urls.kafka_bootstrap, f"{prefix}bare_in", values)
    base = await bare_hop(urls, [f"{prefix}bare_in"], n, produce_to=f"{prefix}bare_out")
    s = from_env("routing").with_(kafka_bootstrap=urls.kafka_bootstrap,
                                  database_url=urls.database_url,
                                  schema=f"bench_{prefix.strip('.')}", topics=topics,
                                  group_id=f"{prefix}routing", http_port=0)
    await fill(urls.kafka_bootstrap, topics.referrals_intake, values)
    svc = build(s)
    await svc.start(http=False)
    try:
        ours = await service_rate(svc, n)  # every referral decided, every decision published
    finally:
        await svc.stop()
        conn = await asyncpg.connect(urls.database_url)
        await conn.execute(f"DROP SCHEMA IF EXISTS {s.schema} CASCADE")
        await conn.close()
    return [{"name": f"accepted referrals routed end to end, {n} referrals", "value": ours,
             "unit": "referrals/s", "baseline": base, "ratio": ours / base,
             "note": "baseline: bench/_baseline.bare_hop with produce, same records, same run"}]


async def run(urls, scale: float = 1.0) -> list[dict]:
    rows = await asyncio.to_thread(pure_rows, scale)
    rows += await service_rows(urls, scale)
    return rows

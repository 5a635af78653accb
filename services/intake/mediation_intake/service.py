"""The intake service: referral forms in (Kafka topic or HTTP), accepted or rejected out.

Thin handlers: the consumer and the HTTP route both call :meth:`Intake.take` (intake.py),
which holds the rules; validation is the pure module validation.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from mediation_core import sealing
from mediation_core.consumer import Batch, EventConsumer, HandlerContext
from mediation_core.errors import DomainRejection
from mediation_core.outbox import Outbox
from mediation_core.service import Service
from mediation_core.settings import Settings
from mediation_schemas.received import ReferralReceived
from mediation_schemas.referrals import ReferralAccepted, ReferralRejected

from . import api, fairness, parking
from .intake import Clock, Intake
from .ratelimit import TokenBuckets
from .validation import MAX_PAYLOAD_BYTES, safe_ids

CHANNELS = {
    "consumes": {"referrals_received": [ReferralReceived]},
    "emits": {"referrals_intake": [ReferralAccepted, ReferralRejected],
              "referrals_answers": [ReferralRejected]},
}
SUPPORTED_VERSIONS = (1,)


@dataclass
class Runtime:
    """What the handlers need once the service has started."""

    buckets: TokenBuckets
    outbox: Outbox
    kafka_buckets: TokenBuckets
    admissions: fairness.Admissions = field(default_factory=fairness.Admissions)
    drainer: parking.Drainer = None  # type: ignore[assignment]
    pool: asyncpg.Pool = None  # type: ignore[assignment]
    vault: sealing.KeyVault = None  # type: ignore[assignment]
    intake: Intake = None  # type: ignore[assignment]


def _env_number(name: str, default: float) -> float:
    v = os.environ.get(name, "").strip()
    return float(v) if v else default


def build(settings: Settings, *, clock: Clock | None = None, http_rate: float = 20.0,
          http_burst: int = 100, max_bytes: int = MAX_PAYLOAD_BYTES,
          kafka_rate: float | None = None, kafka_burst: int | None = None,
          kafka_clock: Callable[[], float] = time.monotonic,
          drain: bool = True) -> Service:
    """``kafka_rate``/``kafka_burst``: what each source system may send straight through on
    the Kafka way in (default MEDIATION_INTAKE_KAFKA_RATE / _BURST, else 50/s, 500); beyond,
    its forms are parked and drained round-robin with the other parked sources, at full
    speed (parking.py, fairness.py). ``kafka_clock`` drives those buckets (monotonic
    seconds). ``drain=False``: no background drainer (tests drive ``rt.drainer`` by hand)."""
    if kafka_rate is None:
        kafka_rate = _env_number("MEDIATION_INTAKE_KAFKA_RATE", fairness.DEFAULT_KAFKA_RATE)
    if kafka_burst is None:
        kafka_burst = int(_env_number("MEDIATION_INTAKE_KAFKA_BURST",
                                      fairness.DEFAULT_KAFKA_BURST))
    svc = Service(settings, migrations=Path(__file__).parent / "migrations",
                  title="mediation intake")
    topics = settings.topics
    svc.produced_topics += [topics.referrals_intake, topics.referrals_answers]
    rt = Runtime(buckets=TokenBuckets(http_rate, http_burst), outbox=svc.outbox,
                 kafka_buckets=TokenBuckets(kafka_rate, kafka_burst, clock=kafka_clock))
    svc.intake = rt  # type: ignore[attr-defined]  # tests reach the runtime here

    async def startup(s: Service) -> None:
        assert s.pool is not None
        rt.pool = s.pool
        rt.vault = sealing.KeyVault.from_settings(s.pool, settings)
        await rt.vault.ensure()
        rt.intake = Intake(topics=topics, vault=rt.vault,
                           blind_index_key=settings.blind_index_key,
                           clock=clock or (lambda: datetime.now(UTC)),
                           max_bytes=max_bytes)
        rt.drainer = parking.Drainer(
            pool=s.pool, intake=rt.intake, outbox=s.outbox, key=settings.dlq_key,
            dlq_topic=topics.dead_letters(f"{s.name}.received"),
            consumer=f"{s.name}.received", service=s.name,
            batch=max(1, min(settings.batch_size, 200)))

    svc.on_startup.append(startup)

    async def on_received(ctx: HandlerContext, payload: dict) -> None:
        if ctx.envelope.version not in SUPPORTED_VERSIONS:
            raise DomainRejection(
                "unknown_version", f"ReferralReceived version {ctx.envelope.version} is not "
                f"supported (accepted: {list(SUPPORTED_VERSIONS)})")

        size = len(ctx.record.value or b"")
        source = safe_ids(payload)[0] or "unknown"
        event_id = str(ctx.envelope.event_id)
        ok = rt.admissions.get(event_id)  # decided by prepare, or by an earlier attempt
        if ok is None:
            ok = rt.admissions.remember(event_id, await fairness.admit(
                rt.kafka_buckets, source, lambda: parking.has_backlog(ctx.conn, source)))
        # over its budget, or behind its own parked forms: parked in this batch transaction
        if not ok:
            await parking.park(ctx.conn, settings.dlq_key, env=ctx.envelope, rec=ctx.record,
                               payload=payload, source=source, size=size, max_bytes=max_bytes,
                               write=ctx.defer)
            return

        async def emit(p, topic, key):
            return await ctx.emit(p, topic=topic, key=key)

        await rt.intake.take(ctx.conn, emit, payload, size=size, channel="kafka",
                             batch=ctx.batch, event_id=event_id)

    async def prepare(batch: Batch, items: list[tuple[HandlerContext, dict]]) -> None:
        """The batch's admissions (one backlog query), then intake's own preparation of the
        forms taken at once."""
        forms = [(str(ctx.envelope.event_id), payload, len(ctx.record.value or b""))
                 for ctx, payload in items if ctx.envelope.version in SUPPORTED_VERSIONS]
        sources = [safe_ids(payload)[0] or "unknown" for _eid, payload, _size in forms]
        backlog = await parking.sources_with_backlog(batch.conn, sorted(set(sources)))
        decisions = rt.admissions.admit_batch(
            rt.kafka_buckets, [(f[0], src) for f, src in zip(forms, sources, strict=True)],
            backlog)
        await rt.intake.prepare(batch, [f for f, ok in zip(forms, decisions, strict=True) if ok])

    def register(c: EventConsumer) -> None:
        c.on_raw(ReferralReceived.event_type, on_received, prepare=prepare)

    svc.consumer("received", [topics.referrals_received], register)

    async def drainer(s: Service) -> None:
        await rt.drainer.run(s.stopping)

    if drain:
        svc.background.append(drainer)
    svc.app.include_router(api.router(rt))
    return svc

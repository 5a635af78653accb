"""The intake service: referral forms in (Kafka topic or HTTP), accepted or rejected out.

Thin handlers: the consumer and the HTTP route both call :meth:`Intake.take` (intake.py),
which holds the rules; validation is the pure module validation.py.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import asyncpg

from mediation_core import sealing
from mediation_core.consumer import EventConsumer, HandlerContext
from mediation_core.errors import DomainRejection
from mediation_core.outbox import Outbox
from mediation_core.service import Service
from mediation_core.settings import Settings
from mediation_schemas.received import ReferralReceived
from mediation_schemas.referrals import ReferralAccepted, ReferralRejected

from . import api, parking
from .fairness import DEFAULT_KAFKA_BURST, DEFAULT_KAFKA_RATE, RoundRobin
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
    kafka_buckets: TokenBuckets = None  # type: ignore[assignment]
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
          kafka_clock: Callable[[], float] = time.monotonic) -> Service:
    """``kafka_rate``/``kafka_burst``: each source system's budget on the Kafka way in
    (default MEDIATION_INTAKE_KAFKA_RATE / MEDIATION_INTAKE_KAFKA_BURST, else 50/s, 500);
    forms over it are parked and drained fairly (parking.py). ``kafka_clock`` drives the
    buckets (monotonic seconds)."""
    if kafka_rate is None:
        kafka_rate = _env_number("MEDIATION_INTAKE_KAFKA_RATE", DEFAULT_KAFKA_RATE)
    if kafka_burst is None:
        kafka_burst = int(_env_number("MEDIATION_INTAKE_KAFKA_BURST", DEFAULT_KAFKA_BURST))
    svc = Service(settings, migrations=Path(__file__).parent / "migrations",
                  title="mediation intake")
    topics = settings.topics
    svc.produced_topics += [topics.referrals_intake, topics.referrals_answers]
    rt = Runtime(buckets=TokenBuckets(http_rate, http_burst), outbox=svc.outbox,
                 kafka_buckets=TokenBuckets(kafka_rate, kafka_burst, clock=kafka_clock))
    now = clock or (lambda: datetime.now(UTC))
    svc.intake = rt  # type: ignore[attr-defined]  # tests reach the runtime here

    async def startup(s: Service) -> None:
        assert s.pool is not None
        rt.pool = s.pool
        rt.vault = sealing.KeyVault.from_settings(s.pool, settings)
        await rt.vault.ensure()
        rt.intake = Intake(topics=topics, vault=rt.vault,
                           blind_index_key=settings.blind_index_key,
                           clock=now, max_bytes=max_bytes)
        rt.drainer = parking.Drainer(
            pool=s.pool, intake=rt.intake, outbox=s.outbox, rr=RoundRobin(rt.kafka_buckets),
            key=settings.dlq_key, dlq_topic=topics.dead_letters(f"{s.name}.received"),
            service=s.name, batch=min(settings.batch_size, 200))

    svc.on_startup.append(startup)

    async def on_received(ctx: HandlerContext, payload: dict) -> None:
        if ctx.envelope.version not in SUPPORTED_VERSIONS:
            raise DomainRejection(
                "unknown_version", f"ReferralReceived version {ctx.envelope.version} is not "
                f"supported (accepted: {list(SUPPORTED_VERSIONS)})")

        size = len(ctx.record.value or b"")
        source = safe_ids(payload)[0] or "unknown"
        # a source with parked forms queues behind them (its order is kept); one over its
        # budget is parked, in this batch transaction, and drained later at its budget
        if await parking.has_backlog(ctx.conn, source) or rt.kafka_buckets.take(source) > 0:
            await parking.park(ctx.conn, settings.dlq_key, env=ctx.envelope, payload=payload,
                               source=source, size=size, now=now())
            return

        async def emit(p, topic, key):
            return await ctx.emit(p, topic=topic, key=key)

        await rt.intake.take(ctx.conn, emit, payload, size=size, channel="kafka")

    def register(c: EventConsumer) -> None:
        c.on_raw(ReferralReceived.event_type, on_received)

    svc.consumer("received", [topics.referrals_received], register)

    async def drain(s: Service) -> None:
        await rt.drainer.run(s.stopping)

    svc.background.append(drain)
    svc.app.include_router(api.router(rt))
    return svc

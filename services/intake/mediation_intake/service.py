"""The intake service: referral forms in (Kafka topic or HTTP), accepted or rejected out.

Thin handlers: the consumer and the HTTP route both call :meth:`Intake.take` (intake.py),
which holds the rules; validation is the pure module validation.py.
"""

from __future__ import annotations

from dataclasses import dataclass
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

from . import api
from .intake import Clock, Intake
from .ratelimit import TokenBuckets
from .validation import MAX_PAYLOAD_BYTES

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
    pool: asyncpg.Pool = None  # type: ignore[assignment]
    vault: sealing.KeyVault = None  # type: ignore[assignment]
    intake: Intake = None  # type: ignore[assignment]


def build(settings: Settings, *, clock: Clock | None = None, http_rate: float = 20.0,
          http_burst: int = 100, max_bytes: int = MAX_PAYLOAD_BYTES) -> Service:
    svc = Service(settings, migrations=Path(__file__).parent / "migrations",
                  title="mediation intake")
    topics = settings.topics
    svc.produced_topics += [topics.referrals_intake, topics.referrals_answers]
    rt = Runtime(buckets=TokenBuckets(http_rate, http_burst), outbox=svc.outbox)
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

    svc.on_startup.append(startup)

    async def on_received(ctx: HandlerContext, payload: dict) -> None:
        if ctx.envelope.version not in SUPPORTED_VERSIONS:
            raise DomainRejection(
                "unknown_version", f"ReferralReceived version {ctx.envelope.version} is not "
                f"supported (accepted: {list(SUPPORTED_VERSIONS)})")

        async def emit(p, topic, key):
            return await ctx.emit(p, topic=topic, key=key)

        await rt.intake.take(ctx.conn, emit, payload, size=len(ctx.record.value or b""),
                             channel="kafka", batch=ctx.batch, event_id=str(ctx.envelope.event_id))

    async def prepare(batch: Batch, items: list[tuple[HandlerContext, dict]]) -> None:
        await rt.intake.prepare(batch, [
            (str(ctx.envelope.event_id), payload, len(ctx.record.value or b""))
            for ctx, payload in items if ctx.envelope.version in SUPPORTED_VERSIONS])

    def register(c: EventConsumer) -> None:
        c.on_raw(ReferralReceived.event_type, on_received, prepare=prepare)

    svc.consumer("received", [topics.referrals_received], register)
    svc.app.include_router(api.router(rt))
    return svc

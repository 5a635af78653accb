"""The reporting service: every business event -> read models -> indicator views.

One consumer group reads the intake, routing, cases, dysfunction, alert and answer topics;
each event is one commutative upsert (``projection``) plus a freshness mark, in the
batch transaction with the inbox row. Indicator views are SQL over these tables; the
published (masked) copies are recomputed by a background task when events arrived.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from prometheus_client import Gauge

import mediation_schemas.alerts  # noqa: F401  (registers the models)
import mediation_schemas.cases  # noqa: F401
import mediation_schemas.referrals  # noqa: F401
from mediation_core.consumer import EventConsumer, HandlerContext
from mediation_core.service import Service
from mediation_core.settings import Settings
from mediation_schemas import alerts as al
from mediation_schemas import cases as cs
from mediation_schemas import referrals as rf
from mediation_schemas.envelope import Payload, registry

from . import projection, publish, setup

with contextlib.suppress(ImportError):
    import mediation_schemas.received  # noqa: F401

log = logging.getLogger(__name__)

# Topics attribute names this service reads (Topics.<name>)
SOURCES = ["referrals_intake", "routing_decisions", "cases", "dysfunctions", "alerts",
           "referrals_answers"]

FRESHNESS_LAG = Gauge("mediation_reporting_freshness_lag_seconds",
                      "Now minus the newest event time applied to the read models", ["schema"])
NEWEST_EVENT = Gauge("mediation_reporting_newest_event_timestamp_seconds",
                     "Occurred-at of the newest event applied to the read models (Unix time)",
                     ["schema"])


def _module_models(module: str, exclude: tuple[str, ...] = ()) -> list[type[Payload]]:
    """Every registered model of a schema module (new event types join automatically)."""
    return [m for (_t, _v), m in sorted(registry().items())
            if m.__module__ == module and m.event_type not in exclude]


CHANNELS = {
    "consumes": {
        "referrals_intake": [rf.ReferralAccepted, rf.ReferralRejected],
        "routing_decisions": [rf.ReferralRouted, rf.ReferralUnroutable],
        "cases": _module_models("mediation_schemas.cases", exclude=("DysfunctionReported",)),
        "dysfunctions": [cs.DysfunctionReported],
        "alerts": _module_models("mediation_schemas.alerts", exclude=("AlertOutbound",)),
        "referrals_answers": [rf.ReferralRejected, cs.ReferralStatusChanged],
    },
    "emits": {},
}


def handler_for(model: type[Payload]) -> Callable[[HandlerContext, Payload], Awaitable[None]]:
    """The projection of an event type; new types are matched by shape: anything about a
    case (a ``case: CaseRef`` field) is a case notice, the rest is counted as unprojected."""
    known = projection.HANDLERS.get(model.event_type)
    if known is not None:
        return known  # type: ignore[return-value]
    field = model.model_fields.get("case")
    if field is not None and field.annotation is cs.CaseRef:
        return projection.case_notice
    alert = model.model_fields.get("alert")
    if alert is not None and alert.annotation is al.AlertRef:
        async def alert_other(ctx: HandlerContext, p: Payload) -> None:
            await projection.alert_ref(ctx, p.alert)  # type: ignore[attr-defined]
            await projection.unprojected(ctx, p)
        return alert_other
    return projection.unprojected


def register_handlers(c: EventConsumer, settings: Settings) -> None:
    short = {getattr(settings.topics, name): name for name in SOURCES}
    for (event_type, _version), model in sorted(registry().items()):
        if event_type in c.routes:
            continue
        inner = handler_for(model)

        async def handle(ctx: HandlerContext, p: Payload, _inner=inner) -> None:
            await _inner(ctx, p)
            await projection.mark_fresh(ctx, short.get(ctx.record.topic, ctx.record.topic))

        c.on(model, handle)


def threshold_from_env() -> int:
    return int(os.environ.get("MEDIATION_REPORTING_SECRECY_THRESHOLD", publish.DEFAULT_THRESHOLD))


def build(settings: Settings, *, threshold: int | None = None,
          publish_every: float | None = None,
          clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Service:
    svc = Service(settings, migrations=setup.MIGRATIONS, title="mediation reporting")
    svc.secrecy_threshold = threshold if threshold is not None else threshold_from_env()  # type: ignore[attr-defined]
    every = publish_every if publish_every is not None else float(
        os.environ.get("MEDIATION_REPORTING_PUBLISH_SECONDS", "3600"))
    topics = [getattr(settings.topics, name) for name in SOURCES]
    svc.consumer("projections", topics, lambda c: register_handlers(c, settings))

    async def on_start(s: Service) -> None:
        assert s.pool is not None
        async with s.pool.acquire() as conn:
            await setup.apply(conn, settings.schema)

    svc.on_startup.append(on_start)

    stopping = asyncio.Event()

    async def pause(seconds: float) -> bool:
        """Sleep, or return True at once when the service stops."""
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stopping.wait(), timeout=seconds)
        return stopping.is_set()

    async def freshness_loop(s: Service) -> None:
        while True:
            with contextlib.suppress(Exception):
                await update_freshness_gauge(s, clock)
            if await pause(5):
                return

    async def publish_loop(s: Service) -> None:
        while every > 0 and not await pause(every):
            try:
                assert s.pool is not None
                await publish.publish_if_stale(s.pool, svc.secrecy_threshold)  # type: ignore[attr-defined]
            except Exception as exc:  # keep the service up; the next round retries
                log.warning("publication failed", extra={"fields": {"exc_type": type(exc).__name__}})

    async def on_stop(s: Service) -> None:
        stopping.set()

    svc.on_stop.append(on_stop)
    svc.background.append(freshness_loop)
    svc.background.append(publish_loop)

    from .api import router
    svc.app.include_router(router(svc))
    return svc


async def update_freshness_gauge(svc: Service, clock: Callable[[], datetime]) -> float | None:
    """Set the freshness gauges from the read models; returns the lag in seconds."""
    assert svc.pool is not None
    newest = await svc.pool.fetchval("SELECT max(newest_event_at) FROM freshness")
    if newest is None:
        return None
    lag = max((clock() - newest).total_seconds(), 0.0)
    FRESHNESS_LAG.labels(svc.settings.schema).set(lag)
    NEWEST_EVENT.labels(svc.settings.schema).set(newest.timestamp())
    return lag

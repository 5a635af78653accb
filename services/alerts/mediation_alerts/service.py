"""The alerts service: dysfunction signals delivered to the competent authorities,
acknowledged or escalated (SYSTEM.md; issue #7).

Consumes ``DysfunctionReported`` (topic ``dysfunctions``) and only plans: alert and
dispatch rows, in the inbox transaction. The dispatcher (a background task) delivers by
webhook, e-mail or Kafka, records every attempt, and escalates unacknowledged alerts.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mediation_core.service import Service
from mediation_core.settings import Settings
from mediation_schemas.alerts import (
    AlertAcknowledged,
    AlertDeliveryFailed,
    AlertDispatched,
    AlertEscalated,
    AlertOutbound,
)
from mediation_schemas.cases import DysfunctionReported

from . import api, handlers, store
from .clock import Clock
from .directory import load_structures_file
from .dispatcher import Dispatcher
from .policy import DeliveryPolicy
from .runtime import AlertsConfig, Runtime

log = logging.getLogger(__name__)

CHANNELS = {
    "consumes": {"dysfunctions": [DysfunctionReported]},
    "emits": {
        "alerts": [AlertDispatched, AlertDeliveryFailed, AlertAcknowledged, AlertEscalated],
        "alerts_outbound": [AlertOutbound],
    },
}


async def load_config(rt: Runtime) -> None:
    """Upsert the structures of the configuration file, if one is set (idempotent)."""
    if not rt.config.config_file:
        return
    structures = load_structures_file(rt.config.config_file)
    assert rt.svc.pool is not None
    async with rt.svc.pool.acquire() as conn, conn.transaction():
        for structure, (authorities, rules) in structures.items():
            for a in authorities:
                await store.upsert_authority(conn, structure, a)
            for r in rules:
                await store.upsert_rule(conn, structure, r)
    log.info("alerts configuration loaded", extra={"fields": {"structures": len(structures)}})


def build(settings: Settings, *, clock: Clock | None = None, policy: DeliveryPolicy | None = None,
          config: AlertsConfig | None = None) -> Service:
    svc = Service(settings, migrations=Path(__file__).parent / "migrations",
                  title="mediation alerts")
    rt = Runtime(svc, clock=clock, policy=policy, config=config)
    dispatcher = Dispatcher(rt)
    t = settings.topics
    svc.produced_topics += [t.alerts, t.alerts_outbound]
    svc.consumer("dysfunctions", [t.dysfunctions], handlers.register(rt))
    svc.background.append(dispatcher.run)
    svc.on_startup.append(lambda _svc: load_config(rt))
    # the dispatcher's loop ends before Service.stop waits for the background tasks
    svc.on_stop.append(dispatcher.stop)
    svc.app.include_router(api.router(rt))
    api.install_error_handlers(svc.app)
    svc.dispatcher = dispatcher  # type: ignore[attr-defined]  # tests inject faults through it
    return svc

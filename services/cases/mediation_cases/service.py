"""The cases service: routed referrals become cases; the mediator's work over HTTP.

Consumes ``routing_decisions`` (ReferralRouted; ReferralUnroutable is the coordinator's
triage, not a case); emits case events on ``cases``, dysfunctions on ``dysfunctions`` and
closed-loop feedback on ``referrals_answers``. A background task watches deadlines.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mediation_core.consumer import EventConsumer, HandlerContext
from mediation_core.sealing import KeyVault
from mediation_core.service import Service
from mediation_core.settings import Settings
from mediation_schemas.cases import (
    ActionRecorded,
    CaseClosed,
    CaseInactivityFlagged,
    CaseOpened,
    CaseReassigned,
    CaseReferralUpdated,
    CaseReopened,
    CollectiveActionRecorded,
    DysfunctionReported,
    FirstContactMade,
    FirstContactOverdue,
    ReferralStatusChanged,
)
from mediation_schemas.referrals import ReferralRouted, ReferralUnroutable

from . import api, deadlines, observe, opening
from .config import CasesConfig, Clock, system_clock
from .context import Deps

log = logging.getLogger(__name__)

CHANNELS = {
    "consumes": {"routing_decisions": [ReferralRouted, ReferralUnroutable]},
    "emits": {
        "cases": [CaseOpened, CaseReferralUpdated, FirstContactMade, ActionRecorded,
                  CaseReassigned, CaseClosed, CaseReopened, FirstContactOverdue,
                  CaseInactivityFlagged, CollectiveActionRecorded],
        "dysfunctions": [DysfunctionReported],
        "referrals_answers": [ReferralStatusChanged],
    },
}


def build(settings: Settings, *, clock: Clock | None = None,
          config: CasesConfig | None = None) -> Service:
    svc = Service(settings, migrations=Path(__file__).parent / "migrations",
                  title="mediation cases")
    t = settings.topics
    svc.produced_topics += [t.cases, t.dysfunctions, t.referrals_answers]
    deps = Deps(settings=settings, config=config or CasesConfig.from_env(),
                clock=clock or system_clock, outbox=svc.outbox)
    svc.deps = deps  # type: ignore[attr-defined]  # for tests and the CLI

    async def startup(s: Service) -> None:
        assert s.pool is not None
        deps.pool = s.pool
        deps.keyvault = KeyVault.from_settings(s.pool, settings)
        await deps.keyvault.ensure()

    svc.on_startup.append(startup)

    async def on_routed(ctx: HandlerContext, p: ReferralRouted) -> None:
        decision = await opening.on_referral_routed(deps, ctx.conn, ctx.emit, p,
                                                    correlation_id=ctx.envelope.correlation_id,
                                                    batch=ctx.batch)
        observe.OPENINGS.labels(decision).inc()
        log.info("routed referral handled", extra={"fields": {
            "referral_id": str(p.referral.referral_id), "revision": p.referral.revision,
            "decision": decision, "structure": p.structure, "area": p.area}})

    def register(c: EventConsumer) -> None:
        c.on(ReferralRouted, on_routed, prepare=lambda batch, items: opening.prepare_routed(
            batch, [p for _ctx, p in items]))
        # ReferralUnroutable: not handled, the consumer counts it as ignored

    svc.consumer("routing", [t.routing_decisions], register)
    svc.background.append(deadlines.watcher(deps))
    api.install_error_handlers(svc.app)
    svc.app.include_router(api.router(deps))
    return svc

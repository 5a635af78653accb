"""The routing service: accepted referrals in, routing decisions out.

Consumes ``referrals_intake`` (ReferralAccepted, corrections included),
``territory_changes`` (TerritoryChanged) and ``cases`` (to know which referrals a mediator
has taken or closed: those are no longer re-routed and no longer count, once closed, in a
mediator's load). Emits ReferralRouted / ReferralUnroutable on ``routing_decisions``,
keyed by referral id. Handlers are thin: the rules are in resolve/assign/decide/territory.
"""

from __future__ import annotations

import logging
from pathlib import Path

from mediation_core.consumer import EventConsumer, HandlerContext
from mediation_core.service import Service
from mediation_core.settings import Settings
from mediation_schemas.cases import (
    CaseClosed,
    CaseOpened,
    CaseReassigned,
    CaseReopened,
    FirstContactMade,
)
from mediation_schemas.envelope import Payload
from mediation_schemas.referrals import ReferralAccepted, ReferralRouted, ReferralUnroutable
from mediation_schemas.territory import TerritoryChanged

from .store import PREPARED, RoutingStore

log = logging.getLogger(__name__)

CHANNELS = {
    "consumes": {
        "referrals_intake": [ReferralAccepted],
        "territory_changes": [TerritoryChanged],
        "cases": [CaseOpened, FirstContactMade, CaseReassigned, CaseClosed, CaseReopened],
    },
    "emits": {
        "routing_decisions": [ReferralRouted, ReferralUnroutable],
        "territory_changes": [TerritoryChanged],
    },
}


def _emitter(ctx: HandlerContext, topic: str):
    async def emit(payload: Payload, key: str, structure: str | None, correlation_id: str) -> None:
        await ctx.emit(payload, topic=topic, key=key, structure=structure,
                       correlation_id=correlation_id)
    return emit


def build(settings: Settings) -> Service:
    svc = Service(settings, migrations=Path(__file__).parent / "migrations",
                  title="mediation routing")
    topics = settings.topics
    store = RoutingStore()
    svc.routing_store = store  # type: ignore[attr-defined]
    svc.produced_topics += [topics.routing_decisions, topics.territory_changes]

    async def startup(s: Service) -> None:
        assert s.pool is not None
        async with s.pool.acquire() as conn, conn.transaction():
            await store.seed_packaged(conn)
            await store.refresh(conn)

    svc.on_startup.append(startup)

    async def on_accepted(ctx: HandlerContext, p: ReferralAccepted) -> None:
        outcome = await store.on_accepted(
            ctx.conn, _emitter(ctx, topics.routing_decisions), p.referral,
            correlation_id=ctx.envelope.correlation_id, context_structure=ctx.envelope.structure,
            batch=ctx.batch)
        log.info("referral routed", extra={"fields": {
            "referral_id": str(p.referral.referral_id), "revision": p.referral.revision,
            "outcome": outcome}})

    async def on_territory(ctx: HandlerContext, p: TerritoryChanged) -> None:
        # the batch's referrals so far are stored before a re-routing reads them, and the
        # rest of the batch goes one by one (what was prepared predates the new version)
        await ctx.flush()
        if ctx.batch is not None:
            ctx.batch.data.pop(PREPARED, None)
        await store.refresh(ctx.conn)
        added = await store.add_version(ctx.conn, structure=p.structure,
                                        version=p.territory_version,
                                        effective_from=p.effective_from, document=p.territory,
                                        reason=p.reason)
        changed = 0
        if added:
            changed = await store.reroute_open(ctx.conn, _emitter(ctx, topics.routing_decisions),
                                               since=p.effective_from)
        log.info("territory version applied", extra={"fields": {
            "structure": p.structure, "territory_version": p.territory_version,
            "new": added, "rerouted": changed}})

    async def on_case_opened(ctx: HandlerContext, p: CaseOpened) -> None:
        if p.referral_id is not None:
            await store.case_opened(ctx.conn, p.referral_id, p.case.case_id, write=ctx.defer)

    # the other case events find referrals by case id: the openings deferred so far first
    async def on_first_contact(ctx: HandlerContext, p: FirstContactMade) -> None:
        await ctx.flush()
        await store.case_taken(ctx.conn, p.case.case_id)

    async def on_reassigned(ctx: HandlerContext, p: CaseReassigned) -> None:
        await ctx.flush()
        await store.case_taken(ctx.conn, p.case.case_id, p.case.mediator_id)

    async def on_closed(ctx: HandlerContext, p: CaseClosed) -> None:
        await ctx.flush()
        await store.case_closed(ctx.conn, p.case.case_id, True)

    async def on_reopened(ctx: HandlerContext, p: CaseReopened) -> None:
        await ctx.flush()
        await store.case_closed(ctx.conn, p.case.case_id, False)

    def referrals(c: EventConsumer) -> None:
        c.on(ReferralAccepted, on_accepted, prepare=lambda batch, items: store.prepare_accepted(
            batch, [p.referral for _ctx, p in items]))
        c.on(TerritoryChanged, on_territory)

    def cases(c: EventConsumer) -> None:
        c.on(CaseOpened, on_case_opened)
        c.on(FirstContactMade, on_first_contact)
        c.on(CaseReassigned, on_reassigned)
        c.on(CaseClosed, on_closed)
        c.on(CaseReopened, on_reopened)

    # one consumer for referrals and territory changes: a change and the referrals it
    # re-routes are handled by the same member, one batch transaction at a time
    svc.consumer("decisions", [topics.referrals_intake, topics.territory_changes], referrals)
    svc.consumer("cases", [topics.cases], cases)

    from .api import router
    svc.app.include_router(router(svc, store))
    return svc

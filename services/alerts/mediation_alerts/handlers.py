"""Consumer side: a DysfunctionReported becomes alert + dispatch rows, nothing more.

Delivery happens later, in the dispatcher, so that a slow or dead authority never holds
the consumer and nothing is lost if the process dies (the rows are the durable queue).
"""

from __future__ import annotations

import logging

import orjson

from mediation_core.consumer import EventConsumer, HandlerContext
from mediation_schemas.cases import DysfunctionReported

from . import store
from .directory import escalation_sequence, resolve
from .runtime import Runtime

log = logging.getLogger(__name__)


def register(rt: Runtime):
    async def on_dysfunction(ctx: HandlerContext, p: DysfunctionReported) -> None:
        conn = ctx.conn
        now = rt.clock()
        rules = await store.load_rules(conn, p.structure)
        rule = resolve(rules, category=p.category.value, urgency=p.urgency.value,
                       commune=p.commune)
        inserted = await conn.fetchval(
            """INSERT INTO dysfunctions(dysfunction_id, structure, area, case_id, category,
                   urgency, concerned, commune, description, observed_on, reported_at, consented,
                   sealed_identity, rule_id, correlation_id, source_event_id, received_at)
               VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13::jsonb,$14,$15,$16,$17)
               ON CONFLICT (dysfunction_id) DO NOTHING RETURNING 1""",
            p.dysfunction_id, p.structure, p.area, p.case_id, p.category.value, p.urgency.value,
            p.concerned, p.commune, p.description, p.observed_on, p.reported_at,
            p.person_consents_to_be_named,
            # kept sealed, and only when it could ever be used (consent)
            orjson.dumps(p.sealed_identity).decode()
            if (p.sealed_identity and p.person_consents_to_be_named) else None,
            rule.rule_id, ctx.envelope.correlation_id, ctx.envelope.event_id, now)
        if not inserted:
            return  # the same dysfunction under a new event id: already alerted
        directory = await store.load_directory(conn, p.structure)
        for authority_id in rule.authorities:
            authority = directory.get(authority_id)
            if authority is None:  # a rule naming an unknown authority: the coordinator gets it
                authority = directory[store.COORDINATOR]
            await store.create_alert(
                conn, rt.events, directory, dysfunction_id=p.dysfunction_id,
                structure=p.structure, category=p.category.value, urgency=p.urgency.value,
                authority=authority, requires_identity=rule.requires_identity,
                escalation_seq=escalation_sequence(rule, authority.authority_id), now=now)
        log.info("alerts planned", extra={"fields": {
            "dysfunction_id": str(p.dysfunction_id), "rule_id": rule.rule_id,
            "authorities": len(rule.authorities)}})
        rt.wake.set()

    def _register(c: EventConsumer) -> None:
        c.on(DysfunctionReported, on_dysfunction)

    return _register

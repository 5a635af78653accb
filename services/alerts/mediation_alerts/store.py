"""SQL for the alerts service: directory and rules, alerts and their dispatches, and the
events that go with each state change (written to the outbox in the caller's transaction)."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from mediation_core.outbox import Outbox
from mediation_schemas.alerts import (
    AlertAcknowledged,
    AlertDeliveryFailed,
    AlertEscalated,
    AlertRef,
)
from mediation_schemas.envelope import Payload
from mediation_schemas.topics import Topics

from .directory import (
    COORDINATOR,
    Authority,
    Rule,
    default_authorities,
    default_rules,
    merge_directory,
)

NS = uuid.UUID("6f1d7c4e-5a0b-4c55-9d0e-a1e27a1e0001")


def alert_id_for(dysfunction_id: uuid.UUID, authority_id: str) -> uuid.UUID:
    """Deterministic: a redelivered dysfunction can never make a second alert."""
    return uuid.uuid5(NS, f"{dysfunction_id}:{authority_id}")


def notice_id_for(alert_id: uuid.UUID, reason: str, level: int) -> uuid.UUID:
    return uuid.uuid5(NS, f"notice:{alert_id}:{reason}:{level}")


# --------------------------------------------------------------------------- directory

async def load_directory(conn: asyncpg.Connection, structure: str) -> dict[str, Authority]:
    rows = await conn.fetch("SELECT * FROM authorities WHERE structure = $1", structure)
    own = {r["authority_id"]: Authority(
        authority_id=r["authority_id"], name=r["name"], channels=tuple(r["channels"]),
        webhook_url=r["webhook_url"], webhook_secret=r["webhook_secret"], email=r["email"],
        ack=orjson.loads(r["ack"]) if isinstance(r["ack"], str) else dict(r["ack"]))
        for r in rows}
    defaults = default_authorities()
    for k, a in list(own.items()):  # deadlines not set by the structure keep the defaults
        if k in defaults:
            own[k] = Authority(**{**a.__dict__, "ack": {**defaults[k].ack, **a.ack}})
    return merge_directory(defaults, own)


async def load_rules(conn: asyncpg.Connection, structure: str) -> list[Rule]:
    rows = await conn.fetch("SELECT * FROM rules WHERE structure = $1", structure)
    own = [Rule(rule_id=r["rule_id"], category=r["category"], authorities=tuple(r["authorities"]),
                escalation=tuple(r["escalation"]), urgencies=tuple(r["urgencies"]),
                communes=tuple(r["communes"]), requires_identity=r["requires_identity"],
                priority=r["priority"], structure_specific=True) for r in rows]
    return own + default_rules()


async def upsert_authority(conn: asyncpg.Connection, structure: str, a: Authority) -> None:
    await conn.execute(
        """INSERT INTO authorities(structure, authority_id, name, channels, webhook_url,
                                   webhook_secret, email, ack, updated_at)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8::jsonb, now())
           ON CONFLICT (structure, authority_id) DO UPDATE SET name=EXCLUDED.name,
             channels=EXCLUDED.channels, webhook_url=EXCLUDED.webhook_url,
             webhook_secret=EXCLUDED.webhook_secret, email=EXCLUDED.email, ack=EXCLUDED.ack,
             updated_at=now()""",
        structure, a.authority_id, a.name, list(a.channels), a.webhook_url, a.webhook_secret,
        a.email, orjson.dumps(a.ack).decode())


async def upsert_rule(conn: asyncpg.Connection, structure: str, r: Rule) -> None:
    await conn.execute(
        """INSERT INTO rules(structure, rule_id, category, authorities, escalation, urgencies,
                             communes, requires_identity, priority, updated_at)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9, now())
           ON CONFLICT (structure, rule_id) DO UPDATE SET category=EXCLUDED.category,
             authorities=EXCLUDED.authorities, escalation=EXCLUDED.escalation,
             urgencies=EXCLUDED.urgencies, communes=EXCLUDED.communes,
             requires_identity=EXCLUDED.requires_identity, priority=EXCLUDED.priority,
             updated_at=now()""",
        structure, r.rule_id, r.category, list(r.authorities), list(r.escalation),
        list(r.urgencies), list(r.communes), r.requires_identity, r.priority)


# --------------------------------------------------------------------------- events

def alert_ref(a: asyncpg.Record | dict[str, Any]) -> AlertRef:
    return AlertRef(alert_id=a["alert_id"], dysfunction_id=a["dysfunction_id"],
                    structure=a["structure"], authority_id=a["authority_id"],
                    category=a["category"], urgency=a["urgency"],
                    parent_alert_id=a["parent_alert_id"])


class Events:
    """Writes alert lifecycle events to the outbox, with the dysfunction's correlation id and
    the DysfunctionReported event as causation."""

    def __init__(self, outbox: Outbox, topics: Topics) -> None:
        self.outbox = outbox
        self.topics = topics

    async def emit(self, conn: asyncpg.Connection, payload: Payload, a: Any,
                   *, topic: str | None = None, key: str | None = None, **kw: Any) -> None:
        ids: Any = a if "correlation_id" in a.keys() else await conn.fetchrow(
            "SELECT correlation_id, source_event_id FROM dysfunctions WHERE dysfunction_id = $1",
            a["dysfunction_id"])
        await self.outbox.add(conn, payload, topic=topic or self.topics.alerts,
                              key=key or str(a["alert_id"]), correlation_id=ids["correlation_id"],
                              causation_id=ids["source_event_id"], structure=a["structure"], **kw)


# --------------------------------------------------------------------------- alerts

async def create_alert(conn: asyncpg.Connection, events: Events,
                       directory: dict[str, Authority], *, dysfunction_id: uuid.UUID,
                       structure: str, category: str, urgency: str, authority: Authority,
                       requires_identity: bool, escalation_seq: list[str], now: datetime,
                       parent_alert_id: uuid.UUID | None = None) -> uuid.UUID:
    """The alert row and one dispatch per usable channel; an authority with no usable
    channel fails it at once (the coordinator is told). Nothing if it already existed.
    Returns the alert id."""
    alert_id = alert_id_for(dysfunction_id, authority.authority_id)
    row = await conn.fetchrow(
        """INSERT INTO alerts(alert_id, dysfunction_id, structure, authority_id, authority_name,
                              category, urgency, requires_identity, parent_alert_id,
                              escalation_seq, status, created_at)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,'pending',$11)
           ON CONFLICT DO NOTHING RETURNING *""",
        alert_id, dysfunction_id, structure, authority.authority_id, authority.name, category,
        urgency, requires_identity, parent_alert_id, escalation_seq, now)
    if row is None:
        return alert_id
    channels = authority.usable_channels()
    for ch in channels:
        await conn.execute(
            """INSERT INTO dispatches(dispatch_id, alert_id, message_id, purpose, recipient,
                                      channel, next_attempt_at, created_at)
               VALUES ($1,$2,$3,'alert',$4,$5,$6,$6)""",
            uuid.uuid4(), alert_id, alert_id, authority.authority_id, ch, now)
    if not channels:
        await fail_alert(conn, events, row, directory, channel="none", attempts=0,
                         reason="no_channel_configured", now=now)
    return alert_id


async def add_coordinator_notice(conn: asyncpg.Connection, a: Any, directory: dict[str, Authority],
                                 *, reason: str, level: int, now: datetime) -> bool:
    """Dispatches telling the coordinator about alert ``a``. False if it has no channel."""
    coord = directory.get(COORDINATOR)
    channels = coord.usable_channels() if coord else []
    message_id = notice_id_for(a["alert_id"], reason, level)
    for ch in channels:
        await conn.execute(
            """INSERT INTO dispatches(dispatch_id, alert_id, message_id, purpose, recipient,
                                      channel, notice_reason, next_attempt_at, created_at)
               VALUES ($1,$2,$3,'coordinator_notice',$4,$5,$6,$7,$7)
               ON CONFLICT (message_id, channel) DO NOTHING""",
            uuid.uuid4(), a["alert_id"], message_id, COORDINATOR, ch, reason, now)
    return bool(channels)


async def fail_alert(conn: asyncpg.Connection, events: Events, a: Any,
                     directory: dict[str, Authority], *, channel: str, attempts: int,
                     reason: str, now: datetime) -> None:
    """No channel could deliver: the alert fails and the coordinator is told (an escalation
    event, and a notice on the coordinator's channels when it has some)."""
    if a["authority_id"] == COORDINATOR:
        await conn.execute("UPDATE alerts SET status='failed', failed_at=$2, failure_reason=$3 "
                           "WHERE alert_id=$1", a["alert_id"], now, reason)
        await events.emit(conn, AlertDeliveryFailed(
            alert=alert_ref(a), channel=channel, attempts=attempts, reason=reason, failed_at=now,
            coordinator_notified=False), a)
        return
    level = a["escalation_level"] + 1
    await add_coordinator_notice(conn, a, directory, reason="delivery_failed", level=level, now=now)
    await conn.execute(
        """UPDATE alerts SET status='failed', failed_at=$2, failure_reason=$3,
                  escalation_level=$4, escalated_at=$2, escalated_to=$5, ack_due_at=NULL
           WHERE alert_id=$1""", a["alert_id"], now, reason, level, COORDINATOR)
    await events.emit(conn, AlertDeliveryFailed(
        alert=alert_ref(a), channel=channel, attempts=attempts, reason=reason, failed_at=now,
        coordinator_notified=True), a)
    await events.emit(conn, AlertEscalated(
        alert=alert_ref(a), level=level, escalated_to=COORDINATOR, escalated_at=now,
        reason="delivery_failed"), a)


async def acknowledge(conn: asyncpg.Connection, events: Events, alert_id: uuid.UUID, *,
                      response: str | None, via: str, now: datetime) -> tuple[str, Any]:
    """Returns ('acknowledged' | 'already' | 'not_found', row)."""
    a = await conn.fetchrow("SELECT * FROM alerts WHERE alert_id = $1 FOR UPDATE", alert_id)
    if a is None:
        return "not_found", None
    if a["acknowledged_at"] is not None:
        return "already", a
    a = await conn.fetchrow(
        """UPDATE alerts SET status='acknowledged', acknowledged_at=$2, ack_via=$3, response=$4,
                  ack_due_at=NULL WHERE alert_id=$1 RETURNING *""", alert_id, now, via, response)
    await events.emit(conn, AlertAcknowledged(alert=alert_ref(a), acknowledged_at=now,
                                              has_response=bool(response), via=via), a)
    return "acknowledged", a

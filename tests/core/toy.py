"""A toy service for the messaging tests: Ping in, a row and a Pong out."""

from __future__ import annotations

import uuid
from pathlib import Path

from mediation_core.consumer import EventConsumer, HandlerContext
from mediation_core.errors import DomainRejection
from mediation_core.service import Service
from mediation_core.settings import Settings
from mediation_schemas.envelope import Payload, register


@register
class TestPing(Payload):
    event_type = "TestPing"
    version = 1
    ping_id: uuid.UUID
    n: int
    note: str | None = None   # stands for a personal field (sealed in real services)
    explode: bool = False


@register
class TestPong(Payload):
    event_type = "TestPong"
    version = 1
    ping_id: uuid.UUID
    n: int


def build(settings: Settings) -> Service:
    svc = Service(settings, migrations=Path(__file__).parent / "toy_migrations")
    t_in = f"{settings.topics.prefix}ping"
    t_out = f"{settings.topics.prefix}pong"
    svc.produced_topics.append(t_out)

    async def on_ping(ctx: HandlerContext, p: TestPing) -> None:
        if p.explode:
            raise DomainRejection("cannot_ping", "this ping asks to fail")
        await ctx.conn.execute("INSERT INTO effects(ping_id, n) VALUES ($1, $2)", p.ping_id, p.n)
        await ctx.emit(TestPong(ping_id=p.ping_id, n=p.n), topic=t_out, key=str(p.ping_id))

    def register_handlers(c: EventConsumer) -> None:
        c.on(TestPing, on_ping)

    svc.consumer("pings", [t_in], register_handlers)
    return svc

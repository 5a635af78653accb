"""A toy service for the messaging tests: Ping in, a row and a Pong out."""

from __future__ import annotations

import uuid
from pathlib import Path

from mediation_core.consumer import Batch, EventConsumer, HandlerContext
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


def build(settings: Settings, *, deferred: bool = False) -> Service:
    """``deferred``: the effect is a deferred write (one executemany per batch), the way the
    services write; by default one statement per event."""
    svc = Service(settings, migrations=Path(__file__).parent / "toy_migrations")
    t_in = f"{settings.topics.prefix}ping"
    t_out = f"{settings.topics.prefix}pong"
    svc.produced_topics.append(t_out)

    async def on_ping(ctx: HandlerContext, p: TestPing) -> None:
        if p.explode:
            raise DomainRejection("cannot_ping", "this ping asks to fail")
        write = ctx.defer if deferred else ctx.conn.execute
        await write("INSERT INTO effects(ping_id, n) VALUES ($1, $2)", p.ping_id, p.n)
        await ctx.emit(TestPong(ping_id=p.ping_id, n=p.n), topic=t_out, key=str(p.ping_id))

    def register_handlers(c: EventConsumer) -> None:
        c.on(TestPing, on_ping)

    svc.consumer("pings", [t_in], register_handlers)
    return svc


def build_batched(settings: Settings) -> Service:
    """The same pings, handled the batched way: a prepare step per batch (one row saying
    how many messages it saw; ``note == "bad prepare"`` makes it fail) and the effect as a
    deferred write (a negative ``n`` breaks its CHECK constraint when the batch flushes)."""
    svc = Service(settings, migrations=Path(__file__).parent / "toy_migrations")
    t_in = f"{settings.topics.prefix}ping"

    async def prepare(batch: Batch, items: list[tuple[HandlerContext, TestPing]]) -> None:
        if any(p.note == "bad prepare" for _ctx, p in items):
            raise ValueError("prepare failed")
        await batch.conn.execute("INSERT INTO prepares(messages) VALUES ($1)", len(items))
        batch.data["prepared"] = {p.ping_id for _ctx, p in items}

    async def on_ping(ctx: HandlerContext, p: TestPing) -> None:
        assert ctx.batch is not None
        prepared = p.ping_id in ctx.batch.data.get("prepared", ())
        await ctx.defer("INSERT INTO batched_effects(ping_id, n, prepared) VALUES ($1, $2, $3)",
                        p.ping_id, p.n, prepared)

    svc.consumer("pings", [t_in], lambda c: c.on(TestPing, on_ping, prepare=prepare))
    return svc

"""What the use cases need: pool, outbox, key vault, clock, configuration."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from mediation_core.outbox import Outbox
from mediation_core.sealing import KeyVault
from mediation_core.settings import Settings
from mediation_schemas.envelope import Payload
from mediation_schemas.topics import Topics

from .config import CasesConfig, Clock

# emit(payload, topic=, key=, structure=, correlation_id=) inside the current transaction
Emit = Callable[..., Awaitable[Any]]


@dataclass
class Deps:
    settings: Settings
    config: CasesConfig
    clock: Clock
    outbox: Outbox
    pool: asyncpg.Pool | None = None
    keyvault: KeyVault | None = None

    @property
    def topics(self) -> Topics:
        return self.settings.topics

    def db(self) -> asyncpg.Pool:
        if self.pool is None:
            raise RuntimeError("the cases service is not started")
        return self.pool

    def vault(self) -> KeyVault:
        if self.keyvault is None:
            raise RuntimeError("the cases service is not started")
        return self.keyvault

    def outbox_emit(self, conn: asyncpg.Connection) -> Emit:
        """``emit`` for HTTP use cases: events go to the outbox in ``conn``'s transaction."""
        async def emit(payload: Payload, *, topic: str, key: str, structure: str | None,
                       correlation_id: str) -> Any:
            return await self.outbox.add(conn, payload, topic=topic, key=key,
                                         correlation_id=correlation_id, structure=structure)
        return emit

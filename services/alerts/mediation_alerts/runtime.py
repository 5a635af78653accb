"""What the handlers, the dispatcher and the API of one alerts service share."""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass, field
from typing import Any

import orjson

from mediation_core.auth import api_key
from mediation_core.sealing import KeyVault
from mediation_core.service import Service

from . import content
from .channels import SmtpConfig
from .clock import Clock, system_clock
from .links import link_key
from .policy import DeliveryPolicy
from .store import Events


@dataclass(frozen=True)
class AlertsConfig:
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    public_url: str = "http://127.0.0.1:8084"   # base of the signed acknowledgement links
    link_ttl_days: int = 60
    config_file: str | None = None  # per-structure directory and rules, loaded on start

    @classmethod
    def from_env(cls) -> AlertsConfig:
        e = os.environ.get
        return cls(
            smtp=SmtpConfig(host=e("MEDIATION_SMTP_HOST", "127.0.0.1"),
                            port=int(e("MEDIATION_SMTP_PORT", "2525")),
                            sender=e("MEDIATION_SMTP_FROM", "veille@mediation.invalid"),
                            starttls=e("MEDIATION_SMTP_STARTTLS", "0") == "1",
                            username=e("MEDIATION_SMTP_USER") or None,
                            password=e("MEDIATION_SMTP_PASSWORD") or None),
            public_url=e("MEDIATION_ALERTS_PUBLIC_URL", "http://127.0.0.1:8084").rstrip("/"),
            config_file=e("MEDIATION_ALERTS_CONFIG") or None,
        )


class Runtime:
    def __init__(self, svc: Service, *, clock: Clock | None, policy: DeliveryPolicy | None,
                 config: AlertsConfig | None) -> None:
        self.svc = svc
        self.settings = svc.settings
        self.clock: Clock = clock or system_clock
        self.policy = policy or DeliveryPolicy()
        self.config = config or AlertsConfig.from_env()
        self.events = Events(svc.outbox, svc.settings.topics)
        self.wake = asyncio.Event()
        self.link_key = link_key(api_key())
        self._vault: KeyVault | None = None

    async def open_identity(self, block: str | dict[str, Any], *, actor: str,
                            purpose: str) -> dict[str, Any]:
        """The minimal identity in a sealed block (the vault records the opening).
        Raises ``KeyDestroyed`` when the person's key was erased."""
        if self._vault is None:  # the pool exists only once the service started
            assert self.svc.pool is not None
            self._vault = KeyVault.from_settings(self.svc.pool, self.settings)
        opened = await self._vault.open(orjson.loads(block) if isinstance(block, str) else block,
                                        actor=actor, purpose=purpose)
        return content.minimal_identity(opened)

"""Alert lifecycle: a dysfunction signal delivered to an authority, acknowledged or escalated."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import Field

from .common import Strict
from .envelope import Payload, register


class AlertRef(Strict):
    alert_id: uuid.UUID
    dysfunction_id: uuid.UUID
    structure: str
    authority_id: str
    category: str


@register
class AlertDispatched(Payload):
    event_type = "AlertDispatched"
    version = 1

    alert: AlertRef
    channel: str = Field(description="webhook, email or kafka")
    attempt: int = Field(ge=1)
    dispatched_at: datetime


@register
class AlertDeliveryFailed(Payload):
    event_type = "AlertDeliveryFailed"
    version = 1

    alert: AlertRef
    channel: str
    attempts: int
    reason: str = Field(description="Last failure, e.g. http_500, timeout, connection_refused.")
    failed_at: datetime


@register
class AlertAcknowledged(Payload):
    event_type = "AlertAcknowledged"
    version = 1

    alert: AlertRef
    acknowledged_at: datetime
    response: str | None = Field(default=None, description="What the authority says it did.")


@register
class AlertEscalated(Payload):
    event_type = "AlertEscalated"
    version = 1

    alert: AlertRef
    level: int = Field(ge=1)
    escalated_to: str = Field(description="coordinator or the next authority id")
    escalated_at: datetime

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
    urgency: str | None = Field(default=None, description="normal, priority or urgent.")
    parent_alert_id: uuid.UUID | None = Field(
        default=None, description="The alert this one escalates (sent to the next authority).")


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
    coordinator_notified: bool | None = Field(
        default=None, description="True when the coordinator was told (no channel delivered).")


@register
class AlertAcknowledged(Payload):
    event_type = "AlertAcknowledged"
    version = 1

    alert: AlertRef
    acknowledged_at: datetime
    response: str | None = Field(
        default=None, description="Deprecated, never filled since the first release: the "
        "authority's free text may quote the situation, so it stays in the alerts service "
        "(coordinators' dysfunction table); see has_response.")
    has_response: bool = Field(default=False,
                               description="The authority wrote a response with its acknowledgement.")
    via: str | None = Field(default=None, description="link (signed URL) or api (bearer token).")


@register
class AlertEscalated(Payload):
    event_type = "AlertEscalated"
    version = 1

    alert: AlertRef
    level: int = Field(ge=1)
    escalated_to: str = Field(description="coordinator or the next authority id")
    escalated_at: datetime
    reason: str | None = Field(
        default=None, description="no_acknowledgement (deadline passed) or delivery_failed.")
    new_alert_id: uuid.UUID | None = Field(
        default=None, description="The alert created for the next authority, if any.")


@register
class AlertOutbound(Payload):
    """What an authority consuming Kafka receives (topic alerts.outbound, key authority id).

    Minimal content only; never the person's identity (an authority entitled to it fetches
    it through the authenticated API).
    """

    event_type = "AlertOutbound"
    version = 1

    alert: AlertRef
    message_id: uuid.UUID = Field(description="Idempotency key: the same on every re-send.")
    kind: str = Field(default="alert", description="alert or coordinator_notice")
    category_label: str
    commune: str | None = None
    concerned: str
    description: str
    observed_on: datetime
    reported_at: datetime
    ack_due_at: datetime | None = None
    identity_available: bool = False

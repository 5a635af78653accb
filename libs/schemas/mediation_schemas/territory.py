"""Territory changes: a new version of one structure's territory, effective from a date."""

from __future__ import annotations

from datetime import date
from typing import Any

from pydantic import Field

from .envelope import Payload, register


@register
class TerritoryChanged(Payload):
    """A full snapshot of one structure's territory (areas, places, mediators with leave
    windows and capacity, coordinators), in force from ``effective_from``.

    Versions are numbered per structure (1, 2, ...); a referral is routed by the version in
    force at its date, and each routing decision records the version that made it. Staff
    are named by opaque ids only.
    """

    event_type = "TerritoryChanged"
    version = 1

    structure: str = Field(min_length=1, max_length=80)
    territory_version: int = Field(ge=1, description="Version number within the structure.")
    effective_from: date
    territory: dict[str, Any] = Field(description="The structure's territory document "
                                      "(same shape as the routing service's packaged data).")
    reason: str | None = Field(default=None, max_length=500,
                               description="Why the territory changed (no personal data).")

"""Kafka topic names. One topic per aggregate family; a dead-letter topic per consumer.

All names carry a prefix (``MEDIATION_TOPIC_PREFIX``, default ``mediation.``) so that a
test, a demo or a second environment on the same cluster gets its own set.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Topics:
    prefix: str = "mediation."

    @property
    def referrals_received(self) -> str:
        """ReferralReceived, written by outside systems. Key: source_system:source_reference."""
        return f"{self.prefix}referrals.received"

    @property
    def referrals_intake(self) -> str:
        """ReferralAccepted / ReferralRejected. Key: referral id."""
        return f"{self.prefix}referrals.intake"

    @property
    def referrals_answers(self) -> str:
        """Answers to source systems (ReferralRejected, ReferralStatusChanged). Key: source system."""
        return f"{self.prefix}referrals.answers"

    @property
    def routing_decisions(self) -> str:
        """ReferralRouted / ReferralUnroutable. Key: referral id."""
        return f"{self.prefix}routing.decisions"

    @property
    def territory_changes(self) -> str:
        """Territory versions (structures, areas, places, mediators). Key: structure id."""
        return f"{self.prefix}territory.changes"

    @property
    def cases(self) -> str:
        """Case events. Key: case id."""
        return f"{self.prefix}cases.events"

    @property
    def dysfunctions(self) -> str:
        """DysfunctionReported. Key: dysfunction id."""
        return f"{self.prefix}dysfunctions"

    @property
    def alerts(self) -> str:
        """Alert lifecycle events. Key: alert id."""
        return f"{self.prefix}alerts.events"

    @property
    def alerts_outbound(self) -> str:
        """Alert content for authorities that consume Kafka. Key: authority id."""
        return f"{self.prefix}alerts.outbound"

    def dead_letters(self, consumer: str) -> str:
        return f"{self.prefix}dlq.{consumer}"

    def all_business(self) -> list[str]:
        return [
            self.referrals_received, self.referrals_intake, self.referrals_answers,
            self.routing_decisions, self.territory_changes, self.cases, self.dysfunctions,
            self.alerts, self.alerts_outbound,
        ]


def topics_from_env() -> Topics:
    return Topics(prefix=os.environ.get("MEDIATION_TOPIC_PREFIX", "mediation."))

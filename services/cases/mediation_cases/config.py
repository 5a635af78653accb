"""Settings of the cases service that the shared Settings don't carry (environment)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class CasesConfig:
    first_contact_working_days: int = 3         # normal and priority referrals
    urgent_first_contact_working_days: int = 1  # urgent referrals
    escalation_working_days: int = 2            # after the deadline, escalate to the coordinator
    inactivity_days: int = 30                   # open case with no activity -> flagged
    unreachable_min_attempts: int = 3           # closing as unreachable needs this many attempts
    scan_interval: float = 60.0                 # seconds between deadline scans

    @classmethod
    def from_env(cls) -> CasesConfig:
        e = os.environ.get
        d = cls()
        return cls(
            first_contact_working_days=int(e("MEDIATION_CASES_FIRST_CONTACT_DAYS",
                                             d.first_contact_working_days)),
            urgent_first_contact_working_days=int(e("MEDIATION_CASES_URGENT_FIRST_CONTACT_DAYS",
                                                    d.urgent_first_contact_working_days)),
            escalation_working_days=int(e("MEDIATION_CASES_ESCALATION_DAYS",
                                          d.escalation_working_days)),
            inactivity_days=int(e("MEDIATION_CASES_INACTIVITY_DAYS", d.inactivity_days)),
            unreachable_min_attempts=int(e("MEDIATION_CASES_UNREACHABLE_ATTEMPTS",
                                           d.unreachable_min_attempts)),
            scan_interval=float(e("MEDIATION_CASES_SCAN_INTERVAL", d.scan_interval)),
        )

    def first_contact_days(self, urgency: str) -> int:
        return (self.urgent_first_contact_working_days if urgency == "urgent"
                else self.first_contact_working_days)

"""Metrics and spans of the cases service (ids and codes only, never personal data)."""

from __future__ import annotations

from prometheus_client import Counter

from mediation_core import telemetry

OPENINGS = Counter("mediation_cases_openings_total",
                   "Routed referrals by decision (open, attach, update, ignore) and API openings",
                   ["decision"])
COMMANDS = Counter("mediation_cases_commands_total", "Mediator commands by outcome",
                   ["command", "outcome"])
DEADLINE_NOTICES = Counter("mediation_cases_deadline_notices_total",
                           "Reminders, escalations and inactivity flags sent", ["kind"])
PERSONAL_DATA_READS = Counter("mediation_cases_personal_data_reads_total",
                              "Openings of sealed personal data, by purpose", ["purpose"])


def tracer():
    return telemetry.tracer("mediation.cases")

"""Business time: working days in Europe/Paris with French public holidays.

A deadline of N working days counts the working days *after* the day of the start
(Saturday, Sunday and French public holidays don't count) and ends at midnight, Paris
time, at the end of the Nth one. Opened on Monday with N=3: due at the end of Thursday.
Opened on a Saturday: the count starts on Monday. Deadlines are stored in UTC.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

PARIS = ZoneInfo("Europe/Paris")


@lru_cache(maxsize=64)
def _holidays(year: int) -> frozenset[date]:
    return frozenset(holidays.France(years=year).keys())


def is_working_day(d: date) -> bool:
    return d.weekday() < 5 and d not in _holidays(d.year)


def add_working_days(start: date, n: int) -> date:
    """The Nth working day after ``start`` (``start`` itself never counts)."""
    d = start
    counted = 0
    while counted < n:
        d += timedelta(days=1)
        if is_working_day(d):
            counted += 1
    return d


def deadline(start: datetime, working_days: int) -> datetime:
    """End (exclusive, UTC) of the ``working_days``-th working day after ``start``."""
    local_day = start.astimezone(PARIS).date()
    last = add_working_days(local_day, working_days)
    end_local = datetime.combine(last + timedelta(days=1), time(0, 0), tzinfo=PARIS)
    return end_local.astimezone(UTC)


def working_days_between(start: datetime, end: datetime) -> int:
    """Working days strictly after ``start``'s Paris day, up to and including ``end``'s."""
    a = start.astimezone(PARIS).date()
    b = end.astimezone(PARIS).date()
    n = 0
    d = a
    while d < b:
        d += timedelta(days=1)
        if is_working_day(d):
            n += 1
    return n

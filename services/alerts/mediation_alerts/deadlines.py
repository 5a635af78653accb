"""Acknowledgement deadlines: clock hours, or working days in Europe/Paris with French holidays.

A deadline spec is ``"<n>h"`` (hours, round the clock: health alerts don't wait for Monday)
or ``"<n>d"`` (working days: weekends and French public holidays skipped, same time of day).
"""

from __future__ import annotations

import re
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

import holidays

PARIS = ZoneInfo("Europe/Paris")
_SPEC = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([hd])\s*$")


@lru_cache(maxsize=16)
def _holidays(year: int) -> holidays.HolidayBase:
    return holidays.France(years=year)


def is_working_day(d: date) -> bool:
    return d.weekday() < 5 and d not in _holidays(d.year)


def parse_spec(spec: str) -> tuple[float, str]:
    m = _SPEC.match(spec or "")
    if not m:
        raise ValueError("deadline spec must look like '4h' (hours) or '2d' (working days)")
    return float(m.group(1)), m.group(2)


def add_working_days(start: datetime, n: int) -> datetime:
    """``start`` moved forward ``n`` working days in Paris time (result in start's zone).

    A start outside a working day counts from the next working day's same time.
    """
    local = start.astimezone(PARIS)
    d = local.date()
    while not is_working_day(d):
        d += timedelta(days=1)
    left = n
    while left > 0:
        d += timedelta(days=1)
        if is_working_day(d):
            left -= 1
    out = datetime.combine(d, local.timetz().replace(tzinfo=None), tzinfo=PARIS)
    return out.astimezone(start.tzinfo)


def ack_due(start: datetime, spec: str) -> datetime:
    value, unit = parse_spec(spec)
    if unit == "h":
        return start + timedelta(hours=value)
    return add_working_days(start, int(value))

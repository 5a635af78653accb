"""Time for the alerts service: one injectable clock (a callable returning an aware UTC datetime).

Every deadline, retry schedule and breaker cool-down reads the clock given to ``build()``;
tests pass an :class:`OffsetClock` and move it forward to drive acknowledgement deadlines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]


def system_clock() -> datetime:
    return datetime.now(UTC)


class OffsetClock:
    """Real time plus an offset that tests move forward (``advance``): retries still flow,
    deadlines jump."""

    def __init__(self, start: datetime | None = None) -> None:
        self._start = start or datetime.now(UTC)
        self._t0 = time.monotonic()
        self._offset = timedelta()

    def __call__(self) -> datetime:
        return self._start + timedelta(seconds=time.monotonic() - self._t0) + self._offset

    def advance(self, **kw: float) -> datetime:
        self._offset += timedelta(**kw)
        return self()

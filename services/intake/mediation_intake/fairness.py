"""Fair share of intake between sending systems on the Kafka way in (pure: no broker, no DB).

Each source system has a token bucket (``rate`` forms/s, up to ``burst``). A form within its
source's budget is taken at once; one over it is parked (see parking.py) and drained later at
that source's budget. :class:`RoundRobin` decides which parked forms to take next: one form
per source per turn, sources in a fixed rotation that resumes after the last source served,
so a source with a huge backlog gets no more than its budget and never delays another
source's turn.
"""

from __future__ import annotations

import bisect
import math

from .ratelimit import TokenBuckets

DEFAULT_KAFKA_RATE = 50.0   # forms per second per source: normal traffic never waits
DEFAULT_KAFKA_BURST = 500


class RoundRobin:
    def __init__(self, buckets: TokenBuckets) -> None:
        self.buckets = buckets
        self._last: str | None = None  # the last source served: the next turn starts after it

    def plan(self, backlog: dict[str, int], limit: int) -> tuple[list[str], float]:
        """Which parked forms to take now, as a list of sources (one entry per form, in the
        order to take them), and, when nothing can be taken, the seconds until a source with
        a backlog has a token again (0 when the backlog is empty or something was planned).

        Each planned form consumes a token of its source."""
        sources = sorted(s for s, n in backlog.items() if n > 0)
        if not sources or limit <= 0:
            return [], 0.0
        start = bisect.bisect_right(sources, self._last) % len(sources) if self._last else 0
        order = sources[start:] + sources[:start]
        left = {s: backlog[s] for s in order}
        picked: list[str] = []
        wait = math.inf
        while len(picked) < limit:
            progress = False
            for s in order:
                if len(picked) >= limit:
                    break
                if left[s] <= 0:
                    continue
                w = self.buckets.take(s)
                if w > 0:
                    wait = min(wait, w)
                    continue
                picked.append(s)
                left[s] -= 1
                self._last = s
                progress = True
            if not progress:
                break
        return picked, (0.0 if picked or wait == math.inf else wait)

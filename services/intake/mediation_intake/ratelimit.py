"""Per-source token buckets: a flood from one sending system does not starve the others."""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class TokenBuckets:
    """``rate`` tokens per second per source, up to ``burst``; one token per request."""

    def __init__(self, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic, max_sources: int = 10_000) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.max_sources = max_sources
        self._state: dict[str, tuple[float, float]] = {}

    def take(self, source: str) -> float:
        """0 if allowed, else the seconds to wait before the next token."""
        now = self.clock()
        tokens, last = self._state.get(source, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - last) * self.rate)
        if tokens >= 1:
            self._state[source] = (tokens - 1, now)
            self._trim()
            return 0.0
        self._state[source] = (tokens, now)
        return (1 - tokens) / self.rate

    def retry_after(self, wait: float) -> int:
        return max(1, math.ceil(wait))

    def _trim(self) -> None:
        if len(self._state) > self.max_sources:  # forget the fullest (idle) buckets
            for k in sorted(self._state, key=lambda k: self._state[k][1])[: len(self._state) // 2]:
                del self._state[k]

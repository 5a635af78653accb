"""Delivery policy: retry budget, exponential backoff with full jitter, circuit breaker.

Plain code, no I/O: the dispatcher asks :func:`backoff_delay` when to try again and a
:class:`CircuitBreaker` whether an endpoint may be called now.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from .clock import Clock


@dataclass(frozen=True)
class DeliveryPolicy:
    max_attempts: int = 8          # retry budget per dispatch (channel of one alert)
    base_delay: float = 5.0        # seconds; attempt n waits U(0, min(cap, base*2^(n-1)))
    max_delay: float = 1800.0
    timeout: float = 10.0          # per HTTP request / SMTP session
    breaker_threshold: int = 5     # consecutive failures that open an endpoint's breaker
    breaker_cooldown: float = 60.0  # seconds before a half-open probe
    lease: float = 120.0           # a claimed dispatch is re-claimable after this (crash)
    batch: int = 50                # dispatches claimed at once
    concurrency: int = 20          # deliveries in flight per dispatcher
    poll_interval: float = 0.2     # idle poll of the dispatch and deadline tables


def backoff_delay(attempt: int, base: float, cap: float,
                  rand: Callable[[], float] = random.random) -> float:
    """Full jitter (AWS architecture blog): uniform in [0, min(cap, base * 2**(attempt-1))]."""
    ceiling = min(cap, base * (2 ** max(attempt - 1, 0)))
    return rand() * ceiling


@dataclass
class _State:
    failures: int = 0
    open_until: datetime | None = None
    probing: bool = False


@dataclass
class CircuitBreaker:
    """Per-endpoint breaker: closed -> open after ``threshold`` consecutive failures ->
    half-open after ``cooldown`` (one probe at a time) -> closed on success."""

    threshold: int
    cooldown: float
    clock: Clock
    _states: dict[str, _State] = field(default_factory=dict)

    def state(self, key: str) -> str:
        s = self._states.get(key)
        if s is None or s.open_until is None:
            return "closed"
        return "open" if self.clock() < s.open_until else "half_open"

    def allow(self, key: str) -> datetime | None:
        """None if a call may go now; else the time to try again."""
        s = self._states.setdefault(key, _State())
        if s.open_until is None:
            return None
        now = self.clock()
        if now < s.open_until:
            return s.open_until
        if s.probing:  # one probe at a time while half-open
            return now + timedelta(seconds=min(self.cooldown, 1.0))
        s.probing = True
        return None

    def success(self, key: str) -> None:
        self._states[key] = _State()

    def failure(self, key: str) -> None:
        s = self._states.setdefault(key, _State())
        s.failures += 1
        if s.probing or s.failures >= self.threshold:
            s.open_until = self.clock() + timedelta(seconds=self.cooldown)
        s.probing = False

    def release(self, key: str) -> None:
        """A call that was allowed but not made (e.g. no content): free the probe slot."""
        s = self._states.get(key)
        if s:
            s.probing = False

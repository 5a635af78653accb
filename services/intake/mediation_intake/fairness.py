"""Fair share of intake between sending systems on the Kafka way in (pure: no broker, no DB).

Two rules, both work-conserving:

- :func:`admit` decides, for each form the consumer reads, whether it goes straight
  through or is parked behind others. A source within its budget (token bucket per source)
  and with nothing parked goes straight through. A source over its budget, or with forms
  already parked (its new forms queue behind them: its order is kept), is parked.
- :class:`RoundRobin` decides which parked forms the drainer takes next: one form per
  source per turn, oldest first within a source, sources in a rotation that resumes after
  the last source served. There is no rate here: the drainer takes parked forms as fast as
  it can, so a lone flood is slowed by nothing but the parking itself, and a flooding source
  is slowed only relative to the others (its forms wait their turn, not a timer).
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TypeVar

from .ratelimit import TokenBuckets

DEFAULT_KAFKA_RATE = 50.0   # forms per second per source that go straight through
DEFAULT_KAFKA_BURST = 500

T = TypeVar("T")


async def admit(buckets: TokenBuckets, source: str,
                has_backlog: Callable[[], Awaitable[bool]]) -> bool:
    """True: take the form now; False: park it.

    Every form that could go straight through spends a token, even when it is parked for
    its source's backlog: a flooding source's bucket stays empty while it floods, and the
    backlog is only looked up (``has_backlog``, a database query) when the bucket allows."""
    if buckets.take(source) > 0:
        return False
    return not await has_backlog()


def admit_one(buckets: TokenBuckets, source: str, backlog: set[str]) -> bool:
    """:func:`admit` with the sources that have parked forms known (``backlog``, one query
    for a batch); a source parked here joins ``backlog``, so its next forms queue behind."""
    ok = buckets.take(source) <= 0 and source not in backlog
    if not ok:
        backlog.add(source)
    return ok


class Admissions:
    """Decisions already taken, by event id, kept across a batch's retries and its rerun
    one message at a time: tokens are spent once per form, not once per attempt (they are
    not given back when a transaction rolls back). Bounded: the oldest are forgotten."""

    def __init__(self, limit: int = 20_000) -> None:
        self.limit = limit
        self._seen: OrderedDict[str, bool] = OrderedDict()

    def get(self, event_id: str) -> bool | None:
        return self._seen.get(event_id)

    def remember(self, event_id: str, ok: bool) -> bool:
        self._seen[event_id] = ok
        if len(self._seen) > self.limit:
            self._seen.popitem(last=False)
        return ok

    def admit_batch(self, buckets: TokenBuckets, forms: Sequence[tuple[str, str]],
                    backlog: set[str]) -> list[bool]:
        """:func:`admit` for a batch's ``(event id, source)`` in their order, ``backlog``
        the sources with parked forms before it (one query): a form decided by an earlier
        attempt keeps its decision and spends no token; a source parked on the way queues
        the rest of its forms behind (``backlog`` itself is not changed)."""
        backlog = set(backlog)
        out = []
        for event_id, source in forms:
            ok = self.get(event_id)
            if ok is None:
                ok = self.remember(event_id, admit_one(buckets, source, backlog))
            elif not ok:
                backlog.add(source)
            out.append(ok)
        return out


class RoundRobin:
    """Interleaves per-source queues, one item per source per turn."""

    def __init__(self) -> None:
        self.last: str | None = None  # the last source served: the next plan starts after it

    def plan(self, queues: Mapping[str, Sequence[T]], limit: int) -> list[tuple[str, T]]:
        """Up to ``limit`` (source, item) pairs, in the order to take them: turn after turn,
        the head of each non-empty queue, sources sorted and rotated to start after the last
        source served by the previous plan. Each queue keeps its own order."""
        sources = sorted(s for s, q in queues.items() if q)
        if not sources or limit <= 0:
            return []
        start = bisect.bisect_right(sources, self.last) % len(sources) \
            if self.last is not None else 0
        order = sources[start:] + sources[:start]
        picked: list[tuple[str, T]] = []
        depth = 0
        while len(picked) < limit:
            turn = [(s, queues[s][depth]) for s in order if depth < len(queues[s])]
            if not turn:
                break
            picked.extend(turn[: limit - len(picked)])
            depth += 1
        self.last = picked[-1][0]
        return picked

"""Per-source token buckets, on a driven clock: refill, Retry-After, sources apart."""

from __future__ import annotations

from mediation_intake.ratelimit import TokenBuckets


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_a_burst_then_one_request_per_refilled_token():
    clock = Clock()
    b = TokenBuckets(rate=2.0, burst=3, clock=clock)
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = b.take("a")
    assert wait == 0.5, "one token comes back in 1/rate seconds"
    assert b.retry_after(wait) == 1, "Retry-After is whole seconds, at least 1"
    clock.t += 0.25
    assert b.take("a") == 0.25, "a refused request does not reset the refill"
    clock.t += 0.25
    assert b.take("a") == 0.0
    assert b.take("a") > 0
    clock.t += 60
    assert [b.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert b.take("a") > 0, "refill stops at the burst"


def test_a_flooding_source_does_not_take_the_tokens_of_another():
    clock = Clock()
    b = TokenBuckets(rate=0.1, burst=1, clock=clock)
    assert b.take("flood") == 0.0
    assert b.take("flood") == 10.0
    assert b.retry_after(b.take("flood")) == 10
    assert b.take("quiet") == 0.0


def test_idle_sources_are_forgotten_beyond_the_cap_with_a_full_bucket_on_return():
    clock = Clock()
    b = TokenBuckets(rate=1e-6, burst=1, clock=clock, max_sources=4)  # no refill to speak of
    for i in range(5):
        clock.t += 1
        assert b.take(f"s{i}") == 0.0
    assert b.take("s0") == 0.0, "the oldest source was forgotten: a full bucket again"
    assert b.take("s4") > 0, "the most recent source kept its (empty) bucket"

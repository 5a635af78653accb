"""Kafka-side fairness rules, pure (no broker, no database), on a driven clock: what goes
straight through or is parked, and the round-robin that drains parked forms."""

from __future__ import annotations

import math

from mediation_intake.fairness import Admissions, RoundRobin, admit
from mediation_intake.ratelimit import TokenBuckets
from tests.intake.test_ratelimit import Clock


class Backlog:
    """A stand-in for the parked table's backlog query, counting its calls."""

    def __init__(self, parked: bool = False) -> None:
        self.parked = parked
        self.calls = 0

    async def __call__(self) -> bool:
        self.calls += 1
        return self.parked


async def test_within_budget_and_nothing_parked_goes_straight_through_else_parked():
    clock = Clock()
    b = TokenBuckets(rate=2.0, burst=3, clock=clock)
    none = Backlog(parked=False)
    assert [await admit(b, "a", none) for _ in range(4)] == [True, True, True, False]
    assert none.calls == 3, "an empty bucket parks without asking for the backlog"
    assert await admit(b, "b", none), "another source has its own budget"
    clock.t += 0.5  # one token back
    assert await admit(b, "a", none)
    assert not await admit(b, "a", none)


async def test_a_source_with_parked_forms_parks_behind_them_even_within_budget():
    clock = Clock()
    b = TokenBuckets(rate=1.0, burst=10, clock=clock)
    assert not await admit(b, "a", Backlog(parked=True)), "its order is kept"
    assert await admit(b, "a", Backlog(parked=False)), "backlog gone: straight through again"


def test_sources_take_turns_one_form_each_oldest_first():
    rr = RoundRobin()
    plan = rr.plan({"a": [1, 2, 3, 4, 5], "b": [10, 11], "c": [20]}, limit=50)
    assert plan == [("a", 1), ("b", 10), ("c", 20), ("a", 2), ("b", 11), ("a", 3), ("a", 4),
                    ("a", 5)], "one per source per turn; what is left of a follows at once"


def test_the_limit_caps_a_round_and_the_rotation_resumes_after_the_last_source_served():
    rr = RoundRobin()
    q = {"a": list(range(9)), "b": list(range(9)), "c": list(range(9))}
    assert [s for s, _ in rr.plan(q, limit=2)] == ["a", "b"]
    assert [s for s, _ in rr.plan(q, limit=4)] == ["c", "a", "b", "c"], \
        "c is not skipped because a limit cut the turn short"
    assert rr.plan({}, limit=5) == [] and rr.plan({"a": []}, limit=5) == []
    assert rr.plan(q, limit=0) == []
    assert [s for s, _ in rr.plan({"a": [1], "z": [1]}, limit=5)] == ["z", "a"], \
        "the last served (c) has nothing left: the rotation starts after its place"


def test_work_conserving_a_lone_flood_drains_in_as_many_rounds_as_its_size_needs():
    """No clock anywhere in the drain: however late the clock, a lone source gets every
    slot of every round, so its backlog of n forms takes ceil(n / limit) rounds."""
    rr = RoundRobin()
    backlog = list(range(1234))
    rounds = 0
    while backlog:
        plan = rr.plan({"flood": backlog[:200]}, limit=200)
        assert [i for _, i in plan] == backlog[: len(plan)], "oldest first"
        backlog = backlog[len(plan):]
        rounds += 1
    assert rounds == math.ceil(1234 / 200)


async def test_model_a_flood_ahead_of_a_quiet_source_in_the_log():
    """The consumer's admission then the drainer's rounds, over a log where 1,000 forms of
    one sender precede 3 of another (one partition), with a clock that never moves: the quiet
    sender's forms go straight through; the flood is drained whole, in order, once, at one
    round per 50 forms (a round is the only pace, no timer)."""
    b = TokenBuckets(rate=50.0, burst=5, clock=lambda: 0.0)
    log = [("flood", i) for i in range(1000)] + [("quiet", i) for i in range(3)]
    parked: dict[str, list[int]] = {}
    taken: list[tuple[str, int]] = []
    for src, i in log:
        async def has_backlog(src: str = src) -> bool:
            return bool(parked.get(src))
        if await admit(b, src, has_backlog):
            taken.append((src, i))
        else:
            parked.setdefault(src, []).append(i)
    assert taken[-3:] == [("quiet", 0), ("quiet", 1), ("quiet", 2)]
    assert len(parked["flood"]) == 995 and "quiet" not in parked
    rr = RoundRobin()
    rounds = 0
    while any(parked.values()):
        for src, i in rr.plan({s: q[:50] for s, q in parked.items()}, limit=50):
            assert parked[src].pop(0) == i
            taken.append((src, i))
        rounds += 1
    assert rounds == math.ceil(995 / 50)
    assert [i for s, i in taken if s == "flood"] == list(range(1000)), "each once, in order"


async def test_a_batch_is_admitted_as_one_form_at_a_time():
    """Admissions.admit_batch (the consumer's prepared batch) decides what admit decides
    form by form, with the parked table as it grows along the batch (a parked form parks
    the rest of its source's forms behind it), and decides each form once."""
    sources = ["a", "b", "a", "a", "c", "b", "a", "c", "b", "b"]
    one_by_one_clock, batch_clock = Clock(), Clock()
    one = TokenBuckets(rate=1.0, burst=2, clock=one_by_one_clock)
    parked = {"c"}
    expected = []
    for s in sources:
        ok = await admit(one, s, Backlog(parked=s in parked))
        if not ok:
            parked.add(s)
        expected.append(ok)
    batch = TokenBuckets(rate=1.0, burst=2, clock=batch_clock)
    admissions = Admissions()
    forms = [(f"e{i}", s) for i, s in enumerate(sources)]
    assert admissions.admit_batch(batch, forms, {"c"}) == expected
    # the same batch again (a retry, or its rerun one message at a time): the same decisions
    assert admissions.admit_batch(batch, forms, {"c"}) == expected
    # and no token spent again: of a burst of 2, a form decided twice spends one
    two = TokenBuckets(rate=1.0, burst=2, clock=Clock())
    assert admissions.admit_batch(two, [("x1", "s")], set()) == [True]
    assert admissions.admit_batch(two, [("x1", "s")], set()) == [True]
    assert admissions.admit_batch(two, [("x2", "s"), ("x3", "s")], set()) == [True, False]
    assert expected == [True, True, True, False, False, True, False, False, False, False]

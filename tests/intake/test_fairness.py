"""Round-robin over parked sources at each source's budget, on a driven clock."""

from __future__ import annotations

import pytest

from mediation_intake.fairness import RoundRobin
from mediation_intake.ratelimit import TokenBuckets
from tests.intake.test_ratelimit import Clock


def rr(rate: float = 1.0, burst: int = 2) -> tuple[RoundRobin, Clock]:
    clock = Clock()
    return RoundRobin(TokenBuckets(rate, burst, clock=clock)), clock


def test_sources_take_turns_one_form_each_within_their_budgets():
    r, _ = rr(burst=2)
    picked, wait = r.plan({"a": 100, "b": 3, "c": 1}, limit=50)
    assert picked == ["a", "b", "c", "a", "b"], "one per source per turn; c has one form only"
    assert wait == 0.0


def test_a_flooding_source_gets_its_rate_and_no_more_while_others_get_theirs():
    r, clock = rr(rate=2.0, burst=1)
    backlog = {"flood": 1000, "quiet": 4}
    taken: list[str] = []
    for _ in range(8):  # 4 seconds in steps of half a second
        picked, _ = r.plan(backlog, limit=100)
        for s in picked:
            backlog[s] -= 1
        taken += picked
        clock.t += 0.5
    assert taken.count("flood") == 8, "2/s for 4 s, the backlog does not buy more"
    assert taken.count("quiet") == 4 and backlog["quiet"] == 0
    assert taken[:2] == ["flood", "quiet"], "the quiet source's first form in the first turn"


def test_when_every_budget_is_spent_the_wait_is_until_the_next_token():
    r, clock = rr(rate=4.0, burst=1)
    assert r.plan({"a": 5}, limit=10) == (["a"], 0.0)
    picked, wait = r.plan({"a": 4}, limit=10)
    assert picked == [] and wait == pytest.approx(0.25)
    clock.t += 0.25
    assert r.plan({"a": 4}, limit=10) == (["a"], 0.0)


def test_the_rotation_resumes_after_the_last_source_served():
    r, clock = rr(rate=1.0, burst=1)
    assert r.plan({"a": 9, "b": 9, "c": 9}, limit=2) == (["a", "b"], 0.0)
    clock.t += 1
    assert r.plan({"a": 9, "b": 9, "c": 9}, limit=2) == (["c", "a"], 0.0), \
        "c is not skipped because a batch limit cut the turn short"
    assert r.plan({}, limit=5) == ([], 0.0)
    assert r.plan({"a": 0}, limit=5) == ([], 0.0)


def test_the_limit_caps_a_round():
    r, _ = rr(rate=1.0, burst=100)
    picked, _ = r.plan({"a": 100, "b": 100}, limit=7)
    assert picked == ["a", "b"] * 3 + ["a"]

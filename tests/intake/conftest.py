from __future__ import annotations

import pytest

from mediation_intake.service import build


@pytest.fixture
async def intake(settings_for):
    """The intake service on the real stack, in this test's namespace (HTTP via ASGI).

    Each sending system may post 3 forms, then its bucket refills at one token per
    1000 s: a slow machine cannot refill it during a test (refill is unit-tested with a
    driven clock in test_ratelimit.py)."""
    svc = build(settings_for("intake"), http_rate=1e-3, http_burst=3)
    await svc.start(http=False)
    await svc.wait_ready()
    yield svc
    await svc.stop()

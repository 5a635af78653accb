from __future__ import annotations

import pytest
from mediation_intake.service import build


@pytest.fixture
async def intake(settings_for):
    """The intake service on the real stack, in this test's namespace (HTTP via ASGI)."""
    svc = build(settings_for("intake"), http_rate=1.0, http_burst=3)
    await svc.start(http=False)
    await svc.wait_ready()
    yield svc
    await svc.stop()

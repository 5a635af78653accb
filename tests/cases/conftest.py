"""Fixtures of the cases tests: the real service on the real broker and database."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import httpx
import pytest

from mediation_cases.config import CasesConfig
from mediation_cases.service import build

from .support import Clock, TopicWatch

# Monday 23 November 2026, 09:00 in Paris
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)

TEST_CONFIG = CasesConfig(first_contact_working_days=2, urgent_first_contact_working_days=1,
                          escalation_working_days=2, inactivity_days=30,
                          unreachable_min_attempts=3, scan_interval=0.2)


@pytest.fixture
def clock() -> Clock:
    return Clock(START)


@pytest.fixture
async def cases_svc(settings_for, clock):
    svc = build(settings_for("cases"), clock=clock, config=TEST_CONFIG)
    await svc.start(http=False)
    await svc.wait_ready(timeout=90)
    yield svc
    await svc.stop()
    # the database is shared by every helper's tests: leave nothing behind
    conn = await asyncpg.connect(svc.settings.database_url)
    try:
        await conn.execute(f"DROP SCHEMA IF EXISTS {svc.settings.schema} CASCADE")
        await conn.execute(f"DROP SCHEMA IF EXISTS {svc.settings.keyvault_schema} CASCADE")
    finally:
        await conn.close()


@pytest.fixture
async def client(cases_svc):
    transport = httpx.ASGITransport(app=cases_svc.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://cases") as c:
        yield c


@pytest.fixture
async def watch(cases_svc):
    t = cases_svc.settings.topics
    w = TopicWatch(cases_svc.settings.kafka_bootstrap,
                   [t.cases, t.dysfunctions, t.referrals_answers,
                    t.dead_letters("cases.routing")])
    await w.start()
    yield w
    await w.stop()

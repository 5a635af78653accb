"""The five services as separate processes, in the test's own namespace."""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg
import pytest

from mediation_core.system import ServiceProcesses, namespaced_env
from mediation_schemas.topics import Topics


@dataclass
class System:
    procs: ServiceProcesses
    ns: str
    topics: Topics
    database_url: str
    kafka_bootstrap: str

    def schema(self, service: str) -> str:
        return f"{service}_{self.ns}"[:63]

    def url(self, service: str, path: str = "") -> str:
        return f"http://127.0.0.1:{self.procs.port(service)}{path}"

    async def count(self, service: str, table: str, where: str = "true") -> int:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetchval(f"SELECT count(*) FROM {self.schema(service)}.{table} WHERE {where}")
        finally:
            await conn.close()

    async def fetch(self, sql: str) -> list:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetch(sql)
        finally:
            await conn.close()


@pytest.fixture
def system(ns, stack_urls):
    env = namespaced_env(ns, stack_urls)
    procs = ServiceProcesses(env)
    procs.start_all()
    try:
        procs.wait_ready(timeout=180)
        yield System(procs=procs, ns=ns, topics=Topics(prefix=f"{ns}."),
                     database_url=stack_urls.database_url,
                     kafka_bootstrap=stack_urls.kafka_bootstrap)
    finally:
        procs.stop_all()

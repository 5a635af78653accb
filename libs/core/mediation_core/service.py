"""Runs one service: migrations, outbox relay, consumers, HTTP (API, health, metrics).

A service module builds a :class:`Service` and registers its consumers and HTTP routes;
``mediation serve NAME`` (or ``python -m mediation_NAME``) runs it until SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path

import asyncpg
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from . import db, telemetry
from .consumer import EventConsumer
from .outbox import Outbox, OutboxRelay, make_producer
from .settings import Settings

log = logging.getLogger(__name__)


async def ensure_topics(bootstrap: str, names: list[str], partitions: int = 3) -> None:
    """Create missing topics (production declares them in deploy/k8s/topics.yaml)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=15000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in dict.fromkeys(names) if n not in existing]
        if missing:
            try:
                await admin.create_topics([NewTopic(n, partitions, 1) for n in missing])
            except TopicAlreadyExistsError:
                pass
            except KafkaError as err:
                if "TopicAlreadyExists" not in repr(err):
                    raise
    finally:
        await admin.close()


class Service:
    def __init__(self, settings: Settings, *, migrations: Path | None = None,
                 title: str | None = None) -> None:
        self.settings = settings
        self.name = settings.service
        self.migrations = migrations
        self.wake = asyncio.Event()
        self.outbox = Outbox(producer_name=self.name)
        self.pool: asyncpg.Pool | None = None
        self.relay: OutboxRelay | None = None
        self.consumers: list[EventConsumer] = []
        self._consumer_specs: list[tuple[str, list[str], Callable[[EventConsumer], None]]] = []
        self.app = FastAPI(title=title or f"mediation {self.name}", version="1.0.0")
        self.on_startup: list[Callable[[Service], Awaitable[None]]] = []
        self.background: list[Callable[[Service], Awaitable[None]]] = []
        self.on_stop: list[Callable[[Service], Awaitable[None]]] = []
        self.produced_topics: list[str] = []
        self._tasks: list[asyncio.Task] = []
        self._stop = asyncio.Event()
        self.stopping = asyncio.Event()  # set when stop() begins: background loops end on it
        self._ready = False
        self._install_error_handlers()
        self._install_health_routes()

    # ------------------------------------------------------------------ declaration
    def consumer(self, name: str, topics: list[str],
                 register: Callable[[EventConsumer], None]) -> None:
        """Declare a consumer group member; ``register`` adds its handlers."""
        self._consumer_specs.append((name, topics, register))

    def _install_error_handlers(self) -> None:
        """422 bodies name each field and rule, never the value sent (FastAPI's default
        echoes the input, which may be personal data). A service may install its own."""

        @self.app.exception_handler(RequestValidationError)
        async def validation_failed(_request: Request, exc: RequestValidationError) -> JSONResponse:
            problems = []
            for e in exc.errors():
                loc = [str(p) for p in e.get("loc", ()) if p != "body"]
                msg = e.get("msg", "")
                if e.get("type") == "union_tag_invalid":  # pydantic quotes the tag sent
                    msg = f"unknown value; expected one of {e.get('ctx', {}).get('expected_tags')}"
                problems.append({"field": ".".join(loc) or "(body)", "code": e.get("type"),
                                 "message": msg})
            return JSONResponse(status_code=422,
                                content={"error": "validation_failed", "problems": problems})

    def _install_health_routes(self) -> None:
        @self.app.get("/healthz", include_in_schema=False)
        async def healthz() -> dict:
            return {"status": "ok", "service": self.name}

        @self.app.get("/readyz", include_in_schema=False)
        async def readyz(response: Response) -> dict:
            ok = self._ready and self.pool is not None
            if ok:
                try:
                    assert self.pool is not None
                    await self.pool.fetchval("SELECT 1")
                except Exception:
                    ok = False
            response.status_code = 200 if ok else 503
            return {"ready": ok, "service": self.name}

        @self.app.get("/metrics", include_in_schema=False)
        async def metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    # ------------------------------------------------------------------ lifecycle
    async def start(self, *, http: bool = True) -> None:
        s = self.settings
        telemetry.setup_tracing(self.name, otlp_endpoint=s.otlp_endpoint, trace_file=s.trace_file)
        await db.wait_for_db(s.database_url)
        self.pool = await db.create_pool(s.database_url, s.schema, application=self.name,
                                         max_size=10)
        migration_dirs = [self.migrations] if self.migrations else []
        await db.migrate(self.pool, s.schema, *migration_dirs)
        topics = [t for _, ts, _ in self._consumer_specs for t in ts] + self.produced_topics
        topics += [s.topics.dead_letters(f"{self.name}.{n}") for n, _, _ in self._consumer_specs]
        await _retry(lambda: ensure_topics(s.kafka_bootstrap, topics, s.partitions))
        producer = make_producer(s.kafka_bootstrap, f"{self.name}-relay")
        await _retry(producer.start)
        self.relay = OutboxRelay(self.pool, producer, service=self.name, wake=self.wake,
                                 batch_size=s.batch_size)
        for hook in self.on_startup:
            await hook(self)
        for name, topics_, register in self._consumer_specs:
            c = EventConsumer(
                name=f"{self.name}.{name}", service=self.name, pool=self.pool, outbox=self.outbox,
                bootstrap=s.kafka_bootstrap, group_id=f"{s.group_id}.{name}", topics=topics_,
                dlq_topic=s.topics.dead_letters(f"{self.name}.{name}"), dlq_key=s.dlq_key,
                batch_size=s.batch_size,
            )
            register(c)
            self.consumers.append(c)
        self._tasks.append(asyncio.create_task(self.relay.run(), name=f"{self.name}-relay"))
        for c in self.consumers:
            self._tasks.append(asyncio.create_task(c.run(), name=c.name))
        for bg in self.background:
            self._tasks.append(asyncio.ensure_future(bg(self)))
        if http and s.http_port:
            self._tasks.append(asyncio.create_task(self._serve_http(), name=f"{self.name}-http"))
        self._ready = True
        log.info("service started", extra={"fields": {"service": self.name,
                                                        "http_port": s.http_port}})

    async def _serve_http(self) -> None:
        import uvicorn

        config = uvicorn.Config(self.app, host=self.settings.http_host,
                                port=self.settings.http_port, log_config=None,
                                access_log=False, lifespan="off")
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[attr-defined]
        await server.serve()

    async def wait_ready(self, timeout: float = 60) -> None:
        """Until every consumer has partitions assigned."""
        await asyncio.wait_for(asyncio.gather(*(c.ready.wait() for c in self.consumers)), timeout)

    async def stop(self) -> None:
        self._ready = False
        self.stopping.set()
        for hook in self.on_stop:
            with contextlib.suppress(Exception):
                await hook(self)
        for c in self.consumers:
            c.stop()
        if self.relay:
            self.relay.stop()
        for t in self._tasks:
            if not t.done():
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                    await asyncio.wait_for(asyncio.shield(t), timeout=5)
            if not t.done():
                t.cancel()
                with contextlib.suppress(BaseException):
                    await t
        if self.relay:
            with contextlib.suppress(Exception):
                await self.relay.producer.stop()
        if self.pool:
            await self.pool.close()

    async def run_forever(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        await self.start()
        stop_wait = asyncio.create_task(self._stop.wait())
        await asyncio.wait([stop_wait, *self._tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in self._tasks:
            if t.done() and not t.cancelled() and t.exception():
                log.error("service task died", exc_info=t.exception(),
                          extra={"fields": {"task": t.get_name()}})
        await self.stop()


async def _retry(fn: Callable[[], Awaitable[object]], attempts: int = 60) -> None:
    delay = 0.2
    for i in range(attempts):
        try:
            await fn()
            return
        except (KafkaError, OSError):
            if i == attempts - 1:
                raise
            await asyncio.sleep(delay)
            delay = min(delay * 2, 3)

"""Alerts dispatch rate: DysfunctionReported consumed -> alert planned -> signed webhook
delivered to a local receiver (which verifies every signature), in alerts per second;
next to a bare httpx POST loop (same receiver, same concurrency, same signing) measured
in the same run."""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime

import asyncpg
import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mediation_alerts import service as alerts_service
from mediation_alerts.directory import Authority
from mediation_alerts.policy import DeliveryPolicy
from mediation_alerts.runtime import AlertsConfig
from mediation_alerts.store import upsert_authority
from mediation_alerts.verifier import sign, verify_webhook
from mediation_core.settings import from_env
from mediation_schemas.cases import DysfunctionReported
from mediation_schemas.envelope import encode, new_envelope
from mediation_schemas.topics import Topics

SECRET = "bench-secret-0123456789"
CONCURRENCY = 20


class _Receiver:
    def __init__(self) -> None:
        self.seen: set[str] = set()
        self.server: uvicorn.Server | None = None
        self.task: asyncio.Task | None = None
        self.port = 0
        self.target = 0
        self.done = asyncio.Event()

    async def hook(self, request: Request) -> Response:
        raw = await request.body()
        res = verify_webhook(secret=SECRET, headers=dict(request.headers), body=raw,
                             seen=self.seen)
        if not res.ok:
            return Response(status_code=401)
        if not res.duplicate and res.idempotency_key:
            self.seen.add(res.idempotency_key)
            if self.target and len(self.seen) >= self.target:
                self.done.set()
        return Response(status_code=200)

    async def start(self) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        app = Starlette(routes=[Route("/hook", self.hook, methods=["POST"])])
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                    log_config=None, access_log=False,
                                                    lifespan="off"))
        self.server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:  # noqa: ASYNC110 (uvicorn offers no event)
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        assert self.server and self.task
        self.server.should_exit = True
        await self.task

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


async def _baseline(url: str, n: int) -> float:
    import httpx

    sem = asyncio.Semaphore(CONCURRENCY)
    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=100)) as client:
        async def one(i: int) -> None:
            body = orjson.dumps({"message_id": str(uuid.uuid4()), "i": i, "category": "x"})
            ts = int(time.time())
            async with sem:
                r = await client.post(url, content=body, headers={
                    "X-Mediation-Timestamp": str(ts),
                    "X-Mediation-Signature": sign(SECRET, ts, body),
                    "Idempotency-Key": orjson.loads(body)["message_id"],
                    "Content-Type": "application/json"})
                r.raise_for_status()

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(n)))
        return n / (time.perf_counter() - t0)


async def run(urls, scale: float = 1.0) -> list[dict]:
    n = max(50, int(400 * scale))
    ns = f"bench_alerts_{uuid.uuid4().hex[:6]}"
    settings = from_env("alerts").with_(
        kafka_bootstrap=urls.kafka_bootstrap, database_url=urls.database_url, schema=ns,
        topics=Topics(prefix=f"{ns}."), group_id=f"{ns}.alerts", http_port=0,
        keyvault_schema=f"keyvault_{ns}")
    receiver = _Receiver()
    await receiver.start()
    policy = DeliveryPolicy(base_delay=0.05, max_delay=1.0, timeout=5.0, batch=100,
                            concurrency=CONCURRENCY, poll_interval=0.05)
    svc = alerts_service.build(settings, policy=policy,
                               config=AlertsConfig(public_url="http://bench.invalid"))
    try:
        baseline = await _baseline(receiver.url, n)
        receiver.seen.clear()
        receiver.target = n
        await svc.start(http=False)
        await svc.wait_ready()
        assert svc.pool is not None
        async with svc.pool.acquire() as conn:
            await upsert_authority(conn, "bench", Authority(
                authority_id="cpam", name="CPAM", channels=("webhook",),
                webhook_url=receiver.url, webhook_secret=SECRET))
        now = datetime.now(UTC)
        from aiokafka import AIOKafkaProducer

        producer = AIOKafkaProducer(bootstrap_servers=urls.kafka_bootstrap,
                                    enable_idempotence=True, acks="all", linger_ms=5)
        await producer.start()
        t0 = time.perf_counter()
        try:
            futs = []
            for i in range(n):
                p = DysfunctionReported(
                    dysfunction_id=uuid.uuid4(), structure="bench", category="rights_blockage",
                    concerned="CPAM", commune="Sauve", description=f"bench {i}",
                    observed_on=now, reported_at=now)
                env = new_envelope(p, producer="bench", correlation_id=f"bench-{i}",
                                   structure="bench")
                futs.append(await producer.send(settings.topics.dysfunctions, encode(env),
                                                key=str(p.dysfunction_id).encode()))
            await asyncio.gather(*futs)
        finally:
            await producer.stop()
        try:
            await asyncio.wait_for(receiver.done.wait(), 50)
        except TimeoutError:
            pass  # reported below as delivered/n
        elapsed = time.perf_counter() - t0
        delivered = len(receiver.seen)
        rate = delivered / elapsed
    finally:
        await svc.stop()
        await receiver.stop()
        conn = await asyncpg.connect(urls.database_url)
        try:
            await conn.execute(f"DROP SCHEMA IF EXISTS {ns} CASCADE")
        finally:
            await conn.close()
    return [{
        "name": "alerts: dysfunctions -> signed webhook deliveries (end to end)",
        "value": round(rate, 1), "unit": "alerts/s", "baseline": round(baseline, 1),
        "ratio": round(rate / baseline, 3) if baseline else None,
        "note": f"{delivered}/{n} delivered, each verified by the receiver; consume + plan in "
                f"the inbox transaction, claim (SKIP LOCKED), POST, record attempt + "
                f"AlertDispatched in the outbox; baseline: bare httpx POST loop, same "
                f"receiver, signing and concurrency ({CONCURRENCY})",
    }]


if __name__ == "__main__":
    from mediation_core import stack

    print(asyncio.run(run(stack.local_urls())))

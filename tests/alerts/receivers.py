"""Real local receivers for the alert tests: an HTTP webhook endpoint (starlette on uvicorn)
and an SMTP server (aiosmtpd), both scriptable to fail, hang or refuse, then recover.

Both dedup on the idempotency key the way an authority should (the webhook with the
shipped verifier), and count how many times each message was *processed*.
"""

from __future__ import annotations

import asyncio
import email
import socket
from collections import Counter

import orjson
import uvicorn
from aiosmtpd.controller import Controller
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mediation_alerts.verifier import verify_webhook
from tests.conftest import eventually


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WebhookReceiver:
    """``script``: modes for the next requests of messages not yet processed, in order:
    "500", "503", "timeout" (store, then answer too late), "ok". After the script: "ok".
    A copy of a processed message is answered 200 ("duplicate") and uses no mode."""

    def __init__(self, secret: str, *, port: int | None = None, script: list[str] | None = None,
                 hang: float = 1.5) -> None:
        self.secret = secret
        self.port = port or free_port()
        self.script = list(script or [])
        self.hang = hang
        self.processed: dict[str, dict] = {}
        self.process_count: Counter[str] = Counter()
        self.requests: list[tuple[str | None, str]] = []   # (key, what happened)
        self.rejected: list[str] = []
        self.raw_bodies: list[bytes] = []
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/alerts"

    async def _hook(self, request: Request) -> Response:
        raw = await request.body()
        self.raw_bodies.append(raw)
        res = verify_webhook(secret=self.secret, headers=dict(request.headers), body=raw,
                             seen=self.processed)
        if not res.ok:
            self.rejected.append(res.reason or "")
            self.requests.append((None, f"rejected:{res.reason}"))
            return Response(status_code=401)
        key = res.idempotency_key
        if res.duplicate:  # answered without using a scripted fault: the script stays in order
            self.requests.append((key, "duplicate"))
            return Response(status_code=200)
        mode = self.script.pop(0) if self.script else "ok"
        if mode in ("500", "503"):
            self.requests.append((key, mode))
            return Response(status_code=int(mode))
        self.processed[key] = orjson.loads(raw)
        self.process_count[key] += 1
        self.requests.append((key, mode))
        if mode == "timeout":
            await asyncio.sleep(self.hang)
        return Response(status_code=200)

    async def start(self) -> None:
        app = Starlette(routes=[Route("/hooks/alerts", self._hook, methods=["POST"])])
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None,
                                access_log=False, lifespan="off", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._task = asyncio.create_task(self._server.serve())
        task, server = self._task, self._server

        def up() -> bool:
            if task.done():
                task.result()  # it could not start: raise why
            return server.started

        await eventually(up, 30, what="webhook receiver listening")

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(self._task, 10)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()


class _SmtpHandler:
    def __init__(self, script: list[str], hang: float) -> None:
        self.script = script
        self.hang = hang
        self.processed: dict[str, email.message.Message] = {}
        self.process_count: Counter[str] = Counter()
        self.received: list[str] = []

    async def handle_DATA(self, server, session, envelope) -> str:  # noqa: N802
        mode = self.script.pop(0) if self.script else "ok"
        if mode == "451":
            self.received.append("451")
            return "451 4.3.0 Temporary failure, try again later"
        msg = email.message_from_bytes(envelope.content)
        key = msg["X-Mediation-Idempotency-Key"]
        self.received.append(key)
        if key not in self.processed:  # dedup on the idempotency key (the Message-ID)
            self.processed[key] = msg
            self.process_count[key] += 1
        if mode == "timeout":
            await asyncio.sleep(self.hang)
        return "250 2.0.0 OK"


class SmtpReceiver:
    def __init__(self, *, port: int | None = None, script: list[str] | None = None,
                 hang: float = 1.5) -> None:
        self.port = port or free_port()
        self.handler = _SmtpHandler(list(script or []), hang)
        self._ctl: Controller | None = None

    @property
    def processed(self) -> dict[str, email.message.Message]:
        return self.handler.processed

    def body(self, key: str) -> str:
        msg = self.processed[key]
        return msg.get_payload(decode=True).decode("utf-8")

    async def start(self) -> None:
        self._ctl = Controller(self.handler, hostname="127.0.0.1", port=self.port)
        await asyncio.to_thread(self._ctl.start)

    async def stop(self) -> None:
        if self._ctl is not None:
            await asyncio.to_thread(self._ctl.stop)

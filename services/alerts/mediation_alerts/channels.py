"""Delivery channels: webhook (signed HTTP POST) and e-mail (SMTP). Kafka delivery is an
outbox write and lives in the dispatcher's transaction.

Each ``send`` returns an :class:`Outcome`; it never raises for a delivery fault and never
puts the message content in an error detail.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate
from urllib.parse import urlsplit

import httpx

from .verifier import IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

RETRYABLE_HTTP = {408, 425, 429}


@dataclass(frozen=True)
class Outcome:
    ok: bool
    retryable: bool = False
    detail: str | None = None       # http_500, timeout, connection_refused, smtp_451...
    http_status: int | None = None


def endpoint_of_url(url: str) -> str:
    """Breaker key and attempt label: scheme://host:port/path, never a query (may hold secrets)."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname}:{p.port or (443 if p.scheme == 'https' else 80)}{p.path}"


class WebhookChannel:
    def __init__(self, timeout: float, wall: Callable[[], float] = time.time,
                 max_connections: int = 100) -> None:
        self.timeout = timeout
        self.wall = wall  # signing time is transport time: the receiver checks it against its clock
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout), follow_redirects=False,
            limits=httpx.Limits(max_connections=max_connections, max_keepalive_connections=50))

    async def close(self) -> None:
        await self.client.aclose()

    async def send(self, *, url: str, secret: str, message_id: str, body: bytes) -> Outcome:
        ts = int(self.wall())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            TIMESTAMP_HEADER: str(ts),
            SIGNATURE_HEADER: sign(secret, ts, body),
            IDEMPOTENCY_HEADER: message_id,
            "User-Agent": "mediation-alerts/1",
        }
        try:
            resp = await self.client.post(url, content=body, headers=headers)
        except httpx.TimeoutException:
            return Outcome(False, True, "timeout")
        except httpx.ConnectError:
            return Outcome(False, True, "connection_refused")
        except httpx.TransportError as err:
            return Outcome(False, True, f"transport_{type(err).__name__}")
        code = resp.status_code
        if 200 <= code < 300:
            return Outcome(True, False, f"http_{code}", code)
        retry = code >= 500 or code in RETRYABLE_HTTP
        return Outcome(False, retry, f"http_{code}", code)


@dataclass(frozen=True)
class SmtpConfig:
    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "veille@mediation.invalid"
    starttls: bool = False
    username: str | None = None
    password: str | None = None

    @property
    def endpoint(self) -> str:
        return f"smtp://{self.host}:{self.port}"


class EmailChannel:
    def __init__(self, config: SmtpConfig, timeout: float) -> None:
        self.config = config
        self.timeout = timeout

    def build(self, *, to: str, subject: str, text: str, message_id: str) -> EmailMessage:
        msg = EmailMessage()
        msg["From"] = self.config.sender
        msg["To"] = to
        msg["Subject"] = subject
        msg["Date"] = formatdate(localtime=False)
        msg["Message-ID"] = f"<{message_id}@alerts.mediation>"
        msg["X-Mediation-Idempotency-Key"] = message_id
        msg.set_content(text, charset="utf-8")
        return msg

    def _send_sync(self, msg: EmailMessage) -> None:
        c = self.config
        with smtplib.SMTP(c.host, c.port, timeout=self.timeout) as s:
            if c.starttls:
                s.starttls()
            if c.username:
                s.login(c.username, c.password or "")
            s.send_message(msg)

    async def send(self, msg: EmailMessage) -> Outcome:
        try:
            await asyncio.wait_for(asyncio.to_thread(self._send_sync, msg), self.timeout * 3)
        except smtplib.SMTPRecipientsRefused as err:
            codes = [v[0] for v in err.recipients.values()]
            code = max(codes) if codes else 550
            return Outcome(False, code < 500, f"smtp_{code}")
        except smtplib.SMTPResponseException as err:
            return Outcome(False, err.smtp_code < 500, f"smtp_{err.smtp_code}")
        except TimeoutError:
            return Outcome(False, True, "timeout")
        except ConnectionRefusedError:
            return Outcome(False, True, "connection_refused")
        except smtplib.SMTPServerDisconnected:
            return Outcome(False, True, "smtp_disconnected")
        except (smtplib.SMTPException, OSError) as err:
            return Outcome(False, True, f"smtp_{type(err).__name__}")
        return Outcome(True, False, "smtp_250")

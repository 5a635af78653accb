"""Fixtures for the alerts tests: the service on the real stack, its API, event helpers."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from mediation_alerts import service as alerts_service
from mediation_alerts.channels import SmtpConfig
from mediation_alerts.clock import OffsetClock
from mediation_alerts.directory import default_authorities
from mediation_alerts.policy import DeliveryPolicy
from mediation_alerts.runtime import AlertsConfig
from mediation_core.auth import issue_token
from mediation_schemas.cases import DysfunctionReported
from mediation_schemas.envelope import encode, new_envelope
from tests.helpers import produce

from .receivers import SmtpReceiver, WebhookReceiver

STRUCTURE = "cpts-ecm"
SECRET = "s3cret-for-the-authorities-hooks"  # the webhook secret of the test authorities

FAST = DeliveryPolicy(max_attempts=8, base_delay=0.05, max_delay=0.4, timeout=0.6,
                      breaker_threshold=3, breaker_cooldown=0.3, lease=30, batch=50,
                      concurrency=20, poll_interval=0.05)


def coordinator_headers(structure: str = STRUCTURE) -> dict:
    return {"Authorization": "Bearer " + issue_token(sub="coord-1", role="coordinator",
                                                     structure=structure)}


def authority_headers(authority: str, structure: str | None = STRUCTURE) -> dict:
    return {"Authorization": "Bearer " + issue_token(sub=f"agent-{authority}", role="authority",
                                                     authority=authority, structure=structure)}


def dysfunction(category: str, *, urgency: str = "normal", commune: str | None = "Lasalle",
                structure: str = STRUCTURE, description: str = "Refus de rendez-vous opposé "
                "à une personne bénéficiaire de la CSS, motif invoqué : tiers payant.",
                consent: bool = False, sealed: dict | None = None,
                concerned: str = "Cabinet médical du centre") -> DysfunctionReported:
    now = datetime.now(UTC)
    return DysfunctionReported(
        dysfunction_id=uuid.uuid4(), case_id=uuid.uuid4(), structure=structure,
        area="vallee-borgne", category=category, urgency=urgency, concerned=concerned,
        commune=commune, description=description, observed_on=now - timedelta(days=2),
        reported_at=now, person_consents_to_be_named=consent, sealed_identity=sealed)


async def report(svc, items: list[DysfunctionReported]) -> None:
    s = svc.settings
    await produce(s.kafka_bootstrap, s.topics.dysfunctions, [
        (str(p.dysfunction_id).encode(),
         encode(new_envelope(p, producer="cases", correlation_id=f"case-{p.case_id}",
                             structure=p.structure)))
        for p in items])


@pytest.fixture
def clock() -> OffsetClock:
    return OffsetClock()


@pytest.fixture
async def make_alerts(settings_for, clock):
    started = []

    async def make(*, policy: DeliveryPolicy = FAST, smtp_port: int = 1,
                   config_file: str | None = None):
        cfg = AlertsConfig(smtp=SmtpConfig(host="127.0.0.1", port=smtp_port),
                           public_url="http://alerts.test", config_file=config_file)
        svc = alerts_service.build(settings_for("alerts"), clock=clock, policy=policy, config=cfg)
        await svc.start(http=False)
        started.append(svc)
        await svc.wait_ready()
        return svc

    yield make
    for svc in started:
        await svc.stop()
        [run] = [t for t in svc._tasks if t.get_coro().__qualname__ == "Dispatcher.run"]
        assert run.done() and not run.cancelled(), "the dispatcher ended by itself (on_stop)"


@pytest.fixture
async def hook():
    """A started webhook receiver that verifies with ``SECRET`` (request it before
    ``make_alerts``: the service stops first)."""
    h = WebhookReceiver(SECRET)
    await h.start()
    yield h
    await h.stop()


@pytest.fixture
async def smtp():
    """A started SMTP receiver (pass ``smtp.port`` to ``make_alerts``)."""
    m = SmtpReceiver()
    await m.start()
    yield m
    await m.stop()


async def count_is(pool, sql: str, n: int) -> bool:
    return await pool.fetchval(sql) == n


def api(svc) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=svc.app),
                             base_url="http://alerts.test")


async def configure(svc, authority_id: str, *, name: str | None = None,
                    channels: list[str], webhook_url: str | None = None,
                    webhook_secret: str | None = None, email: str | None = None,
                    ack: dict | None = None, structure: str = STRUCTURE) -> None:
    default = default_authorities().get(authority_id)
    body = {"name": name or (default.name if default else authority_id), "channels": channels, "webhook_url": webhook_url,
            "webhook_secret": webhook_secret, "email": email, "ack": ack or {}}
    async with api(svc) as c:
        r = await c.put(f"/alerts/structures/{structure}/authorities/{authority_id}", json=body,
                        headers=coordinator_headers(structure))
    assert r.status_code == 200, r.text

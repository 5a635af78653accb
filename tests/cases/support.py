"""Helpers of the cases tests: a drivable clock, tokens, routed referrals, topic watching."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, date, datetime

import orjson
from aiokafka import AIOKafkaConsumer

from mediation_core.auth import issue_token
from mediation_core.sealing import blind_index, seal
from mediation_schemas.envelope import encode, new_envelope
from mediation_schemas.referrals import (
    PlaceRef,
    ReferralCore,
    ReferralRouted,
    ReferralUnroutable,
    RoutingDecision,
)
from tests.helpers import produce

STRUCTURE = "cpts-ecm"
AREA_A = "vallee-borgne"
AREA_B = "sauve"


class Clock:
    """The service's clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def set(self, now: datetime) -> None:
        self.now = now


def auth(role: str, sub: str, structure: str | None = STRUCTURE,
         area: str | None = AREA_A) -> dict[str, str]:
    return {"Authorization": "Bearer " + issue_token(sub=sub, role=role, structure=structure,
                                                      area=area)}


MEDIATOR_A = auth("mediator", "med-a", area=AREA_A)
MEDIATOR_A2 = auth("mediator", "med-a2", area=AREA_A)
MEDIATOR_B = auth("mediator", "med-b", area=AREA_B)
COORDINATOR = auth("coordinator", "coord-1", area=None)
OTHER_STRUCTURE_MEDIATOR = auth("mediator", "med-x", structure="qpv-marseille", area=AREA_A)
OTHER_STRUCTURE_COORDINATOR = auth("coordinator", "coord-x", structure="qpv-marseille",
                                   area=None)
AUTHORITY = auth("authority", "ars-oc", structure=None, area=None)


def person(family: str = "Durand", given: str = "Lucie", birth: str = "1958-03-14",
           phone: str = "0611223344") -> dict:
    return {"family_name": family, "given_name": given, "birth_date": birth, "phone": phone,
            "address": "3 chemin des Mûriers", "email": None}


async def routed_referral(svc, *, who: dict, area: str = AREA_A, mediator: str = "med-a",
                          structure: str = STRUCTURE, consent: bool = True,
                          referral_id: uuid.UUID | None = None, revision: int = 1,
                          source_system: str = "msp-lasalle", urgency: str = "normal",
                          motives: list[dict] | None = None, comment: str | None = None,
                          publish: bool = True) -> ReferralRouted:
    """Build a ReferralRouted like routing would (sealed block as intake seals it), publish it."""
    s = svc.settings
    person_ref = blind_index(s.blind_index_key, who["family_name"], who["given_name"],
                             date.fromisoformat(who["birth_date"]))
    vault = svc.deps.keyvault
    async with svc.pool.acquire() as conn, conn.transaction():
        key_id, dek = await vault.key_for_person(conn, person_ref)
    block = seal(dek, key_id, {"person": who, "referrer": {"name": "Dr Referrer"},
                               "comment": comment})
    rid = referral_id or uuid.uuid4()
    core = ReferralCore(
        referral_id=rid, revision=revision, source_system=source_system,
        source_reference=f"ref-{rid.hex[:8]}", received_at=datetime(2026, 11, 2, tzinfo=UTC),
        referral_date=date(2026, 11, 2), person_ref=person_ref, sealed=block,
        commune="Lasalle", postcode="30460",
        motives=motives or [{"code": "access_to_rights", "right": "css"}], urgency=urgency,
        consent_share_with_referrer=consent)
    payload = ReferralRouted(
        referral=core, structure=structure, area=area, mediator_id=mediator,
        place=PlaceRef(kind="commune", code="30140", name="Lasalle"),
        decision=RoutingDecision(rule="exact_name", territory_version=1))
    if publish:
        await publish_routing(svc, payload, structure=structure)
    return payload


async def as_one_batch(svc, payloads: list, *, clock, config):
    """Stop ``svc``, publish ``payloads`` and start a new instance with the same settings
    (same consumer group): with one partition, its first batch holds them all."""
    from mediation_cases.service import build

    await svc.stop()
    for p in payloads:
        await publish_routing(svc, p, structure=p.structure)
    new = build(svc.settings, clock=clock, config=config)
    await new.start(http=False)
    return new


async def publish_routing(svc, payload, *, structure: str | None = None) -> None:
    rid = payload.referral.referral_id
    env = new_envelope(payload, producer="routing", correlation_id=str(rid),
                       structure=structure)
    await produce(svc.settings.kafka_bootstrap, svc.settings.topics.routing_decisions,
                  [(str(rid).encode(), encode(env))])


def unroutable(routed: ReferralRouted) -> ReferralUnroutable:
    return ReferralUnroutable(referral=routed.referral, reason_code="outside_territory",
                              reason="Commune hors du territoire de la CPTS")


class TopicWatch:
    """Keeps one consumer on some topics and accumulates every record (value decoded)."""

    def __init__(self, bootstrap: str, topics: list[str]) -> None:
        self.bootstrap = bootstrap
        self.topics = topics
        self.records: list = []
        self._task: asyncio.Task | None = None
        self._consumer: AIOKafkaConsumer | None = None

    async def start(self) -> TopicWatch:
        self._consumer = AIOKafkaConsumer(
            *self.topics, bootstrap_servers=self.bootstrap, group_id=None,
            auto_offset_reset="earliest", enable_auto_commit=False,
            isolation_level="read_committed", metadata_max_age_ms=1000)
        await self._consumer.start()
        self._task = asyncio.create_task(self._run())
        return self

    async def _run(self) -> None:
        assert self._consumer is not None
        while True:
            batch = await self._consumer.getmany(timeout_ms=200)
            for recs in batch.values():
                self.records.extend(recs)

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except BaseException:
                pass
        if self._consumer:
            await self._consumer.stop()

    def events(self, event_type: str | None = None, topic: str | None = None) -> list[dict]:
        out = []
        for r in self.records:
            if topic and r.topic != topic:
                continue
            v = orjson.loads(r.value)
            if event_type is None or v.get("type") == event_type:
                out.append({**v, "_key": r.key.decode() if r.key else None, "_topic": r.topic})
        return out

    def raw(self) -> list[bytes]:
        return [bytes(r.value or b"") + b" " + bytes(r.key or b"") for r in self.records]

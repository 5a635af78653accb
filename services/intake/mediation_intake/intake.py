"""The one use case behind both ways in (Kafka and HTTP): take a referral form.

``take`` runs inside the caller's transaction (the consumer's batch transaction, or the
HTTP request's): it validates, deduplicates, seals, writes intake's state and writes the
events to the outbox, so that the state change and its events commit together.

- Referral id: uuid5 of (source_system, source_reference), the same on every re-send.
- Same form again (same normalised content): a duplicate, no event.
- Same source and reference, different content: a correction, revision + 1,
  ``ReferralAccepted(is_correction=True)``; downstream updates, never a second case.
- Invalid: ``ReferralRejected`` on the intake topic (keyed by referral id, or the sender's
  reference) and on the answers topic keyed by the source system, so the sender reads its
  own answers.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import uuid
from collections import Counter as Tally
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from zoneinfo import ZoneInfo

import asyncpg
import orjson
from opentelemetry.trace import Status, StatusCode
from prometheus_client import Counter

from mediation_core import sealing, telemetry
from mediation_core.consumer import Batch, Write
from mediation_schemas.common import MotiveItem, Problem
from mediation_schemas.envelope import Payload
from mediation_schemas.received import ReferralReceived
from mediation_schemas.referrals import ReferralAccepted, ReferralCore, ReferralRejected
from mediation_schemas.topics import Topics

from .validation import MAX_PAYLOAD_BYTES, Invalid, Valid, safe_ids, validate

log = logging.getLogger(__name__)
REFERRALS = Counter(
    "mediation_intake_referrals_total",
    "Referral forms taken, by sending system (a registered system id, never a person), "
    "channel and outcome; the per-source rate shows a flooding sender",
    ["source_system", "channel", "outcome"])
PARIS = ZoneInfo("Europe/Paris")
MAX_SOURCE_LABELS = 200
_source_labels: set[str] = set()


def source_label(src: str) -> str:
    """The metric label for a sender. On Kafka the id comes from an unauthenticated payload:
    past MAX_SOURCE_LABELS distinct ids, new ones count under "other", so a buggy or hostile
    sender cannot blow up the metric's cardinality."""
    if src in _source_labels:
        return src
    if len(_source_labels) < MAX_SOURCE_LABELS:
        _source_labels.add(src)
        return src
    return "other"
REFERRAL_NS = uuid.UUID("6f1c1b1e-3c1a-5a43-9a57-1d2f0c0a4e11")

Emit = Callable[[Payload, str, str], Awaitable[Any]]  # (payload, topic, key)
Clock = Callable[[], datetime]


def referral_id(source_system: str, source_reference: str) -> uuid.UUID:
    """Deterministic: the same form re-sent keeps its id."""
    return uuid.uuid5(REFERRAL_NS, f"{source_system}\x1f{source_reference}")


@dataclass
class Outcome:
    status: Literal["accepted", "correction", "duplicate", "rejected"]
    referral_id: uuid.UUID | None = None
    revision: int | None = None
    problems: list[Problem] = field(default_factory=list)


@dataclass
class _Ready:
    """One form of a batch, validated and looked up in advance (see Intake.prepare)."""

    now: datetime
    result: Valid | Invalid
    row: asyncpg.Record | None = None          # its referral row (locked), valid forms only
    key: tuple[str, bytes] | None = None        # the person's live key, when one was needed


PREPARED = "intake.received"


def personal_block(r: ReferralReceived) -> dict[str, Any]:
    """Everything that is sealed: identity, contact, address, free texts, availability."""
    p, ref = r.person, r.referrer
    return {
        "person": {
            "family_name": p.family_name, "given_name": p.given_name,
            "birth_date": p.birth_date.isoformat(), "sex": p.sex.value if p.sex else None,
            "address": p.address, "commune": p.commune, "postcode": p.postcode,
            "phone": p.phone, "email": p.email,
        },
        "referrer": {
            "name": ref.name, "structure_name": ref.structure_name, "phone": ref.phone,
            "email": ref.email, "rpps": ref.rpps, "finess": ref.finess,
        },
        "motive_texts": [{"index": i, "code": m.code.value, "text": m.text}
                         for i, m in enumerate(r.motives) if m.text],
        "availability": [s.model_dump(mode="json") for s in r.availability],
        "availability_note": r.availability_note,
        "comment": r.comment,
    }


class Intake:
    def __init__(self, *, topics: Topics, vault: sealing.KeyVault, blind_index_key: bytes,
                 clock: Clock, max_bytes: int = MAX_PAYLOAD_BYTES) -> None:
        self.topics = topics
        self.vault = vault
        self.blind_key = blind_index_key
        self.clock = clock
        self.max_bytes = max_bytes
        self._tracer = telemetry.tracer("mediation.intake")

    async def prepare(self, batch: Batch, forms: list[tuple[str, Any, int | None]]) -> None:
        """Forms of a Kafka batch, ``(event_id, raw, size)``: validated, their referral rows
        upserted and locked (in id order) and their people's keys fetched or created, in
        three round trips for the batch. Forms sharing a referral id or a person with
        another of the batch are left to the one-by-one path."""
        now = self.clock()
        ready = {eid: _Ready(now, self._validate(raw, size, now, None)) for eid, raw, size in forms}
        valid = {eid: r for eid, r in ready.items() if isinstance(r.result, Valid)}
        ident = {eid: (referral_id(r.result.referral.source_system,  # type: ignore[union-attr]
                                   r.result.referral.source_reference),  # type: ignore[union-attr]
                       self._person_ref(r.result.referral))  # type: ignore[union-attr]
                 for eid, r in valid.items()}
        per_rid = Tally(rid for rid, _ in ident.values())
        per_person = Tally(pref for _, pref in ident.values())
        for eid, (rid, pref) in ident.items():
            if per_rid[rid] > 1 or per_person[pref] > 1:
                del ready[eid], valid[eid]
        if valid:
            order = sorted(valid, key=lambda e: ident[e][0])
            forms_by_id = {ident[e][0]: valid[e].result.referral for e in order}  # type: ignore[union-attr]
            rows = {r["referral_id"]: r for r in await batch.conn.fetch(
                "INSERT INTO referrals(referral_id, source_system, source_reference, received_at,"
                " updated_at) SELECT id, src, ref, $4, $4 FROM unnest($1::uuid[], $2::text[],"
                " $3::text[]) AS f(id, src, ref) ON CONFLICT (referral_id) DO UPDATE"
                " SET referral_id = EXCLUDED.referral_id"
                " RETURNING referral_id, revision, content_hash, received_at",
                list(forms_by_id), [f.source_system for f in forms_by_id.values()],
                [f.source_reference for f in forms_by_id.values()], now)}
            need_key = []
            for eid in order:
                r = valid[eid]
                r.row = rows[ident[eid][0]]
                if not self._is_duplicate(r.row, self._content_hash(r.result.referral)):  # type: ignore[union-attr]
                    need_key.append(ident[eid][1])
            keys = await self.vault.live_keys_for(batch.conn, need_key) if need_key else {}
            for eid in order:
                valid[eid].key = keys.get(ident[eid][1])
        batch.data[PREPARED] = ready

    async def take(self, conn: asyncpg.Connection, emit: Emit, raw: Any, *, size: int | None,
                   channel: str, sender: str | None = None, batch: Batch | None = None,
                   event_id: str | None = None) -> Outcome:
        """Take one form. In a prepared batch (Kafka), ``event_id`` finds what
        :meth:`prepare` did for it and its writes are deferred to the batch's end."""
        with self._tracer.start_as_current_span("intake take referral") as span:
            span.set_attribute("mediation.channel", channel)
            ready = None
            if batch is not None:
                prepared = batch.data.get(PREPARED)
                ready = prepared.get(event_id) if isinstance(prepared, dict) else None
                if ready is None:
                    await batch.flush()  # the one-by-one path reads what the batch wrote
            if ready is not None:
                assert batch is not None
                outcome = await self._decided(conn, emit, ready.result, ready.now, channel,
                                              sender, ready=ready, write=batch.defer)
            else:
                outcome = await self._take(conn, emit, raw, size=size, channel=channel,
                                           sender=sender)
            src = sender or safe_ids(raw)[0] or "unknown"
            REFERRALS.labels(source_label(src), channel, outcome.status).inc()
            span.set_attribute("mediation.outcome", outcome.status)
            if outcome.referral_id:
                span.set_attribute("mediation.referral_id", str(outcome.referral_id))
            if outcome.problems:
                span.set_attribute("mediation.problem_codes",
                                   sorted({p.code for p in outcome.problems}))
                span.set_status(Status(StatusCode.OK))
            return outcome

    def _validate(self, raw: Any, size: int | None, now: datetime,
                  sender: str | None) -> Valid | Invalid:
        if sender is not None and isinstance(raw, dict) and not raw.get("source_system"):
            raw = {**raw, "source_system": sender}
        result = validate(raw, today=now.astimezone(PARIS).date(), size=size,
                          max_bytes=self.max_bytes)
        if sender is not None and not isinstance(result, Invalid) \
                and result.referral.source_system != sender:
            result = Invalid([Problem(field="source_system", code="source_system_mismatch",
                                      message="le système émetteur de la fiche n'est pas celui "
                                      "du jeton d'accès")], *safe_ids(raw))
        return result

    async def _take(self, conn: asyncpg.Connection, emit: Emit, raw: Any, *, size: int | None,
                    channel: str, sender: str | None) -> Outcome:
        now = self.clock()
        result = self._validate(raw, size, now, sender)
        return await self._decided(conn, emit, result, now, channel, sender)

    async def _decided(self, conn: asyncpg.Connection, emit: Emit, result: Valid | Invalid,
                       now: datetime, channel: str, sender: str | None, *,
                       ready: _Ready | None = None,
                       write: Write | None = None) -> Outcome:
        write = write or conn.execute
        if isinstance(result, Invalid):
            return await self._reject(conn, emit, result, now, channel, sender, write)
        return await self._accept(conn, emit, result.referral, now, ready, write)

    def _content_hash(self, r: ReferralReceived) -> str:
        return hmac.new(self.blind_key, b"content|" + orjson.dumps(
            r.model_dump(mode="json"), option=orjson.OPT_SORT_KEYS), hashlib.sha256).hexdigest()

    def _person_ref(self, r: ReferralReceived) -> str:
        p = r.person
        return sealing.blind_index(self.blind_key, p.family_name, p.given_name, p.birth_date)

    @staticmethod
    def _is_duplicate(row: asyncpg.Record, content_hash: str) -> bool:
        return row["revision"] > 0 and row["content_hash"] == content_hash

    async def _reject(self, conn: asyncpg.Connection, emit: Emit, inv: Invalid, now: datetime,
                      channel: str, sender: str | None,
                      write: Write) -> Outcome:
        src, ref = inv.source_system, inv.source_reference
        if sender is not None:
            src = sender
        rid = referral_id(src, ref) if src and ref else None
        event = ReferralRejected(referral_id=rid, source_system=src, source_reference=ref,
                                 problems=inv.problems)
        answer_key = src or "unknown"
        await emit(event, self.topics.referrals_intake, str(rid) if rid else (ref or answer_key))
        await emit(event, self.topics.referrals_answers, answer_key)
        codes = [p.code for p in inv.problems]
        await write(
            "INSERT INTO rejections(referral_id, source_system, source_reference, channel, codes,"
            " rejected_at) VALUES ($1,$2,$3,$4,$5,$6)", rid, src, ref, channel, codes, now)
        log.info("referral rejected", extra={"fields": {
            "referral_id": str(rid) if rid else None, "source_system": src, "channel": channel,
            "codes": sorted(set(codes))}})
        return Outcome("rejected", rid, None, inv.problems)

    async def _accept(self, conn: asyncpg.Connection, emit: Emit, r: ReferralReceived,
                      now: datetime, ready: _Ready | None,
                      write: Write) -> Outcome:
        rid = referral_id(r.source_system, r.source_reference)
        content_hash = self._content_hash(r)
        row = ready.row if ready is not None else None
        if row is None:
            # insert a placeholder (revision 0) or lock the existing row, in one round trip:
            # two concurrent copies of the same form serialise on this row lock
            row = await conn.fetchrow(
                "INSERT INTO referrals(referral_id, source_system, source_reference, received_at,"
                " updated_at) VALUES ($1,$2,$3,$4,$4) ON CONFLICT (referral_id) DO UPDATE"
                " SET referral_id = EXCLUDED.referral_id"
                " RETURNING revision, content_hash, received_at",
                rid, r.source_system, r.source_reference, now)
        if self._is_duplicate(row, content_hash):
            await write("UPDATE referrals SET duplicates = duplicates + 1 "
                        "WHERE referral_id = $1", rid)
            log.info("duplicate referral ignored", extra={"fields": {
                "referral_id": str(rid), "source_system": r.source_system}})
            return Outcome("duplicate", rid, row["revision"])
        revision = row["revision"] + 1
        p = r.person
        person_ref = self._person_ref(r)
        if ready is not None and ready.key is not None:
            key_id, dek = ready.key
        else:
            key_id, dek = await self.vault.key_for_person(conn, person_ref)
        sealed = sealing.seal(dek, key_id, personal_block(r))
        await write(
            "UPDATE referrals SET revision=$2, content_hash=$3, person_ref=$4, key_id=$5,"
            " sealed=$6, commune=$7, postcode=$8, updated_at=$9, erased_at=NULL"
            " WHERE referral_id=$1",
            rid, revision, content_hash, person_ref, key_id,
            orjson.dumps(sealed.model_dump(mode="json")).decode(), p.commune, p.postcode, now)
        core = ReferralCore(
            referral_id=rid, revision=revision, source_system=r.source_system,
            source_reference=r.source_reference, received_at=row["received_at"],
            referral_date=r.referral_date or now.astimezone(PARIS).date(),
            person_ref=person_ref, sealed=sealed, commune=p.commune, postcode=p.postcode,
            motives=[MotiveItem(code=m.code, right=m.right, screening=m.screening)
                     for m in r.motives],
            urgency=r.urgency, meeting_modes=list(r.meeting_modes),
            interpreter_needed=p.interpreter_needed, language=p.language,
            consent_share_with_referrer=p.consent_share_with_referrer,
            referrer_profession=r.referrer.profession.value,
            referrer_structure_kind=r.referrer.structure_kind.value,
        )
        await emit(ReferralAccepted(referral=core, is_correction=revision > 1),
                   self.topics.referrals_intake, str(rid))
        status: Literal["accepted", "correction"] = "correction" if revision > 1 else "accepted"
        log.info("referral accepted", extra={"fields": {
            "referral_id": str(rid), "revision": revision, "source_system": r.source_system,
            "status": status}})
        return Outcome(status, rid, revision)

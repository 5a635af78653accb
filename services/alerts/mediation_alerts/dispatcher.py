"""The background dispatcher: delivers due dispatches, and escalates unacknowledged alerts.

Delivery is at-least-once with an idempotency key, made exactly-once by the receiver:

1. *claim* (short transaction): due pending dispatches are locked with
   ``FOR UPDATE SKIP LOCKED`` (several dispatchers may run), their attempt counter is
   incremented and their next attempt pushed to ``now + lease``;
2. *deliver* (no transaction held): webhook or e-mail, each endpoint behind its breaker;
3. *record* (one transaction per dispatch): the attempt row, the dispatch state, and the
   lifecycle event in the outbox (``AlertDispatched`` or ``AlertDeliveryFailed``).
   A Kafka dispatch is delivered here, by writing ``AlertOutbound`` to the outbox.

A crash between 2 and 3 leaves the dispatch pending: once the lease expires it is sent
again, with the same ``Idempotency-Key`` (the alert id), and the receiver drops the copy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
from prometheus_client import Counter, Histogram

from mediation_core import telemetry
from mediation_core.errors import is_transient
from mediation_core.sealing import KeyDestroyed
from mediation_schemas.alerts import AlertDispatched, AlertEscalated, AlertOutbound
from mediation_schemas.envelope import Envelope, new_envelope

from . import content, store
from .channels import EmailChannel, Outcome, WebhookChannel, endpoint_of_url
from .deadlines import ack_due
from .directory import COORDINATOR, Authority
from .links import make_token
from .policy import CircuitBreaker, backoff_delay
from .runtime import Runtime

log = logging.getLogger(__name__)

DELIVERIES = Counter("mediation_alert_deliveries_total",
                     "Alert delivery attempts, by channel and outcome",
                     ["service", "channel", "outcome"])
DELIVERY_SECONDS = Histogram("mediation_alert_delivery_seconds",
                             "Time of one delivery attempt", ["service", "channel"],
                             buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30))
ESCALATIONS = Counter("mediation_alert_escalations_total", "Alerts escalated, by target kind",
                      ["service", "target"])

@dataclass
class _Result:
    d: dict
    a: dict
    directory: dict[str, Authority]
    outcome: Outcome
    started: datetime
    ms: int
    endpoint: str | None
    due: datetime
    retry_at: datetime | None = None


_CLAIM = """
WITH due AS (
    SELECT dispatch_id FROM dispatches
    WHERE state = 'pending' AND next_attempt_at <= $1
    ORDER BY next_attempt_at LIMIT $2
    FOR UPDATE SKIP LOCKED)
UPDATE dispatches d SET attempts = d.attempts + 1, next_attempt_at = $3
FROM due WHERE d.dispatch_id = due.dispatch_id
RETURNING d.*
"""

_CONTEXT = """
SELECT a.alert_id, a.dysfunction_id, a.structure, a.authority_id, a.authority_name, a.category,
       a.urgency, a.requires_identity, a.parent_alert_id, a.escalation_level, a.ack_due_at,
       a.created_at,
       d.commune, d.concerned, d.description, d.observed_on, d.reported_at, d.consented,
       d.sealed_identity, d.correlation_id, d.source_event_id
FROM alerts a JOIN dysfunctions d USING (dysfunction_id)
WHERE a.alert_id = ANY($1::uuid[])
"""


class Dispatcher:
    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.policy = rt.policy
        self.breaker = CircuitBreaker(rt.policy.breaker_threshold, rt.policy.breaker_cooldown,
                                      rt.clock)
        self.webhook: WebhookChannel | None = None
        self.email = EmailChannel(rt.config.smtp, rt.policy.timeout)
        self._stopping = False
        self._sem = asyncio.Semaphore(rt.policy.concurrency)
        # fault-injection hook for tests: runs after delivery, before the attempt is recorded
        self.after_deliver: Callable[[dict, Outcome], Awaitable[None]] | None = None
        self.delivered = 0

    @property
    def pool(self) -> asyncpg.Pool:
        assert self.rt.svc.pool is not None
        return self.rt.svc.pool

    async def stop(self, _svc: Any = None) -> None:
        """An ``on_stop`` hook of the service: the loop ends at its next turn."""
        self._stopping = True
        self.rt.wake.set()

    async def run(self, _svc: Any = None) -> None:
        self.webhook = WebhookChannel(self.policy.timeout)
        delay = 0.1
        try:
            while not self._stopping:
                try:
                    n = await self.dispatch_once()
                    n += await self.escalate_once()
                    delay = 0.1
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if not is_transient(exc):
                        log.error("dispatcher loop failed", exc_info=True)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
                    continue
                if n == 0:
                    self.rt.wake.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self.rt.wake.wait(), self.policy.poll_interval)
        finally:
            await self.webhook.close()

    # ------------------------------------------------------------------ delivery
    async def dispatch_once(self) -> int:
        now = self.rt.clock()
        lease_end = now + timedelta(seconds=self.policy.lease)
        async with self.pool.acquire() as conn, conn.transaction():
            claimed = [dict(r) for r in await conn.fetch(_CLAIM, now, self.policy.batch, lease_end)]
        if not claimed:
            return 0
        async with self.pool.acquire() as conn:
            ctx = {r["alert_id"]: dict(r) for r in await conn.fetch(
                _CONTEXT, list({d["alert_id"] for d in claimed}))}
            directories: dict[str, dict[str, Authority]] = {}
            for a in ctx.values():
                if a["structure"] not in directories:
                    directories[a["structure"]] = await store.load_directory(conn, a["structure"])
        results = await asyncio.gather(*(
            self._one(d, ctx[d["alert_id"]], directories[ctx[d["alert_id"]]["structure"]])
            for d in claimed))
        await self._record_batch(list(results))
        return len(claimed)

    async def _one(self, d: dict, a: dict, directory: dict[str, Authority]) -> _Result:
        async with self._sem:
            recipient = directory.get(d["recipient"]) or directory[COORDINATOR]
            started = self.rt.clock()
            t0 = time.perf_counter()
            due = a["ack_due_at"] or ack_due(started, directory.get(
                a["authority_id"], recipient).ack_spec(a["urgency"]))
            endpoint: str | None = None
            outcome: Outcome
            try:
                if d["channel"] == "kafka":
                    outcome = Outcome(True, False, "outbox")
                elif d["channel"] not in recipient.usable_channels():
                    outcome = Outcome(False, False, "channel_not_configured")
                else:
                    endpoint = (endpoint_of_url(recipient.webhook_url or "")
                                if d["channel"] == "webhook" else self.rt.config.smtp.endpoint)
                    retry_at = self.breaker.allow(endpoint)
                    if retry_at is not None:
                        return _Result(d, a, directory, Outcome(False, True, "circuit_open"),
                                       started, 0, endpoint, due, retry_at)
                    outcome = await self._deliver(d, a, recipient, directory, due)
                    if outcome.ok:
                        self.breaker.success(endpoint)
                    elif outcome.retryable:
                        self.breaker.failure(endpoint)
                    else:
                        self.breaker.release(endpoint)
            except Exception as exc:  # a bug or the vault unreachable: retry, never drop
                if endpoint is not None:
                    self.breaker.release(endpoint)
                outcome = Outcome(False, True, f"error_{type(exc).__name__}")
                if not is_transient(exc):
                    log.error("delivery raised", exc_info=True,
                              extra={"fields": {"dispatch_id": str(d["dispatch_id"])}})
            ms = int((time.perf_counter() - t0) * 1000)
            if self.after_deliver is not None:
                await self.after_deliver(d, outcome)
            return _Result(d, a, directory, outcome, started, ms, endpoint, due)

    def _body(self, d: dict, a: dict, directory: dict[str, Authority], due,
              identity: dict | None = None) -> dict:
        notice = None
        kind = d["purpose"]
        if kind == "coordinator_notice":
            about = directory.get(a["authority_id"])
            notice = {"reason": d["notice_reason"], "about_authority_id": a["authority_id"],
                      "about_authority_name": about.name if about else a["authority_id"]}
        expires = (due or self.rt.clock()) + timedelta(days=self.rt.config.link_ttl_days)
        ack_url = (f"{self.rt.config.public_url}/alerts/ack/"
                   f"{make_token(self.rt.link_key, a['alert_id'], expires)}"
                   if kind == "alert" else None)
        return content.alert_body(
            message_id=str(d["message_id"]), kind=kind, alert=a, dysfunction=a,
            authority_name=a["authority_name"], ack_due_at=due if kind == "alert" else None,
            ack_url=ack_url, identity=identity, notice=notice)

    async def _identity(self, a: dict) -> dict | None:
        if not content.identity_allowed(consented=a["consented"],
                                        rule_requires=a["requires_identity"],
                                        sealed_present=a["sealed_identity"] is not None):
            return None
        try:
            return await self.rt.open_identity(a["sealed_identity"], actor="alerts",
                                               purpose=f"alert {a['alert_id']}")
        except KeyDestroyed:
            return None  # erased: the alert goes without the identity

    async def _deliver(self, d: dict, a: dict, recipient: Authority,
                       directory: dict[str, Authority], due) -> Outcome:
        if d["channel"] == "webhook":
            assert self.webhook is not None and recipient.webhook_url and recipient.webhook_secret
            person = await self._identity(a) if d["purpose"] == "alert" else None
            raw = orjson.dumps(self._body(d, a, directory, due, identity=person))
            return await self.webhook.send(url=recipient.webhook_url,
                                           secret=recipient.webhook_secret,
                                           message_id=str(d["message_id"]), body=raw)
        # e-mail never carries the identity (fetched through the authenticated API)
        subject, text = content.render_email(self._body(d, a, directory, due))
        msg = self.email.build(to=recipient.email or "", subject=subject, text=text,
                               message_id=str(d["message_id"]))
        return await self.email.send(msg)

    async def _record_batch(self, results: list[_Result]) -> None:
        """Every outcome of one claimed batch, in one transaction (few round trips)."""
        rt = self.rt
        now = rt.clock()
        svc_name = rt.settings.service
        async with self.pool.acquire() as conn, conn.transaction():
            pending = {r["dispatch_id"] for r in await conn.fetch(
                "SELECT dispatch_id FROM dispatches WHERE dispatch_id = ANY($1::uuid[]) "
                "AND state = 'pending' FOR UPDATE", [r.d["dispatch_id"] for r in results])}
            # the others were recorded by another dispatcher after our lease expired
            results = [r for r in results if r.d["dispatch_id"] in pending]
            attempt_rows, opened, retries, delivered, failed = [], [], [], [], []
            for r in results:
                attempt = r.d["attempts"]
                o = r.outcome
                if o.detail == "circuit_open":
                    state = "circuit_open"  # not a real attempt: does not use the budget
                    opened.append((r.d["dispatch_id"], r.retry_at))
                elif o.ok:
                    state = "delivered"
                    delivered.append(r)
                elif o.retryable and attempt < self.policy.max_attempts:
                    state = "retry"
                    delay = backoff_delay(attempt, self.policy.base_delay, self.policy.max_delay)
                    retries.append((r.d["dispatch_id"], now + timedelta(seconds=delay), o.detail))
                else:
                    state = "failed"
                    failed.append(r)
                if state != "circuit_open":
                    DELIVERIES.labels(svc_name, r.d["channel"], state).inc()
                    DELIVERY_SECONDS.labels(svc_name, r.d["channel"]).observe(r.ms / 1000)
                attempt_rows.append((r.d["dispatch_id"], attempt, r.d["channel"], r.endpoint,
                                     r.started, r.ms, state, o.detail, o.http_status))
            if attempt_rows:
                await conn.executemany(
                    "INSERT INTO attempts(dispatch_id, attempt, channel, endpoint, started_at, "
                    "duration_ms, outcome, detail, http_status) "
                    "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)", attempt_rows)
            if opened:
                await conn.executemany("UPDATE dispatches SET attempts = attempts - 1, "
                                       "next_attempt_at = $2 WHERE dispatch_id = $1", opened)
            if retries:
                await conn.executemany("UPDATE dispatches SET next_attempt_at = $2, "
                                       "last_error = $3 WHERE dispatch_id = $1", retries)
            if delivered:
                await self._delivered(conn, delivered, now)
            for r in failed:
                await conn.execute("UPDATE dispatches SET state='failed', last_error=$2 "
                                   "WHERE dispatch_id=$1", r.d["dispatch_id"], r.outcome.detail)
                log.warning("dispatch failed", extra={"fields": {
                    "dispatch_id": str(r.d["dispatch_id"]), "alert_id": str(r.a["alert_id"]),
                    "channel": r.d["channel"], "purpose": r.d["purpose"],
                    "attempts": r.d["attempts"], "reason": r.outcome.detail}})
                if r.d["purpose"] == "alert":
                    await self._maybe_fail_alert(conn, r.d, r.a, r.directory, r.outcome,
                                                 r.d["attempts"], now)

    async def _delivered(self, conn: asyncpg.Connection, done: list[_Result], now) -> None:
        rt = self.rt
        await conn.executemany(
            "UPDATE dispatches SET state='delivered', delivered_at=$2, last_error=NULL "
            "WHERE dispatch_id=$1", [(r.d["dispatch_id"], now) for r in done])
        alerts = [r for r in done if r.d["purpose"] == "alert"]
        rows: dict[Any, Any] = {}
        if alerts:
            # lock in a fixed order: concurrent dispatchers never deadlock on shared alerts
            await conn.execute("SELECT 1 FROM alerts WHERE alert_id = ANY($1::uuid[]) "
                               "ORDER BY alert_id FOR UPDATE",
                               list({r.a["alert_id"] for r in alerts}))
            rows = {row["alert_id"]: row for row in await conn.fetch(
                """UPDATE alerts a SET
                       status = CASE WHEN a.status = 'pending' THEN 'dispatched' ELSE a.status END,
                       first_delivered_at = COALESCE(a.first_delivered_at, $2),
                       ack_due_at = CASE WHEN a.acknowledged_at IS NULL
                                          AND a.status IN ('pending', 'dispatched')
                                    THEN COALESCE(a.ack_due_at, u.due) ELSE a.ack_due_at END
                   FROM unnest($1::uuid[], $3::timestamptz[]) AS u(alert_id, due)
                   WHERE a.alert_id = u.alert_id
                   RETURNING a.*""",
                [r.a["alert_id"] for r in alerts], now, [r.due for r in alerts])}
        trace = telemetry.inject_headers()
        out: list[tuple[Envelope, str, str | None, dict[str, str]]] = []

        def env(payload, a: dict, **kw) -> Envelope:
            return new_envelope(payload, producer=rt.svc.outbox.producer_name,
                                correlation_id=a["correlation_id"],
                                causation_id=a["source_event_id"], structure=a["structure"], **kw)

        for r in done:
            if r.d["channel"] == "kafka":
                out.append((env(self._outbound(r.d, r.a, r.due), r.a,
                                event_id=uuid.uuid5(store.NS, f"outbound:{r.d['message_id']}:"
                                                              f"{r.d['recipient']}")),
                            rt.settings.topics.alerts_outbound, r.d["recipient"], trace))
            if r.d["purpose"] == "alert":
                row = rows[r.a["alert_id"]]
                out.append((env(AlertDispatched(alert=store.alert_ref(row), channel=r.d["channel"],
                                                attempt=r.d["attempts"], dispatched_at=now), r.a),
                            rt.settings.topics.alerts, str(r.a["alert_id"]), trace))
        if out:
            await rt.svc.outbox.add_many(conn, out)
        self.delivered += len(done)

    async def _maybe_fail_alert(self, conn, d, a, directory, o: Outcome, attempt: int, now) -> None:
        """When no channel of the alert delivered and none is still trying."""
        # the alert row lock first: two dispatchers failing two channels of one alert
        # serialise here, and the second one sees the first one's committed state
        row = await conn.fetchrow("SELECT * FROM alerts WHERE alert_id=$1 FOR UPDATE",
                                  a["alert_id"])
        left = await conn.fetchval(
            "SELECT count(*) FILTER (WHERE state <> 'failed') FROM dispatches "
            "WHERE alert_id=$1 AND purpose='alert'", a["alert_id"])
        # one channel failing while another delivered (or still tries) is in the attempts
        # table; the alert as a whole fails only when every channel has failed
        if left == 0 and row["status"] == "pending":
            await store.fail_alert(conn, self.rt.events, row, directory, channel=d["channel"],
                                   attempts=attempt, reason=o.detail or "failed", now=now)

    def _outbound(self, d: dict, a: dict, due) -> AlertOutbound:
        return AlertOutbound(
            alert=store.alert_ref(a), message_id=d["message_id"], kind=d["purpose"],
            category_label=content.CATEGORY_LABELS.get(a["category"], a["category"]),
            commune=a["commune"], concerned=a["concerned"], description=a["description"],
            observed_on=a["observed_on"], reported_at=a["reported_at"],
            ack_due_at=due if d["purpose"] == "alert" else None,
            identity_available=content.identity_allowed(
                consented=a["consented"], rule_requires=a["requires_identity"],
                sealed_present=a["sealed_identity"] is not None))

    # ------------------------------------------------------------------ escalation
    async def escalate_once(self) -> int:
        now = self.rt.clock()
        n = 0
        async with self.pool.acquire() as conn, conn.transaction():
            due = await conn.fetch(
                """SELECT * FROM alerts WHERE acknowledged_at IS NULL AND ack_due_at <= $1
                     AND status IN ('dispatched', 'escalated')
                   ORDER BY ack_due_at LIMIT 100 FOR UPDATE SKIP LOCKED""", now)
            for a in due:
                await self._escalate(conn, a, now)
                n += 1
        if n:
            self.rt.wake.set()
        return n

    async def _escalate(self, conn, a, now) -> None:
        rt = self.rt
        seq = list(a["escalation_seq"])
        level = a["escalation_level"] + 1
        if level > len(seq):  # nobody left to tell: stays escalated, waiting for an answer
            await conn.execute("UPDATE alerts SET ack_due_at=NULL WHERE alert_id=$1", a["alert_id"])
            return
        directory = await store.load_directory(conn, a["structure"])
        target = seq[level - 1]
        new_alert_id = None
        if target == COORDINATOR:
            await store.add_coordinator_notice(conn, a, directory, reason="no_acknowledgement",
                                               level=level, now=now)
            authority = directory.get(a["authority_id"]) or directory[COORDINATOR]
            next_due = ack_due(now, authority.ack_spec(a["urgency"]))
        else:
            authority = directory.get(target) or directory[COORDINATOR]
            rest = [x for x in seq[level:] if x != COORDINATOR]
            new_alert_id = await store.create_alert(
                conn, rt.events, directory, dysfunction_id=a["dysfunction_id"],
                structure=a["structure"], category=a["category"], urgency=a["urgency"],
                authority=authority, requires_identity=a["requires_identity"],
                escalation_seq=[COORDINATOR, *rest], now=now, parent_alert_id=a["alert_id"])
            next_due = None  # the next authority's alert carries the deadline from now on
        await conn.execute(
            """UPDATE alerts SET status='escalated', escalation_level=$2, escalated_at=$3,
                      escalated_to=$4, ack_due_at=$5 WHERE alert_id=$1""",
            a["alert_id"], level, now, target, next_due)
        await rt.events.emit(conn, AlertEscalated(
            alert=store.alert_ref(a), level=level, escalated_to=target, escalated_at=now,
            reason="no_acknowledgement", new_alert_id=new_alert_id), a)
        ESCALATIONS.labels(rt.settings.service,
                           "coordinator" if target == COORDINATOR else "authority").inc()
        log.info("alert escalated", extra={"fields": {"alert_id": str(a["alert_id"]),
                                                      "level": level, "to": target}})

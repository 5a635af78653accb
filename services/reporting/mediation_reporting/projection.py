"""Events -> read-model rows: one commutative upsert per event.

Each handler only translates an event into column values; the SQL fills columns
(least/greatest for first/last times, latest-wins guarded by the event's own business
time or revision), so applying events in any order, or twice, gives the same rows.
No identity ever reaches these tables: reporting keeps codes, times and blind indexes.
"""

from __future__ import annotations

from mediation_core.consumer import HandlerContext
from mediation_schemas import alerts as al
from mediation_schemas import cases as cs
from mediation_schemas import referrals as rf
from mediation_schemas.envelope import Payload

from . import rules

# the freshness marks of ``$3`` events of a source, the newest at ``$2`` (a sum and a
# greatest: marks summed per batch give what one per event gives)
FRESHNESS = (
    "INSERT INTO freshness AS f (source, newest_event_at, last_applied_at, events) "
    "VALUES ($1, $2, now(), $3) ON CONFLICT (source) DO UPDATE SET "
    "newest_event_at = greatest(f.newest_event_at, EXCLUDED.newest_event_at), "
    "last_applied_at = now(), events = f.events + EXCLUDED.events")


async def mark_fresh(ctx: HandlerContext, source: str) -> None:
    """The freshness mark of one applied event. In a batch the marks are summed per source
    (newest time, count) and written once at its end: one row update per source and batch
    instead of one per event on the same hot row."""
    batch = ctx.batch
    if batch is None or batch.isolate:
        await ctx.defer(FRESHNESS, source, ctx.envelope.occurred_at, 1)
        return
    marks = batch.data.get("freshness")
    if marks is None:
        marks = batch.data["freshness"] = {}

        async def write(b) -> None:
            await b.conn.executemany(FRESHNESS, [(src, at, n) for src, (at, n) in marks.items()])

        batch.before_flush.append(write)
    at, n = marks.get(source, (ctx.envelope.occurred_at, 0))
    marks[source] = (max(at, ctx.envelope.occurred_at), n + 1)


async def run(ctx: HandlerContext, sql: str, *args) -> None:
    """A handler's statement: a commutative upsert, so it is deferred to the end of the
    batch and executed there with the batch's other statements of the same text."""
    await ctx.defer(sql, *args)


# --------------------------------------------------------------------------- referrals

_REFERRAL_UPSERT = """
INSERT INTO referrals AS r (referral_key, referral_id, env_structure, source_system, referrer_kind,
    referrer_profession, received_at, accepted_at, rejected_at, revision, motives, urgency)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)
ON CONFLICT (referral_key) DO UPDATE SET
    referral_id = greatest(r.referral_id, EXCLUDED.referral_id),
    env_structure = greatest(r.env_structure, EXCLUDED.env_structure),
    source_system = greatest(r.source_system, EXCLUDED.source_system),
    referrer_kind = CASE WHEN EXCLUDED.revision >= r.revision AND EXCLUDED.referrer_kind IS NOT NULL
                         THEN EXCLUDED.referrer_kind ELSE coalesce(r.referrer_kind, EXCLUDED.referrer_kind) END,
    referrer_profession = CASE WHEN EXCLUDED.revision >= r.revision AND EXCLUDED.referrer_profession IS NOT NULL
                         THEN EXCLUDED.referrer_profession ELSE coalesce(r.referrer_profession, EXCLUDED.referrer_profession) END,
    received_at = least(r.received_at, EXCLUDED.received_at),
    accepted_at = least(r.accepted_at, EXCLUDED.accepted_at),
    rejected_at = greatest(r.rejected_at, EXCLUDED.rejected_at),
    motives = CASE WHEN EXCLUDED.revision >= r.revision AND EXCLUDED.motives IS NOT NULL
                   THEN EXCLUDED.motives ELSE coalesce(r.motives, EXCLUDED.motives) END,
    urgency = CASE WHEN EXCLUDED.revision >= r.revision AND EXCLUDED.urgency IS NOT NULL
                   THEN EXCLUDED.urgency ELSE coalesce(r.urgency, EXCLUDED.urgency) END,
    revision = greatest(r.revision, EXCLUDED.revision)
"""

# the routing decision's columns move together: the latest decision (business time, then
# status) wins, whatever the arrival order; one guard for all of them
_ROUTING_NEWER = ("(r.routing_at IS NULL OR (EXCLUDED.routing_at, EXCLUDED.routing_status) "
                  ">= (r.routing_at, r.routing_status))")
_ROUTING_UPSERT = """
INSERT INTO referrals AS r (referral_key, referral_id, env_structure, source_system, referrer_kind,
    referrer_profession, received_at, revision, motives, urgency,
    routing_at, routing_status, structure, area, mediator_id, unroutable_reason)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)
ON CONFLICT (referral_key) DO UPDATE SET
    referral_id = greatest(r.referral_id, EXCLUDED.referral_id),
    env_structure = greatest(r.env_structure, EXCLUDED.env_structure),
    source_system = greatest(r.source_system, EXCLUDED.source_system),
    referrer_kind = CASE WHEN EXCLUDED.revision > r.revision THEN EXCLUDED.referrer_kind
                         ELSE coalesce(r.referrer_kind, EXCLUDED.referrer_kind) END,
    referrer_profession = CASE WHEN EXCLUDED.revision > r.revision THEN EXCLUDED.referrer_profession
                               ELSE coalesce(r.referrer_profession, EXCLUDED.referrer_profession) END,
    received_at = least(r.received_at, EXCLUDED.received_at),
    motives = CASE WHEN EXCLUDED.revision > r.revision THEN EXCLUDED.motives ELSE coalesce(r.motives, EXCLUDED.motives) END,
    urgency = CASE WHEN EXCLUDED.revision > r.revision THEN EXCLUDED.urgency ELSE coalesce(r.urgency, EXCLUDED.urgency) END,
    revision = greatest(r.revision, EXCLUDED.revision),
    routing_status = CASE WHEN {newer} THEN EXCLUDED.routing_status ELSE r.routing_status END,
    structure = CASE WHEN {newer} THEN EXCLUDED.structure ELSE r.structure END,
    area = CASE WHEN {newer} THEN EXCLUDED.area ELSE r.area END,
    mediator_id = CASE WHEN {newer} THEN EXCLUDED.mediator_id ELSE r.mediator_id END,
    unroutable_reason = CASE WHEN {newer} THEN EXCLUDED.unroutable_reason ELSE r.unroutable_reason END,
    routing_at = greatest(r.routing_at, EXCLUDED.routing_at)
""".replace("{newer}", _ROUTING_NEWER)


async def referral_accepted(ctx: HandlerContext, p: rf.ReferralAccepted) -> None:
    ref = p.referral
    await run(
        ctx, _REFERRAL_UPSERT, str(ref.referral_id), ref.referral_id, ctx.envelope.structure,
        ref.source_system, ref.referrer_structure_kind, ref.referrer_profession, ref.received_at,
        ctx.envelope.occurred_at, None, ref.revision, rules.motive_codes(ref.motives), ref.urgency.value)


async def referral_rejected(ctx: HandlerContext, p: rf.ReferralRejected) -> None:
    key = rules.referral_key(p.referral_id, p.source_system, p.source_reference,
                             ctx.envelope.correlation_id, ctx.envelope.event_id)
    at = ctx.envelope.occurred_at
    await run(
        ctx, _REFERRAL_UPSERT, key, p.referral_id, ctx.envelope.structure, p.source_system,
        getattr(p, "referrer_structure_kind", None), getattr(p, "referrer_profession", None),
        getattr(p, "received_at", None) or at, None, at, 0, None, None)


async def _routing(ctx: HandlerContext, ref: rf.ReferralCore, status: str, structure: str | None,
                   area: str | None, mediator: str | None, reason: str | None) -> None:
    await run(
        ctx, _ROUTING_UPSERT, str(ref.referral_id), ref.referral_id, ctx.envelope.structure,
        ref.source_system, ref.referrer_structure_kind, ref.referrer_profession, ref.received_at,
        ref.revision, rules.motive_codes(ref.motives), ref.urgency.value, ctx.envelope.occurred_at, status,
        structure, area, mediator, reason)


async def referral_routed(ctx: HandlerContext, p: rf.ReferralRouted) -> None:
    await _routing(ctx, p.referral, "routed", p.structure, p.area, p.mediator_id, None)


async def referral_unroutable(ctx: HandlerContext, p: rf.ReferralUnroutable) -> None:
    await _routing(ctx, p.referral, "unroutable", p.structure or ctx.envelope.structure,
                   getattr(p, "area", None), None, p.reason_code)


async def referral_status_changed(ctx: HandlerContext, p: cs.ReferralStatusChanged) -> None:
    await run(
        ctx, "INSERT INTO referral_statuses (referral_id, status, changed_at, outcome) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        p.referral_id, p.status, p.changed_at, p.outcome)


# --------------------------------------------------------------------------- cases

# the case ref every case event carries: latest business time wins (a reassignment moves
# the case; an older event arriving late does not move it back)
_NEWER = ("(EXCLUDED.assigned_at, EXCLUDED.structure, EXCLUDED.area, EXCLUDED.mediator_id) "
          ">= (c.assigned_at, c.structure, c.area, c.mediator_id)")  # ties broken by value
_REF_SET = """
    structure = CASE WHEN c.assigned_at IS NULL OR {newer}
                     THEN EXCLUDED.structure ELSE c.structure END,
    area = CASE WHEN c.assigned_at IS NULL OR {newer}
                THEN EXCLUDED.area ELSE c.area END,
    mediator_id = CASE WHEN c.assigned_at IS NULL OR {newer}
                       THEN EXCLUDED.mediator_id ELSE c.mediator_id END,
    assigned_at = greatest(c.assigned_at, EXCLUDED.assigned_at),
    last_activity_at = greatest(c.last_activity_at, EXCLUDED.last_activity_at)""".replace("{newer}", _NEWER)


def case_upsert(extra: list[tuple[str, str]] = ()) -> str:  # type: ignore[assignment]
    """One statement: the case ref ($1..$5) plus ``extra`` columns ($6...), each with the
    expression that merges it into an existing row (``c`` old row, EXCLUDED new values)."""
    cols = ["case_id", "structure", "area", "mediator_id", "assigned_at", "last_activity_at"]
    vals = ["$1", "$2", "$3", "$4", "$5", "$5"]
    for i, (col, _expr) in enumerate(extra):
        cols.append(col)
        vals.append(f"${6 + i}")
    sets = _REF_SET + "".join(f",\n    {col} = {expr}" for col, expr in extra)
    return (f"INSERT INTO cases AS c ({', '.join(cols)}) VALUES ({', '.join(vals)})\n"
            f"ON CONFLICT (case_id) DO UPDATE SET {sets}")


def _ref_args(ref: cs.CaseRef, at) -> tuple:
    return (ref.case_id, ref.structure, ref.area, ref.mediator_id, at)


_CASE_REF = case_upsert()

# a referral joining the person's open case sends CaseOpened again (attached_to_existing):
# it never overrides what the case's own opening said, whatever the arrival order
_OWN = "CASE WHEN EXCLUDED.attached_to_existing THEN coalesce(c.{col}, EXCLUDED.{col}) ELSE coalesce(EXCLUDED.{col}, c.{col}) END"
_CASE_OPENED = case_upsert([
    ("origin", _OWN.format(col="origin")),
    ("referral_id", _OWN.format(col="referral_id")),
    ("referral_received_at", "least(c.referral_received_at, EXCLUDED.referral_received_at)"),
    ("source_system", _OWN.format(col="source_system")),
    ("person_ref", _OWN.format(col="person_ref")),
    ("motives", "CASE WHEN c.motives_revision > 0 THEN c.motives ELSE " + _OWN.format(col="motives") + " END"),
    ("urgency", "CASE WHEN c.motives_revision > 0 THEN c.urgency ELSE " + _OWN.format(col="urgency") + " END"),
    ("attached_to_existing", "c.attached_to_existing OR EXCLUDED.attached_to_existing"),
    ("opened_at", "least(c.opened_at, EXCLUDED.opened_at)"),
])

_CASE_REFERRAL_UPDATED = case_upsert([
    ("motives", "CASE WHEN EXCLUDED.motives_revision >= c.motives_revision THEN EXCLUDED.motives ELSE c.motives END"),
    ("urgency", "CASE WHEN EXCLUDED.motives_revision >= c.motives_revision THEN EXCLUDED.urgency ELSE c.urgency END"),
    ("motives_revision", "greatest(c.motives_revision, EXCLUDED.motives_revision)"),
])

_FIRST_CONTACT = case_upsert([
    ("first_contact_channel", "CASE WHEN c.first_contact_at IS NULL OR EXCLUDED.first_contact_at < c.first_contact_at "
                              "THEN EXCLUDED.first_contact_channel ELSE c.first_contact_channel END"),
    ("first_contact_attempts", "CASE WHEN c.first_contact_at IS NULL OR EXCLUDED.first_contact_at < c.first_contact_at "
                               "THEN EXCLUDED.first_contact_attempts ELSE c.first_contact_attempts END"),
    ("first_contact_at", "least(c.first_contact_at, EXCLUDED.first_contact_at)"),
])

_CASE_CLOSED = (
    "WITH _closure AS (INSERT INTO case_closures (case_id, closed_at, reason, reason_kind, structure, "
    "area, mediator_id) VALUES ($1, $6, $7, $8, $2, $3, $4) ON CONFLICT DO NOTHING) "
    + case_upsert([
        ("closed_at", "greatest(c.closed_at, EXCLUDED.closed_at)"),
        ("closure_reason", "CASE WHEN c.closed_at IS NULL OR EXCLUDED.closed_at >= c.closed_at "
                           "THEN EXCLUDED.closure_reason ELSE c.closure_reason END"),
    ]))

_CASE_REOPENED = case_upsert([("reopened_at", "greatest(c.reopened_at, EXCLUDED.reopened_at)")])

_ACTION = (
    "WITH _ref AS (" + _CASE_REF + ") "
    "INSERT INTO case_actions AS a (action_id, case_id, structure, area, mediator_id, axis, kind, "
    " occurred_at, outcome, right_code, body, status, lasting_care, autonomy_phase, "
    " autonomy_score, channel, target) "
    "VALUES ($6, $1, $2, $3, $4, $7, $8, $5, $9, $10, $11, $12, $13, $14, $15, $16, $17) "
    "ON CONFLICT (action_id) DO UPDATE SET "
    " (structure, area, mediator_id, axis, kind, occurred_at, outcome, right_code, body, status, "
    "  lasting_care, autonomy_phase, autonomy_score, channel, target) = "
    " (EXCLUDED.structure, EXCLUDED.area, EXCLUDED.mediator_id, EXCLUDED.axis, EXCLUDED.kind, "
    "  EXCLUDED.occurred_at, EXCLUDED.outcome, EXCLUDED.right_code, EXCLUDED.body, "
    "  coalesce(EXCLUDED.status, a.status), coalesce(EXCLUDED.lasting_care, a.lasting_care), "
    "  EXCLUDED.autonomy_phase, EXCLUDED.autonomy_score, EXCLUDED.channel, EXCLUDED.target) "
    "WHERE (EXCLUDED.occurred_at, $18::int) >= (a.occurred_at, "
    "  CASE a.status WHEN 'opened' THEN 3 WHEN 'refused' THEN 3 WHEN 'filed' THEN 2 WHEN 'started' THEN 1 ELSE 0 END)")


async def case_opened(ctx: HandlerContext, p: cs.CaseOpened) -> None:
    await run(ctx, _CASE_OPENED, *_ref_args(p.case, p.opened_at), p.origin.value, p.referral_id,
              p.referral_received_at, p.source_system, p.person_ref, rules.motive_codes(p.motives),
              p.urgency.value, p.attached_to_existing, p.opened_at)


async def case_referral_updated(ctx: HandlerContext, p: Payload) -> None:
    await run(ctx, _CASE_REFERRAL_UPDATED, *_ref_args(p.case, p.updated_at),  # type: ignore[attr-defined]
              rules.motive_codes(p.motives), p.urgency.value, p.revision)  # type: ignore[attr-defined]


async def first_contact_made(ctx: HandlerContext, p: cs.FirstContactMade) -> None:
    await run(ctx, _FIRST_CONTACT, *_ref_args(p.case, p.contacted_at), p.channel, p.attempts,
              p.contacted_at)


async def action_recorded(ctx: HandlerContext, p: cs.ActionRecorded) -> None:
    await run(ctx, _ACTION, *_ref_args(p.case, p.occurred_at), p.action_id, p.axis, p.kind,
              p.outcome, p.right, p.body, p.status, p.lasting_care, p.autonomy_phase,
              p.autonomy_score, getattr(p, "channel", None), getattr(p, "target", None),
              rules.status_rank(p.status))


async def case_reassigned(ctx: HandlerContext, p: cs.CaseReassigned) -> None:
    await run(ctx, _CASE_REF, *_ref_args(p.case, p.reassigned_at))


async def case_closed(ctx: HandlerContext, p: cs.CaseClosed) -> None:
    await run(ctx, _CASE_CLOSED, *_ref_args(p.case, p.closed_at), p.closed_at, p.reason.value,
              getattr(p, "reason_kind", None))


async def case_reopened(ctx: HandlerContext, p: cs.CaseReopened) -> None:
    await run(ctx, _CASE_REOPENED, *_ref_args(p.case, p.reopened_at), p.reopened_at)


async def case_notice(ctx: HandlerContext, p: Payload) -> None:
    """FirstContactOverdue, CaseInactivityFlagged and any future notice carrying a case ref."""
    case = p.case  # type: ignore[attr-defined]
    at = (getattr(p, "detected_at", None) or getattr(p, "flagged_at", None)
          or ctx.envelope.occurred_at)
    await run(
        ctx,
        "WITH _case AS (INSERT INTO cases (case_id, structure, area, mediator_id) "
        " VALUES ($1, $5, $6, $7) ON CONFLICT (case_id) DO NOTHING) "
        "INSERT INTO case_notices (case_id, kind, level, at, structure, area, mediator_id) "
        "VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        case.case_id, p.event_type, str(getattr(p, "level", "") or ""), at, case.structure,
        case.area, case.mediator_id)


async def collective_action(ctx: HandlerContext, p: Payload) -> None:
    att = p.attendance  # type: ignore[attr-defined]
    await run(
        ctx, "INSERT INTO collective_actions AS x (collective_action_id, structure, area, recorded_by, "
        " kind, axis, theme, held_on, participants, professionals, new_people, partners, recorded_at) "
        "VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13) "
        "ON CONFLICT (collective_action_id) DO UPDATE SET "
        " (structure, area, recorded_by, kind, axis, theme, held_on, participants, professionals, "
        "  new_people, partners, recorded_at) = (EXCLUDED.structure, EXCLUDED.area, "
        "  EXCLUDED.recorded_by, EXCLUDED.kind, EXCLUDED.axis, EXCLUDED.theme, EXCLUDED.held_on, "
        "  EXCLUDED.participants, EXCLUDED.professionals, EXCLUDED.new_people, EXCLUDED.partners, "
        "  EXCLUDED.recorded_at) "
        "WHERE EXCLUDED.recorded_at >= x.recorded_at OR x.recorded_at IS NULL",
        p.collective_action_id, p.structure, p.area, p.recorded_by, p.kind, p.axis,  # type: ignore[attr-defined]
        p.theme, p.held_on, att.participants, att.professionals, att.new_people,  # type: ignore[attr-defined]
        len(p.partners), p.recorded_at)  # type: ignore[attr-defined]


# --------------------------------------------------------------------------- dysfunctions, alerts

async def dysfunction_reported(ctx: HandlerContext, p: cs.DysfunctionReported) -> None:
    # description, concerned party and sealed identity are deliberately not kept
    await run(
        ctx, "INSERT INTO dysfunctions (dysfunction_id, case_id, structure, area, category, urgency, "
        " observed_on, reported_at, named_with_consent) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) "
        "ON CONFLICT (dysfunction_id) DO UPDATE SET (case_id, structure, area, category, urgency, "
        " observed_on, reported_at, named_with_consent) = (EXCLUDED.case_id, EXCLUDED.structure, "
        " EXCLUDED.area, EXCLUDED.category, EXCLUDED.urgency, EXCLUDED.observed_on, "
        " least(dysfunctions.reported_at, EXCLUDED.reported_at), EXCLUDED.named_with_consent)",
        p.dysfunction_id, p.case_id, p.structure, p.area, p.category.value, p.urgency.value,
        p.observed_on, p.reported_at, p.person_consents_to_be_named)


def _alert_upsert(extra: list[tuple[str, str]]) -> str:
    cols = ["alert_id", "dysfunction_id", "structure", "authority_id", "category"]
    vals = ["$1", "$2", "$3", "$4", "$5"]
    for i, (col, _e) in enumerate(extra):
        cols.append(col)
        vals.append(f"${6 + i}")
    sets = ", ".join(f"{col} = {expr}" for col, expr in extra) or "alert_id = a.alert_id"
    return (f"INSERT INTO alerts AS a ({', '.join(cols)}) VALUES ({', '.join(vals)}) "
            f"ON CONFLICT (alert_id) DO UPDATE SET {sets}")


def _alert_args(ref: al.AlertRef) -> tuple:
    return (ref.alert_id, ref.dysfunction_id, ref.structure, ref.authority_id, ref.category)


_ALERT_REF = ("INSERT INTO alerts (alert_id, dysfunction_id, structure, authority_id, category) "
              "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (alert_id) DO NOTHING")
_DISPATCHED = _alert_upsert([
    ("channel", "CASE WHEN a.first_dispatched_at IS NULL OR (EXCLUDED.first_dispatched_at, EXCLUDED.channel) "
                "< (a.first_dispatched_at, a.channel) THEN EXCLUDED.channel ELSE a.channel END"),
    ("first_dispatched_at", "least(a.first_dispatched_at, EXCLUDED.first_dispatched_at)"),
    ("last_dispatched_at", "greatest(a.last_dispatched_at, EXCLUDED.last_dispatched_at)"),
    ("dispatch_attempts", "greatest(a.dispatch_attempts, EXCLUDED.dispatch_attempts)")])
_FAILED = _alert_upsert([
    ("failed_reason", "CASE WHEN a.failed_at IS NULL OR EXCLUDED.failed_at >= a.failed_at "
                      "THEN EXCLUDED.failed_reason ELSE a.failed_reason END"),
    ("failed_at", "greatest(a.failed_at, EXCLUDED.failed_at)"),
    ("dispatch_attempts", "greatest(a.dispatch_attempts, EXCLUDED.dispatch_attempts)")])
_ACKNOWLEDGED = _alert_upsert([
    ("acknowledged_at", "least(a.acknowledged_at, EXCLUDED.acknowledged_at)"),
    ("has_response", "a.has_response OR EXCLUDED.has_response")])
_ESCALATED = _alert_upsert([
    ("escalated_at", "CASE WHEN EXCLUDED.escalation_level >= a.escalation_level "
                     "THEN EXCLUDED.escalated_at ELSE a.escalated_at END"),
    ("escalation_level", "greatest(a.escalation_level, EXCLUDED.escalation_level)")])


async def alert_ref(ctx: HandlerContext, ref: al.AlertRef) -> None:
    await ctx.defer(_ALERT_REF, *_alert_args(ref))


async def alert_dispatched(ctx: HandlerContext, p: al.AlertDispatched) -> None:
    await run(ctx, _DISPATCHED, *_alert_args(p.alert), p.channel, p.dispatched_at,
              p.dispatched_at, p.attempt)


async def alert_delivery_failed(ctx: HandlerContext, p: al.AlertDeliveryFailed) -> None:
    await run(ctx, _FAILED, *_alert_args(p.alert), p.reason, p.failed_at, p.attempts)


async def alert_acknowledged(ctx: HandlerContext, p: al.AlertAcknowledged) -> None:
    # the authority's free-text response is not kept (it may quote the situation)
    await run(ctx, _ACKNOWLEDGED, *_alert_args(p.alert), p.acknowledged_at,
              p.has_response or bool(p.response))


async def alert_escalated(ctx: HandlerContext, p: al.AlertEscalated) -> None:
    await run(ctx, _ESCALATED, *_alert_args(p.alert), p.escalated_at, p.level)


async def unprojected(ctx: HandlerContext, p: Payload) -> None:
    await run(
        ctx, "INSERT INTO unprojected_events AS u (event_type, events, newest_event_at) "
        "VALUES ($1, 1, $2) ON CONFLICT (event_type) DO UPDATE SET events = u.events + 1, "
        "newest_event_at = greatest(u.newest_event_at, EXCLUDED.newest_event_at)",
        ctx.envelope.type, ctx.envelope.occurred_at)


# event type -> handler; types added later by other services are matched by shape in
# service.py (a `case` ref -> case_notice) or counted in unprojected_events.
HANDLERS = {
    "ReferralAccepted": referral_accepted,
    "ReferralRejected": referral_rejected,
    "ReferralRouted": referral_routed,
    "ReferralUnroutable": referral_unroutable,
    "ReferralStatusChanged": referral_status_changed,
    "CaseOpened": case_opened,
    "CaseReferralUpdated": case_referral_updated,
    "FirstContactMade": first_contact_made,
    "ActionRecorded": action_recorded,
    "CaseReassigned": case_reassigned,
    "CaseClosed": case_closed,
    "CaseReopened": case_reopened,
    "FirstContactOverdue": case_notice,
    "CaseInactivityFlagged": case_notice,
    "CollectiveActionRecorded": collective_action,
    "DysfunctionReported": dysfunction_reported,
    "AlertDispatched": alert_dispatched,
    "AlertDeliveryFailed": alert_delivery_failed,
    "AlertAcknowledged": alert_acknowledged,
    "AlertEscalated": alert_escalated,
}

"""A scripted year of a CPTS's mediation, as events on the reporting service's topics.

Two sectors: "vb" (mediator m1) and "sh" (mediator m2). The expected indicator values are
computed by hand in test_reporting.py from the story told here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from mediation_schemas import alerts as al
from mediation_schemas import cases as cs
from mediation_schemas import referrals as rf
from mediation_schemas.common import MotiveItem, Problem, SealedBlock
from mediation_schemas.envelope import Envelope, Payload, new_envelope
from mediation_schemas.vocab import CaseOrigin, ClosureReason, DysfunctionCategory, Motive

S = "cpts-ecm"
CANARY = "Jeanne CANARY-DUPONT 0612345678"


def t(month: int, day: int, hour: int = 8) -> datetime:
    return datetime(2026, month, day, hour, 0, tzinfo=UTC)


def uid(name: str, ns: str) -> uuid.UUID:
    return uuid.uuid5(uuid.NAMESPACE_URL, f"{ns}/{name}")


SEALED = SealedBlock(key_id="k1", nonce="bm9uY2U=", ciphertext="c2VhbGVk")


class Story:
    """Builds the envelopes: (topic attribute, key, envelope), in the order told."""

    def __init__(self, ns: str = "s") -> None:
        self.ns = ns
        self.items: list[tuple[str, str, Envelope]] = []

    def add(self, topic: str, key, payload: Payload, at: datetime, structure: str | None = S) -> None:
        env = new_envelope(payload, producer="test", correlation_id=str(key), structure=structure,
                           occurred_at=at, event_id=uid(f"evt-{len(self.items)}", self.ns))
        self.items.append((topic, str(key), env))

    def core(self, name: str, received: datetime, kind: str, motives: list, revision: int = 1):
        return rf.ReferralCore(
            referral_id=uid(name, self.ns), revision=revision, source_system="sys-msp",
            source_reference=f"ref-{name}", received_at=received, referral_date=received.date(),
            person_ref=f"p-{name}", sealed=SEALED, commune="Lasalle",
            motives=[MotiveItem(code=m) for m in motives], consent_share_with_referrer=True,
            referrer_structure_kind=kind, referrer_profession="gp")

    def case(self, name: str, area: str, mediator: str) -> cs.CaseRef:
        return cs.CaseRef(case_id=uid(name, self.ns), structure=S, area=area, mediator_id=mediator)


REFERRALS = {  # name: (received, kind, motives, routed to (area, mediator) or None)
    "R1": (t(3, 2), "msp", [Motive.complex_care_path], ("vb", "m1")),
    "R2": (t(3, 3), "msp", [Motive.access_to_rights, Motive.care_interruption], ("vb", "m1")),
    "R3": (t(3, 5), "hospital", [Motive.complex_care_path], ("vb", "m1")),
    "R4": (t(3, 10), "cpam", [Motive.access_to_rights], ("sh", "m2")),
    "R5": (t(3, 12), "msp", [Motive.care_renunciation], ("sh", "m2")),
    "R6": (t(3, 14), "hospital", [Motive.complex_care_path], None),
}


def build(ns: str = "s") -> Story:
    st = Story(ns)
    cores = {}
    for name, (received, kind, motives, _route) in REFERRALS.items():
        cores[name] = st.core(name, received, kind, motives)
    # R3 is routed before it is seen accepted (events of two topics, out of order)
    r3 = cores["R3"]
    st.add("routing_decisions", r3.referral_id, rf.ReferralRouted(
        referral=r3, structure=S, area="vb", mediator_id="m1",
        place=rf.PlaceRef(kind="commune", code="30140", name="Lasalle"),
        decision=rf.RoutingDecision(rule="exact_name", territory_version=1)), t(3, 5, 9))
    for name, core in cores.items():
        st.add("referrals_intake", core.referral_id, rf.ReferralAccepted(referral=core),
               REFERRALS[name][0])
    # R2 corrected: revision 2 keeps only access_to_rights
    r2b = st.core("R2", REFERRALS["R2"][0], "msp", [Motive.access_to_rights], revision=2)
    st.add("referrals_intake", r2b.referral_id, rf.ReferralAccepted(referral=r2b, is_correction=True), t(3, 3, 12))
    for name, (received, _k, _m, route) in REFERRALS.items():
        if name == "R3":
            continue
        core = cores[name] if name != "R2" else r2b
        if route:
            st.add("routing_decisions", core.referral_id, rf.ReferralRouted(
                referral=core, structure=S, area=route[0], mediator_id=route[1],
                place=rf.PlaceRef(kind="commune", code="30140", name="Lasalle"),
                decision=rf.RoutingDecision(rule="exact_name", territory_version=1)),
                received.replace(hour=9))
        else:
            st.add("routing_decisions", core.referral_id, rf.ReferralUnroutable(
                referral=core, reason_code="outside_territory", reason="Commune hors territoire",
                structure=S), received.replace(hour=9))
    # an invalid correction of R1, refused: R1 stays accepted and counts once
    st.add("referrals_intake", cores["R1"].referral_id, rf.ReferralRejected(
        referral_id=cores["R1"].referral_id, source_system="sys-msp", source_reference="ref-R1",
        problems=[Problem(field="person.phone", code="invalid_format", message="invalide")]), t(3, 20))
    # two rejections; J1 has no id and is sent on two topics (two events, one referral)
    j1 = rf.ReferralRejected(source_system="sys-a", source_reference="ref-9",
                             problems=[Problem(field="person.birth_date", code="missing", message="manquant")])
    st.add("referrals_intake", "sys-a:ref-9", j1, t(3, 8))
    st.add("referrals_answers", "sys-a", j1, t(3, 8, 9))
    st.add("referrals_intake", uid("J2", ns), rf.ReferralRejected(
        referral_id=uid("J2", ns), source_system="sys-b", source_reference="ref-7",
        problems=[Problem(field="motives", code="missing", message="manquant")]), t(4, 2))

    c1, c2, c3 = st.case("C1", "vb", "m1"), st.case("C2", "vb", "m1"), st.case("C3", "vb", "m1")
    c4, c5, c6 = st.case("C4", "sh", "m2"), st.case("C5", "sh", "m2"), st.case("C6", "sh", "m2")

    def opened(ref, name, at, person, origin=CaseOrigin.referral, rname=None):
        rec = REFERRALS.get(rname or "")
        return cs.CaseOpened(case=ref, origin=origin, referral_id=uid(rname, ns) if rname else None,
                             referral_received_at=rec[0] if rec else None, person_ref=person,
                             motives=[MotiveItem(code=m) for m in rec[2]] if rec else [],
                             opened_at=at)

    def action(ref, name, kind, at, **kw):
        return cs.ActionRecorded(case=ref, action_id=uid(name, ns), axis=2, kind=kind,
                                 occurred_at=at, **kw)

    ev = []  # (key, payload, at)
    # C1: R1, first contact after 2 days, rights filed then opened, autonomy 3 -> 7, closed
    ev += [(c1, opened(c1, "C1", t(3, 2, 10), "p1", rname="R1"), t(3, 2, 10)),
           (c1, cs.FirstContactMade(case=c1, channel="phone", contacted_at=t(3, 4), attempts=1), t(3, 4)),
           (c1, action(c1, "A1", "interview", t(3, 4, 9)), t(3, 4, 9)),
           (c1, action(c1, "A2", "autonomy_assessment", t(3, 4, 10), autonomy_phase="T0", autonomy_score=3), t(3, 4, 10)),
           (c1, action(c1, "A3", "rights_procedure", t(3, 10), right="puma", body="cpam", status="filed"), t(3, 10)),
           (c1, action(c1, "A4", "orientation", t(3, 15), target="gp", lasting_care=True), t(3, 15)),
           (c1, action(c1, "A3", "rights_procedure", t(4, 10), right="puma", body="cpam", status="opened"), t(4, 10)),
           (c1, action(c1, "A5", "autonomy_assessment", t(4, 28), autonomy_phase="T1", autonomy_score=7), t(4, 28)),
           (c1, cs.CaseClosed(case=c1, reason=ClosureReason.autonomous, closed_at=t(5, 1)), t(5, 1))]
    # C2: R2, contact attempt, first contact after 4 days, accompaniment, CSS opened; open
    ev += [(c2, opened(c2, "C2", t(3, 3, 10), "p2", rname="R2"), t(3, 3, 10)),
           (c2, action(c2, "B1", "contact_attempt", t(3, 5)), t(3, 5)),
           (c2, cs.FirstContactMade(case=c2, channel="home_visit", contacted_at=t(3, 7), attempts=2), t(3, 7)),
           (c2, action(c2, "B2", "interview", t(3, 7, 9)), t(3, 7, 9)),
           # a second "first contact" recorded later (another channel): the first one stands
           (c2, cs.FirstContactMade(case=c2, channel="phone", contacted_at=t(3, 9), attempts=3), t(3, 9)),
           (c2, action(c2, "B3", "accompaniment", t(3, 20), target="hospital"), t(3, 20)),
           (c2, action(c2, "B4", "rights_procedure", t(3, 25), right="css", status="opened"), t(3, 25))]
    # C3: R3, told backwards (closure first): first contact after 1 day, closed 20 days later
    c3_events = [
        (c3, opened(c3, "C3", t(3, 5, 10), "p3", rname="R3"), t(3, 5, 10)),
        (c3, cs.FirstContactMade(case=c3, channel="permanence", contacted_at=t(3, 6), attempts=1), t(3, 6)),
        (c3, action(c3, "D1", "interview", t(3, 6, 9)), t(3, 6, 9)),
        (c3, action(c3, "D2", "autonomy_assessment", t(3, 6, 10), autonomy_phase="T0", autonomy_score=5), t(3, 6, 10)),
        (c3, action(c3, "D3", "orientation", t(3, 10), target="cmp", lasting_care=False), t(3, 10)),
        (c3, action(c3, "D4", "autonomy_assessment", t(3, 25), autonomy_phase="T1", autonomy_score=4), t(3, 25)),
        (c3, cs.CaseClosed(case=c3, reason=ClosureReason.relay_in_place, closed_at=t(3, 26)), t(3, 26))]
    ev += list(reversed(c3_events))
    # C4: R4, first contact after 10 days, closed then reopened (open now)
    ev += [(c4, opened(c4, "C4", t(3, 10, 10), "p4", rname="R4"), t(3, 10, 10)),
           (c4, cs.FirstContactMade(case=c4, channel="phone", contacted_at=t(3, 20), attempts=3), t(3, 20)),
           (c4, action(c4, "E1", "interview", t(3, 20, 9)), t(3, 20, 9)),
           (c4, action(c4, "E2", "information", t(3, 20, 10)), t(3, 20, 10)),
           (c4, action(c4, "E3", "accompaniment", t(4, 1)), t(4, 1)),
           (c4, action(c4, "E4", "accompaniment", t(4, 3), outcome="person_absent"), t(4, 3)),
           (c4, cs.CaseClosed(case=c4, reason=ClosureReason.autonomous, closed_at=t(4, 9)), t(4, 9)),
           (c4, cs.CaseReopened(case=c4, reopened_at=t(4, 15)), t(4, 15))]
    # C5: R5, never reached: first contact overdue (escalation)
    ev += [(c5, opened(c5, "C5", t(3, 12, 10), "p5", rname="R5"), t(3, 12, 10))]
    overdue = getattr(cs, "FirstContactOverdue", None)
    if overdue is not None:
        ev += [(c5, overdue(case=c5, level="escalation", notify_role="coordinator",
                            opened_at=t(3, 12, 10), due_at=t(3, 19), working_days=5,
                            detected_at=t(3, 19, 9)), t(3, 19, 9))]
    # C6: outreach, the same person as C2 (p2), met and interviewed on the spot
    ev += [(c6, opened(c6, "C6", t(4, 2, 10), "p2", origin=CaseOrigin.outreach), t(4, 2, 10)),
           (c6, cs.FirstContactMade(case=c6, channel="partner_place", contacted_at=t(4, 2, 10), attempts=1), t(4, 2, 10)),
           (c6, action(c6, "F1", "interview", t(4, 2, 11)), t(4, 2, 11))]
    for ref, payload, at in ev:
        st.add("cases", ref.case_id, payload, at)

    coll = getattr(cs, "CollectiveActionRecorded", None)
    if coll is not None:
        for name, kind, area, at, participants in [
                ("K1", "workshop", "sh", t(4, 5), 12), ("K2", "partner_meeting", "vb", t(4, 6), 0),
                ("K3", "professional_tool", None, t(4, 7), 0), ("K4", "awareness_session", "vb", t(5, 12), 8)]:
            st.add("cases", uid(name, ns), coll(
                collective_action_id=uid(name, ns), structure=S, area=area, kind=kind, axis=3,
                theme="prévention", held_on=at,
                attendance=cs.Attendance(participants=participants, professionals=2),
                recorded_by="m1", recorded_at=at), at)

    # alerts arrive before the dysfunctions they are about (another topic)
    d1, d2, d3 = uid("D1", ns), uid("D2", ns), uid("D3", ns)

    def aref(name, d, authority, cat):
        return al.AlertRef(alert_id=uid(name, ns), dysfunction_id=d, structure=S,
                           authority_id=authority, category=cat)
    a1, a2 = aref("AL1", d1, "ars", "care_refusal"), aref("AL2", d1, "defenseur", "care_refusal")
    a3 = aref("AL3", d2, "mairie", "insalubrious_housing")
    for ref, payload, at in [
            (a1, al.AlertDispatched(alert=a1, channel="webhook", attempt=1, dispatched_at=t(3, 15, 10)), t(3, 15, 10)),
            (a1, al.AlertAcknowledged(alert=a1, acknowledged_at=t(3, 16, 10), response="vu"), t(3, 16, 10)),
            (a2, al.AlertDeliveryFailed(alert=a2, channel="email", attempts=5, reason="timeout", failed_at=t(3, 15, 12)), t(3, 15, 12)),
            (a3, al.AlertDispatched(alert=a3, channel="email", attempt=1, dispatched_at=t(4, 1, 11)), t(4, 1, 11)),
            (a3, al.AlertEscalated(alert=a3, level=1, escalated_to="coordinator", escalated_at=t(4, 8)), t(4, 8))]:
        st.add("alerts", ref.alert_id, payload, at)
    for d, cat, area, at in [(d1, DysfunctionCategory.care_refusal, "vb", t(3, 15, 9)),
                             (d2, DysfunctionCategory.insalubrious_housing, "sh", t(4, 1, 10)),
                             (d3, DysfunctionCategory.rights_blockage, "sh", t(4, 20))]:
        st.add("dysfunctions", d, cs.DysfunctionReported(
            dysfunction_id=d, structure=S, area=area, category=cat, concerned="Cabinet X",
            description=f"Refus constaté pour {CANARY}", observed_on=at, reported_at=at), at)
    return st

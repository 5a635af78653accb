-- Read models of the reporting service, fed by events only (no identity in clear, ever).
--
-- Every table is maintained incrementally: one upsert per event. Upserts *fill columns*
-- (first/last times with least()/greatest(), latest-wins fields guarded by the event's own
-- business time or revision), so the final state does not depend on the order in which
-- events of different aggregates (or even of one aggregate, on replay) arrive, and applying
-- an event twice changes nothing. Indicator views (002) are derived from these tables.

-- A referral form as seen after intake: accepted (possibly corrected), rejected, routed.
CREATE TABLE IF NOT EXISTS referrals (
    referral_key        text PRIMARY KEY,   -- referral id, or src:<system>:<reference> for a rejection without id
    referral_id         uuid,
    env_structure       text,               -- structure named by the envelope, if any
    source_system       text,
    referrer_kind       text,               -- kind of referring structure (msp, hospital, cpam...)
    referrer_profession text,
    received_at         timestamptz,        -- first reception (least over revisions)
    accepted_at         timestamptz,
    rejected_at         timestamptz,
    revision            int NOT NULL DEFAULT 0,  -- highest revision seen (motives follow it)
    motives             text[],
    urgency             text,
    routing_at          timestamptz,        -- business time of the routing decision kept
    routing_status      text,               -- routed | unroutable
    structure           text,
    area                text,
    mediator_id         text,
    unroutable_reason   text
);
CREATE INDEX IF NOT EXISTS referrals_received ON referrals (received_at);

-- A case (dossier d'accompagnement).
CREATE TABLE IF NOT EXISTS cases (
    case_id                uuid PRIMARY KEY,
    structure              text,
    area                   text,
    mediator_id            text,
    assigned_at            timestamptz,     -- business time of the case ref kept (latest wins)
    origin                 text,
    referral_id            uuid,
    referral_received_at   timestamptz,
    source_system          text,
    person_ref             text,            -- blind index (reveals nothing by itself)
    motives                text[],
    motives_revision       int NOT NULL DEFAULT 0,
    urgency                text,
    attached_to_existing   boolean,
    opened_at              timestamptz,
    first_contact_at       timestamptz,
    first_contact_channel  text,
    first_contact_attempts int,
    closed_at              timestamptz,     -- latest closure
    closure_reason         text,            -- reason of the latest closure
    reopened_at            timestamptz,     -- latest reopening
    last_activity_at       timestamptz
);
CREATE INDEX IF NOT EXISTS cases_structure ON cases (structure, area, mediator_id);
CREATE INDEX IF NOT EXISTS cases_opened ON cases (opened_at);

-- Every closure (a case closed, reopened and closed again counts two closures).
CREATE TABLE IF NOT EXISTS case_closures (
    case_id     uuid NOT NULL,
    closed_at   timestamptz NOT NULL,
    reason      text NOT NULL,
    reason_kind text,
    structure   text,
    area        text,
    mediator_id text,
    PRIMARY KEY (case_id, closed_at)
);

-- Notices about a case: first contact overdue (reminder/escalation), inactivity.
CREATE TABLE IF NOT EXISTS case_notices (
    case_id     uuid NOT NULL,
    kind        text NOT NULL,
    level       text NOT NULL DEFAULT '',
    at          timestamptz NOT NULL,
    structure   text,
    area        text,
    mediator_id text,
    PRIMARY KEY (case_id, kind, level, at)
);

-- One thing done with or for a person (HAS axes 1..4); an action re-recorded with the
-- same id (e.g. a rights procedure going from filed to opened) keeps the latest content.
CREATE TABLE IF NOT EXISTS case_actions (
    action_id      uuid PRIMARY KEY,
    case_id        uuid NOT NULL,
    structure      text,
    area           text,
    mediator_id    text,
    axis           int,
    kind           text NOT NULL,
    occurred_at    timestamptz NOT NULL,
    outcome        text,
    right_code     text,
    body           text,
    status         text,
    lasting_care   boolean,
    autonomy_phase text,
    autonomy_score int,
    channel        text,
    target         text
);
CREATE INDEX IF NOT EXISTS case_actions_case ON case_actions (case_id);
CREATE INDEX IF NOT EXISTS case_actions_kind ON case_actions (kind, occurred_at);

-- Collective work: workshops, prevention actions, awareness sessions, partner meetings,
-- tools for professionals. Counts only.
CREATE TABLE IF NOT EXISTS collective_actions (
    collective_action_id uuid PRIMARY KEY,
    structure      text,
    area           text,
    recorded_by    text,
    kind           text NOT NULL,
    axis           int,
    theme          text,
    held_on        timestamptz NOT NULL,
    participants   int NOT NULL DEFAULT 0,
    professionals  int NOT NULL DEFAULT 0,
    new_people     int,
    partners       int NOT NULL DEFAULT 0,
    recorded_at    timestamptz
);

-- A dysfunction report (veille). Neither the description nor the concerned party is kept.
CREATE TABLE IF NOT EXISTS dysfunctions (
    dysfunction_id uuid PRIMARY KEY,
    case_id        uuid,
    structure      text,
    area           text,
    category       text NOT NULL,
    urgency        text,
    observed_on    timestamptz,
    reported_at    timestamptz NOT NULL,
    named_with_consent boolean
);

-- An alert: one dysfunction sent to one authority. Filled by any of its events, in any order.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id            uuid PRIMARY KEY,
    dysfunction_id      uuid,
    structure           text,
    authority_id        text,
    category            text,
    channel             text,
    first_dispatched_at timestamptz,
    last_dispatched_at  timestamptz,
    dispatch_attempts   int NOT NULL DEFAULT 0,
    failed_at           timestamptz,
    failed_reason       text,
    acknowledged_at     timestamptz,
    has_response        boolean NOT NULL DEFAULT false,
    escalation_level    int NOT NULL DEFAULT 0,
    escalated_at        timestamptz
);
CREATE INDEX IF NOT EXISTS alerts_dysfunction ON alerts (dysfunction_id);

-- Closed-loop feedback statuses sent to referrers (coarse).
CREATE TABLE IF NOT EXISTS referral_statuses (
    referral_id uuid NOT NULL,
    status      text NOT NULL,
    changed_at  timestamptz NOT NULL,
    outcome     text,
    PRIMARY KEY (referral_id, status, changed_at)
);

-- Freshness: per source topic, the newest event time applied and when it was applied.
CREATE TABLE IF NOT EXISTS freshness (
    source          text PRIMARY KEY,
    newest_event_at timestamptz,
    last_applied_at timestamptz,
    events          bigint NOT NULL DEFAULT 0
);

-- Events of known types that no projection uses yet (counted, so nothing goes unseen).
CREATE TABLE IF NOT EXISTS unprojected_events (
    event_type      text PRIMARY KEY,
    events          bigint NOT NULL DEFAULT 0,
    newest_event_at timestamptz
);

-- When the masked (published) tables were last computed, and from which freshness.
CREATE TABLE IF NOT EXISTS publications (
    name          text PRIMARY KEY,
    published_at  timestamptz NOT NULL,
    events_seen   bigint NOT NULL,
    threshold     int NOT NULL,
    masked_cells  int NOT NULL
);

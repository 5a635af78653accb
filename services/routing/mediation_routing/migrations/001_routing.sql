-- Routing: territory versions, the referrals it decided, the coordinator triage queue.

-- One row per version of one structure's territory (full snapshot, effective-dated).
CREATE TABLE IF NOT EXISTS territory_versions (
    structure       text        NOT NULL,
    version         integer     NOT NULL CHECK (version >= 1),
    effective_from  date        NOT NULL,
    document        jsonb       NOT NULL,
    source          text        NOT NULL,            -- packaged | event
    reason          text,
    received_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (structure, version)
);

-- The latest decision per referral (the events on routing.decisions are the history).
CREATE TABLE IF NOT EXISTS referrals (
    referral_id       uuid        PRIMARY KEY,
    revision          integer     NOT NULL,
    referral          jsonb       NOT NULL,          -- ReferralCore as accepted (identity sealed)
    referral_date     date        NOT NULL,
    correlation_id    text        NOT NULL,
    context_structure text,
    status            text        NOT NULL CHECK (status IN ('routed', 'unroutable')),
    structure         text,
    area              text,
    mediator_id       text,
    place_code        text,
    signature         jsonb       NOT NULL,
    decision          jsonb       NOT NULL,          -- the emitted payload's decision part
    manual            boolean     NOT NULL DEFAULT false,
    case_id           uuid,
    taken             boolean     NOT NULL DEFAULT false,   -- first contact made / reassigned
    closed            boolean     NOT NULL DEFAULT false,
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS referrals_open ON referrals (referral_date)
    WHERE NOT taken AND NOT closed AND NOT manual;
CREATE INDEX IF NOT EXISTS referrals_load ON referrals (mediator_id)
    WHERE status = 'routed' AND NOT closed;
CREATE INDEX IF NOT EXISTS referrals_case ON referrals (case_id);

-- Coordinator triage queue: one entry per referral that could not be routed safely.
CREATE TABLE IF NOT EXISTS triage (
    referral_id       uuid        PRIMARY KEY REFERENCES referrals (referral_id),
    structure         text,                          -- NULL: no structure known (any coordinator)
    area              text,
    reason_code       text        NOT NULL,
    reason_detail     text,
    reason            text        NOT NULL,
    candidates        jsonb       NOT NULL DEFAULT '[]'::jsonb,
    territory_version integer,
    status            text        NOT NULL DEFAULT 'open'
                      CHECK (status IN ('open', 'resolved', 'rerouted')),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    resolved_at       timestamptz,
    resolved_by       text
);
CREATE INDEX IF NOT EXISTS triage_open ON triage (structure, created_at) WHERE status = 'open';

-- Version numbers handed out by POST /territory/{structure}/versions (before the event
-- comes back through the topic), so that two publications never reuse a number.
CREATE TABLE IF NOT EXISTS territory_counters (
    structure    text    PRIMARY KEY,
    last_version integer NOT NULL
);

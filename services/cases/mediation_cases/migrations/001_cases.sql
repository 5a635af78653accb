-- Cases (dossiers d'accompagnement): the mediator's caseload. Identity stays sealed.

CREATE TABLE IF NOT EXISTS cases (
    case_id              uuid PRIMARY KEY,
    structure            text        NOT NULL,
    area                 text        NOT NULL,
    mediator_id          text        NOT NULL,
    origin               text        NOT NULL,
    person_ref           text,                       -- blind index, never the identity
    sealed               jsonb,                      -- identity block, sealed (person's key)
    status               text        NOT NULL DEFAULT 'open',
    version              integer     NOT NULL DEFAULT 1,
    motives              jsonb       NOT NULL DEFAULT '[]'::jsonb,
    urgency              text        NOT NULL DEFAULT 'normal',
    interpreter_needed   boolean     NOT NULL DEFAULT false,
    language             text,
    commune              text,                       -- official place name from routing
    correlation_id       text        NOT NULL,
    opened_at            timestamptz NOT NULL,
    first_contact_due    timestamptz,
    escalation_due       timestamptz,
    first_contact_at     timestamptz,
    first_contact_channel text,
    contact_attempts     integer     NOT NULL DEFAULT 0,
    reminder_sent_at     timestamptz,
    escalated_at         timestamptz,
    last_activity_at     timestamptz NOT NULL,
    inactive_flagged_at  timestamptz,
    closed_at            timestamptz,
    closure_reason       text,
    autonomy_t0          integer,
    autonomy_t1          integer
);

-- one open case per person and structure: the rule "attach, never a second case"
CREATE UNIQUE INDEX IF NOT EXISTS cases_one_open_per_person
    ON cases (structure, person_ref) WHERE status = 'open' AND person_ref IS NOT NULL;
CREATE INDEX IF NOT EXISTS cases_scope ON cases (structure, area, status);
CREATE INDEX IF NOT EXISTS cases_due ON cases (first_contact_due)
    WHERE status = 'open' AND first_contact_at IS NULL;

CREATE TABLE IF NOT EXISTS case_referrals (
    referral_id          uuid PRIMARY KEY,
    case_id              uuid        NOT NULL REFERENCES cases(case_id),
    revision             integer     NOT NULL,
    is_primary           boolean     NOT NULL,
    source_system        text        NOT NULL,
    source_reference     text        NOT NULL,
    received_at          timestamptz NOT NULL,
    structure            text        NOT NULL,
    area                 text        NOT NULL,
    mediator_id          text        NOT NULL,
    consent_share        boolean     NOT NULL,
    motives              jsonb       NOT NULL,
    urgency              text        NOT NULL,
    correlation_id       text        NOT NULL,
    attached_at          timestamptz NOT NULL,
    last_feedback        text                          -- last ReferralStatusChanged status sent
);
CREATE INDEX IF NOT EXISTS case_referrals_case ON case_referrals (case_id);

-- What was done: one row per contact attempt, interview, action, assessment, event.
CREATE TABLE IF NOT EXISTS case_timeline (
    entry_id     uuid PRIMARY KEY,
    seq          bigserial,
    case_id      uuid        NOT NULL REFERENCES cases(case_id),
    at           timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL,
    kind         text        NOT NULL,
    axis         integer,
    actor        text        NOT NULL,
    details      jsonb       NOT NULL DEFAULT '{}'::jsonb,   -- codes and counts only
    sealed_note  jsonb                                      -- free text, sealed
);
CREATE INDEX IF NOT EXISTS case_timeline_case ON case_timeline (case_id, at);

-- Every opening of sealed personal data: who, in which role, why, which fields.
CREATE TABLE IF NOT EXISTS personal_data_access (
    id          bigserial PRIMARY KEY,
    case_id     uuid        NOT NULL,
    actor       text        NOT NULL,
    role        text        NOT NULL,
    purpose     text        NOT NULL,
    fields      text[]      NOT NULL,
    at          timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS personal_data_access_case ON personal_data_access (case_id, at);

CREATE TABLE IF NOT EXISTS dysfunctions (
    dysfunction_id  uuid PRIMARY KEY,
    case_id         uuid,
    structure       text        NOT NULL,
    area            text,
    category        text        NOT NULL,
    urgency         text        NOT NULL,
    concerned       text        NOT NULL,
    observed_on     timestamptz NOT NULL,
    reported_at     timestamptz NOT NULL,
    reported_by     text        NOT NULL,
    consent_named   boolean     NOT NULL
);

CREATE TABLE IF NOT EXISTS collective_actions (
    collective_action_id uuid PRIMARY KEY,
    structure     text        NOT NULL,
    area          text,
    kind          text        NOT NULL,
    theme         text        NOT NULL,
    held_on       timestamptz NOT NULL,
    place         text,
    partners      jsonb       NOT NULL DEFAULT '[]'::jsonb,
    attendance    jsonb       NOT NULL,
    recorded_by   text        NOT NULL,
    recorded_at   timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS collective_actions_scope ON collective_actions (structure, held_on);

-- Alerts: directory and rules per structure, dysfunctions, alerts, dispatches, attempts.

-- A structure's own authorities (override the defaults of data/defaults.json by id).
CREATE TABLE IF NOT EXISTS authorities (
    structure       text        NOT NULL,
    authority_id    text        NOT NULL,
    name            text        NOT NULL,
    channels        text[]      NOT NULL DEFAULT '{}',
    webhook_url     text,
    webhook_secret  text,
    email           text,
    ack             jsonb       NOT NULL DEFAULT '{}'::jsonb,
    updated_at      timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (structure, authority_id)
);

-- A structure's own rules (win over the defaults).
CREATE TABLE IF NOT EXISTS rules (
    structure          text    NOT NULL,
    rule_id            text    NOT NULL,
    category           text    NOT NULL,
    authorities        text[]  NOT NULL,
    escalation         text[]  NOT NULL DEFAULT '{}',
    urgencies          text[]  NOT NULL DEFAULT '{}',
    communes           text[]  NOT NULL DEFAULT '{}',
    requires_identity  boolean NOT NULL DEFAULT false,
    priority           int     NOT NULL DEFAULT 100,
    updated_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (structure, rule_id)
);

-- Dysfunctions as reported (no identity in clear: the sealed block stays sealed here).
CREATE TABLE IF NOT EXISTS dysfunctions (
    dysfunction_id   uuid PRIMARY KEY,
    structure        text        NOT NULL,
    area             text,
    case_id          uuid,
    category         text        NOT NULL,
    urgency          text        NOT NULL,
    concerned        text        NOT NULL,
    commune          text,
    description      text        NOT NULL,
    observed_on      timestamptz NOT NULL,
    reported_at      timestamptz NOT NULL,
    consented        boolean     NOT NULL DEFAULT false,
    sealed_identity  jsonb,
    rule_id          text        NOT NULL,
    correlation_id   text        NOT NULL,
    source_event_id  uuid        NOT NULL,
    received_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS dysfunctions_structure ON dysfunctions (structure, reported_at);

-- One alert = one dysfunction sent to one authority.
CREATE TABLE IF NOT EXISTS alerts (
    alert_id           uuid PRIMARY KEY,
    dysfunction_id     uuid        NOT NULL REFERENCES dysfunctions,
    structure          text        NOT NULL,
    authority_id       text        NOT NULL,
    authority_name     text        NOT NULL,
    category           text        NOT NULL,
    urgency            text        NOT NULL,
    requires_identity  boolean     NOT NULL DEFAULT false,
    parent_alert_id    uuid,
    escalation_seq     text[]      NOT NULL DEFAULT '{}',
    escalation_level   int         NOT NULL DEFAULT 0,
    -- pending -> dispatched -> acknowledged | escalated ; pending -> failed
    status             text        NOT NULL DEFAULT 'pending',
    created_at         timestamptz NOT NULL,
    first_delivered_at timestamptz,
    ack_due_at         timestamptz,
    acknowledged_at    timestamptz,
    ack_via            text,
    response           text,
    failed_at          timestamptz,
    failure_reason     text,
    escalated_at       timestamptz,
    escalated_to       text,
    UNIQUE (dysfunction_id, authority_id)
);
CREATE INDEX IF NOT EXISTS alerts_ack_due ON alerts (ack_due_at)
    WHERE acknowledged_at IS NULL AND ack_due_at IS NOT NULL;
CREATE INDEX IF NOT EXISTS alerts_authority ON alerts (authority_id, structure);
CREATE INDEX IF NOT EXISTS alerts_structure ON alerts (structure, created_at);

-- One dispatch = one message (the alert, or a notice to the coordinator) on one channel.
CREATE TABLE IF NOT EXISTS dispatches (
    dispatch_id      uuid PRIMARY KEY,
    alert_id         uuid        NOT NULL REFERENCES alerts,
    message_id       uuid        NOT NULL,   -- idempotency key, the same on every re-send
    purpose          text        NOT NULL,   -- alert | coordinator_notice
    recipient        text        NOT NULL,   -- authority id the message goes to
    channel          text        NOT NULL,   -- webhook | email | kafka
    notice_reason    text,
    state            text        NOT NULL DEFAULT 'pending',  -- pending | delivered | failed
    attempts         int         NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL,
    created_at       timestamptz NOT NULL,
    delivered_at     timestamptz,
    last_error       text,
    UNIQUE (message_id, channel)
);
CREATE INDEX IF NOT EXISTS dispatches_due ON dispatches (next_attempt_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS dispatches_alert ON dispatches (alert_id);

-- Every delivery attempt, whatever its outcome.
CREATE TABLE IF NOT EXISTS attempts (
    id           bigserial PRIMARY KEY,
    dispatch_id  uuid        NOT NULL REFERENCES dispatches,
    attempt      int         NOT NULL,
    channel      text        NOT NULL,
    endpoint     text,                      -- URL host or SMTP host:port, no secrets
    started_at   timestamptz NOT NULL,
    duration_ms  int         NOT NULL,
    outcome      text        NOT NULL,      -- delivered | retry | failed | circuit_open
    detail       text,                      -- http_500, timeout, connection_refused, smtp_451...
    http_status  int
);
CREATE INDEX IF NOT EXISTS attempts_dispatch ON attempts (dispatch_id);

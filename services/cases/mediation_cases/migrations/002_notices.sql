-- Notices for people: first-contact reminders (mediator), escalations (coordinator),
-- inactivity flags (mediator). Resolved by an acknowledgement or by the work they ask for.
CREATE TABLE IF NOT EXISTS notices (
    notice_id        uuid PRIMARY KEY,
    case_id          uuid        NOT NULL REFERENCES cases(case_id),
    kind             text        NOT NULL,   -- first_contact_reminder, first_contact_escalation, inactivity
    notify_role      text        NOT NULL,   -- mediator | coordinator
    notify_id        text,                   -- the mediator, for mediator notices
    structure        text        NOT NULL,
    area             text        NOT NULL,
    due_at           timestamptz,
    created_at       timestamptz NOT NULL,
    resolved_at      timestamptz,
    resolved_by      text                    -- who acknowledged, or system:<what resolved it>
);
CREATE INDEX IF NOT EXISTS notices_open ON notices (structure, notify_role) WHERE resolved_at IS NULL;
CREATE INDEX IF NOT EXISTS notices_case ON notices (case_id) WHERE resolved_at IS NULL;

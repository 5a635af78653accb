-- Reliable messaging tables, created in every service's own schema.

-- Transactional outbox: events written in the same transaction as the state change
-- that produced them; the relay publishes then deletes them.
CREATE TABLE IF NOT EXISTS outbox (
    id          bigserial PRIMARY KEY,
    event_id    uuid        NOT NULL UNIQUE,
    topic       text        NOT NULL,
    key         bytea,
    value       bytea       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Inbox: ids of consumed events, written in the same transaction as their effect, so a
-- redelivered event is a no-op. Keyed by consumer so one schema can host several.
CREATE TABLE IF NOT EXISTS inbox (
    consumer     text        NOT NULL,
    event_id     text        NOT NULL,
    processed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer, event_id)
);
CREATE INDEX IF NOT EXISTS inbox_processed_at ON inbox (processed_at);

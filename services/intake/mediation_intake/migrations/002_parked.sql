-- Kafka forms over their source system's budget, parked until the drainer takes them at that
-- budget (round-robin across sources, oldest first within a source). Written in the consumer's
-- batch transaction (with the inbox row), deleted in the transaction that takes the form.
-- The form itself is sealed (AES-256-GCM, the ops key MEDIATION_DLQ_KEY, associated data =
-- event_id): nothing personal is readable here.
CREATE TABLE IF NOT EXISTS parked (
    id             bigserial   PRIMARY KEY,       -- arrival order: a source drains in id order
    event_id       uuid        NOT NULL UNIQUE,   -- the ReferralReceived envelope's id
    source_system  text        NOT NULL,          -- well-formed system id, or 'unknown'
    correlation_id text        NOT NULL,
    structure      text,
    occurred_at    timestamptz NOT NULL,          -- envelope's occurred_at
    received_at    timestamptz NOT NULL,          -- when intake parked it
    size           int         NOT NULL,          -- the Kafka record's size (size rule)
    sealed         bytea       NOT NULL           -- nonce (12 bytes) || AES-GCM(payload JSON)
);
CREATE INDEX IF NOT EXISTS parked_source ON parked (source_system, id);

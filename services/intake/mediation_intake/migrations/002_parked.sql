-- Kafka forms parked because their source system was over its budget, or already had forms
-- parked (parking.py). Written in the consumer's batch transaction (with the inbox row),
-- deleted in the drainer's transaction that takes the form: a crash loses and doubles nothing.
-- Ids and positions only in clear; the record itself (key, value, headers) is sealed
-- (AES-256-GCM, the ops key MEDIATION_DLQ_KEY, associated data = event id).
CREATE TABLE IF NOT EXISTS parked (
    id             bigserial   PRIMARY KEY,       -- arrival order: a source drains in id order
    event_id       uuid        NOT NULL UNIQUE,   -- the ReferralReceived envelope's id
    source_system  text        NOT NULL,          -- well-formed system id, or 'unknown'
    correlation_id text        NOT NULL,
    structure      text,
    size           int         NOT NULL,          -- the Kafka record's size (the size rule)
    topic          text        NOT NULL,          -- where it was read (dead letters name it)
    partition      int         NOT NULL,
    "offset"       bigint      NOT NULL,
    parked_at      timestamptz NOT NULL DEFAULT now(),
    sealed         bytea       NOT NULL           -- nonce (12 bytes) || AES-GCM(record JSON)
);
CREATE INDEX IF NOT EXISTS parked_source ON parked (source_system, id);

-- Wake the drainer when parked rows COMMIT (NOTIFY is delivered at commit); the drainer
-- also polls, in case a notification is lost.
CREATE OR REPLACE FUNCTION parked_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mediation_intake_parked', TG_TABLE_SCHEMA);
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER parked_notify AFTER INSERT ON parked
    FOR EACH STATEMENT EXECUTE FUNCTION parked_notify();

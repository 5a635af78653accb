-- Wake the outbox relay when outbox rows COMMIT (NOTIFY is delivered at commit, so the
-- relay never wakes before the rows are visible). Payload: the schema, so relays of
-- several services sharing a database only wake for their own outbox.
CREATE OR REPLACE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('mediation_outbox', TG_TABLE_SCHEMA);
    RETURN NULL;
END $$;

CREATE OR REPLACE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();

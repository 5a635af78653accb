-- the batched toy: deferred effects (n must not be negative) and one row per prepare step
CREATE TABLE IF NOT EXISTS batched_effects (
    ping_id  uuid PRIMARY KEY,
    n        int  NOT NULL CHECK (n >= 0),
    prepared boolean NOT NULL
);
CREATE TABLE IF NOT EXISTS prepares (
    id       bigserial PRIMARY KEY,
    messages int NOT NULL
);

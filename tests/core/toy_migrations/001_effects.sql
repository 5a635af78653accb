CREATE TABLE IF NOT EXISTS effects (
    id       bigserial PRIMARY KEY,
    ping_id  uuid NOT NULL,
    n        int  NOT NULL
);

-- Intake's own state: referrals as received (dedup keys, revision, sealed personal data),
-- rejections (codes only, no values) and erasures (crypto-shredding records).

CREATE TABLE IF NOT EXISTS referrals (
    referral_id      uuid        PRIMARY KEY,   -- uuid5 of (source_system, source_reference)
    source_system    text        NOT NULL,
    source_reference text        NOT NULL,
    revision         int         NOT NULL DEFAULT 0,  -- 0 while the first version is being taken
    content_hash     text,                      -- keyed HMAC of the normalised form (dedup)
    person_ref       text,                      -- blind index of the normalised identity
    key_id           text,                      -- the person's data key that sealed `sealed`
    sealed           jsonb,                     -- SealedBlock; NULL once erased
    commune          text,
    postcode         text,
    received_at      timestamptz NOT NULL,      -- first reception (delays count from here)
    updated_at       timestamptz NOT NULL,
    duplicates       int         NOT NULL DEFAULT 0,
    erased_at        timestamptz,
    UNIQUE (source_system, source_reference)
);
CREATE INDEX IF NOT EXISTS referrals_person_ref ON referrals (person_ref);

CREATE TABLE IF NOT EXISTS rejections (
    id               bigserial   PRIMARY KEY,
    referral_id      uuid,
    source_system    text,
    source_reference text,
    channel          text        NOT NULL,      -- kafka or http
    codes            text[]      NOT NULL,
    rejected_at      timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS rejections_source ON rejections (source_system, rejected_at);

CREATE TABLE IF NOT EXISTS erasures (
    id          bigserial   PRIMARY KEY,
    person_ref  text        NOT NULL,
    referral_id uuid,
    key_ids     text[]      NOT NULL,
    actor       text        NOT NULL,
    reason      text        NOT NULL,
    erased_at   timestamptz NOT NULL
);

-- SQLite schema version 1: the audit trail, feedback, jti replay store and card lifecycle.
-- IF NOT EXISTS: databases created before numbered migrations already hold these tables
-- (their missing columns are added by storage/migrations.py after this file).
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hook_call (
    id             INTEGER PRIMARY KEY,
    hook_instance  TEXT NOT NULL,
    service_id     TEXT NOT NULL,
    hook           TEXT NOT NULL,
    patient_hash   TEXT NOT NULL,
    evaluated_at   TEXT NOT NULL,           -- "now" of the assessment (request time, UTC)
    recorded_at    TEXT NOT NULL,
    data_origin    TEXT,                    -- JSON: prefetch key -> prefetch/fetched/null
    assessment     TEXT,                    -- JSON; null when no assessment was made
    service_version TEXT                    -- version.full_version() of the code that answered
);
CREATE INDEX IF NOT EXISTS hook_call_instance ON hook_call (hook_instance);
CREATE INDEX IF NOT EXISTS hook_call_patient ON hook_call (patient_hash);
CREATE TABLE IF NOT EXISTS card (
    uuid       TEXT PRIMARY KEY,
    call_id    INTEGER NOT NULL REFERENCES hook_call (id),
    kind       TEXT NOT NULL,
    indicator  TEXT NOT NULL,
    summary    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS card_call ON card (call_id);
CREATE TABLE IF NOT EXISTS suggestion (
    uuid       TEXT PRIMARY KEY,
    card_uuid  TEXT NOT NULL REFERENCES card (uuid),
    label      TEXT NOT NULL,
    actions    TEXT NOT NULL                -- e.g. "create:MedicationRequest,delete"
);
CREATE INDEX IF NOT EXISTS suggestion_card ON suggestion (card_uuid);
CREATE TABLE IF NOT EXISTS feedback (
    id                   INTEGER PRIMARY KEY,
    service_id           TEXT NOT NULL,
    card_uuid            TEXT NOT NULL,
    outcome              TEXT NOT NULL,
    outcome_timestamp    TEXT NOT NULL,     -- normalised to UTC
    accepted_suggestions TEXT,              -- JSON array of suggestion uuids
    override_code        TEXT,
    override_system      TEXT,
    override_display     TEXT,
    override_comment     TEXT,
    matched              INTEGER NOT NULL,  -- 1: the card uuid was issued by this service
    received_at          TEXT NOT NULL,
    UNIQUE (card_uuid, outcome, outcome_timestamp)
);
CREATE INDEX IF NOT EXISTS feedback_card ON feedback (card_uuid);
CREATE TABLE IF NOT EXISTS jwt_jti (            -- replay protection shared by all workers
    iss        TEXT NOT NULL,
    jti        TEXT NOT NULL,
    expires_at REAL NOT NULL,                   -- epoch seconds (token exp + leeway)
    PRIMARY KEY (iss, jti)
);
CREATE INDEX IF NOT EXISTS jwt_jti_expiry ON jwt_jti (expires_at);
-- Card lifecycle (clinical-rules §18.3; hooks/lifecycle.py): every patient-view card the
-- service built, shown or suppressed, with its fingerprint and the keys of the repeat and
-- snooze rules. Ids are pseudonyms (keyed hashes), never the raw user, patient or encounter id.
CREATE TABLE IF NOT EXISTS card_lifecycle (
    id             INTEGER PRIMARY KEY,
    card_uuid      TEXT NOT NULL UNIQUE,     -- joins card.uuid when shown; feedback.card_uuid
    hook_instance  TEXT NOT NULL,
    service_id     TEXT NOT NULL,
    kind           TEXT NOT NULL,
    indicator      TEXT NOT NULL,
    fingerprint    TEXT NOT NULL,            -- kind + recommendation (hash)
    user_hash      TEXT NOT NULL,            -- keyed hash of context.userId, or 'anonymous'
    patient_hash   TEXT NOT NULL,
    encounter_hash TEXT NOT NULL,            -- keyed hash of context.encounterId, or ''
    situation      TEXT NOT NULL,            -- digest: orders, drafts, platelets, contraindications
    at_epoch       REAL NOT NULL,            -- lifecycle time of the call (epoch seconds)
    status         TEXT NOT NULL,            -- 'shown' | 'suppressed'
    reason         TEXT                      -- null | 'info_repeat' | 'override_snooze'
);
CREATE INDEX IF NOT EXISTS card_lifecycle_key
    ON card_lifecycle (patient_hash, user_hash, encounter_hash, fingerprint, at_epoch);
CREATE INDEX IF NOT EXISTS card_lifecycle_status ON card_lifecycle (status, kind);

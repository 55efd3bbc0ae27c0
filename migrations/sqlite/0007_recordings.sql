-- Call recordings (sqlite). Keep in step with ../postgres/0007_recordings.sql.
-- A phone service's recording settings (JSON: enabled, announcement by language, opt-out,
-- whether Twilio keeps its copy); NULL is "not recorded".
ALTER TABLE phone_numbers ADD COLUMN recording TEXT;
-- How long recordings are kept (NULL: as long as their call record).
ALTER TABLE organizations ADD COLUMN recording_retention_days INTEGER;

-- One recording per call. The audio itself is in the recording store (`object_key`), sealed
-- under a key of its own (`key_enc`, itself sealed under the master key). No cascade from the
-- call: the stored audio must be erased before its row, so a call with a recording cannot be
-- deleted until the recording is.
CREATE TABLE recordings (
    id           BLOB PRIMARY KEY,
    org_id       BLOB NOT NULL REFERENCES organizations(id),
    call_id      BLOB NOT NULL UNIQUE REFERENCES calls(id),
    status       TEXT NOT NULL CHECK (status IN ('recording', 'processing', 'stored', 'opted_out', 'absent', 'failed')),
    source       TEXT NOT NULL CHECK (source IN ('carrier', 'switchboard')),
    announcement TEXT,
    -- Twilio's RecordingSid, for carrier recordings.
    carrier_sid  TEXT,
    channels     INTEGER,
    duration_ms  INTEGER,
    bytes        INTEGER,
    object_key   TEXT,
    key_enc      BLOB,
    detail       TEXT,
    -- Downloads from the carrier tried so far.
    attempts     INTEGER NOT NULL DEFAULT 0,
    opted_out_at TEXT,
    created_at   TEXT NOT NULL,
    stored_at    TEXT
);
CREATE INDEX recordings_org ON recordings (org_id, created_at);

-- Foundation schema (SQLite). Keep in step with ../postgres/0001_foundation.sql.
-- Every tenant-owned table carries org_id; ids are UUIDv7; times are RFC 3339 text (UTC).

CREATE TABLE organizations (
    id                        BLOB PRIMARY KEY,
    name                      TEXT NOT NULL,
    transcript_retention_days INTEGER,
    record_retention_days     INTEGER,
    created_at                TEXT NOT NULL
);

CREATE TABLE users (
    id            BLOB PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
);

CREATE TABLE memberships (
    org_id     BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id    BLOB NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at TEXT NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE api_tokens (
    id           BLOB PRIMARY KEY,
    org_id       BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    revoked_at   TEXT
);
CREATE INDEX api_tokens_org ON api_tokens (org_id, id);

CREATE TABLE phone_providers (
    id                 BLOB PRIMARY KEY,
    org_id             BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('twilio')),
    account_sid        TEXT NOT NULL,
    auth_token_enc     BLOB NOT NULL,
    api_key_sid        TEXT,
    api_key_secret_enc BLOB,
    status             TEXT NOT NULL,
    last_verified_at   TEXT,
    last_error         TEXT,
    created_at         TEXT NOT NULL,
    updated_at         TEXT NOT NULL,
    UNIQUE (org_id, account_sid)
);

CREATE TABLE llm_providers (
    id            BLOB PRIMARY KEY,
    org_id        BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    base_url      TEXT NOT NULL,
    api_key_enc   BLOB,
    default_model TEXT NOT NULL,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);
CREATE INDEX llm_providers_org ON llm_providers (org_id, id);

CREATE TABLE apps (
    id          BLOB PRIMARY KEY,
    org_id      BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX apps_org ON apps (org_id, id);

-- A foreign key without ON DELETE refuses to delete a row still referenced (NO ACTION).
-- An agent's editable settings are one JSON document (the AgentSpec); name and LLM provider are
-- also columns, for listing and for the foreign key.
CREATE TABLE agents (
    id              BLOB PRIMARY KEY,
    org_id          BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    app_id          BLOB NOT NULL REFERENCES apps(id),
    name            TEXT NOT NULL,
    llm_provider_id BLOB REFERENCES llm_providers(id),
    spec            TEXT NOT NULL,
    version         INTEGER NOT NULL,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);
CREATE INDEX agents_app ON agents (org_id, app_id, id);

CREATE TABLE agent_versions (
    agent_id   BLOB NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    org_id     BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    version    INTEGER NOT NULL,
    spec       TEXT NOT NULL,
    created_at TEXT NOT NULL,
    PRIMARY KEY (agent_id, version)
);

CREATE TABLE phone_numbers (
    id                      BLOB PRIMARY KEY,
    org_id                  BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    app_id                  BLOB NOT NULL REFERENCES apps(id),
    provider_id             BLOB NOT NULL REFERENCES phone_providers(id),
    agent_id                BLOB NOT NULL REFERENCES agents(id),
    number                  TEXT NOT NULL UNIQUE,
    twilio_sid              TEXT,
    area_code               TEXT,
    expand_languages        INTEGER NOT NULL,
    languages               TEXT NOT NULL,
    generate_first_message  INTEGER NOT NULL,
    generated_first_message TEXT,
    mode                    TEXT NOT NULL CHECK (mode IN ('conversation_relay', 'media_stream')),
    status                  TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'error')),
    previous_voice_settings TEXT,
    created_at              TEXT NOT NULL,
    updated_at              TEXT NOT NULL
);
CREATE INDEX phone_numbers_app ON phone_numbers (org_id, app_id, id);

-- Call records outlive the numbers and agents that handled them.
CREATE TABLE calls (
    id              BLOB PRIMARY KEY,
    org_id          BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    app_id          BLOB REFERENCES apps(id) ON DELETE SET NULL,
    phone_number_id BLOB REFERENCES phone_numbers(id) ON DELETE SET NULL,
    provider_id     BLOB REFERENCES phone_providers(id) ON DELETE SET NULL,
    agent_id        BLOB REFERENCES agents(id) ON DELETE SET NULL,
    agent_version   INTEGER,
    call_sid        TEXT NOT NULL UNIQUE,
    from_number     TEXT NOT NULL,
    to_number       TEXT NOT NULL,
    direction       TEXT NOT NULL,
    status          TEXT NOT NULL,
    -- SequenceNumber of the status callback that set `status` (callbacks may arrive out of order).
    status_sequence INTEGER,
    started_at      TEXT NOT NULL,
    answered_at     TEXT,
    ended_at        TEXT,
    duration_secs   INTEGER,
    ended_by        TEXT,
    ended_reason    TEXT,
    outcome         TEXT,
    summary         TEXT,
    language        TEXT,
    -- Twilio's ErrorCode when the call reached our fallback URL.
    error_code      TEXT
);
CREATE INDEX calls_org_started ON calls (org_id, started_at, id);
CREATE INDEX calls_agent ON calls (org_id, agent_id, started_at);

CREATE TABLE conversation_turns (
    call_id     BLOB NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    org_id      BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    sequence    INTEGER NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('agent', 'caller', 'tool', 'system')),
    text        TEXT NOT NULL,
    language    TEXT,
    started_at  TEXT NOT NULL,
    ended_at    TEXT,
    interrupted INTEGER NOT NULL,
    latency_ms  INTEGER,
    PRIMARY KEY (call_id, sequence)
);

CREATE TABLE automations (
    id         BLOB PRIMARY KEY,
    org_id     BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    app_id     BLOB NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    trigger    TEXT NOT NULL,
    filters    TEXT NOT NULL,
    actions    TEXT NOT NULL,
    enabled    INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

CREATE TABLE automation_runs (
    id              BLOB PRIMARY KEY,
    org_id          BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    automation_id   BLOB NOT NULL REFERENCES automations(id) ON DELETE CASCADE,
    call_id         BLOB REFERENCES calls(id) ON DELETE SET NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    last_error      TEXT,
    next_attempt_at TEXT,
    created_at      TEXT NOT NULL,
    updated_at      TEXT NOT NULL
);

CREATE TABLE audit_log (
    id            BLOB PRIMARY KEY,
    org_id        BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT,
    details       TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
CREATE INDEX audit_log_org ON audit_log (org_id, id);

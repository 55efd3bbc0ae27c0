-- Foundation schema (PostgreSQL). Keep in step with ../sqlite/0001_foundation.sql.
-- Every tenant-owned table carries org_id; ids are UUIDv7; times are timestamptz (UTC).

CREATE TABLE organizations (
    id                        UUID PRIMARY KEY,
    name                      TEXT NOT NULL,
    transcript_retention_days INTEGER,
    record_retention_days     INTEGER,
    created_at                TIMESTAMPTZ NOT NULL
);

CREATE TABLE users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);

CREATE TABLE memberships (
    org_id     UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    user_id    UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role       TEXT NOT NULL CHECK (role IN ('owner', 'admin', 'member')),
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (org_id, user_id)
);

CREATE TABLE api_tokens (
    id           UUID PRIMARY KEY,
    org_id       UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name         TEXT NOT NULL,
    token_hash   TEXT NOT NULL UNIQUE,
    created_at   TIMESTAMPTZ NOT NULL,
    last_used_at TIMESTAMPTZ,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX api_tokens_org ON api_tokens (org_id, id);

CREATE TABLE phone_providers (
    id                 UUID PRIMARY KEY,
    org_id             UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name               TEXT NOT NULL,
    kind               TEXT NOT NULL CHECK (kind IN ('twilio')),
    account_sid        TEXT NOT NULL,
    auth_token_enc     BYTEA NOT NULL,
    api_key_sid        TEXT,
    api_key_secret_enc BYTEA,
    status             TEXT NOT NULL,
    last_verified_at   TIMESTAMPTZ,
    last_error         TEXT,
    created_at         TIMESTAMPTZ NOT NULL,
    updated_at         TIMESTAMPTZ NOT NULL,
    UNIQUE (org_id, account_sid)
);

CREATE TABLE llm_providers (
    id            UUID PRIMARY KEY,
    org_id        UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name          TEXT NOT NULL,
    base_url      TEXT NOT NULL,
    api_key_enc   BYTEA,
    default_model TEXT NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL,
    updated_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX llm_providers_org ON llm_providers (org_id, id);

CREATE TABLE apps (
    id          UUID PRIMARY KEY,
    org_id      UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX apps_org ON apps (org_id, id);

-- A foreign key without ON DELETE refuses to delete a row still referenced (NO ACTION).
-- An agent's editable settings are one JSON document (the AgentSpec); name and LLM provider are
-- also columns, for listing and for the foreign key.
CREATE TABLE agents (
    id              UUID PRIMARY KEY,
    org_id          UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    app_id          UUID NOT NULL REFERENCES apps(id),
    name            TEXT NOT NULL,
    llm_provider_id UUID REFERENCES llm_providers(id),
    spec            JSONB NOT NULL,
    version         BIGINT NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);
CREATE INDEX agents_app ON agents (org_id, app_id, id);

CREATE TABLE agent_versions (
    agent_id   UUID NOT NULL REFERENCES agents(id) ON DELETE CASCADE,
    org_id     UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    version    BIGINT NOT NULL,
    spec       JSONB NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (agent_id, version)
);

CREATE TABLE phone_numbers (
    id                      UUID PRIMARY KEY,
    org_id                  UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    app_id                  UUID NOT NULL REFERENCES apps(id),
    provider_id             UUID NOT NULL REFERENCES phone_providers(id),
    agent_id                UUID NOT NULL REFERENCES agents(id),
    number                  TEXT NOT NULL UNIQUE,
    twilio_sid              TEXT,
    area_code               TEXT,
    expand_languages        BOOLEAN NOT NULL,
    languages               JSONB NOT NULL,
    generate_first_message  BOOLEAN NOT NULL,
    generated_first_message TEXT,
    mode                    TEXT NOT NULL CHECK (mode IN ('conversation_relay', 'media_stream')),
    status                  TEXT NOT NULL CHECK (status IN ('active', 'disabled', 'error')),
    previous_voice_settings JSONB,
    created_at              TIMESTAMPTZ NOT NULL,
    updated_at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX phone_numbers_app ON phone_numbers (org_id, app_id, id);

-- Call records outlive the numbers and agents that handled them.
CREATE TABLE calls (
    id              UUID PRIMARY KEY,
    org_id          UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    app_id          UUID REFERENCES apps(id) ON DELETE SET NULL,
    phone_number_id UUID REFERENCES phone_numbers(id) ON DELETE SET NULL,
    provider_id     UUID REFERENCES phone_providers(id) ON DELETE SET NULL,
    agent_id        UUID REFERENCES agents(id) ON DELETE SET NULL,
    agent_version   BIGINT,
    call_sid        TEXT NOT NULL UNIQUE,
    from_number     TEXT NOT NULL,
    to_number       TEXT NOT NULL,
    direction       TEXT NOT NULL,
    status          TEXT NOT NULL,
    -- SequenceNumber of the status callback that set `status` (callbacks may arrive out of order).
    status_sequence BIGINT,
    started_at      TIMESTAMPTZ NOT NULL,
    answered_at     TIMESTAMPTZ,
    ended_at        TIMESTAMPTZ,
    duration_secs   BIGINT,
    ended_by        TEXT,
    ended_reason    TEXT,
    outcome         TEXT,
    summary         TEXT,
    language        TEXT,
    -- Twilio's ErrorCode when the call reached our fallback URL.
    error_code      TEXT
);
CREATE INDEX calls_org_started ON calls (org_id, started_at DESC, id DESC);
CREATE INDEX calls_agent ON calls (org_id, agent_id, started_at);

CREATE TABLE conversation_turns (
    call_id     UUID NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    org_id      UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    sequence    BIGINT NOT NULL,
    role        TEXT NOT NULL CHECK (role IN ('agent', 'caller', 'tool', 'system')),
    text        TEXT NOT NULL,
    language    TEXT,
    started_at  TIMESTAMPTZ NOT NULL,
    ended_at    TIMESTAMPTZ,
    interrupted BOOLEAN NOT NULL,
    latency_ms  BIGINT,
    PRIMARY KEY (call_id, sequence)
);

CREATE TABLE automations (
    id         UUID PRIMARY KEY,
    org_id     UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    app_id     UUID NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name       TEXT NOT NULL,
    trigger    TEXT NOT NULL,
    filters    JSONB NOT NULL,
    actions    JSONB NOT NULL,
    enabled    BOOLEAN NOT NULL,
    created_at TIMESTAMPTZ NOT NULL,
    updated_at TIMESTAMPTZ NOT NULL
);

CREATE TABLE automation_runs (
    id              UUID PRIMARY KEY,
    org_id          UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    automation_id   UUID NOT NULL REFERENCES automations(id) ON DELETE CASCADE,
    call_id         UUID REFERENCES calls(id) ON DELETE SET NULL,
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    last_error      TEXT,
    next_attempt_at TIMESTAMPTZ,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL
);

CREATE TABLE audit_log (
    id            UUID PRIMARY KEY,
    org_id        UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    actor         TEXT NOT NULL,
    action        TEXT NOT NULL,
    resource_type TEXT NOT NULL,
    resource_id   TEXT,
    details       JSONB NOT NULL,
    created_at    TIMESTAMPTZ NOT NULL
);
CREATE INDEX audit_log_org ON audit_log (org_id, id);

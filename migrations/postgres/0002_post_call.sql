-- Post-call work (PostgreSQL). Keep in step with ../sqlite/0002_post_call.sql.
-- Finalisation with an outbox, automations as a durable job queue, tickets, classification.

-- A call is finalised exactly once: the UPDATE that sets finalized_at also writes its event.
ALTER TABLE calls ADD COLUMN finalized_at TIMESTAMPTZ;
-- The node whose agent session holds the call (restart recovery only touches its own calls).
ALTER TABLE calls ADD COLUMN session_node TEXT;
-- AI classification: the whole result as JSON, and the fields analytics group by.
ALTER TABLE calls ADD COLUMN analysis JSONB;
ALTER TABLE calls ADD COLUMN sentiment TEXT;
ALTER TABLE calls ADD COLUMN resolution TEXT;
ALTER TABLE calls ADD COLUMN satisfaction BIGINT;
CREATE INDEX calls_unfinalized ON calls (started_at) WHERE finalized_at IS NULL;
CREATE INDEX calls_app_started ON calls (org_id, app_id, started_at);

-- The outbox: one row per (call, event type), written in the transaction that caused it.
CREATE TABLE events (
    id             UUID PRIMARY KEY,
    org_id         UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    app_id         UUID,
    call_id        UUID NOT NULL REFERENCES calls(id) ON DELETE CASCADE,
    type           TEXT NOT NULL,
    schema_version BIGINT NOT NULL,
    payload        JSONB NOT NULL,
    created_at     TIMESTAMPTZ NOT NULL,
    dispatched_at  TIMESTAMPTZ,
    UNIQUE (call_id, type)
);
CREATE INDEX events_undispatched ON events (id) WHERE dispatched_at IS NULL;

-- The foundation's placeholders had no data; they are replaced by the real shape.
DROP TABLE automation_runs;
DROP TABLE automations;

CREATE TABLE automations (
    id          UUID PRIMARY KEY,
    org_id      UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    app_id      UUID NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    name        TEXT NOT NULL,
    trigger     TEXT NOT NULL,
    filters     JSONB NOT NULL,
    actions     JSONB NOT NULL,
    enabled     BOOLEAN NOT NULL,
    -- Key of the webhook signatures (encrypted at rest).
    secret_enc  BYTEA NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX automations_app ON automations (org_id, app_id, id);

-- A run is a job: claimed under a lease, its actions done in order, progress kept per action.
CREATE TABLE automation_runs (
    id              UUID PRIMARY KEY,
    org_id          UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    automation_id   UUID NOT NULL REFERENCES automations(id) ON DELETE CASCADE,
    event_id        UUID NOT NULL REFERENCES events(id) ON DELETE CASCADE,
    call_id         UUID,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'dead')),
    attempts        BIGINT NOT NULL,
    next_step       BIGINT NOT NULL,
    outputs         JSONB NOT NULL,
    last_error      TEXT,
    next_attempt_at TIMESTAMPTZ,
    lease_until     TIMESTAMPTZ,
    give_up_at      TIMESTAMPTZ NOT NULL,
    created_at      TIMESTAMPTZ NOT NULL,
    updated_at      TIMESTAMPTZ NOT NULL,
    finished_at     TIMESTAMPTZ,
    UNIQUE (automation_id, event_id)
);
CREATE INDEX automation_runs_due ON automation_runs (next_attempt_at) WHERE status IN ('pending', 'running');
CREATE INDEX automation_runs_automation ON automation_runs (org_id, automation_id, id);

CREATE TABLE tickets (
    id          UUID PRIMARY KEY,
    org_id      UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    app_id      UUID NOT NULL REFERENCES apps(id) ON DELETE CASCADE,
    call_id     UUID REFERENCES calls(id) ON DELETE SET NULL,
    title       TEXT NOT NULL,
    description TEXT NOT NULL,
    priority    TEXT NOT NULL CHECK (priority IN ('low', 'normal', 'high', 'urgent')),
    status      TEXT NOT NULL CHECK (status IN ('open', 'pending', 'resolved', 'closed')),
    -- The run and action that created it: a retried run does not create it twice.
    source      TEXT UNIQUE,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL
);
CREATE INDEX tickets_app ON tickets (org_id, app_id, id);

-- Retention periods are read and written as 64-bit integers, like every other count here.
ALTER TABLE organizations ALTER COLUMN transcript_retention_days TYPE BIGINT;
ALTER TABLE organizations ALTER COLUMN record_retention_days TYPE BIGINT;

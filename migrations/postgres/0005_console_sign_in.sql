-- Console sign-in (postgres). Keep in step with ../sqlite/0005_console_sign_in.sql.
-- A console session is a signed-in browser. Only the SHA-256 digest of its cookie is stored; its
-- CSRF token is sent back with every form. Sessions expire when idle and at an absolute limit,
-- and can be revoked one by one or all at once (password change or reset).
CREATE TABLE console_sessions (
    id           UUID PRIMARY KEY,
    token_hash   TEXT NOT NULL UNIQUE,
    csrf_token   TEXT NOT NULL,
    user_id      UUID NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    org_id       UUID NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    created_at   TIMESTAMPTZ NOT NULL,
    last_seen_at TIMESTAMPTZ NOT NULL,
    expires_at   TIMESTAMPTZ NOT NULL,
    user_agent   TEXT NOT NULL,
    ip           TEXT NOT NULL,
    revoked_at   TIMESTAMPTZ
);
CREATE INDEX console_sessions_by_user ON console_sessions (user_id, created_at);

-- Consecutive failed sign-ins, and the lockout they lead to.
ALTER TABLE users ADD COLUMN failed_sign_ins INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN locked_until TIMESTAMPTZ;

-- Calls placed from the console's test call; analytics leave them out unless asked.
ALTER TABLE calls ADD COLUMN is_test BOOLEAN NOT NULL DEFAULT FALSE;

-- A call record lists the automation runs its events started.
CREATE INDEX automation_runs_by_call ON automation_runs (org_id, call_id);

-- API token roles (postgres). Keep in step with ../sqlite/0004_token_roles.sql.
-- A token acts with a role: admin tokens change things, member tokens only read. Tokens made
-- before roles existed acted as admins and keep doing so.
ALTER TABLE api_tokens ADD COLUMN role TEXT NOT NULL DEFAULT 'admin' CHECK (role IN ('owner', 'admin', 'member'));

-- Session leases (SQLite). Keep in step with ../postgres/0003_session_leases.sql.
-- The process whose agent session holds a call renews this lease while the call is live; restart
-- recovery on any node settles calls whose lease ran out, never a live process's calls.
ALTER TABLE calls ADD COLUMN session_lease_until TEXT;

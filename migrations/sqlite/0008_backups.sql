-- Backups of phone services (sqlite). Keep in step with ../postgres/0008_backups.sql.
-- Where a number's calls go when this server cannot answer them (JSON: `forward_to` a number,
-- or a second `deployment`); NULL is this server's own fallback.
ALTER TABLE phone_numbers ADD COLUMN backup TEXT;

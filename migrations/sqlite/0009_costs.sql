-- Usage and costs (sqlite). Keep in step with ../postgres/0009_costs.sql.
-- The organisation's currency (every price and cost is in it) and monthly budget (JSON: limit,
-- warning threshold, hard stop, message); NULL budget is "no limit".
ALTER TABLE organizations ADD COLUMN currency TEXT NOT NULL DEFAULT 'USD';
ALTER TABLE organizations ADD COLUMN budget TEXT;
-- Each provider's price list (JSON, in the organisation's currency); NULL is "free".
ALTER TABLE llm_providers ADD COLUMN prices TEXT;
ALTER TABLE speech_providers ADD COLUMN prices TEXT;
ALTER TABLE phone_providers ADD COLUMN prices TEXT;

-- What the call's session used (JSON), and the cost computed from it (JSON breakdown, and its
-- total in billionths of the currency for sums). The carrier's own price comes after the call.
ALTER TABLE calls ADD COLUMN usage TEXT;
ALTER TABLE calls ADD COLUMN cost TEXT;
ALTER TABLE calls ADD COLUMN cost_total INTEGER;
ALTER TABLE calls ADD COLUMN carrier_price INTEGER;
ALTER TABLE calls ADD COLUMN carrier_price_unit TEXT;
-- Times the carrier was asked for its price; when the cost became final.
ALTER TABLE calls ADD COLUMN price_checks INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN cost_settled_at TEXT;
CREATE INDEX calls_unsettled ON calls (finalized_at) WHERE cost_settled_at IS NULL;

-- Each organisation's spending per calendar month (UTC, by the calls' start), kept up to date
-- as costs change, so a budget check never sums a month of calls. Erasing a call does not undo
-- what it cost.
CREATE TABLE spending (
    org_id BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    month  TEXT NOT NULL,
    spent  INTEGER NOT NULL,
    calls  INTEGER NOT NULL,
    PRIMARY KEY (org_id, month)
);

-- Budget thresholds reached, one row per organisation, month and level, so each fires once.
CREATE TABLE budget_alerts (
    org_id     BLOB NOT NULL REFERENCES organizations(id) ON DELETE CASCADE,
    month      TEXT NOT NULL,
    level      TEXT NOT NULL CHECK (level IN ('warning', 'limit')),
    call_id    BLOB,
    created_at TEXT NOT NULL,
    PRIMARY KEY (org_id, month, level)
);

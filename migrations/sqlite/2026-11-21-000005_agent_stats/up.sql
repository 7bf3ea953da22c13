-- Who placed a call (the agent behind the credential, if any); what a call holds of
-- its customer's balance until it ends (its first unit, reserved when it is created);
-- and the agent statistics kept by the agent-stats subscriber.

ALTER TABLE calls ADD COLUMN owner_id TEXT;
ALTER TABLE calls ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0;
ALTER TABLE billing_accounts ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0;

CREATE TABLE agent_stats (
    agent_id           TEXT PRIMARY KEY NOT NULL,
    customer_id        TEXT NOT NULL REFERENCES customers (id),
    -- The UTC day the *_today counters count.
    day                TEXT NOT NULL,
    active_calls       BIGINT NOT NULL,
    calls_today        BIGINT NOT NULL,
    talk_seconds_today BIGINT NOT NULL,
    calls_total        BIGINT NOT NULL,
    talk_seconds_total BIGINT NOT NULL,
    tm_update          TIMESTAMP NOT NULL
);

-- Who placed a call (the agent behind the credential, if any), and the agent
-- statistics kept by the agent-stats subscriber.

ALTER TABLE calls ADD COLUMN owner_id TEXT;

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

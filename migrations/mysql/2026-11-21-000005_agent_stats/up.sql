-- Who placed a call (the agent behind the credential, if any), and the agent
-- statistics kept by the agent-stats subscriber.

ALTER TABLE calls ADD COLUMN owner_id VARCHAR(36) NULL;

CREATE TABLE agent_stats (
    agent_id           VARCHAR(36) PRIMARY KEY NOT NULL,
    customer_id        VARCHAR(36) NOT NULL,
    -- The UTC day the *_today counters count.
    day                VARCHAR(10) NOT NULL,
    active_calls       BIGINT NOT NULL,
    calls_today        BIGINT NOT NULL,
    talk_seconds_today BIGINT NOT NULL,
    calls_total        BIGINT NOT NULL,
    talk_seconds_total BIGINT NOT NULL,
    tm_update          DATETIME(6) NOT NULL,
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

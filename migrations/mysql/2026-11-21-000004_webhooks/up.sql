-- Webhooks, the deliveries waiting for them, and the log of every delivery attempt.

CREATE TABLE webhooks (
    id          VARCHAR(36) PRIMARY KEY NOT NULL,
    customer_id VARCHAR(36) NOT NULL,
    name        VARCHAR(255) NOT NULL,
    detail      TEXT NOT NULL,
    uri         TEXT NOT NULL,
    -- POST | PUT
    method      VARCHAR(8) NOT NULL,
    -- JSON array of patterns: `call.created`, `call.*`, `*`.
    event_types TEXT NOT NULL,
    -- Keys the HMAC of every delivery; shown only at creation and rotation.
    secret      VARCHAR(255) NOT NULL,
    -- The newest event when the webhook was made: only later events are delivered.
    since_seq   BIGINT NOT NULL,
    tm_create   DATETIME(6) NOT NULL,
    tm_update   DATETIME(6) NOT NULL,
    INDEX webhooks_page (customer_id, tm_create, id),
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- One row per (event, matching webhook), written with the subscriber's cursor.
CREATE TABLE webhook_deliveries (
    id              VARCHAR(36) PRIMARY KEY NOT NULL,
    webhook_id      VARCHAR(36) NOT NULL,
    customer_id     VARCHAR(36) NOT NULL,
    event_id        VARCHAR(36) NOT NULL,
    -- Outbox order: a resource's events are delivered in this order.
    event_seq       BIGINT NOT NULL,
    event_type      VARCHAR(64) NOT NULL,
    resource_id     VARCHAR(36) NOT NULL,
    -- The request body, byte for byte what is signed and sent.
    body            MEDIUMTEXT NOT NULL,
    -- pending | delivered | failed
    status          VARCHAR(16) NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at DATETIME(6) NOT NULL,
    tm_create       DATETIME(6) NOT NULL,
    tm_update       DATETIME(6) NOT NULL,
    INDEX webhook_deliveries_due (webhook_id, status, next_attempt_at),
    INDEX webhook_deliveries_resource (webhook_id, resource_id, status, event_seq),
    INDEX webhook_deliveries_lanes (status, webhook_id),
    FOREIGN KEY (webhook_id) REFERENCES webhooks (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE webhook_attempts (
    id              VARCHAR(36) PRIMARY KEY NOT NULL,
    delivery_id     VARCHAR(36) NOT NULL,
    webhook_id      VARCHAR(36) NOT NULL,
    event_id        VARCHAR(36) NOT NULL,
    event_type      VARCHAR(64) NOT NULL,
    attempt         INTEGER NOT NULL,
    status_code     INTEGER NULL,
    error           TEXT NULL,
    latency_ms      BIGINT NULL,
    next_attempt_at DATETIME(6) NULL,
    -- The delivery's status after this attempt.
    status          VARCHAR(16) NOT NULL,
    tm_create       DATETIME(6) NOT NULL,
    INDEX webhook_attempts_page (webhook_id, tm_create, id),
    INDEX webhook_attempts_delivery (delivery_id),
    FOREIGN KEY (delivery_id) REFERENCES webhook_deliveries (id),
    FOREIGN KEY (webhook_id) REFERENCES webhooks (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

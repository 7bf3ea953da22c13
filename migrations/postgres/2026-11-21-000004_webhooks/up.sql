-- Webhooks, the deliveries waiting for them, and the log of every delivery attempt.

CREATE TABLE webhooks (
    id          TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    name        TEXT NOT NULL,
    detail      TEXT NOT NULL DEFAULT '',
    uri         TEXT NOT NULL,
    -- POST | PUT
    method      TEXT NOT NULL,
    -- JSON array of patterns: `call.created`, `call.*`, `*`.
    event_types TEXT NOT NULL,
    -- Keys the HMAC of every delivery; shown only at creation and rotation.
    secret      TEXT NOT NULL,
    -- The newest event when the webhook was made: only later events are delivered.
    since_seq   BIGINT NOT NULL,
    tm_create   TIMESTAMP NOT NULL,
    tm_update   TIMESTAMP NOT NULL
);
CREATE INDEX webhooks_page ON webhooks (customer_id, tm_create, id);

-- One row per (event, matching webhook), written with the subscriber's cursor.
CREATE TABLE webhook_deliveries (
    id              TEXT PRIMARY KEY NOT NULL,
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id),
    customer_id     TEXT NOT NULL,
    event_id        TEXT NOT NULL,
    -- Outbox order: a resource's events are delivered in this order.
    event_seq       BIGINT NOT NULL,
    event_type      TEXT NOT NULL,
    resource_id     TEXT NOT NULL,
    -- The request body, byte for byte what is signed and sent.
    body            TEXT NOT NULL,
    -- pending | delivered | failed
    status          TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    next_attempt_at TIMESTAMP NOT NULL,
    tm_create       TIMESTAMP NOT NULL,
    tm_update       TIMESTAMP NOT NULL
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, status, next_attempt_at);
CREATE INDEX webhook_deliveries_resource ON webhook_deliveries (webhook_id, resource_id, status, event_seq);
CREATE INDEX webhook_deliveries_lanes ON webhook_deliveries (status, webhook_id);

CREATE TABLE webhook_attempts (
    id              TEXT PRIMARY KEY NOT NULL,
    delivery_id     TEXT NOT NULL REFERENCES webhook_deliveries (id),
    webhook_id      TEXT NOT NULL REFERENCES webhooks (id),
    event_id        TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    attempt         INTEGER NOT NULL,
    status_code     INTEGER,
    error           TEXT,
    latency_ms      BIGINT,
    next_attempt_at TIMESTAMP,
    -- The delivery's status after this attempt.
    status          TEXT NOT NULL,
    tm_create       TIMESTAMP NOT NULL
);
CREATE INDEX webhook_attempts_page ON webhook_attempts (webhook_id, tm_create, id);
CREATE INDEX webhook_attempts_delivery ON webhook_attempts (delivery_id);

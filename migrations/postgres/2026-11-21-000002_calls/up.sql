-- Calls, and the answers remembered for Idempotency-Key.
-- Addresses are stored as columns (not JSON) so that an agent's own calls can be listed.

CREATE TABLE calls (
    id                      TEXT PRIMARY KEY NOT NULL,
    customer_id             TEXT NOT NULL REFERENCES customers (id),
    flow_id                 TEXT,
    activeflow_id           TEXT,
    direction               TEXT NOT NULL,
    source_type             TEXT NOT NULL,
    source_target           TEXT NOT NULL,
    source_target_name      TEXT NOT NULL DEFAULT '',
    source_name             TEXT NOT NULL DEFAULT '',
    destination_type        TEXT NOT NULL,
    destination_target      TEXT NOT NULL,
    destination_target_name TEXT NOT NULL DEFAULT '',
    destination_name        TEXT NOT NULL DEFAULT '',
    status                  TEXT NOT NULL,
    hangup_by               TEXT,
    hangup_reason           TEXT,
    hold                    BOOLEAN NOT NULL DEFAULT FALSE,
    mute_direction          TEXT,
    -- The inline flow and variables given at creation, for the flow run.
    actions                 TEXT NOT NULL DEFAULT '[]',
    variables               TEXT NOT NULL DEFAULT '{}',
    tm_create               TIMESTAMP NOT NULL,
    tm_ringing              TIMESTAMP,
    tm_answer               TIMESTAMP,
    tm_end                  TIMESTAMP,
    tm_update               TIMESTAMP NOT NULL,
    tm_delete               TIMESTAMP
);
CREATE INDEX calls_page ON calls (customer_id, tm_create, id);
CREATE INDEX calls_status ON calls (status);
CREATE INDEX calls_source_agent ON calls (source_target, source_type);
CREATE INDEX calls_destination_agent ON calls (destination_target, destination_type);

CREATE TABLE idempotency_keys (
    customer_id  TEXT NOT NULL,
    idem_key     TEXT NOT NULL,
    -- SHA-256 of the request (method, path, body) the key was first used with.
    request_hash TEXT NOT NULL,
    status_code  INTEGER NOT NULL,
    location     TEXT,
    response     TEXT NOT NULL,
    tm_create    TIMESTAMP NOT NULL,
    PRIMARY KEY (customer_id, idem_key)
);
CREATE INDEX idempotency_keys_age ON idempotency_keys (tm_create);

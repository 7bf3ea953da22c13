-- Flows and their runs, conferences and their participants, numbers, messages (SMS),
-- and each customer's secret for signing `webhook_send` requests.
-- Actions, variables, addresses and message targets are JSON documents stored as text.

CREATE TABLE flows (
    id          TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    name        TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT '',
    actions     TEXT NOT NULL,
    tm_create   TIMESTAMP NOT NULL,
    tm_update   TIMESTAMP NOT NULL,
    tm_delete   TIMESTAMP
);
CREATE INDEX flows_page ON flows (customer_id, tm_create, id);

CREATE TABLE activeflows (
    id                TEXT PRIMARY KEY NOT NULL,
    customer_id       TEXT NOT NULL REFERENCES customers (id),
    flow_id           TEXT,
    -- call (the only kind of run so far)
    reference_type    TEXT NOT NULL,
    reference_id      TEXT NOT NULL,
    -- running | ended
    status            TEXT NOT NULL,
    end_reason        TEXT,
    actions           TEXT NOT NULL,
    current_action_id TEXT,
    executed_actions  BIGINT NOT NULL,
    variables         TEXT NOT NULL,
    tm_create         TIMESTAMP NOT NULL,
    tm_update         TIMESTAMP NOT NULL,
    tm_end            TIMESTAMP
);
CREATE INDEX activeflows_page ON activeflows (customer_id, tm_create, id);
CREATE INDEX activeflows_status ON activeflows (status);
CREATE INDEX activeflows_reference ON activeflows (reference_id);

CREATE TABLE conferences (
    id              TEXT PRIMARY KEY NOT NULL,
    customer_id     TEXT NOT NULL REFERENCES customers (id),
    -- conference | connect
    conference_type TEXT NOT NULL,
    name            TEXT NOT NULL DEFAULT '',
    detail          TEXT NOT NULL DEFAULT '',
    -- starting | progressing | terminating | terminated
    status          TEXT NOT NULL,
    -- Seconds from creation; 0 for none.
    timeout         BIGINT NOT NULL,
    pre_flow_id     TEXT,
    post_flow_id    TEXT,
    tm_create       TIMESTAMP NOT NULL,
    tm_update       TIMESTAMP NOT NULL,
    tm_end          TIMESTAMP,
    tm_delete       TIMESTAMP
);
CREATE INDEX conferences_page ON conferences (customer_id, tm_create, id);
CREATE INDEX conferences_status ON conferences (status);

CREATE TABLE conferencecalls (
    id            TEXT PRIMARY KEY NOT NULL,
    customer_id   TEXT NOT NULL REFERENCES customers (id),
    conference_id TEXT NOT NULL REFERENCES conferences (id),
    call_id       TEXT NOT NULL,
    -- joining | joined | left
    status        TEXT NOT NULL,
    tm_join       TIMESTAMP,
    tm_leave      TIMESTAMP,
    tm_create     TIMESTAMP NOT NULL,
    tm_update     TIMESTAMP NOT NULL
);
CREATE INDEX conferencecalls_page ON conferencecalls (customer_id, tm_create, id);
CREATE INDEX conferencecalls_conference ON conferencecalls (conference_id, status);
CREATE INDEX conferencecalls_call ON conferencecalls (call_id, status);

CREATE TABLE numbers (
    id              TEXT PRIMARY KEY NOT NULL,
    customer_id     TEXT NOT NULL REFERENCES customers (id),
    number          TEXT NOT NULL,
    call_flow_id    TEXT,
    message_flow_id TEXT,
    name            TEXT NOT NULL DEFAULT '',
    detail          TEXT NOT NULL DEFAULT '',
    tm_create       TIMESTAMP NOT NULL,
    tm_update       TIMESTAMP NOT NULL,
    -- A number belongs to one customer at a time.
    UNIQUE (number)
);
CREATE INDEX numbers_page ON numbers (customer_id, tm_create, id);

CREATE TABLE messages (
    id          TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    direction   TEXT NOT NULL,
    source      TEXT NOT NULL,
    -- [{"destination", "status", "tm_update"}]
    targets     TEXT NOT NULL,
    text        TEXT NOT NULL,
    tm_create   TIMESTAMP NOT NULL,
    tm_update   TIMESTAMP NOT NULL,
    -- Set when every destination reached delivered or failed.
    tm_finish   TIMESTAMP
);
CREATE INDEX messages_page ON messages (customer_id, tm_create, id);
CREATE INDEX messages_unfinished ON messages (tm_finish);

CREATE TABLE flow_secrets (
    customer_id TEXT PRIMARY KEY NOT NULL REFERENCES customers (id),
    secret      TEXT NOT NULL,
    tm_create   TIMESTAMP NOT NULL,
    tm_update   TIMESTAMP NOT NULL
);

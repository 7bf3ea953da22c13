-- Tenants, their logins and keys, their money, and the event outbox.
-- Ids are UUID text, timestamps UTC, JSON documents text.

CREATE TABLE customers (
    id           TEXT PRIMARY KEY NOT NULL,
    name         TEXT NOT NULL,
    detail       TEXT NOT NULL DEFAULT '',
    email        TEXT NOT NULL DEFAULT '',
    phone_number TEXT NOT NULL DEFAULT '',
    address      TEXT NOT NULL DEFAULT '',
    tm_create    TIMESTAMP NOT NULL,
    tm_update    TIMESTAMP NOT NULL,
    tm_delete    TIMESTAMP
);
CREATE INDEX customers_page ON customers (tm_create, id);

CREATE TABLE agents (
    id            TEXT PRIMARY KEY NOT NULL,
    -- NULL only for super-admins, who belong to no customer.
    customer_id   TEXT REFERENCES customers (id),
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    name          TEXT NOT NULL DEFAULT '',
    detail        TEXT NOT NULL DEFAULT '',
    role          TEXT NOT NULL,
    status        TEXT NOT NULL DEFAULT 'offline',
    addresses     TEXT NOT NULL DEFAULT '[]',
    tm_create     TIMESTAMP NOT NULL,
    tm_update     TIMESTAMP NOT NULL
);
CREATE INDEX agents_page ON agents (customer_id, tm_create, id);

CREATE TABLE accesskeys (
    id          TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL REFERENCES customers (id),
    name        TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT '',
    -- SHA-256 of the key: keys are 256 random bits, so a fast hash is enough.
    token_hash  TEXT NOT NULL UNIQUE,
    token_hint  TEXT NOT NULL,
    tm_expire   TIMESTAMP,
    tm_create   TIMESTAMP NOT NULL,
    tm_update   TIMESTAMP NOT NULL,
    tm_delete   TIMESTAMP
);
CREATE INDEX accesskeys_page ON accesskeys (customer_id, tm_create, id);

CREATE TABLE billing_accounts (
    id          TEXT PRIMARY KEY NOT NULL,
    customer_id TEXT NOT NULL UNIQUE REFERENCES customers (id),
    balance     BIGINT NOT NULL DEFAULT 0,
    currency    TEXT NOT NULL DEFAULT 'USD',
    rates       TEXT NOT NULL,
    tm_create   TIMESTAMP NOT NULL,
    tm_update   TIMESTAMP NOT NULL
);

-- The outbox: one row per change, written in the change's transaction. `seq` is the
-- commit order the event bus and its durable subscribers follow.
CREATE TABLE events (
    seq         BIGSERIAL PRIMARY KEY,
    id          TEXT NOT NULL UNIQUE,
    customer_id TEXT,
    event_type  TEXT NOT NULL,
    resource_id TEXT NOT NULL,
    data        TEXT NOT NULL,
    tm_create   TIMESTAMP NOT NULL
);
CREATE INDEX events_customer ON events (customer_id, seq);

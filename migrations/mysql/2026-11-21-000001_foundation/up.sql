-- Tenants, their logins and keys, their money, and the event outbox.
-- Ids are UUID text, timestamps UTC with microseconds, JSON documents text.

CREATE TABLE customers (
    id           VARCHAR(36) PRIMARY KEY NOT NULL,
    name         VARCHAR(255) NOT NULL,
    detail       TEXT NOT NULL,
    email        VARCHAR(255) NOT NULL DEFAULT '',
    phone_number VARCHAR(32) NOT NULL DEFAULT '',
    address      TEXT NOT NULL,
    tm_create    DATETIME(6) NOT NULL,
    tm_update    DATETIME(6) NOT NULL,
    tm_delete    DATETIME(6) NULL,
    INDEX customers_page (tm_create, id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE agents (
    id            VARCHAR(36) PRIMARY KEY NOT NULL,
    -- NULL only for super-admins, who belong to no customer.
    customer_id   VARCHAR(36) NULL,
    username      VARCHAR(255) NOT NULL UNIQUE,
    password_hash VARCHAR(255) NOT NULL,
    name          VARCHAR(255) NOT NULL DEFAULT '',
    detail        TEXT NOT NULL,
    role          VARCHAR(16) NOT NULL,
    status        VARCHAR(16) NOT NULL DEFAULT 'offline',
    addresses     TEXT NOT NULL,
    tm_create     DATETIME(6) NOT NULL,
    tm_update     DATETIME(6) NOT NULL,
    INDEX agents_page (customer_id, tm_create, id),
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE accesskeys (
    id          VARCHAR(36) PRIMARY KEY NOT NULL,
    customer_id VARCHAR(36) NOT NULL,
    name        VARCHAR(255) NOT NULL DEFAULT '',
    detail      TEXT NOT NULL,
    -- SHA-256 of the key: keys are 256 random bits, so a fast hash is enough.
    token_hash  VARCHAR(64) NOT NULL UNIQUE,
    token_hint  VARCHAR(16) NOT NULL,
    tm_expire   DATETIME(6) NULL,
    tm_create   DATETIME(6) NOT NULL,
    tm_update   DATETIME(6) NOT NULL,
    tm_delete   DATETIME(6) NULL,
    INDEX accesskeys_page (customer_id, tm_create, id),
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE billing_accounts (
    id          VARCHAR(36) PRIMARY KEY NOT NULL,
    customer_id VARCHAR(36) NOT NULL UNIQUE,
    balance     BIGINT NOT NULL DEFAULT 0,
    currency    VARCHAR(3) NOT NULL DEFAULT 'USD',
    rates       TEXT NOT NULL,
    tm_create   DATETIME(6) NOT NULL,
    tm_update   DATETIME(6) NOT NULL,
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The outbox: one row per change, written in the change's transaction. `seq` is the
-- commit order the event bus and its durable subscribers follow.
CREATE TABLE events (
    seq         BIGINT PRIMARY KEY AUTO_INCREMENT NOT NULL,
    id          VARCHAR(36) NOT NULL UNIQUE,
    customer_id VARCHAR(36) NULL,
    event_type  VARCHAR(64) NOT NULL,
    resource_id VARCHAR(36) NOT NULL,
    data        MEDIUMTEXT NOT NULL,
    tm_create   DATETIME(6) NOT NULL,
    INDEX events_customer (customer_id, seq)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

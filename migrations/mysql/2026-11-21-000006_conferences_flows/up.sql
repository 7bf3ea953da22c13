-- Flows and their runs, conferences and their participants, numbers, messages (SMS),
-- and each customer's secret for signing `webhook_send` requests.
-- Actions, variables, addresses and message targets are JSON documents stored as text.

CREATE TABLE flows (
    id          VARCHAR(36) PRIMARY KEY NOT NULL,
    customer_id VARCHAR(36) NOT NULL,
    name        VARCHAR(255) NOT NULL DEFAULT '',
    detail      TEXT NOT NULL,
    actions     MEDIUMTEXT NOT NULL,
    tm_create   DATETIME(6) NOT NULL,
    tm_update   DATETIME(6) NOT NULL,
    tm_delete   DATETIME(6) NULL,
    INDEX flows_page (customer_id, tm_create, id),
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE activeflows (
    id                VARCHAR(36) PRIMARY KEY NOT NULL,
    customer_id       VARCHAR(36) NOT NULL,
    flow_id           VARCHAR(36) NULL,
    -- call (the only kind of run so far)
    reference_type    VARCHAR(16) NOT NULL,
    reference_id      VARCHAR(36) NOT NULL,
    -- running | ended
    status            VARCHAR(16) NOT NULL,
    end_reason        VARCHAR(32) NULL,
    actions           MEDIUMTEXT NOT NULL,
    current_action_id VARCHAR(36) NULL,
    executed_actions  BIGINT NOT NULL,
    variables         MEDIUMTEXT NOT NULL,
    tm_create         DATETIME(6) NOT NULL,
    tm_update         DATETIME(6) NOT NULL,
    tm_end            DATETIME(6) NULL,
    INDEX activeflows_page (customer_id, tm_create, id),
    INDEX activeflows_status (status),
    INDEX activeflows_reference (reference_id),
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE conferences (
    id              VARCHAR(36) PRIMARY KEY NOT NULL,
    customer_id     VARCHAR(36) NOT NULL,
    -- conference | connect
    conference_type VARCHAR(16) NOT NULL,
    name            VARCHAR(255) NOT NULL DEFAULT '',
    detail          TEXT NOT NULL,
    -- starting | progressing | terminating | terminated
    status          VARCHAR(16) NOT NULL,
    -- Seconds from creation; 0 for none.
    timeout         BIGINT NOT NULL,
    pre_flow_id     VARCHAR(36) NULL,
    post_flow_id    VARCHAR(36) NULL,
    tm_create       DATETIME(6) NOT NULL,
    tm_update       DATETIME(6) NOT NULL,
    tm_end          DATETIME(6) NULL,
    tm_delete       DATETIME(6) NULL,
    INDEX conferences_page (customer_id, tm_create, id),
    INDEX conferences_status (status),
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE conferencecalls (
    id            VARCHAR(36) PRIMARY KEY NOT NULL,
    customer_id   VARCHAR(36) NOT NULL,
    conference_id VARCHAR(36) NOT NULL,
    call_id       VARCHAR(36) NOT NULL,
    -- joining | joined | left
    status        VARCHAR(16) NOT NULL,
    tm_join       DATETIME(6) NULL,
    tm_leave      DATETIME(6) NULL,
    tm_create     DATETIME(6) NOT NULL,
    tm_update     DATETIME(6) NOT NULL,
    INDEX conferencecalls_page (customer_id, tm_create, id),
    INDEX conferencecalls_conference (conference_id, status),
    INDEX conferencecalls_call (call_id, status),
    FOREIGN KEY (customer_id) REFERENCES customers (id),
    FOREIGN KEY (conference_id) REFERENCES conferences (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE numbers (
    id              VARCHAR(36) PRIMARY KEY NOT NULL,
    customer_id     VARCHAR(36) NOT NULL,
    number          VARCHAR(16) NOT NULL,
    call_flow_id    VARCHAR(36) NULL,
    message_flow_id VARCHAR(36) NULL,
    name            VARCHAR(255) NOT NULL DEFAULT '',
    detail          TEXT NOT NULL,
    tm_create       DATETIME(6) NOT NULL,
    tm_update       DATETIME(6) NOT NULL,
    -- A number belongs to one customer at a time.
    UNIQUE KEY numbers_number (number),
    INDEX numbers_page (customer_id, tm_create, id),
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE messages (
    id          VARCHAR(36) PRIMARY KEY NOT NULL,
    customer_id VARCHAR(36) NOT NULL,
    direction   VARCHAR(16) NOT NULL,
    source      TEXT NOT NULL,
    -- [{"destination", "status", "tm_update"}]
    targets     MEDIUMTEXT NOT NULL,
    text        TEXT NOT NULL,
    tm_create   DATETIME(6) NOT NULL,
    tm_update   DATETIME(6) NOT NULL,
    -- Set when every destination reached delivered or failed.
    tm_finish   DATETIME(6) NULL,
    INDEX messages_page (customer_id, tm_create, id),
    INDEX messages_unfinished (tm_finish),
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE flow_secrets (
    customer_id VARCHAR(36) PRIMARY KEY NOT NULL,
    secret      VARCHAR(64) NOT NULL,
    tm_create   DATETIME(6) NOT NULL,
    tm_update   DATETIME(6) NOT NULL,
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- Calls, and the answers remembered for Idempotency-Key.
-- Addresses are stored as columns (not JSON) so that an agent's own calls can be listed.

CREATE TABLE calls (
    id                      VARCHAR(36) PRIMARY KEY NOT NULL,
    customer_id             VARCHAR(36) NOT NULL,
    flow_id                 VARCHAR(36) NULL,
    activeflow_id           VARCHAR(36) NULL,
    direction               VARCHAR(16) NOT NULL,
    source_type             VARCHAR(16) NOT NULL,
    source_target           VARCHAR(255) NOT NULL,
    source_target_name      VARCHAR(255) NOT NULL DEFAULT '',
    source_name             VARCHAR(255) NOT NULL DEFAULT '',
    destination_type        VARCHAR(16) NOT NULL,
    destination_target      VARCHAR(255) NOT NULL,
    destination_target_name VARCHAR(255) NOT NULL DEFAULT '',
    destination_name        VARCHAR(255) NOT NULL DEFAULT '',
    status                  VARCHAR(16) NOT NULL,
    hangup_by               VARCHAR(16) NULL,
    hangup_reason           VARCHAR(32) NULL,
    hold                    BOOLEAN NOT NULL DEFAULT FALSE,
    mute_direction          VARCHAR(8) NULL,
    -- The inline flow and variables given at creation, for the flow run.
    actions                 MEDIUMTEXT NOT NULL,
    variables               MEDIUMTEXT NOT NULL,
    tm_create               DATETIME(6) NOT NULL,
    tm_ringing              DATETIME(6) NULL,
    tm_answer               DATETIME(6) NULL,
    tm_end                  DATETIME(6) NULL,
    tm_update               DATETIME(6) NOT NULL,
    tm_delete               DATETIME(6) NULL,
    INDEX calls_page (customer_id, tm_create, id),
    INDEX calls_status (status),
    INDEX calls_source_agent (source_target, source_type),
    INDEX calls_destination_agent (destination_target, destination_type),
    FOREIGN KEY (customer_id) REFERENCES customers (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE idempotency_keys (
    customer_id  VARCHAR(36) NOT NULL,
    idem_key     VARCHAR(255) NOT NULL,
    -- SHA-256 of the request (method, path, body) the key was first used with.
    request_hash VARCHAR(64) NOT NULL,
    status_code  INTEGER NOT NULL,
    location     VARCHAR(255) NULL,
    response     MEDIUMTEXT NOT NULL,
    tm_create    DATETIME(6) NOT NULL,
    PRIMARY KEY (customer_id, idem_key),
    INDEX idempotency_keys_age (tm_create)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

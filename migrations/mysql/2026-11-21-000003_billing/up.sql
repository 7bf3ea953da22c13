-- The billing ledger, and how far each durable event subscriber has read the outbox.

CREATE TABLE billings (
    id                 VARCHAR(36) PRIMARY KEY NOT NULL,
    customer_id        VARCHAR(36) NOT NULL,
    billing_account_id VARCHAR(36) NOT NULL,
    -- call | sms | adjustment
    reference_type     VARCHAR(16) NOT NULL,
    reference_id       VARCHAR(64) NOT NULL,
    -- progressing (a call being billed) | finished
    status             VARCHAR(16) NOT NULL,
    units              BIGINT NOT NULL,
    rate               BIGINT NOT NULL,
    -- The change to the balance: negative for charges, positive for credits.
    amount             BIGINT NOT NULL,
    balance_after      BIGINT NOT NULL,
    tm_create          DATETIME(6) NOT NULL,
    tm_update          DATETIME(6) NOT NULL,
    UNIQUE KEY billings_reference (reference_type, reference_id),
    INDEX billings_page (customer_id, tm_create, id),
    FOREIGN KEY (customer_id) REFERENCES customers (id),
    FOREIGN KEY (billing_account_id) REFERENCES billing_accounts (id)
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

CREATE TABLE subscriber_cursors (
    name      VARCHAR(64) PRIMARY KEY NOT NULL,
    seq       BIGINT NOT NULL,
    tm_update DATETIME(6) NOT NULL
) ENGINE = InnoDB DEFAULT CHARSET = utf8mb4 COLLATE = utf8mb4_bin;

-- The billing ledger, and how far each durable event subscriber has read the outbox.

CREATE TABLE billings (
    id                 TEXT PRIMARY KEY NOT NULL,
    customer_id        TEXT NOT NULL REFERENCES customers (id),
    billing_account_id TEXT NOT NULL REFERENCES billing_accounts (id),
    -- call | sms | adjustment
    reference_type     TEXT NOT NULL,
    reference_id       TEXT NOT NULL,
    -- progressing (a call being billed) | finished
    status             TEXT NOT NULL,
    units              BIGINT NOT NULL,
    rate               BIGINT NOT NULL,
    -- The change to the balance: negative for charges, positive for credits.
    amount             BIGINT NOT NULL,
    balance_after      BIGINT NOT NULL,
    tm_create          TIMESTAMP NOT NULL,
    tm_update          TIMESTAMP NOT NULL,
    UNIQUE (reference_type, reference_id)
);
CREATE INDEX billings_page ON billings (customer_id, tm_create, id);

CREATE TABLE subscriber_cursors (
    name      TEXT PRIMARY KEY NOT NULL,
    seq       BIGINT NOT NULL,
    tm_update TIMESTAMP NOT NULL
);

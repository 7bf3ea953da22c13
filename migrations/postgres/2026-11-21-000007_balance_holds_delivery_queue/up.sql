-- What a call holds of its customer's balance until it ends (its first unit, reserved
-- when it is created), and the sum of those holds on the account: new calls and
-- messages need `balance - reserved`, so calls created together cannot overspend.
ALTER TABLE calls ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0;
ALTER TABLE billing_accounts ADD COLUMN reserved BIGINT NOT NULL DEFAULT 0;

-- A lane reads the heads of its queue in event order and stops at the page it needs.
-- The index on (webhook_id, status, next_attempt_at) made every read sort all pending
-- deliveries of the webhook, so a backlog slowed each read in proportion to its size.
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (webhook_id, status, event_seq);
DROP INDEX webhook_deliveries_due;

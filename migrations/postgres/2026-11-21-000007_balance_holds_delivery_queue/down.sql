CREATE INDEX webhook_deliveries_due ON webhook_deliveries (webhook_id, status, next_attempt_at);
DROP INDEX webhook_deliveries_queue;
ALTER TABLE billing_accounts DROP COLUMN reserved;
ALTER TABLE calls DROP COLUMN reserved;

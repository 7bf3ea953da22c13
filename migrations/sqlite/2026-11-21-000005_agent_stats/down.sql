DROP TABLE agent_stats;
ALTER TABLE billing_accounts DROP COLUMN reserved;
ALTER TABLE calls DROP COLUMN reserved;
ALTER TABLE calls DROP COLUMN owner_id;
